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
    arm(backoff(rechecks_++, max_recheck_usec));
}

void Keeper::check_soon()
{
    seen_.lost = true;
    // A restore retry is due: it checks the sets whole too, and must keep
    // its own backoff (while the table is gone every write is refused).
    if (!seen_.retry)
        arm(backoff(rechecks_, max_recheck_usec));
}

void Keeper::retry_restore()
{
    seen_.changed = seen_.retry = true;
    arm(backoff(restore_tries_++, max_retry_usec));
}

void Keeper::arm(uint64_t delay)
{
    uint64_t now = 0, due = 0;
    int enabled = SD_EVENT_OFF;
    if (timer_ && sd_event_now(event_, CLOCK_MONOTONIC, &now) >= 0
        && sd_event_source_get_enabled(timer_.get(), &enabled) >= 0 && enabled != SD_EVENT_OFF
        && sd_event_source_get_time(timer_.get(), &due) >= 0 && due <= now + delay)
        return; // a check is due sooner: it checks everything `seen_` says
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
