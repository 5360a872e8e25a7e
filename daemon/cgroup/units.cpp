#include "cgroup/units.hpp"

#include <algorithm>

namespace fqdnd::cgroup {

UnitSearch::UnitSearch(const std::vector<std::string>& units)
{
    for (const std::string& u : units)
        best_.emplace(u, Best{});
}

void UnitSearch::saw(const std::string& name, UnitCgroup cgroup)
{
    const auto it = best_.find(name);
    if (it == best_.end())
        return;
    Best& b = it->second;
    if (b.cgroup && b.cgroup->level == cgroup.level)
        b.ambiguous = true;
    if (!b.cgroup || cgroup.level < b.cgroup->level)
        b = Best{std::move(cgroup), false};
}

Search UnitSearch::result() const
{
    Search s;
    for (const auto& [unit, b] : best_) {
        if (b.ambiguous) {
            const std::string& path = b.cgroup->path;
            s.problems[unit] = "unit " + unit + ": more than one cgroup of that name at "
                + path.substr(0, path.find_last_of('/')) + "'s depth";
            s.cgroups[unit] = std::nullopt;
        } else {
            s.cgroups[unit] = b.cgroup;
        }
    }
    return s;
}

std::vector<std::string> changes(const UnitCgroups& before, const UnitCgroups& after)
{
    std::vector<std::string> out;
    for (const auto& [unit, now] : after) {
        const auto was = before.find(unit);
        if (was == before.end() || was->second == now)
            continue;
        const auto& then = was->second;
        if (!then)
            out.push_back(unit + " started (cgroup id " + std::to_string(now->id) + ")");
        else if (!now)
            out.push_back(unit + " stopped (cgroup id " + std::to_string(then->id) + " is gone)");
        else
            out.push_back(unit + " restarted (cgroup id " + std::to_string(now->id) + ", was "
                          + std::to_string(then->id) + ")");
    }
    return out;
}

Update update(const UnitCgroups& known, Search found)
{
    Update u;
    for (const auto& [unit, problem] : found.problems) {
        const auto was = known.find(unit);
        found.cgroups[unit] = was != known.end() ? was->second : std::nullopt;
        u.warnings.push_back(problem + "; its rules stay as they are");
    }
    u.changes = changes(known, found.cgroups);
    u.cgroups = std::move(found.cgroups);
    return u;
}

size_t without_cgroup(const UnitCgroups& units)
{
    return static_cast<size_t>(std::count_if(units.begin(), units.end(), [](const auto& u) { return !u.second; }));
}

} // namespace fqdnd::cgroup
