#include "manager.hpp"

#include "cache/format.hpp"
#include "config/loader.hpp"
#include "log.hpp"
#include "ruleset/compile.hpp"
#include "state/reconcile.hpp"

#include <systemd/sd-daemon.h>

#include <sys/signalfd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace fqdnd {

namespace {

cache::Limits limits_of(const config::Settings& s)
{
    return cache::Limits{s.min_ttl,
                         static_cast<size_t>(s.max_ip_per_hostname),
                         s.idle_connection_grace_period,
                         static_cast<size_t>(s.max_deferred_connection_deletes),
                         static_cast<size_t>(s.max_names),
                         static_cast<size_t>(s.max_addresses)};
}

} // namespace

Manager::Manager(Options options)
    : options_(std::move(options)),
      drops_(std::string(ruleset::log_prefix), [this](const Address& a) { return cache_.names_of(a); }, now,
             [this](const nflog::Drop& d, const std::vector<std::string>& names, cache::Time t) { on_drop(d, names, t); })
{
}

int Manager::start()
{
    config::LoadResult loaded = config::load_config(options_.config_file, options_.config_given);
    if (!loaded.config) {
        for (const auto& d : loaded.errors)
            log::error(d.to_string());
        log::error("configuration refused; not starting");
        return -EINVAL;
    }
    config_ = std::move(loaded.config);
    const std::string& table = config_->settings.table;

    sd_event* e = nullptr;
    if (int r = sd_event_new(&e); r < 0) {
        log::error("cannot create the event loop: " + errno_text(r));
        return r;
    }
    event_.reset(e);

    if (int r = nl_.open(); r < 0) {
        log::error("cannot open a netfilter netlink socket: " + errno_text(r));
        return r;
    }
    table_ = std::make_unique<nft::Table>(nl_);

    // What this kernel takes, unless the command line says.
    nft::Features features;
    std::string problem;
    // Another process may hold the table's name: then fqdnd waits for it
    // to let go rather than exit, as systemd gives up on a unit that fails
    // to start five times in 10 s. The probe is the first to find out.
    unsigned waits = 0;
    while (int r = table_->probe(table, options_.queue_mode, options_.element_refresh, features, &problem)) {
        if (!wait_while_held(waits)) {
            log::error(problem);
            return r;
        }
    }
    queue_mode_ = features.queue_mode;
    refresh_ = features.refresh;
    destroy_elements_ = features.destroy_elements;
    log::info(nft::describe(features));

    auto units = units_.look_up(config_->units(), nullptr);
    if (!units) {
        log::error("not starting");
        return -EINVAL;
    }
    engine_ = std::make_unique<dns::Engine>(*config_, cache_);
    engine_->record_events(options_.log_dns);
    dns_ = std::make_unique<DnsPath>(*engine_, interfaces_,
                                     DnsPath::Hooks{now, [this] { state_->flush(); },
                                                    [this](const dns::Outcome::Learned& l, cache::Time t) {
                                                        state_->learned(t, l.endpoint, l.names, l.addresses, l.ttl);
                                                    },
                                                    [this] { return watching_dns(); },
                                                    [this](bool wrote, uint64_t hold_us) { round_done(wrote, hold_us); }});
    // Copies are read from before the rules send any.
    if (int r = dns_->open_copies(event_.get(), *config_); r < 0)
        return r;
    // Someone else's changes from here on are seen, also those made while
    // the sets are checked against the cache below.
    if (int r = keeper_.open(event_.get(), nl_.portid()); r < 0)
        return r;
    while (int r = apply_ruleset(*config_, *units, "start")) // the name taken since the probe
        if (!wait_while_held(waits))
            return r;
    if (waits > 0)
        log::info("table inet " + table + " is free again");

    // The cache fills the sets of selectors; what the kernel kept across a
    // restart stays there until the state file brings the cache back.
    cache_.set_limits(limits_of(config_->settings));
    std::vector<cache::ElementOp> ops;
    cache_.set_selectors(config_->fqdn_selectors(), now(), ops);
    // What the last run knew, and what the administrator preloads; the
    // kernel's sets are renewed to agree with it, and keep nothing else.
    state_ = std::make_unique<state::Store>(event_.get(), config_->settings.state_directory, cache_);
    state_->load(cache_, now(), ops);
    audit_.load();
    if (!config_->settings.pre_cache.empty())
        state_->load_file(config_->settings.pre_cache, "pre-cache", cache_, now(), ops);
    const bool filled = update_sets(ops, "restoring the sets from the cache");
    bool complete = true;
    if (const size_t removed
        = state::reconcile_sets(*table_, table, config_->fqdn_selectors(), cache_, now(), complete)) {
        unexplained_elements_ += removed;
        log::warning("the sets held " + std::to_string(removed)
                     + " elements that neither the state file nor the journal explains; removed");
    }
    if (!complete || !filled)
        keeper_.recheck();
    state_->begin();
    if (int r = flows_.open(event_.get(), ruleset::ct_mark_flow, options_.conntrack_buffer); r < 0)
        return r;

    if (int r = dns_->open(event_.get(), config_->settings, refresh_, destroy_elements_); r < 0)
        return r;
    // Its set updates come every round of the DNS path: not even read.
    keeper_.also_own(dns_->updates_portid());
    drops_.open(event_.get(), drop_log_group());
    audit_.start(event_.get());
    units_.follow(event_.get(), std::move(*units));
    // The metrics for node_exporter's textfile collector, when asked for.
    metrics_file_.start(event_.get());
    // The bus is how administrators look in; fqdnd enforces without it.
    bus_ = std::make_unique<ManagerBus>(*this);
    bus_->start(event_.get());

    // Signals through the loop: blocked here, delivered by signalfd. Without
    // them fqdnd could be neither stopped cleanly nor reloaded.
    int failed = 0;
    if (int r = event_add_signals(event_.get(), {SIGTERM, SIGINT, SIGHUP, SIGUSR1}, {SIGCHLD /* the state writer */},
                                  signals_, on_signal, this, failed);
        r < 0) {
        if (failed)
            log::error(std::string("cannot watch ") + sigabbrev_np(failed) + ": " + errno_text(r));
        return r;
    }
    // After whatever ran: a renewal deferred anywhere (a round that wrote
    // nothing, a flow, a reload) is due at half its grant, and the timer
    // must know, or it fires only at the mapping's old expiry, as the
    // kernel's element times out.
    sd_event_source* post = nullptr;
    if (int r = sd_event_add_post(event_.get(), &post, on_post, this); r < 0) {
        log::error("cannot watch for deferred renewals: " + errno_text(r));
        return r;
    }
    post_.reset(post);
    if (int r = sd_event_set_watchdog(event_.get(), true); r < 0)
        log::warning("cannot keep systemd's watchdog: " + errno_text(r));

    log::info("ready: " + config::summary(*config_) + "; table inet " + table);
    sd_notifyf(0, "READY=1\nSTATUS=Enforcing %zu policies in table inet %s", config_->policies.size(), table.c_str());
    return 0;
}

int Manager::run()
{
    const int r = sd_event_loop(event_.get());
    sd_notify(0, "STOPPING=1");
    // Every packet queued to us gets its verdict before we let go of the
    // queues; from then on the kernel bypasses them (fail-open) or drops.
    dns_->close();
    state_->save_now();
    audit_.save();
    // The table stays: enforcement goes on while fqdnd is down.
    log::info("stopping; table inet " + config_->settings.table + " stays in place");
    return r;
}

bool Manager::update_sets(const std::vector<cache::ElementOp>& ops, std::string_view what)
{
    if (ops.empty())
        return true;
    // Net changes only, as on the DNS path: a start's restore can add an
    // element, evict it and add it again for another name, and in one
    // batch the kernel applies them in order.
    std::vector<cache::ElementOp> net = ops;
    cache::coalesce(net);
    std::string problem;
    if (!net.empty() && table_->update(config_->settings.table, net, refresh_, &problem) < 0) {
        log::warning(std::string(what) + ": " + problem + "; the sets will be checked whole");
        return false;
    }
    return true;
}

int Manager::apply_ruleset(const config::Config& config, const cgroup::UnitCgroups& units, const char* why,
                           const std::string* replaces)
{
    const ruleset::Ruleset rs = ruleset::compile(config);
    std::string problem;
    if (int r = table_->apply(rs, queue_mode_, units, &problem, replaces); r < 0) {
        log::error(std::string("cannot put the ruleset in place (") + why + "): " + problem);
        return r;
    }
    return 0;
}

bool Manager::wait_while_held(unsigned& waits)
{
    const std::string& table = config_->settings.table;
    uint32_t owner = 0;
    if (table_->owner(table, owner) < 0 || owner == nl_.portid())
        return false;
    if (owner == 0) {
        // Gone between the failure and this look: once more at once; a
        // failure after that is fqdnd's to report.
        return !std::exchange(start_tried_after_owner_, true);
    }
    // Said the first time and then about once a minute, when the waits are 5 s.
    if (waits % 12 == 0) {
        const std::string what = "table inet " + table + " is held by another process (flags owner, netlink port "
                                 + std::to_string(owner) + "); waiting for it to let go";
        log::error(what);
        sd_notifyf(0, "STATUS=%s", what.c_str());
    }
    // The pace of a running fqdnd's restore retries.
    const uint64_t delay_usec = nft::Keeper::backoff(waits++, nft::Keeper::max_retry_usec);
    sd_notify(0, "WATCHDOG=1"); // waiting is no hang
    std::this_thread::sleep_for(std::chrono::microseconds(delay_usec));
    return true;
}

int Manager::reload(std::vector<std::string>* errors)
{
    config::ReloadCheck check
        = config::check_reload(*config_, config::load_config(options_.config_file, options_.config_given));
    // Each error to the log and to the caller; the running configuration stays.
    auto refuse = [&](const std::vector<std::string>& why, const std::string& summary) {
        for (const std::string& e : why) {
            log::error(e);
            if (errors)
                errors->push_back(e);
        }
        ++reload_failures_;
        log::error("reload refused" + summary + "; the running configuration stays");
        return -EINVAL;
    };
    if (check.verdict == config::ReloadCheck::Verdict::unchanged) {
        log::info("reload: nothing changed");
        return 0;
    }
    if (check.verdict == config::ReloadCheck::Verdict::refused)
        return refuse(check.errors, check.summary);
    auto units = units_.look_up(check.config->units(), errors); // each problem logged
    if (!units)
        return refuse({}, "");
    if (int r = dns_->open_copies(event_.get(), *check.config); r < 0)
        return refuse({"cannot read NFLOG group " + std::to_string(ruleset::query_log_group(check.config->settings))
                       + ": " + errno_text(r)},
                      "");
    sd_notify(0, "RELOADING=1");
    // A renamed table replaces the old one in the same transaction.
    const std::string old_table = config_->settings.table;
    if (int r = apply_ruleset(*check.config, *units, "reload", &old_table); r < 0) {
        // The running rules copy to the running group: read it again.
        dns_->open_copies(event_.get(), *config_);
        ++reload_failures_;
        sd_notify(0, "READY=1");
        return r;
    }
    config_ = std::move(check.config);
    units_.follow(event_.get(), std::move(*units));
    engine_->configure(*config_);
    dns_->configure(config_->settings);
    interfaces_.clear();
    cache_.set_limits(limits_of(config_->settings));
    std::vector<cache::ElementOp> ops;
    cache_.set_selectors(config_->fqdn_selectors(), now(), ops);
    if (config_->settings.table == old_table) {
        if (!update_sets(ops, "reload: filling the sets of new selectors"))
            keeper_.check_soon();
    } else if (!resync_sets("reload to a new table")) // its sets start empty: all the cache holds
        keeper_.recheck();
    drops_.open(event_.get(), drop_log_group());
    ++reloads_;
    log::info("reloaded: " + config::summary(*config_));
    sd_notifyf(0, "READY=1\nSTATUS=Enforcing %zu policies in table inet %s", config_->policies.size(),
               config_->settings.table.c_str());
    return 0;
}

void Manager::restore(const nft::Keeper::Seen& seen)
{
    // Someone else changed our table (or flushed the whole ruleset): put
    // the ruleset back as configured. Sets that survived keep their
    // elements; the cache refills any that were deleted.
    // After lost events alone (our own large batches can overflow the
    // monitor), the table may well be as we left it: then, as far as a
    // cheap listing tells, there is nothing to do. A change someone else
    // was seen making is always undone.
    const bool table_changed = seen.changed || (seen.lost && !table_->matches(ruleset::compile(*config_)));
    if (table_changed) {
        // A retry says so only when it succeeds; each failure logs why.
        if (!seen.retry) {
            const bool present = table_->exists(config_->settings.table);
            log::warning(std::string("table inet ") + config_->settings.table
                         + (present ? " was changed" : " was deleted") + " by someone else; putting it back");
        }
        if (apply_ruleset(*config_, units_.cgroups(), "restore") < 0) {
            ++restore_failures_;
            keeper_.retry_restore();
            return;
        }
        if (seen.retry)
            log::warning("table inet " + config_->settings.table + " is back in place after "
                         + std::to_string(keeper_.restore_tries()) + " failed tries");
        keeper_.restored();
        ++restores_;
    }
    // Which elements changed is known only from the events themselves.
    bool complete = true;
    if (table_changed || seen.lost || seen.elements_dropped)
        complete = resync_sets("restore");
    else if (!seen.elements.empty())
        complete = repair_elements(seen.elements);
    if (complete)
        keeper_.settled();
    else
        keeper_.recheck();
}

bool Manager::resync_sets(const char* why)
{
    std::vector<cache::ElementOp> ops;
    cache_.resync(now(), ops);
    const bool filled = update_sets(ops, std::string(why) + ": refilling the sets");
    bool complete = true;
    const size_t removed = state::reconcile_sets(*table_, config_->settings.table, config_->fqdn_selectors(), cache_,
                                                 now(), complete);
    complete = complete && filled;
    unexplained_elements_ += removed;
    if (removed > 0)
        log::warning("the sets held " + std::to_string(removed)
                     + " elements that fqdnd's cache does not explain (someone else added them); removed");
    return complete;
}

bool Manager::repair_elements(const std::vector<nft::Monitor::ElementChange>& changes)
{
    // The last change of each element is the one that stands.
    std::map<std::tuple<std::string, uint64_t, Address>, const nft::Monitor::ElementChange*> last;
    for (const auto& c : changes)
        if (c.element.tag && c.set == ruleset::fqdn_set(c.element.address.family))
            last[{c.set, *c.element.tag, c.element.address}] = &c;
    const cache::Time t = now();
    std::map<std::pair<std::string, uint64_t>, std::vector<Address>> removals;
    std::map<uint64_t, std::string> selector_of;
    for (const FqdnSelector& s : config_->fqdn_selectors())
        selector_of.emplace(ruleset::selector_tag(s), s.to_string());
    std::vector<cache::ElementOp> ops;
    size_t put_back = 0, removed = 0;
    bool complete = true;
    for (const auto& [key, c] : last) {
        const auto& [set, tag, address] = key;
        if (auto op = cache_.element(tag, address, t)) {
            // The cache holds it: back as it has it (an add may have
            // changed its timeout).
            op->exists = c->added;
            ops.push_back(*op);
            put_back += c->added ? 0 : 1;
            continue;
        }
        if (!c->added)
            continue;
        if (++removed <= 20) { // the count says the rest
            const auto sel = selector_of.find(tag);
            const Duration left = c->element.expires.count() > 0 ? c->element.expires : c->element.timeout;
            log::warning(state::describe_unexplained(address, set, sel != selector_of.end() ? &sel->second : nullptr,
                                                     left, cache_.names_of(address, 4)));
        }
        removals[{set, tag}].push_back(address);
    }
    if (!update_sets(ops, "putting back set elements someone else changed")) {
        complete = false;
        put_back = 0; // not said as put back: the whole check that follows does it
    }
    removed = 0; // what went: one may have gone by its own timeout meanwhile
    for (const auto& [where, addresses] : removals) {
        std::string problem;
        removed += table_->delete_each(config_->settings.table, where.first, where.second, addresses, &problem);
        if (!problem.empty()) {
            log::warning("cannot remove elements someone else added to " + where.first + ": " + problem
                         + "; checking the sets whole");
            complete = false;
        }
    }
    unexplained_elements_ += removed;
    if (put_back > 0)
        log::warning("someone else deleted " + std::to_string(put_back)
                     + " elements of the FQDN sets that fqdnd's cache holds; put back");
    if (removed > 0)
        log::warning("someone else added " + std::to_string(removed)
                     + " elements to the FQDN sets that fqdnd's cache does not explain; removed");
    return complete;
}

cache::Time Manager::now()
{
    return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

void Manager::round_done(bool wrote, uint64_t hold_us)
{
    if (wrote) {
        arm_expiry();
        state_->changed();
        // A round's set write the kernel refused: its answers went out
        // without their addresses in the sets, and the cache will not
        // write them again before half a grant; a whole check does.
        if (dns_->errors() != dns_errors_seen_) {
            dns_errors_seen_ = dns_->errors();
            keeper_.check_soon();
        }
    }
    if (watching_dns())
        report_events(hold_us);
}

bool Manager::watching_dns() const
{
    return options_.log_dns || (bus_ && bus_->monitoring()) || audit::records_queries(*config_);
}

void Manager::arm_expiry()
{
    renewals_deferred_seen_ = cache_.renewals_deferred();
    const auto next = cache_.next_deadline();
    if (!next) {
        if (expiry_timer_)
            sd_event_source_set_enabled(expiry_timer_.get(), SD_EVENT_OFF);
        return;
    }
    // CLOCK_REALTIME: expiries are wall-clock times, as the cache shows them.
    const uint64_t usec = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                                    next->time_since_epoch()).count());
    if (int r = event_reset_time(event_.get(), expiry_timer_, CLOCK_REALTIME, usec, 100'000, on_expiry_timer, this); r < 0)
        log::error("cannot arm the expiry timer: " + errno_text(r));
}

int Manager::on_post(sd_event_source*, void* self)
{
    auto* m = static_cast<Manager*>(self);
    if (m->cache_.renewals_deferred() != m->renewals_deferred_seen_)
        m->arm_expiry();
    return 0;
}

int Manager::on_expiry_timer(sd_event_source*, uint64_t, void* self)
{
    static_cast<Manager*>(self)->expire();
    return 0;
}

void Manager::expire()
{
    std::vector<cache::ElementOp> ops;
    const size_t before = cache_.addresses(), connections = cache_.connection_addresses();
    cache_.expire(now(), ops);
    if (!update_sets(ops, "expiry"))
        keeper_.check_soon(); // what should have gone (or been renewed) in the kernel, as the cache says
    if (!ops.empty() || cache_.addresses() != before || cache_.connection_addresses() != connections)
        state_->changed();
    arm_expiry();
}

bus::Status Manager::status() const
{
    const metrics::Counters c = counters();
    return bus::Status{config_->settings.table, std::string(nft::to_string(queue_mode_)),
                       static_cast<uint32_t>(config_->policies.size()), c.names, c.addresses, c.connection_addresses,
                       c.live_flows, config_->fqdn_selectors().size(), c.kernel_queue_full, c.kernel_undelivered};
}

metrics::Counters Manager::counters() const
{
    // Our queues' drops by the kernel: fqdnd never asks it to let them
    // through instead.
    const nfq::KernelDrops kq = nfq::kernel_drops(config_->settings.queue, 2 * config_->settings.queues);
    metrics::Counters c;
    c.names = cache_.names();
    c.addresses = cache_.addresses();
    c.connection_addresses = cache_.connection_addresses();
    c.live_flows = cache_.live_flows();
    c.gc_deletions = cache_.gc_deletions();
    c.evictions = cache_.evictions();
    c.dns = engine_->stats();
    c.datapath_timeouts = dns_->timeouts();
    c.datapath_errors = dns_->errors();
    c.nfqueue_packets = dns_->queue_stats().packets;
    c.nfqueue_enobufs = dns_->queue_stats().enobufs;
    c.nfqueue_dropped_binding = dns_->queue_stats().dropped_while_binding;
    c.nfqueue_unseen_drops = dns_->queue_stats().unseen_drops;
    c.kernel_queue_full = kq.queue_full;
    c.kernel_undelivered = kq.undelivered;
    c.drop_log_packets = drops_.packets();
    c.drop_log_enobufs = drops_.enobufs();
    c.conntrack_overruns = flows_.overruns();
    c.state_write_errors = state_->write_errors();
    c.unexplained_elements = unexplained_elements_;
    c.reloads = reloads_;
    c.reload_failures = reload_failures_;
    c.restores = restores_;
    c.restore_failures = restore_failures_;
    c.unit_changes = units_.changes();
    c.units_without_cgroup = cgroup::without_cgroup(units_.cgroups());
    c.hold_us = dns_->holds();
    c.query_copies_lost = dns_->copies_lost();
    c.renewals_written = cache_.renewals_written();
    c.renewals_deferred = cache_.renewals_deferred();
    c.audit_entries = audit_.recorder().entries();
    c.audit_evictions = audit_.recorder().evictions();
    return c;
}

size_t Manager::clean_cache(const FqdnMatcher* pattern, const std::optional<std::string>& pattern_text)
{
    std::vector<cache::ElementOp> ops;
    const auto t = now();
    const size_t removed = cache_.clean(pattern, t, ops);
    state_->cleaned(t, pattern_text);
    if (!update_sets(ops, "cache clean"))
        keeper_.check_soon();
    state_->changed();
    arm_expiry();
    return removed;
}

void Manager::report_events(uint64_t hold_us)
{
    const bool monitoring = bus_ && bus_->monitoring();
    const cache::Time t = now();
    for (const dns::Event& e : engine_->take_events()) {
        if (options_.log_dns)
            log::info(dns::describe(e));
        audit_.record_query(*config_, e, t);
        if (!monitoring)
            continue;
        // An answer that taught: the selectors whose sets took its addresses.
        const bool learned = e.kind == dns::Event::Kind::answer && e.learned;
        bus_->emit(e, t, learned ? cache_.selectors_matching(e.names) : std::vector<std::string>{},
                   learned ? hold_us : 0);
    }
}

std::optional<uint16_t> Manager::drop_log_group() const
{
    const auto& s = config_->settings;
    return s.log_rate > 0 ? std::optional<uint16_t>(static_cast<uint16_t>(s.log_group)) : std::nullopt;
}

void Manager::on_drop(const nflog::Drop& d, const std::vector<std::string>& names, cache::Time t)
{
    audit_.record_flow(*config_, d, names, t);
    if (bus_ && bus_->monitoring())
        bus_->emit(d, t, d.indev ? interfaces_.name(d.indev) : "", names);
}

void Manager::dump_cache()
{
    const std::string table = cache::format_table(cache_.entries());
    log::info("cache:\n" + table);
    log::info(metrics::summary(counters()));
}

int Manager::on_signal(sd_event_source* s, const struct signalfd_siginfo* si, void* self)
{
    auto* m = static_cast<Manager*>(self);
    if (si->ssi_signo == SIGHUP) {
        m->reload();
        return 0;
    }
    if (si->ssi_signo == SIGUSR1) {
        m->dump_cache();
        return 0;
    }
    return sd_event_exit(sd_event_source_get_event(s), 0);
}

size_t Manager::forget_recording(const std::optional<std::string>& policy)
{
    return audit_.forget(policy);
}

} // namespace fqdnd
