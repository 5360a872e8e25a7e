#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

// The cgroups of the systemd units that policies name, as plain data: what
// a search of the cgroup v2 hierarchy found, and what changed from one
// search to the next. The search itself, and the watch that says when to
// search again, are in cgroup/watch.cpp.
namespace fqdnd::cgroup {

// A unit's cgroup: its directory, its depth below the hierarchy's root (the
// socket expression's level) and its id (the directory's inode, which the
// kernel compares).
struct UnitCgroup {
    std::string path;
    uint32_t level = 0;
    uint64_t id = 0;

    bool operator==(const UnitCgroup&) const = default;
};

// Each unit the policies name, with its cgroup, or nothing while it has
// none (the unit is not running).
using UnitCgroups = std::map<std::string, std::optional<UnitCgroup>>;

// A unit's cgroup is looked for down to this level: a user's service,
// user.slice/user-1000.slice/user@1000.service/app.slice/foo.service.
inline constexpr uint32_t max_unit_level = 5;

struct Search {
    UnitCgroups cgroups;
    // Units whose cgroup cannot be told, and why (two of that name at one
    // depth; no cgroup v2 hierarchy at all). Their entry in `cgroups` is
    // empty.
    std::map<std::string, std::string> problems;
};

// The units' cgroups among the directories a walk of the hierarchy shows
// it: for each unit, the shallowest directory of its name (system.slice/NAME
// before a user's NAME deeper down); two at that depth are ambiguous.
class UnitSearch {
public:
    explicit UnitSearch(const std::vector<std::string>& units);

    bool wants(const std::string& name) const { return best_.contains(name); }
    void saw(const std::string& name, UnitCgroup cgroup);
    Search result() const;

private:
    struct Best {
        std::optional<UnitCgroup> cgroup;
        bool ambiguous = false;
    };
    std::map<std::string, Best> best_;
};

// What changed from `before` to `after`, one phrase per unit, for the log:
// "foo.service started (cgroup id 7)", "foo.service restarted (cgroup id 9,
// was 7)", "foo.service stopped (cgroup id 7 is gone)". Units in one map
// only are not compared.
std::vector<std::string> changes(const UnitCgroups& before, const UnitCgroups& after);

// A search again of the units in `known`: the cgroups to use from now on,
// what changed (changes()), and a warning for each unit whose cgroup could
// not be told. fqdnd cannot refuse what happens on the host: such a unit
// keeps the cgroup it had, and its rules stay as they are.
struct Update {
    UnitCgroups cgroups;
    std::vector<std::string> changes, warnings;
};
Update update(const UnitCgroups& known, Search found);

// The units of `units` that have no cgroup now (not running).
size_t without_cgroup(const UnitCgroups& units);

} // namespace fqdnd::cgroup
