#pragma once

#include "config/model.hpp"

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fqdnd::config {

struct LoadResult {
    std::optional<Config> config; // set only when there is no error at all
    Diagnostics errors;
};

// Reads fqdnd.toml (absent is fine unless `must_exist`: every key has a
// default) and every *.toml of the policy directory, in name order. A set
// of files with any error is refused as a whole, with every error reported.
LoadResult load_config(const std::filesystem::path& config_file, bool must_exist);

// The same from text, for tests and fuzzing: `file` names the text in
// messages; policy files are (name, text) pairs.
LoadResult load_config_text(std::string_view config_text, const std::string& file,
                            const std::vector<std::pair<std::string, std::string>>& policy_files);

// Why `next` cannot replace the running `settings` by a reload, or "": the
// queues are bound at start (rules queueing elsewhere would meet no
// listener and be bypassed, ungated), and the journal is open in the state
// directory.
std::string fixed_until_restart(const Settings& running, const Settings& next);

// What a reload does with `loaded` while `running` runs: refuses it (each
// error in `errors`; `summary` for the log line, ": 2 errors" or ""),
// finds nothing changed, or takes `config`.
struct ReloadCheck {
    enum class Verdict : uint8_t { refused, unchanged, apply } verdict = Verdict::refused;
    std::optional<Config> config;
    std::vector<std::string> errors;
    std::string summary;
};
ReloadCheck check_reload(const Config& running, LoadResult loaded);

// "2 files, 1 policy, 4 egress rules, 2 FQDN selectors"
std::string summary(const Config& config);

} // namespace fqdnd::config
