// Selector parsing, name normalization and the matcher on arbitrary bytes:
// each line is a pattern, and every line is also matched as a name.
#include "fqdn/matcher.hpp"
#include "fqdn/name.hpp"

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    std::vector<std::string_view> lines;
    for (size_t start = 0; start <= text.size();) {
        const size_t end = std::min(text.find('\n', start), text.size());
        lines.push_back(text.substr(start, end - start));
        start = end + 1;
    }
    std::vector<fqdnd::FqdnSelector> selectors;
    for (std::string_view line : lines) {
        if (auto s = fqdnd::FqdnSelector::parse_pattern(line, nullptr))
            selectors.push_back(*s);
        if (auto s = fqdnd::FqdnSelector::parse_name(line, nullptr))
            selectors.push_back(*s);
    }
    const fqdnd::FqdnMatcher matcher(selectors);
    std::vector<fqdnd::FqdnMatcher::SelectorId> out;
    for (std::string_view line : lines) {
        matcher.match(line, out);
        if (auto name = fqdnd::normalize_name(line))
            matcher.match(*name, out);
    }
    for (auto id : out)
        if (id >= selectors.size())
            __builtin_trap();
    return 0;
}
