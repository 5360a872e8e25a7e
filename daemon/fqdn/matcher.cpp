#include "fqdn/matcher.hpp"

#include "fqdn/name.hpp"

#include <array>

namespace fqdnd {

namespace {

// A normalized name has at most 128 labels (255 characters, "a.a.a...").
constexpr size_t max_labels = max_name_length / 2 + 1;

// Splits "a.b.c." into labels, rightmost first. Returns the count, or -1
// when the text is not a normalized name.
int split_reversed(std::string_view name, std::array<std::string_view, max_labels>& labels) noexcept
{
    if (name == ".")
        return 0;
    if (name.empty() || name.back() != '.' || name.size() > max_name_length)
        return -1;
    int n = 0;
    size_t end = name.size() - 1; // the final dot
    while (true) {
        const size_t dot = end == 0 ? std::string_view::npos : name.rfind('.', end - 1);
        const size_t start = dot == std::string_view::npos ? 0 : dot + 1;
        const std::string_view label = name.substr(start, end - start);
        if (label.empty() || label.size() > max_label_length)
            return -1;
        for (char c : label)
            if (!is_label_char(c))
                return -1;
        labels[static_cast<size_t>(n++)] = label;
        if (start == 0)
            return n;
        end = dot;
    }
}

} // namespace

bool FqdnMatcher::Glob::matches(std::string_view label) const noexcept
{
    // pieces = {prefix, middle..., suffix}; there is a '*' between any two.
    const std::string& first = pieces.front();
    const std::string& last = pieces.back();
    if (label.size() < first.size() + last.size() || !label.starts_with(first) || !label.ends_with(last))
        return false;
    size_t pos = first.size();
    const size_t stop = label.size() - last.size();
    for (size_t i = 1; i + 1 < pieces.size(); ++i) {
        const size_t found = label.substr(0, stop).find(pieces[i], pos);
        if (found == std::string_view::npos)
            return false;
        pos = found + pieces[i].size();
    }
    return true;
}

FqdnMatcher::FqdnMatcher() : nodes_(1) {}

FqdnMatcher::FqdnMatcher(std::span<const FqdnSelector> selectors) : nodes_(1), count_(selectors.size())
{
    for (size_t id = 0; id < selectors.size(); ++id) {
        const FqdnSelector& s = selectors[id];
        if (s.is_match_all()) {
            match_all_.push_back(static_cast<SelectorId>(id));
            continue;
        }
        std::string_view text = s.text;
        const bool subdomains = s.is_subdomain_wildcard();
        if (subdomains)
            text.remove_prefix(3);

        uint32_t node = 0;
        if (text != ".") {
            text.remove_suffix(1); // the final dot
            while (true) {
                const size_t dot = text.rfind('.');
                const std::string_view label = dot == std::string_view::npos ? text : text.substr(dot + 1);
                node = child(node, label);
                if (dot == std::string_view::npos)
                    break;
                text = text.substr(0, dot);
            }
        }
        (subdomains ? nodes_[node].subdomains : nodes_[node].exact).push_back(static_cast<SelectorId>(id));
    }
}

uint32_t FqdnMatcher::child(uint32_t node, std::string_view label)
{
    const auto next = static_cast<uint32_t>(nodes_.size());
    if (label.find('*') == std::string_view::npos) {
        auto [it, inserted] = nodes_[node].literal.try_emplace(std::string(label), next);
        if (inserted)
            nodes_.emplace_back();
        return it->second;
    }
    Glob glob;
    size_t start = 0;
    while (true) {
        const size_t star = label.find('*', start);
        glob.pieces.emplace_back(label.substr(start, star - start));
        if (star == std::string_view::npos)
            break;
        start = star + 1;
    }
    for (const auto& [existing, index] : nodes_[node].globs)
        if (existing.pieces == glob.pieces)
            return index;
    nodes_[node].globs.emplace_back(std::move(glob), next);
    nodes_.emplace_back();
    return next;
}

void FqdnMatcher::walk(uint32_t index, std::span<const std::string_view> rest, std::vector<SelectorId>& out) const
{
    const Node& node = nodes_[index];
    if (rest.empty()) {
        out.insert(out.end(), node.exact.begin(), node.exact.end());
        return;
    }
    out.insert(out.end(), node.subdomains.begin(), node.subdomains.end());
    const std::string_view label = rest.front();
    if (auto it = node.literal.find(label); it != node.literal.end())
        walk(it->second, rest.subspan(1), out);
    for (const auto& [glob, next] : node.globs)
        if (glob.matches(label))
            walk(next, rest.subspan(1), out);
}

void FqdnMatcher::match(std::string_view name, std::vector<SelectorId>& out) const
{
    std::array<std::string_view, max_labels> labels;
    const int n = split_reversed(name, labels);
    if (n < 0)
        return;
    out.insert(out.end(), match_all_.begin(), match_all_.end());
    walk(0, std::span(labels.data(), static_cast<size_t>(n)), out);
}

std::vector<FqdnMatcher::SelectorId> FqdnMatcher::match(std::string_view name) const
{
    std::vector<SelectorId> out;
    match(name, out);
    return out;
}

} // namespace fqdnd
