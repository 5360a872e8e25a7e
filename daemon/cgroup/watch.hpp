#pragma once

#include "cgroup/units.hpp"
#include "unique-fd.hpp"

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

// The cgroup v2 hierarchy as fqdnd reads it: where the cgroups of the units
// its policies name are, and inotify on the directories where they can be,
// which tells when to look again.
namespace fqdnd::cgroup {

// /sys/fs/cgroup on a unified system, its "unified" directory on a hybrid
// one; nothing on a v1-only one (a v1 directory's inode would never match
// a socket's v2 cgroup).
std::optional<std::string> hierarchy_root();

// Each unit's cgroup, in one walk of the hierarchy down to max_unit_level
// (below `root`, a directory that stands for it in tests).
Search find_units(const std::vector<std::string>& units);
Search find_units(const std::string& root, const std::vector<std::string>& units);

// Whether every unit of `known` still has the cgroup it names there (a stat
// of each path; false when any has none): then a walk could find nothing
// new but a shallower cgroup of the same name.
bool unchanged(const UnitCgroups& known);

// inotify on every directory of the hierarchy where a unit's cgroup can be
// (levels 0 to max_unit_level - 1), for directories made and removed:
// cgroupfs reports mkdir and rmdir as IN_CREATE and IN_DELETE in the parent.
// The watches follow the directories that come and go.
class Watch {
public:
    // Starts watching the hierarchy at `root`, or goes on with the names
    // of `units`. 0, or a negative errno (no inotify, no room for a watch):
    // then nothing is watched.
    int watch(const std::string& root, const std::vector<std::string>& units);
    void close() noexcept;
    bool is_open() const noexcept { return static_cast<bool>(fd_); }
    int fd() const noexcept { return fd_.get(); }
    size_t directories() const noexcept { return dirs_.size(); }

    struct Seen {
        bool named = false; // a directory of a unit's name came or went, or events were lost
        int error = 0;      // a new directory could not be watched (negative errno): the watch has a hole
    };
    // Reads every pending event.
    Seen read();

private:
    // Watches `path`, at `level`, and the directories below it down to the
    // last level that can hold a unit's cgroup; true when a directory of a
    // unit's name is among them (it was made before the watch).
    bool add(const std::string& path, uint32_t level, int& error);
    void forget(const std::string& path);

    struct Dir {
        std::string path;
        uint32_t level;
    };
    UniqueFd fd_;
    std::string root_;
    std::set<std::string> units_;
    std::unordered_map<int, Dir> dirs_;        // by watch descriptor
    std::unordered_map<std::string, int> wds_; // by path
};

} // namespace fqdnd::cgroup
