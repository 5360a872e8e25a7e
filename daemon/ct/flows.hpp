#pragma once

#include "cache/cache.hpp"
#include "ct/conntrack.hpp"
#include "sd-util.hpp"

#include <cstdint>
#include <functional>

// The flows fqdnd's rules marked, followed into the cache on the event
// loop: conntrack's events as they come; a dump at start, and soon after
// events were lost (the burst that overran the socket is still on).
namespace fqdnd::ct {

class Flows {
public:
    // `changed` runs after the cache took a batch of events or a dump:
    // addresses their flows kept may be free to go.
    Flows(cache::Cache& cache, cache::Time (*now)(), std::function<void()> changed)
        : cache_(cache), now_(now), changed_(std::move(changed))
    {
    }
    Flows(const Flows&) = delete;
    Flows& operator=(const Flows&) = delete;

    // Subscribes to the events of flows whose mark has `mark_bits`, with a
    // receive buffer of `buffer` bytes to start with, and takes the flows
    // alive now. 0, or a negative errno.
    int open(sd_event* event, uint32_t mark_bits, int buffer);

    uint64_t overruns() const noexcept { return conntrack_.overruns(); }

private:
    // The cache's flows set to conntrack's, from a dump.
    void resync();
    static int on_events(sd_event_source*, int fd, uint32_t revents, void* self);
    static int on_resync_timer(sd_event_source*, uint64_t usec, void* self);

    cache::Cache& cache_;
    cache::Time (*now_)();
    std::function<void()> changed_;
    sd_event* event_ = nullptr;
    Conntrack conntrack_;
    SdEventSourcePtr source_, resync_timer_;
};

} // namespace fqdnd::ct
