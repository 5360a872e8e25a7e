#pragma once

#include <string>

// Each verb returns fqdnctl's exit code: 0 ok, 1 failure.
namespace fqdnctl {

int status(bool json);
int cache_list(const std::string& pattern, const std::string& endpoint, const std::string& source, bool json);
int cache_clean(const std::string& pattern, bool force);
int selectors(bool json);
int policy_list(bool json);
// What audit and drops recorded, as a policy (TOML, or JSON), as what the
// policy lacks, or forgotten. `policy` "" for every one.
int policy_suggest(const std::string& policy, bool json);
int policy_diff(const std::string& policy, bool json);
int policy_forget(const std::string& policy);
int reload();
int explain(const std::string& what, bool json);
int metrics();
// Runs until interrupted (exit 0) or fqdnd goes away (exit 1). `type`:
// "" for every event, "dns" or "drop".
int monitor(const std::string& type, bool json);

} // namespace fqdnctl
