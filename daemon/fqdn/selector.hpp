#pragma once

#include <compare>
#include <optional>
#include <string>
#include <string_view>

namespace fqdnd {

// One entry of to-fqdns or dns: { match-name = ... } or { match-pattern = ... }.
// The text is canonical (lower case, fully qualified, runs of '*' collapsed,
// every match-all spelling reduced to "*"), so that two selectors that mean
// the same compare equal and share one pair of nftables sets.
struct FqdnSelector {
    enum class Kind : uint8_t { name, pattern };

    Kind kind = Kind::name;
    std::string text;

    static std::optional<FqdnSelector> parse_name(std::string_view name, std::string* error);
    static std::optional<FqdnSelector> parse_pattern(std::string_view pattern, std::string* error);

    bool is_match_all() const noexcept { return kind == Kind::pattern && text == "*"; }
    // "**." prefix: one or more whole labels, then the rest.
    bool is_subdomain_wildcard() const noexcept
    {
        return kind == Kind::pattern && text.starts_with("**.");
    }

    // "match-name: echo.k8s.intra." or "match-pattern: *.k8s.intra.".
    std::string to_string() const;

    auto operator<=>(const FqdnSelector&) const = default;
};

} // namespace fqdnd
