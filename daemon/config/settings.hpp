#pragma once

#include "config/model.hpp"
#include "config/toml-reader.hpp"

#include <filesystem>
#include <span>
#include <string_view>
#include <variant>

namespace fqdnd::config {

// One key of fqdnd.toml, declared once: the parser, the defaults, the
// commented example in conf/ and the man page all come from this table.
struct SettingKey {
    enum class Type : uint8_t { name, path, optional_path, boolean, integer, duration, seconds, reject_code, reverse_path };
    using Field = std::variant<std::string Settings::*, bool Settings::*, int64_t Settings::*,
                               Duration Settings::*, RejectCode Settings::*, ReversePath Settings::*>;

    std::string_view section;
    std::string_view name;
    Type type;
    std::string_view default_toml; // the default, as TOML source text
    std::string_view help;
    Field field;
    int64_t min = 0;
    int64_t max = INT64_MAX;
};

std::span<const SettingKey> setting_keys() noexcept;
std::string_view type_name(SettingKey::Type type) noexcept;

// Every key at its default. Relative paths are taken from `base_dir`, the
// directory of fqdnd.toml.
Settings default_settings(const std::filesystem::path& base_dir);

// Reads [daemon] and [fqdn] of a parsed fqdnd.toml into `out` (which holds
// the defaults), reporting every problem.
void read_settings(const toml::table& root, TomlReader& reader, const std::filesystem::path& base_dir,
                   Settings& out);

} // namespace fqdnd::config
