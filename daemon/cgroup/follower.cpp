#include "cgroup/follower.hpp"

#include "log.hpp"

#include <cerrno>
#include <sys/epoll.h>

namespace fqdnd::cgroup {

std::optional<std::string> Follower::root() const
{
    return root_ ? root_ : hierarchy_root();
}

Search Follower::search(const std::vector<std::string>& units) const
{
    return root_ ? find_units(*root_, units) : find_units(units);
}

std::vector<std::string> Follower::names() const
{
    std::vector<std::string> names;
    for (const auto& [unit, where] : cgroups_)
        names.push_back(unit);
    return names;
}

std::optional<UnitCgroups> Follower::look_up(const std::vector<std::string>& units,
                                             std::vector<std::string>* errors) const
{
    if (units.empty())
        return UnitCgroups{};
    Search found = search(units);
    for (const auto& [unit, problem] : found.problems) {
        log::error(problem);
        if (errors)
            errors->push_back(problem);
    }
    if (!found.problems.empty())
        return std::nullopt;
    // At boot fqdnd starts before the services that policies name: their
    // rules are in place, matching nothing, and follow them when they start.
    const std::string where = root().value_or("the cgroup v2 hierarchy");
    for (const auto& [unit, cgroup] : found.cgroups)
        if (!cgroup)
            log::warning("unit " + unit + " has no cgroup below " + where
                         + " (not running): the rules that select it match nothing until it starts");
    return std::move(found.cgroups);
}

void Follower::follow(sd_event* event, UnitCgroups cgroups)
{
    event_ = event;
    cgroups_ = std::move(cgroups);
    const std::vector<std::string> units = names();
    if (units.empty()) {
        // No policy names a unit: nothing is watched.
        source_.reset();
        timer_.reset();
        watch_.close();
        polled_ = false;
        return;
    }
    const std::optional<std::string> hierarchy = root();
    if (watch_.is_open() && hierarchy) {
        watch_.watch(*hierarchy, units); // the same directories; the names change
        return;
    }
    if (polled_)
        return;
    int r = hierarchy ? watch_.watch(*hierarchy, units) : -ENOENT;
    sd_event_source* src = nullptr;
    if (r == 0 && (r = sd_event_add_io(event_, &src, watch_.fd(), EPOLLIN, on_watch, this)) >= 0) {
        source_.reset(src);
        log::info("following the cgroups of " + std::to_string(units.size()) + (units.size() == 1 ? " unit" : " units")
                  + ": inotify on " + std::to_string(watch_.directories()) + " directories of " + *hierarchy);
        // What came or went before the watch began.
        refresh();
        return;
    }
    poll(r);
}

void Follower::poll(int why)
{
    source_.reset();
    watch_.close();
    if (!polled_)
        log::warning("cannot watch the cgroup hierarchy with inotify (" + errno_text(why)
                     + "): looking at the units' cgroups once a second instead");
    polled_ = true;
    arm_poll();
}

void Follower::arm_poll()
{
    if (int r = event_reset_time_relative(event_, timer_, CLOCK_MONOTONIC, 1'000'000, 100'000, on_timer, this); r < 0)
        log::error("cannot arm the timer that looks at the units' cgroups: " + errno_text(r));
}

int Follower::on_watch(sd_event_source*, int, uint32_t, void* self)
{
    auto* f = static_cast<Follower*>(self);
    const Watch::Seen seen = f->watch_.read();
    if (seen.error < 0)
        f->poll(seen.error); // a directory without a watch: a unit there would go unseen
    if (seen.named || seen.error < 0)
        f->refresh();
    return 0;
}

int Follower::on_timer(sd_event_source*, uint64_t, void* self)
{
    auto* f = static_cast<Follower*>(self);
    f->refresh();
    if (f->polled_)
        f->poll(0);
    return 0;
}

void Follower::refresh()
{
    if (cgroups_.empty())
        return;
    // Once a second without inotify: a stat of each cgroup while every unit
    // has one, a walk only when one has none.
    if (polled_ && unchanged(cgroups_))
        return;
    Update u = update(cgroups_, search(names()));
    for (const std::string& w : u.warnings)
        log::warning(w);
    if (u.changes.empty())
        return;
    std::string what;
    for (const std::string& c : u.changes)
        what += (what.empty() ? "" : "; ") + c;
    log::info("putting the ruleset in place again: " + what);
    if (apply_(u.cgroups) < 0) {
        // Tried again in a second, with whatever the units have then.
        arm_poll();
        return;
    }
    cgroups_ = std::move(u.cgroups);
    ++changes_;
}

} // namespace fqdnd::cgroup
