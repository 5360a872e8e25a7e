#include "metrics.hpp"

#include <cstdio>

namespace fqdnd::metrics {

std::string format_prometheus(const std::vector<Sample>& samples)
{
    std::string out;
    char value[64];
    for (const Info& info : table) {
        out += "# HELP " + std::string(info.name) + " " + std::string(info.help) + "\n";
        out += "# TYPE " + std::string(info.name) + " " + std::string(info.type) + "\n";
        for (const Sample& s : samples) {
            if (s.name.compare(0, info.name.size(), info.name) != 0)
                continue;
            const std::string_view rest = std::string_view(s.name).substr(info.name.size());
            if (!rest.empty() && rest != "_bucket" && rest != "_sum" && rest != "_count")
                continue;
            std::snprintf(value, sizeof(value), "%.17g", s.value);
            out += s.name + (s.labels.empty() ? "" : "{" + s.labels + "}") + " " + value + "\n";
        }
    }
    return out;
}

} // namespace fqdnd::metrics
