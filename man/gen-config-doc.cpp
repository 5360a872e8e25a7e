// Prints the [daemon] and [fqdn] keys of fqdnd.toml in scdoc, from the one
// table the parser reads them with: fqdnd.toml(5) cannot drift from the code.
#include "config/settings.hpp"

#include <cstdio>
#include <string>

int main()
{
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
        std::string help(k.help);
        // scdoc treats * and _ as emphasis: escape them.
        std::string escaped;
        for (char c : help) {
            if (c == '*' || c == '_')
                escaped += '\\';
            escaped += c;
        }
        std::printf("\t%s\n\n", escaped.c_str());
    }
    return 0;
}
