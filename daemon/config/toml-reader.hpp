#pragma once

#include "config/diagnostic.hpp"

#include <toml++/toml.h>

#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fqdnd::config {

// Reads values out of one parsed TOML file and records every problem with
// its location; nothing here throws or stops at the first error.
class TomlReader {
public:
    TomlReader(std::string file, Diagnostics& errors) : file_(std::move(file)), errors_(errors) {}

    const std::string& file() const noexcept { return file_; }
    SourceLocation where(const toml::source_region& region) const;
    SourceLocation where(const toml::node& node) const { return where(node.source()); }

    void error(const toml::source_region& region, std::string message);
    void error(const toml::node& node, std::string message) { error(node.source(), std::move(message)); }

    // Reports each key of `table` that is not in `known`, with the closest
    // known key as a suggestion. `context` names the table ("[daemon]").
    // Returns the keys suggested, so that a caller need not also report
    // the suggested key as missing.
    std::vector<std::string_view> check_keys(const toml::table& table, std::string_view context,
                    std::initializer_list<std::string_view> known);

    // Typed access: a wrong type is reported ("key: expected a string, got
    // an integer") and yields nothing.
    const toml::table* table(const toml::node& node, std::string_view key);
    const toml::array* array(const toml::node& node, std::string_view key);
    std::optional<std::string> string(const toml::node& node, std::string_view key);
    std::optional<bool> boolean(const toml::node& node, std::string_view key);
    std::optional<int64_t> integer(const toml::node& node, std::string_view key);

private:
    std::string file_;
    Diagnostics& errors_;
};

std::string_view type_name(toml::node_type type) noexcept;

// The known word closest to `word` by edit distance, if close enough to be
// a likely typo.
std::optional<std::string_view> closest(std::string_view word, std::span<const std::string_view> known);

} // namespace fqdnd::config
