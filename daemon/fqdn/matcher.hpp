#pragma once

#include "fqdn/selector.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace fqdnd {

// Every FQDN selector of a policy load compiled into one trie over labels,
// read from the right (TLD first). A name is matched by one walk: at each
// label, the literal child (one hash lookup) and the few glob children of
// that node. Built once per load, then read-only.
class FqdnMatcher {
public:
    using SelectorId = uint32_t;

    FqdnMatcher();
    // Selector i gets id i.
    explicit FqdnMatcher(std::span<const FqdnSelector> selectors);

    // Appends the id of every selector matching `name`, which must be
    // normalized (normalize_name); anything else matches nothing. Each id
    // appears once; order is unspecified.
    void match(std::string_view name, std::vector<SelectorId>& out) const;
    std::vector<SelectorId> match(std::string_view name) const;

    size_t size() const noexcept { return count_; }

private:
    // A label pattern with at least one '*': the pieces between the stars.
    struct Glob {
        std::vector<std::string> pieces;
        bool matches(std::string_view label) const noexcept;
    };
    struct StringHash {
        using is_transparent = void;
        size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    struct Node {
        std::unordered_map<std::string, uint32_t, StringHash, std::equal_to<>> literal;
        std::vector<std::pair<Glob, uint32_t>> globs;
        std::vector<SelectorId> exact;      // the name ends at this node
        std::vector<SelectorId> subdomains; // "**.": one or more labels remain
    };

    uint32_t child(uint32_t node, std::string_view label);
    void walk(uint32_t node, std::span<const std::string_view> rest, std::vector<SelectorId>& out) const;

    std::vector<Node> nodes_;
    std::vector<SelectorId> match_all_;
    size_t count_ = 0;
};

} // namespace fqdnd
