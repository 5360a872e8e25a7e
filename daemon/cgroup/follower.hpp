#pragma once

#include "cgroup/units.hpp"
#include "cgroup/watch.hpp"
#include "sd-util.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

// Follows the cgroups of the units that policies name, on the event loop:
// inotify on the hierarchy, or a look once a second without it. When a
// unit's cgroup came, went or was replaced, it hands the new cgroups to
// whoever puts the ruleset in place; they become the followed ones once
// that succeeded.
namespace fqdnd::cgroup {

class Follower {
public:
    // Puts the ruleset in place with `cgroups`: 0, or a negative errno
    // (then tried again in a second).
    using Apply = std::function<int(const UnitCgroups& cgroups)>;

    // `root` stands for the hierarchy in tests; by default the system's
    // (hierarchy_root()).
    explicit Follower(Apply apply, std::optional<std::string> root = std::nullopt)
        : apply_(std::move(apply)), root_(std::move(root))
    {
    }
    Follower(const Follower&) = delete;
    Follower& operator=(const Follower&) = delete;

    // The cgroups of `units`, looked up now. A unit without one (not
    // running) is a warning: its rules match nothing until it starts.
    // Nothing when a unit's cgroup cannot be told (each problem logged, and
    // added to `errors`).
    std::optional<UnitCgroups> look_up(const std::vector<std::string>& units, std::vector<std::string>* errors) const;

    // Follows `cgroups` (as the kernel's rules have them) from now on:
    // with inotify, or once a second without it; nothing when empty.
    void follow(sd_event* event, UnitCgroups cgroups);

    const UnitCgroups& cgroups() const noexcept { return cgroups_; }
    // Times the ruleset was put in place again for a unit.
    uint64_t changes() const noexcept { return changes_; }

private:
    std::optional<std::string> root() const;
    Search search(const std::vector<std::string>& units) const;
    std::vector<std::string> names() const;
    void poll(int why);
    void arm_poll();
    // Looks at the units' cgroups again and, when one came, went or was
    // replaced, applies them.
    void refresh();
    static int on_watch(sd_event_source*, int fd, uint32_t revents, void* self);
    static int on_timer(sd_event_source*, uint64_t usec, void* self);

    Apply apply_;
    std::optional<std::string> root_;
    sd_event* event_ = nullptr;
    UnitCgroups cgroups_;
    Watch watch_;
    SdEventSourcePtr source_, timer_;
    bool polled_ = false; // no inotify: looked at once a second
    uint64_t changes_ = 0;
};

} // namespace fqdnd::cgroup
