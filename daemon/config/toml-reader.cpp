#include "config/toml-reader.hpp"

#include <algorithm>
#include <vector>

namespace fqdnd::config {

std::string_view type_name(toml::node_type type) noexcept
{
    switch (type) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
    }
    return "nothing";
}

namespace {

size_t edit_distance(std::string_view a, std::string_view b)
{
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j)
        row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t above = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
            diagonal = above;
        }
    }
    return row[b.size()];
}

} // namespace

std::optional<std::string_view> closest(std::string_view word, std::span<const std::string_view> known)
{
    std::optional<std::string_view> best;
    size_t best_distance = std::max<size_t>(2, word.size() / 3) + 1;
    for (std::string_view k : known) {
        const size_t d = edit_distance(word, k);
        if (d < best_distance) {
            best = k;
            best_distance = d;
        }
    }
    return best;
}

SourceLocation TomlReader::where(const toml::source_region& region) const
{
    return SourceLocation{file_, region.begin.line, region.begin.column};
}

void TomlReader::error(const toml::source_region& region, std::string message)
{
    errors_.push_back(Diagnostic{where(region), std::move(message)});
}

std::vector<std::string_view> TomlReader::check_keys(const toml::table& table, std::string_view context,
                                                     std::initializer_list<std::string_view> known)
{
    std::vector<std::string_view> suggested;
    for (auto&& [key, value] : table) {
        if (std::find(known.begin(), known.end(), key.str()) != known.end())
            continue;
        std::string message = "unknown key \"" + std::string(key.str()) + "\" in " + std::string(context);
        if (auto suggestion = closest(key.str(), std::span(known.begin(), known.size()))) {
            message += "; did you mean \"" + std::string(*suggestion) + "\"?";
            suggested.push_back(*suggestion);
        }
        // A key written by a [header] or dotted key may carry no position of
        // its own; fall back to its value's.
        error(key.source().begin.line ? key.source() : value.source(), std::move(message));
    }
    return suggested;
}

namespace {

std::string wrong_type(std::string_view key, std::string_view expected, const toml::node& node)
{
    return std::string(key) + ": expected " + std::string(expected) + ", got " + std::string(type_name(node.type()));
}

} // namespace

const toml::table* TomlReader::table(const toml::node& node, std::string_view key)
{
    if (const toml::table* t = node.as_table())
        return t;
    error(node, wrong_type(key, "a table", node));
    return nullptr;
}

const toml::array* TomlReader::array(const toml::node& node, std::string_view key)
{
    if (const toml::array* a = node.as_array())
        return a;
    error(node, wrong_type(key, "an array", node));
    return nullptr;
}

std::optional<std::string> TomlReader::string(const toml::node& node, std::string_view key)
{
    if (auto v = node.value<std::string>(); v && node.is_string())
        return v;
    error(node, wrong_type(key, "a string", node));
    return std::nullopt;
}

std::optional<bool> TomlReader::boolean(const toml::node& node, std::string_view key)
{
    if (node.is_boolean())
        return node.as_boolean()->get();
    error(node, wrong_type(key, "a boolean (true or false)", node));
    return std::nullopt;
}

std::optional<int64_t> TomlReader::integer(const toml::node& node, std::string_view key)
{
    if (node.is_integer())
        return node.as_integer()->get();
    error(node, wrong_type(key, "an integer", node));
    return std::nullopt;
}

} // namespace fqdnd::config
