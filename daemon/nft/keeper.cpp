#include "nft/keeper.hpp"

#include "log.hpp"

#include <sys/epoll.h>

#include <algorithm>
#include <utility>

namespace fqdnd::nft {

int Keeper::open(sd_event* event, uint32_t own_portid)
{
    event_ = event;
    own_portid_ = own_portid;
    // Room for the events of our own reloads; a lost event only costs a
    // check of the table.
    if (int r = monitor_.open(4 << 20); r < 0) {
        log::error("cannot watch nftables events: " + errno_text(r));
        return r;
    }
    if (int r = monitor_.ignore({own_portid_}); r < 0)
        log::warning("cannot filter fqdnd's own nftables events in the kernel: " + errno_text(r));
    sd_event_source* src = nullptr;
    if (int r = sd_event_add_io(event_, &src, monitor_.fd(), EPOLLIN, on_events, this); r < 0)
        return r;
    source_.reset(src);
    return 0;
}

int Keeper::also_own(uint32_t portid)
{
    if (int r = monitor_.ignore({own_portid_, portid}); r < 0) {
        log::warning("cannot filter fqdnd's own nftables events in the kernel: " + errno_text(r));
        return r;
    }
    return 0;
}

int Keeper::on_events(sd_event_source*, int, uint32_t, void* self)
{
    auto* k = static_cast<Keeper*>(self);
    // Each change waits for the check again, so that a burst costs one;
    // changes that never pause wait no longer than max_delay_usec.
    if (k->monitor_.read(k->table_(), k->own_portid_, max_elements, k->seen_))
        k->schedule();
    return 0;
}

void Keeper::recheck()
{
    seen_.lost = true;
    arm(std::min<uint64_t>(delay_usec << std::min(rechecks_, 9u), 60'000'000));
    ++rechecks_;
}

void Keeper::retry_restore()
{
    seen_.changed = seen_.retry = true;
    arm(std::min<uint64_t>(delay_usec << std::min(restore_tries_, 9u), max_retry_usec));
    ++restore_tries_;
}

void Keeper::arm(uint64_t delay)
{
    if (int r = event_reset_time_relative(event_, timer_, CLOCK_MONOTONIC, delay, 10'000, on_timer, this); r < 0)
        log::error("cannot arm the timer that checks the table again: " + errno_text(r));
}

void Keeper::schedule()
{
    uint64_t now = 0;
    sd_event_now(event_, CLOCK_MONOTONIC, &now);
    if (pending_since_ == 0)
        pending_since_ = now;
    else if (now - pending_since_ + delay_usec > max_delay_usec)
        return;
    if (int r = event_reset_time_relative(event_, timer_, CLOCK_MONOTONIC, delay_usec, 10'000, on_timer, this); r < 0)
        log::error("cannot arm the timer that puts the table back: " + errno_text(r));
}

int Keeper::on_timer(sd_event_source*, uint64_t, void* self)
{
    auto* k = static_cast<Keeper*>(self);
    k->pending_since_ = 0;
    const Seen seen = std::exchange(k->seen_, Seen{});
    k->restore_(seen);
    return 0;
}

} // namespace fqdnd::nft
