#include "metrics.hpp"

#include <cstdio>
#include <vector>

namespace fqdnd::metrics {

namespace {

// The metric a sample belongs to: its name, or its name and a histogram's
// suffix.
bool belongs(const Sample& s, const Info& info)
{
    if (s.name.compare(0, info.name.size(), info.name) != 0)
        return false;
    const std::string_view rest = std::string_view(s.name).substr(info.name.size());
    return rest.empty() || (info.type == "histogram" && (rest == "_bucket" || rest == "_sum" || rest == "_count"));
}

void append(std::string& out, const Sample& s)
{
    char value[64];
    std::snprintf(value, sizeof(value), "%.17g", s.value);
    out += s.name + (s.labels.empty() ? "" : "{" + s.labels + "}") + " " + value + "\n";
}

} // namespace

std::string format_prometheus(const std::vector<Sample>& samples)
{
    std::string out;
    std::vector<bool> printed(samples.size());
    for (const Info* info : table) {
        out += "# HELP " + std::string(info->name) + " " + std::string(info->help) + "\n";
        out += "# TYPE " + std::string(info->name) + " " + std::string(info->type) + "\n";
        for (size_t i = 0; i < samples.size(); ++i)
            if (!printed[i] && belongs(samples[i], *info)) {
                append(out, samples[i]);
                printed[i] = true;
            }
    }
    for (size_t i = 0; i < samples.size(); ++i)
        if (!printed[i]) {
            out += "# TYPE " + samples[i].name + " untyped\n";
            append(out, samples[i]);
        }
    return out;
}

} // namespace fqdnd::metrics
