#include "ct/flows.hpp"

#include "log.hpp"

#include <sys/epoll.h>

namespace fqdnd::ct {

int Flows::open(sd_event* event, uint32_t mark_bits, int buffer)
{
    event_ = event;
    if (int r = conntrack_.open(mark_bits, buffer); r < 0) {
        log::error("cannot subscribe to conntrack events: " + errno_text(r));
        return r;
    }
    sd_event_source* src = nullptr;
    if (int r = sd_event_add_io(event_, &src, conntrack_.fd(), EPOLLIN, on_events, this); r < 0)
        return r;
    source_.reset(src);
    // The flows alive now: the events only tell what changes from here.
    resync();
    return 0;
}

int Flows::on_events(sd_event_source*, int, uint32_t, void* self)
{
    auto* f = static_cast<Flows*>(self);
    const auto t = f->now_();
    const bool lost = f->conntrack_.receive([f, t](const Flow& flow) {
        if (flow.alive)
            f->cache_.flow_opened(flow.id, flow.src, flow.dst, t);
        else
            f->cache_.flow_closed(flow.id, t);
    });
    if (lost) {
        // Events were lost: the counts are wrong until a dump sets them
        // right. Soon, not at once: the burst that overran us is still on.
        log::warning("conntrack events lost (overrun " + std::to_string(f->conntrack_.overruns())
                     + "); receive buffer now " + std::to_string(f->conntrack_.buffer()) + " bytes; resyncing");
        if (int r = event_reset_time_relative(f->event_, f->resync_timer_, CLOCK_MONOTONIC, 100'000, 10'000,
                                              on_resync_timer, f);
            r < 0)
            log::error("cannot arm the conntrack resync: " + errno_text(r));
    }
    f->changed_();
    return 0;
}

int Flows::on_resync_timer(sd_event_source*, uint64_t, void* self)
{
    static_cast<Flows*>(self)->resync();
    return 0;
}

void Flows::resync()
{
    std::vector<Flow> flows;
    if (int r = conntrack_.dump(flows); r < 0) {
        log::warning("conntrack dump failed: " + errno_text(r));
        return;
    }
    std::vector<cache::Cache::Flow> live;
    for (const auto& f : flows)
        live.push_back({f.id, f.src, f.dst});
    cache_.flows_reset(live, now_());
    changed_();
}

} // namespace fqdnd::ct
