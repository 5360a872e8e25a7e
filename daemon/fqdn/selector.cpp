#include "fqdn/selector.hpp"

#include "fqdn/name.hpp"

namespace fqdnd {

namespace {

bool is_pattern_char(char c) noexcept
{
    return is_label_char(to_lower_ascii(c)) || c == '.' || c == '*';
}

// Cilium's isDNSWildcard: "*", "**", "*.", "**." ... all match every name.
bool is_match_all_spelling(std::string_view p) noexcept
{
    if (!p.empty() && p.back() == '.')
        p.remove_suffix(1);
    if (p.empty())
        return false;
    return p.find_first_not_of('*') == std::string_view::npos;
}

// Checks the labels of a canonical, fully qualified text: none empty (but the
// root "."), none with more than 63 characters other than '*'.
bool check_labels(std::string_view text, bool allow_root, std::string_view what, std::string* error)
{
    if (text == ".") {
        if (!allow_root)
            *error = std::string(what) + " has an empty label";
        return allow_root;
    }
    size_t start = 0;
    while (start < text.size()) {
        const size_t dot = text.find('.', start);
        const std::string_view label = text.substr(start, dot - start);
        if (label.empty()) {
            *error = std::string(what) + " has an empty label";
            return false;
        }
        size_t literal = 0;
        for (char c : label)
            literal += c != '*';
        if (literal > max_label_length) {
            *error = std::string(what) + " has a label longer than 63 characters";
            return false;
        }
        start = dot + 1;
    }
    return true;
}

std::string quoted(std::string_view s)
{
    return "\"" + std::string(s) + "\"";
}

} // namespace

std::optional<FqdnSelector> FqdnSelector::parse_name(std::string_view name, std::string* error)
{
    std::string ignored;
    if (!error)
        error = &ignored;
    if (name.empty()) {
        *error = "match-name is empty";
        return std::nullopt;
    }
    if (name.size() > max_name_length) {
        *error = "match-name " + quoted(name.substr(0, 32)) + "... is longer than 255 characters";
        return std::nullopt;
    }
    FqdnSelector s{Kind::name, {}};
    s.text.reserve(name.size() + 1);
    for (char c : name) {
        if (c == '*') {
            *error = "match-name " + quoted(name) + " has a '*'; use match-pattern for wildcards";
            return std::nullopt;
        }
        if (!is_pattern_char(c)) {
            *error = "match-name " + quoted(name)
                + " has a character outside [-a-zA-Z0-9_.]";
            return std::nullopt;
        }
        s.text += to_lower_ascii(c);
    }
    if (s.text.back() != '.')
        s.text += '.';
    if (!check_labels(s.text, true, "match-name " + quoted(name), error))
        return std::nullopt;
    return s;
}

std::optional<FqdnSelector> FqdnSelector::parse_pattern(std::string_view pattern, std::string* error)
{
    std::string ignored;
    if (!error)
        error = &ignored;
    if (pattern.empty()) {
        *error = "match-pattern is empty";
        return std::nullopt;
    }
    if (pattern.size() > max_name_length) {
        *error = "match-pattern " + quoted(pattern.substr(0, 32)) + "... is longer than 255 characters";
        return std::nullopt;
    }
    for (char c : pattern) {
        if (!is_pattern_char(c)) {
            *error = "match-pattern " + quoted(pattern)
                + " has a character outside [-a-zA-Z0-9_.*]";
            return std::nullopt;
        }
    }
    if (is_match_all_spelling(pattern))
        return FqdnSelector{Kind::pattern, "*"};

    FqdnSelector s{Kind::pattern, {}};
    s.text.reserve(pattern.size() + 1);
    size_t i = 0;
    // A leading run of two or more stars followed by a dot is the
    // subdomain wildcard; any other run of stars is one '*'.
    const size_t stars = pattern.find_first_not_of('*');
    if (stars >= 2 && pattern[stars] == '.') {
        s.text = "**.";
        i = stars + 1;
    }
    bool prev_star = false;
    for (; i < pattern.size(); ++i) {
        const char c = pattern[i];
        if (c == '*' && prev_star)
            continue;
        prev_star = c == '*';
        s.text += to_lower_ascii(c);
    }
    if (s.text.back() != '.')
        s.text += '.';
    const std::string_view labels = s.is_subdomain_wildcard()
        ? std::string_view(s.text).substr(3)
        : std::string_view(s.text);
    if (!check_labels(labels, !s.is_subdomain_wildcard(), "match-pattern " + quoted(pattern), error))
        return std::nullopt;
    return s;
}

std::string FqdnSelector::to_string() const
{
    return (kind == Kind::name ? "match-name: " : "match-pattern: ") + text;
}

} // namespace fqdnd
