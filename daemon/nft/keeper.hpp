#pragma once

#include "nft/monitor.hpp"
#include "sd-util.hpp"

#include <cstdint>
#include <functional>
#include <string>

// Keeps fqdnd's table as configured, on the event loop: nf_tables events
// that another program made about the table, or lost events, call for a
// check shortly after the last of them, so that a burst (nft flush ruleset)
// costs one rebuild.
namespace fqdnd::nft {

class Keeper {
public:
    // `restore` checks the table and puts it back; `foreign` says someone
    // else was seen changing it (not merely events lost). `table` names the
    // table now (a reload may change it).
    Keeper(std::function<void(bool foreign)> restore, std::function<std::string()> table)
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

    // Events were seen this long before the check: a burst costs one.
    static constexpr uint64_t delay_usec = 200'000;

private:
    void schedule();
    static int on_events(sd_event_source*, int fd, uint32_t revents, void* self);
    static int on_timer(sd_event_source*, uint64_t usec, void* self);

    std::function<void(bool)> restore_;
    std::function<std::string()> table_;
    sd_event* event_ = nullptr;
    uint32_t own_portid_ = 0;
    Monitor monitor_;
    SdEventSourcePtr source_, timer_;
    bool foreign_ = false; // someone else changed the table since the last check
};

} // namespace fqdnd::nft
