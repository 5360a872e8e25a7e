#pragma once

#include "audit/store.hpp"
#include "bus/manager-bus.hpp"
#include "cache/cache.hpp"
#include "cgroup/follower.hpp"
#include "config/model.hpp"
#include "ct/flows.hpp"
#include "dns-path.hpp"
#include "dns/engine.hpp"
#include "interface-names.hpp"
#include "metrics-file.hpp"
#include "nflog/drop-log.hpp"
#include "nft/encode.hpp"
#include "nft/keeper.hpp"
#include "nft/netlink.hpp"
#include "nft/table.hpp"
#include "sd-util.hpp"
#include "state/store.hpp"

#include <systemd/sd-event.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fqdnd {

struct Options {
    std::filesystem::path config_file;
    bool config_given = false;
    std::optional<nft::QueueMode> queue_mode;  // probed when unset
    std::optional<nft::Refresh> element_refresh; // probed when unset
    bool log_dns = false;                          // every DNS event to the log
    int conntrack_buffer = 1 << 20;                // initial receive buffer of conntrack events
    std::string read_group = "fqdnd";              // may read over the bus (besides root)
};

// Owns the event loop and every part of the running daemon.
class Manager final : public bus::Backend {
public:
    explicit Manager(Options options);

    // Loads the configuration, puts the ruleset in place and tells systemd
    // it is ready. Returns 0 or a negative errno (already logged).
    int start();
    int run();

    // Reloads settings and policies; on any error the running ones stay and
    // `errors` (when given) gets each as file:line:column: what.
    int reload(std::vector<std::string>* errors = nullptr) override;

    // What the bus shows (bus::Backend).
    bus::Status status() const override;
    std::vector<cache::Cache::Entry> cache_entries() const override { return cache_.entries(); }
    const std::vector<config::Policy>& policies() const override { return config_->policies; }
    const std::string& read_group() const override { return options_.read_group; }
    std::vector<inspect::SelectorView> selectors() const override { return inspect::selectors(cache_); }
    std::optional<inspect::Explanation> explain(const std::string& what) const override
    {
        return inspect::explain(*config_, cache_, what);
    }
    std::vector<metrics::Sample> metric_samples() const override { return metrics::collect(counters()); }

    // Forgets what the cache knows of names matching `pattern` (all when
    // null) and takes their addresses out of the sets.
    size_t clean_cache(const FqdnMatcher* pattern, const std::optional<std::string>& pattern_text) override;
    std::vector<audit::PolicyRecord> recordings(const std::optional<std::string>& policy) const override
    {
        return audit_.recorder().records(policy);
    }
    size_t forget_recording(const std::optional<std::string>& policy) override;

private:
    // Every value the metrics and the SIGUSR1 summary show, from the parts.
    metrics::Counters counters() const;
    // Writes `ops` to the sets on the control socket. False when the kernel
    // refused (logged as `what`): the caller has a whole check of the sets
    // follow (Keeper::recheck), which writes what the cache holds and
    // removes what it does not explain.
    bool update_sets(const std::vector<cache::ElementOp>& ops, std::string_view what);
    // `replaces`: the table a reload renamed, deleted in the same batch.
    int apply_ruleset(const config::Config& config, const cgroup::UnitCgroups& units, const char* why,
                      const std::string* replaces = nullptr);
    // At start, after a step on the table failed: when another process
    // holds the table's name (`flags owner`), says so, sleeps (0.2 s, then
    // twice as long each time, at most 5 s; `waits` counts) and returns
    // true, to try again. False when nobody else holds it: the failure
    // stands.
    bool wait_while_held(unsigned& waits);
    // After a round of the DNS path (DnsPath::Hooks::round_done).
    void round_done(bool wrote, uint64_t hold_us);
    // Arms the timer for the cache's next deadline (an expiry or a
    // deferred renewal).
    void arm_expiry();
    void expire();
    // Whether anyone reads DNS events: the log, a monitor, the recording.
    bool watching_dns() const;
    // The DNS events of one round, to the log (--log-dns), to monitors
    // and to the audit recording.
    void report_events(uint64_t hold_us);
    void on_drop(const nflog::Drop& d, const std::vector<std::string>& names, cache::Time t);
    std::optional<uint16_t> drop_log_group() const;
    void dump_cache();
    static cache::Time now();
    // Someone else changed our table or its sets, or events about them
    // were lost: puts back the ruleset, when the table is not as
    // configured, and the sets' elements as the cache has them.
    void restore(const nft::Keeper::Seen& seen);
    // Someone else added or deleted these elements: each the cache holds
    // is put back as it has it, each other one added is removed.
    // Both false when the sets must be checked again.
    bool repair_elements(const std::vector<nft::Monitor::ElementChange>& changes);
    // Every element the cache holds into the sets, every other one out.
    bool resync_sets(const char* why);

    static int on_signal(sd_event_source*, const struct signalfd_siginfo* si, void* self);
    static int on_expiry_timer(sd_event_source*, uint64_t usec, void* self);
    static int on_post(sd_event_source*, void* self);

    Options options_;
    std::optional<config::Config> config_;
    SdEventPtr event_;
    nft::Netlink nl_;
    nft::Keeper keeper_{[this](const nft::Keeper::Seen& seen) { restore(seen); },
                        [this] { return config_->settings.table; }};
    std::unique_ptr<nft::Table> table_;
    cache::Cache cache_;
    std::unique_ptr<dns::Engine> engine_;
    InterfaceNames interfaces_;
    std::unique_ptr<DnsPath> dns_;
    // Conntrack's flows into the cache; addresses they let go expire.
    ct::Flows flows_{cache_, now, [this] { expire(); }};
    uint64_t renewals_deferred_seen_ = 0; // the cache's count when the expiry timer was last armed
    nft::QueueMode queue_mode_ = nft::QueueMode::native;
    nft::Refresh refresh_ = nft::Refresh::readd;
    bool destroy_elements_ = false; // the kernel deletes set elements idempotently
    SdEventSourcePtr expiry_timer_, post_;
    // The metrics for node_exporter's textfile collector, when asked for.
    metrics::TextFile metrics_file_{[this] { return config_->settings.metrics_file; },
                                    [this] { return metric_samples(); }};
    uint64_t reloads_ = 0, reload_failures_ = 0, restores_ = 0, restore_failures_ = 0;
    bool start_tried_after_owner_ = false; // wait_while_held: the owner went, one more try made
    uint64_t dns_errors_seen_ = 0;             // the DNS path's refused set writes, as last seen
    // The cgroups of the units policies name, as the kernel's rules have
    // them; a unit that comes, goes or restarts puts the ruleset in place again.
    cgroup::Follower units_{[this](const cgroup::UnitCgroups& u) { return apply_ruleset(*config_, u, "units"); }};
    std::unique_ptr<ManagerBus> bus_;
    uint64_t unexplained_elements_ = 0;
    std::unique_ptr<state::Store> state_;
    std::vector<SdEventSourcePtr> signals_; // SIGTERM, SIGINT, SIGHUP, SIGUSR1
    nflog::DropLog drops_;
    // What audit policies and drops recorded, in the state directory's
    // audit.json.
    audit::Store audit_{[this] { return std::filesystem::path(config_->settings.state_directory) / "audit.json"; }};
};

} // namespace fqdnd
