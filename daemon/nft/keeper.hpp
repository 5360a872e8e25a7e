#pragma once

#include "nft/monitor.hpp"
#include "sd-util.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>

// Keeps fqdnd's table as configured, on the event loop: nf_tables events
// that another program made about the table or its set elements, or lost
// events, call for a check shortly after the last of them, so that a burst
// (nft flush ruleset) costs one rebuild.
namespace fqdnd::nft {

class Keeper {
public:
    // What was seen since the last check: `seen.changed`, someone else
    // changed the table itself; `seen.elements`, the set elements someone
    // else added or deleted (all of them unless `elements_dropped`);
    // `seen.lost`, events were lost, so anything may have changed.
    using Seen = Monitor::Seen;
    // `restore` checks the table and puts it back. `table` names the table
    // now (a reload may change it).
    Keeper(std::function<void(const Seen&)> restore, std::function<std::string()> table)
        : restore_(std::move(restore)), table_(std::move(table))
    {
    }
    Keeper(const Keeper&) = delete;
    Keeper& operator=(const Keeper&) = delete;

    // Joins the nf_tables events; the batches of `own_portid` are fqdnd's
    // own. 0, or a negative errno.
    int open(sd_event* event, uint32_t own_portid);
    // Another of fqdnd's sockets (the DNS path's set updates): its
    // transactions are fqdnd's own too, and not read at all.
    int also_own(uint32_t portid);

    // A check could not finish (someone kept changing the sets, the kernel
    // refused a write), or must be confirmed: another, of everything, as
    // after lost events; each one in a row waits twice as long as the one
    // before, up to a minute. A check due sooner stays due.
    void recheck();
    // A write outside a check was refused: a check of everything, when the
    // next recheck would come (delay_usec when the last check finished),
    // unless one is due already or a restore retry is pending (which
    // checks everything too, at its own pace). Never puts off one that is
    // due, and does not add to the backoff: refused writes can come by the
    // hundred.
    void check_soon();
    // A check finished: the next recheck waits delay_usec again.
    void settled() noexcept { rechecks_ = 0; }
    // The table could not be put back (another process owns its name, the
    // kernel refused): another try, which puts it back whatever a listing
    // shows (`Seen::retry`, `changed`), after delay_usec the first time
    // and twice as long each time in a row, up to max_retry_usec: nothing
    // may tell when it would work (an owned table goes with its owner's
    // socket, without an event), and without the table nothing of
    // fqdnd's filters.
    void retry_restore();
    // The table was put back: the next retry_restore waits delay_usec.
    void restored() noexcept { restore_tries_ = 0; }
    // Tries in a row that could not put the table back, since it last was.
    unsigned restore_tries() const noexcept { return restore_tries_; }
    static constexpr uint64_t max_retry_usec = 5'000'000;
    static constexpr uint64_t max_recheck_usec = 60'000'000;
    // delay_usec after the first failure, twice as long after each next, at most `max`.
    static constexpr uint64_t backoff(unsigned tries, uint64_t max) noexcept
    {
        return std::min<uint64_t>(delay_usec << std::min(tries, 9u), max);
    }

    // Events were seen this long before the check: a burst costs one.
    static constexpr uint64_t delay_usec = 200'000;
    static constexpr uint64_t max_delay_usec = 1'000'000;
    // Element changes kept for one check; beyond them, every element is.
    static constexpr size_t max_elements = 4096;

private:
    void schedule();
    // The check `delay_usec` from now, unless one is due sooner.
    void arm(uint64_t delay_usec);
    static int on_events(sd_event_source*, int fd, uint32_t revents, void* self);
    static int on_timer(sd_event_source*, uint64_t usec, void* self);

    std::function<void(const Seen&)> restore_;
    std::function<std::string()> table_;
    sd_event* event_ = nullptr;
    uint32_t own_portid_ = 0;
    Monitor monitor_;
    SdEventSourcePtr source_, timer_;
    Seen seen_;                  // since the last check
    uint64_t pending_since_ = 0; // the first event it waits for, CLOCK_MONOTONIC
    unsigned rechecks_ = 0;      // in a row, since the last check that finished
    unsigned restore_tries_ = 0; // in a row, since the table was last put back
};

} // namespace fqdnd::nft
