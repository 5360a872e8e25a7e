#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <ctime>
#include "deleter.hpp"

#include <initializer_list>
#include <memory>
#include <vector>

// Owning pointers for sd-bus and sd-event objects, and the one way fqdnd
// (re)arms a one-shot timer: systemd's event_reset_time().
namespace fqdnd {

using SdEventPtr = std::unique_ptr<sd_event, FreeWith<sd_event_unref>>;
// Disabled as it goes: a source freed from inside another's callback never
// fires again.
using SdEventSourcePtr = std::unique_ptr<sd_event_source, FreeWith<sd_event_source_disable_unref>>;
using SdBusPtr = std::unique_ptr<sd_bus, FreeWith<sd_bus_flush_close_unref>>;
using SdBusSlotPtr = std::unique_ptr<sd_bus_slot, FreeWith<sd_bus_slot_unref>>;
using SdBusTrackPtr = std::unique_ptr<sd_bus_track, FreeWith<sd_bus_track_unref>>;
using SdBusMessagePtr = std::unique_ptr<sd_bus_message, FreeWith<sd_bus_message_unref>>;
using SdBusCredsPtr = std::unique_ptr<sd_bus_creds, FreeWith<sd_bus_creds_unref>>;

// Arms `source` to fire once at `usec` on `clock`: made on first use, moved
// and re-enabled after. Returns 0 or a negative errno (the timer is then
// unchanged).
inline int event_reset_time(sd_event* event, SdEventSourcePtr& source, clockid_t clock, uint64_t usec,
                            uint64_t accuracy, sd_event_time_handler_t callback, void* userdata)
{
    if (!source) {
        sd_event_source* s = nullptr;
        if (int r = sd_event_add_time(event, &s, clock, usec, accuracy, callback, userdata); r < 0)
            return r;
        source.reset(s);
        return 0;
    }
    if (int r = sd_event_source_set_time(source.get(), usec); r < 0)
        return r;
    return sd_event_source_set_enabled(source.get(), SD_EVENT_ONESHOT);
}

// The same, `usec` from now on `clock`.
inline int event_reset_time_relative(sd_event* event, SdEventSourcePtr& source, clockid_t clock, uint64_t usec,
                                     uint64_t accuracy, sd_event_time_handler_t callback, void* userdata)
{
    uint64_t now = 0;
    if (int r = sd_event_now(event, clock, &now); r < 0)
        return r;
    return event_reset_time(event, source, clock, now + usec, accuracy, callback, userdata);
}

// Blocks `signals` and `also_blocked` (whose sources are made elsewhere,
// like sd_event_add_child()'s SIGCHLD), then delivers each of `signals`
// through `event` to `callback`, one source each in `sources`. 0, or a
// negative errno; `failed` then says which signal could not be watched (0:
// blocking failed).
inline int event_add_signals(sd_event* event, std::initializer_list<int> signals,
                             std::initializer_list<int> also_blocked, std::vector<SdEventSourcePtr>& sources,
                             sd_event_signal_handler_t callback, void* userdata, int& failed)
{
    failed = 0;
    sigset_t mask;
    sigemptyset(&mask);
    for (const auto& list : {signals, also_blocked})
        for (int s : list)
            sigaddset(&mask, s);
    if (sigprocmask(SIG_BLOCK, &mask, nullptr) < 0)
        return -errno;
    for (int s : signals) {
        sd_event_source* src = nullptr;
        if (int r = sd_event_add_signal(event, &src, s, callback, userdata); r < 0) {
            failed = s;
            return r;
        }
        sources.emplace_back(src);
    }
    return 0;
}

} // namespace fqdnd
