#pragma once

#include "cgroup/units.hpp"

#include <optional>
#include <string>
#include <vector>

// The cgroup v2 hierarchy as fqdnd reads it: where the cgroups of the units
// its policies name are.
namespace fqdnd::cgroup {

// /sys/fs/cgroup on a unified system, its "unified" directory on a hybrid
// one; nothing on a v1-only one (a v1 directory's inode would never match
// a socket's v2 cgroup).
std::optional<std::string> hierarchy_root();

// Each unit's cgroup, in one walk of the hierarchy down to max_unit_level
// (below `root`, a directory that stands for it in tests).
Search find_units(const std::vector<std::string>& units);
Search find_units(const std::string& root, const std::vector<std::string>& units);

} // namespace fqdnd::cgroup
