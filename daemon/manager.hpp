#pragma once

#include "audit/record.hpp"
#include "bus/manager-bus.hpp"
#include "cache/cache.hpp"
#include "cgroup/follower.hpp"
#include "config/model.hpp"
#include "ct/flows.hpp"
#include "dns/engine.hpp"
#include "fnv.hpp"
#include "interface-names.hpp"
#include "metrics-file.hpp"
#include "nflog/nflog.hpp"
#include "nfq/queue.hpp"
#include "nfq/reply.hpp"
#include "nft/encode.hpp"
#include "nft/keeper.hpp"
#include "nft/netlink.hpp"
#include "nft/table.hpp"
#include "sd-util.hpp"
#include "state/store.hpp"

#include <systemd/sd-event.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
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
    explicit Manager(Options options) : options_(std::move(options)) {}

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
        return recorder_.records(policy);
    }
    size_t forget_recording(const std::optional<std::string>& policy) override;

private:
    // Every value the metrics and the SIGUSR1 summary show, from the parts.
    metrics::Counters counters() const;
    // Writes `ops` to the sets on the control socket; a failure is logged
    // as `what`, and the caller goes on.
    void update_sets(const std::vector<cache::ElementOp>& ops, std::string_view what);
    int apply_ruleset(const config::Config& config, const cgroup::UnitCgroups& units, const char* why);
    int open_queues();
    void on_packet(const nfq::Packet& p);
    // Up to `max` queued packets, then commit_round().
    void serve_queues(size_t max);
    // The round's set updates as one batch, then the round's verdicts in
    // the order the packets came: nothing is released before the sets
    // hold what it taught.
    void commit_round();
    // Writes element operations to the kernel; false when the batch failed
    // or outlived response-max-delay (the answer is released anyway).
    bool write_elements(const std::vector<cache::ElementOp>& ops);
    void send_reply(const std::vector<uint8_t>& packet);
    void arm_expiry();
    void expire();
    // The DNS events of one packet, to the log (--log-dns) and to monitors.
    void report_events(uint64_t hold_us);
    // The NFLOG group of the drop rules, read for monitors; reopened when a
    // reload changes the group.
    void open_nflog();
    void on_logged(const nflog::Logged& l);
    // Binds the query copy group that `config` needs (none: unbound);
    // a negative errno (logged) when it cannot, and the running one stays.
    int open_copies(const config::Config& config);
    // Every query copy waiting, to the engine.
    void read_copies();
    static int on_copies(sd_event_source*, int fd, uint32_t revents, void* self);
    static int on_nflog(sd_event_source*, int fd, uint32_t revents, void* self);
    void dump_cache();
    static cache::Time now();
    // Someone else changed our table (`foreign`), or events about it were
    // lost: puts the ruleset back when the table is not as configured.
    void restore(bool foreign);

    static int on_signal(sd_event_source*, const struct signalfd_siginfo* si, void* self);
    static int on_queue(sd_event_source*, int fd, uint32_t revents, void* self);
    static int on_expiry_timer(sd_event_source*, uint64_t usec, void* self);

    Options options_;
    std::optional<config::Config> config_;
    SdEventPtr event_;
    nft::Netlink nl_;
    nft::Keeper keeper_{[this](bool foreign) { restore(foreign); }, [this] { return config_->settings.table; }};
    std::unique_ptr<nft::Table> table_;
    nft::Netlink updates_;                      // set elements, on the DNS path
    std::unique_ptr<nft::Table> update_table_;
    cache::Cache cache_;
    std::unique_ptr<dns::Engine> engine_;
    nfq::Queues queues_;
    // Conntrack's flows into the cache; addresses they let go expire.
    ct::Flows flows_{cache_, now, [this] { expire(); }};
    nfq::ReplySender replies_;                   // in a server's name
    uint64_t datapath_timeouts_ = 0, datapath_errors_ = 0;
    // How long answers that changed the sets were held, in powers of two
    // of microseconds: bucket i counts holds under 2^i us.
    std::array<uint64_t, 24> hold_us_{};
    // The packets read in one wakeup (a round) and what they wait for.
    struct RoundVerdict {
        uint16_t queue;
        uint32_t id;
        bool accept;
        bool held;                        // waits for the round's set update
        std::vector<uint8_t> replacement; // the packet to pass instead, when not empty
        bool sent = false;
    };
    // The round's verdicts not yet sent: those that wait for no set
    // update, or (held_too) every one.
    void send_verdicts(bool held_too);
    std::vector<RoundVerdict> round_verdicts_;
    std::vector<cache::ElementOp> round_ops_;
    // The addresses round_ops_ adds: an answer with one of them waits for
    // the transaction even when the cache had nothing more to write.
    std::unordered_set<Address, fnv::AddressHash> round_addresses_;
    std::vector<std::chrono::steady_clock::time_point> round_holds_; // arrival of answers with operations
    uint64_t renewals_deferred_seen_ = 0; // the cache's count when the expiry timer was last armed
    static constexpr size_t round_packets = 64;
    static constexpr std::chrono::microseconds round_hold_budget{200};
    InterfaceNames interfaces_;
    std::string interface_name(uint32_t index) { return interfaces_.name(index); }
    nft::QueueMode queue_mode_ = nft::QueueMode::native;
    nft::Refresh refresh_ = nft::Refresh::readd;
    SdEventSourcePtr queue_source_, expiry_timer_;
    // The metrics for node_exporter's textfile collector, when asked for.
    metrics::TextFile metrics_file_{[this] { return config_->settings.metrics_file; },
                                    [this] { return metric_samples(); }};
    uint64_t reloads_ = 0, reload_failures_ = 0, restores_ = 0;
    // The cgroups of the units policies name, as the kernel's rules have
    // them; a unit that comes, goes or restarts puts the ruleset in place again.
    cgroup::Follower units_{[this](const cgroup::UnitCgroups& u) { return apply_ruleset(*config_, u, "units"); }};
    std::unique_ptr<ManagerBus> bus_;
    uint64_t unexplained_elements_ = 0;
    std::unique_ptr<state::Store> state_;
    std::vector<SdEventSourcePtr> signals_; // SIGTERM, SIGINT, SIGHUP, SIGUSR1
    nflog::Reader nflog_;
    SdEventSourcePtr nflog_source_;
    // Copies of the queries passed unheld (ruleset::query_log_group), read
    // before every round of answers.
    nflog::Reader copies_;
    SdEventSourcePtr copies_source_;
    std::optional<uint16_t> copies_group_;
    std::optional<uint16_t> nflog_group_;
    // The names last shown for a dropped address, for a second: a flood to
    // one address costs one walk over the cache.
    Address last_drop_address_;
    std::vector<std::string> last_drop_names_;
    cache::Time last_drop_time_{};
    // What audit policies and drops recorded (audit/record.hpp), in the
    // state directory's audit.json: written a minute after a change, and
    // at exit.
    audit::Recorder recorder_;
    SdEventSourcePtr audit_save_timer_;
    bool audit_save_armed_ = false;
    std::filesystem::path audit_file() const;
    void load_recording();
    void save_recording();
    void schedule_recording_save();
    // Audit policies record their clients' queries (audit/record.hpp).
    bool recording_queries() const
    {
        return std::any_of(config_->policies.begin(), config_->policies.end(),
                           [](const config::Policy& p) { return p.audit; });
    }
    void record_query(const dns::Event& e, cache::Time t);
    void record_flow(const nflog::Drop& d, const std::vector<std::string>& names, cache::Time t);
    static int on_audit_save_timer(sd_event_source*, uint64_t usec, void* self);
};

} // namespace fqdnd
