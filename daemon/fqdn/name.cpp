#include "fqdn/name.hpp"

namespace fqdnd {

std::optional<std::string> normalize_name(std::string_view name)
{
    if (name == ".")
        return std::string(".");
    if (name.empty() || name.size() > max_name_length)
        return std::nullopt;

    std::string out;
    out.reserve(name.size() + 1);
    size_t label = 0;
    for (char c : name) {
        if (c == '.') {
            if (label == 0)
                return std::nullopt;
            label = 0;
            out += '.';
            continue;
        }
        c = to_lower_ascii(c);
        if (!is_label_char(c) || ++label > max_label_length)
            return std::nullopt;
        out += c;
    }
    if (label != 0)
        out += '.';
    if (out.size() > max_name_length)
        return std::nullopt;
    return out;
}

} // namespace fqdnd
