// Prints, in scdoc, the [daemon] and [fqdn] keys of fqdnd.toml from the one
// table the parser reads them with (no argument), or every metric from the
// table the daemon fills them by (argument "metrics"): fqdnd.toml(5) and
// fqdnctl(8) cannot drift from the code.
#include "config/settings.hpp"
#include "metrics.hpp"

#include <cstdio>
#include <string>
#include <string_view>

namespace {

std::string escaped(std::string_view text)
{
    // scdoc treats * and _ as emphasis: escape them.
    std::string out;
    for (char c : text) {
        if (c == '*' || c == '_')
            out += '\\';
        out += c;
    }
    return out;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc > 1 && std::string_view(argv[1]) == "metrics") {
        for (const auto& m : fqdnd::metrics::table)
            std::printf("*%s* (%.*s)\n\t%s\n\n", escaped(m->name).c_str(), static_cast<int>(m->type.size()),
                        m->type.data(), escaped(m->help).c_str());
        return 0;
    }
    std::string section;
    for (const auto& k : fqdnd::config::setting_keys()) {
        if (k.section != section) {
            section = k.section;
            std::printf("## [%s]\n\n", section.c_str());
        }
        std::printf("*%.*s* = _%.*s_ (default: %.*s)\n", static_cast<int>(k.name.size()), k.name.data(),
                    static_cast<int>(fqdnd::config::type_name(k.type).size()),
                    fqdnd::config::type_name(k.type).data(), static_cast<int>(k.default_toml.size()),
                    k.default_toml.data());
        std::printf("\t%s\n\n", escaped(k.help).c_str());
    }
    return 0;
}
