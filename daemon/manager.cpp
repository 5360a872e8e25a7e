#include "manager.hpp"

// glibc before the kernel headers, which then leave its definitions alone.
#include <arpa/inet.h>

#include "cache/format.hpp"
#include "cache/persist.hpp"
#include "config/loader.hpp"
#include "log.hpp"
#include "ruleset/compile.hpp"
#include "state/reconcile.hpp"

#include <linux/netfilter.h>
#include <systemd/sd-daemon.h>

#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <functional>
#include <string>
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
    if (int r = table_->probe(table, options_.queue_mode, options_.element_refresh, features, &problem); r < 0) {
        log::error(problem);
        return r;
    }
    queue_mode_ = features.queue_mode;
    refresh_ = features.refresh;
    log::info(nft::describe(features));

    auto units = units_.look_up(config_->units(), nullptr);
    if (!units) {
        log::error("not starting");
        return -EINVAL;
    }
    if (int r = open_copies(*config_); r < 0)
        return r;
    if (int r = apply_ruleset(*config_, *units, "start"); r < 0)
        return r;

    // The cache fills the sets of selectors; what the kernel kept across a
    // restart stays there until the state file brings the cache back.
    cache_.set_limits(limits_of(config_->settings));
    std::vector<cache::ElementOp> ops;
    cache_.set_selectors(config_->fqdn_selectors(), now(), ops);
    engine_ = std::make_unique<dns::Engine>(*config_, cache_);
    engine_->record_events(options_.log_dns);
    engine_->on_unmatched([this] { read_copies(); });
    // What the last run knew, and what the administrator preloads; the
    // kernel's sets are renewed to agree with it, and keep nothing else.
    state_ = std::make_unique<state::Store>(event_.get(), config_->settings.state_directory, cache_);
    state_->load(cache_, now(), ops);
    load_recording();
    if (!config_->settings.pre_cache.empty())
        state_->load_file(config_->settings.pre_cache, "pre-cache", cache_, now(), ops);
    update_sets(ops, "restoring the sets from the cache");
    unexplained_elements_ += state::reconcile_sets(*table_, table, config_->fqdn_selectors(), cache_, now());
    state_->begin();
    if (int r = flows_.open(event_.get(), ruleset::ct_mark_flow, options_.conntrack_buffer); r < 0)
        return r;

    if (int r = keeper_.open(event_.get(), nl_.portid()); r < 0)
        return r;
    if (int r = open_queues(); r < 0)
        return r;
    open_nflog();
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
    serve_queues(SIZE_MAX);
    queues_.close();
    state_->save_now();
    save_recording();
    // The table stays: enforcement goes on while fqdnd is down.
    log::info("stopping; table inet " + config_->settings.table + " stays in place");
    return r;
}

void Manager::update_sets(const std::vector<cache::ElementOp>& ops, std::string_view what)
{
    std::string problem;
    if (!ops.empty() && table_->update(config_->settings.table, ops, refresh_, &problem) < 0)
        log::warning(std::string(what) + ": " + problem);
}

int Manager::apply_ruleset(const config::Config& config, const cgroup::UnitCgroups& units, const char* why)
{
    const ruleset::Ruleset rs = ruleset::compile(config);
    std::string problem;
    if (int r = table_->apply(rs, queue_mode_, units, &problem); r < 0) {
        log::error(std::string("cannot put the ruleset in place (") + why + "): " + problem);
        return r;
    }
    return 0;
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
    if (int r = open_copies(*check.config); r < 0)
        return refuse({"cannot read NFLOG group " + std::to_string(ruleset::query_log_group(check.config->settings))
                       + ": " + errno_text(r)},
                      "");
    sd_notify(0, "RELOADING=1");
    const std::string old_table = config_->settings.table;
    if (int r = apply_ruleset(*check.config, *units, "reload"); r < 0) {
        ++reload_failures_;
        sd_notify(0, "READY=1");
        return r;
    }
    config_ = std::move(check.config);
    units_.follow(event_.get(), std::move(*units));
    engine_->configure(*config_);
    interfaces_.clear();
    cache_.set_limits(limits_of(config_->settings));
    std::vector<cache::ElementOp> ops;
    cache_.set_selectors(config_->fqdn_selectors(), now(), ops);
    update_sets(ops, "reload: filling the sets of new selectors");
    if (config_->settings.table != old_table) {
        std::string problem;
        if (table_->remove(old_table, &problem) < 0)
            log::warning("cannot remove the previous table inet " + old_table + ": " + problem);
    }
    open_nflog();
    ++reloads_;
    log::info("reloaded: " + config::summary(*config_));
    sd_notifyf(0, "READY=1\nSTATUS=Enforcing %zu policies in table inet %s", config_->policies.size(),
               config_->settings.table.c_str());
    return 0;
}

void Manager::restore(bool foreign)
{
    // Someone else changed our table (or flushed the whole ruleset): put
    // the ruleset back as configured. Sets that survived keep their
    // elements; the cache refills any that were deleted.
    // After lost events alone (our own large batches can overflow the
    // monitor), the table may well be as we left it: then, as far as a
    // cheap listing tells, there is nothing to do. A change someone else
    // was seen making is always undone.
    if (!foreign && table_->matches(ruleset::compile(*config_)))
        return;
    const bool present = table_->exists(config_->settings.table);
    log::warning(std::string("table inet ") + config_->settings.table + (present ? " was changed" : " was deleted")
                 + " by someone else; putting it back");
    if (apply_ruleset(*config_, units_.cgroups(), "restore") < 0)
        return;
    ++restores_;
    std::vector<cache::ElementOp> ops;
    cache_.resync(now(), ops);
    update_sets(ops, "restore: refilling the sets");
}

cache::Time Manager::now()
{
    return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

int Manager::open_queues()
{
    const auto& s = config_->settings;
    if (int r = queues_.open(static_cast<uint16_t>(s.queue), static_cast<uint16_t>(2 * s.queues), 4096);
        r < 0) {
        log::error("cannot bind NFQUEUE " + std::to_string(s.queue) + ": " + errno_text(r));
        return r;
    }
    sd_event_source* src = nullptr;
    if (int r = sd_event_add_io(event_.get(), &src, queues_.fd(), EPOLLIN, on_queue, this); r < 0)
        return r;
    queue_source_.reset(src);

    // The answer path writes elements on a socket of its own, whose acks are
    // awaited at most response-max-delay.
    if (int r = updates_.open(); r < 0)
        return r;
    const auto delay = std::max<int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(s.response_max_delay).count(), 1000);
    timeval tv{static_cast<time_t>(delay / 1'000'000), static_cast<suseconds_t>(delay % 1'000'000)};
    // Without it an answer could wait on the kernel without end.
    if (setsockopt(updates_.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
        return -errno;
    update_table_ = std::make_unique<nft::Table>(updates_);

    // Refused queries are answered in the server's name, through raw
    // sockets whose packets carry the mark fqdnd's rules let pass.
    if (int r = replies_.open(ruleset::packet_mark_reply); r < 0) {
        log::error("cannot open a raw socket for replies: " + errno_text(r));
        return r;
    }
    return 0;
}

int Manager::on_queue(sd_event_source*, int, uint32_t, void* self)
{
    static_cast<Manager*>(self)->serve_queues(round_packets);
    return 0;
}

void Manager::serve_queues(size_t max)
{
    // The copies of queries passed unheld, before the answers to them.
    if (copies_.is_open())
        read_copies();
    // A round ends when the queue is empty, after `max` packets, or once
    // its first answer has waited round_hold_budget for the rest.
    const std::function<void(const nfq::Packet&)> handler = [this](const nfq::Packet& p) { on_packet(p); };
    for (size_t n = 0; n < max; ++n) {
        if (queues_.receive(handler, 1) == 0)
            break;
        if (!round_holds_.empty() && std::chrono::steady_clock::now() - round_holds_.front() > round_hold_budget)
            break;
    }
    commit_round();
}

void Manager::commit_round()
{
    int64_t hold_us = 0;
    // Before the verdicts: what a client is told was learned survives a
    // crash of fqdnd.
    state_->flush();
    // What waits for no set update (queries, answers whose addresses the
    // sets hold long enough) goes before the transaction, not after it.
    if (!round_ops_.empty())
        send_verdicts(false);
    if (!round_ops_.empty()) {
        // One transaction for every answer of the round: under load most of
        // an answer's cost is the transaction, not its elements.
        cache::coalesce(round_ops_);
        write_elements(round_ops_);
        const auto done = std::chrono::steady_clock::now();
        for (const auto& arrived : round_holds_) {
            const auto us = std::chrono::duration_cast<std::chrono::microseconds>(done - arrived).count();
            hold_us = std::max<int64_t>(hold_us, us);
            size_t bucket = 0;
            while (bucket + 1 < hold_us_.size() && (int64_t{1} << bucket) <= us)
                ++bucket;
            ++hold_us_[bucket];
        }
        arm_expiry();
        state_->changed();
    }
    send_verdicts(true);
    // A renewal deferred in a round that wrote nothing is due at half its
    // grant: the timer must know, or it fires only at the mapping's old
    // expiry, as the kernel element times out.
    if (round_ops_.empty() && cache_.renewals_deferred() != renewals_deferred_seen_)
        arm_expiry();
    round_verdicts_.clear();
    round_ops_.clear();
    round_addresses_.clear();
    round_holds_.clear();
    if (options_.log_dns || (bus_ && bus_->monitoring()) || recording_queries())
        report_events(static_cast<uint64_t>(hold_us));
}

void Manager::send_verdicts(bool held_too)
{
    size_t sent = 0;
    for (RoundVerdict& v : round_verdicts_) {
        if (v.sent || (v.held && !held_too))
            continue;
        if (v.accept && !v.replacement.empty())
            queues_.verdict(v.queue, v.id, v.replacement);
        else
            queues_.verdict(v.queue, v.id, v.accept);
        v.sent = true;
        ++sent;
    }
    if (sent)
        queues_.flush();
}

void Manager::on_packet(const nfq::Packet& p)
{
    dns::PacketMeta meta;
    switch (p.hook) {
    case NF_INET_LOCAL_IN: meta.hook = dns::Hook::input; break;
    case NF_INET_FORWARD: meta.hook = dns::Hook::forward; break;
    case NF_INET_LOCAL_OUT: meta.hook = dns::Hook::output; break;
    default: meta.hook = dns::Hook::other; break;
    }
    // Conntrack's direction, as the rules queued it: queries (original)
    // to the first queues, answers (reply) to the next as many.
    const auto& s = config_->settings;
    meta.direction = p.queue >= s.queue + s.queues ? dns::Direction::reply : dns::Direction::original;
    meta.uid = p.uid;
    meta.gid = p.gid;
    if (p.indev)
        meta.indev = interface_name(p.indev);
    meta.now = now();
    const bool watched = options_.log_dns || (bus_ && bus_->monitoring()) || recording_queries();
    engine_->record_events(watched);
    dns::Outcome out = engine_->handle(p.payload, meta);
    // An answer is released only once its addresses are in the sets (or
    // response-max-delay passed: then it goes anyway, and is counted): at
    // the end of the round, with every packet read after it.
    // An answer that taught nothing the kernel lacks is not held, unless
    // an earlier answer of this round is still bringing one of its
    // addresses.
    bool held = !out.ops.empty();
    if (!held && !round_addresses_.empty())
        for (const auto& l : out.learned)
            held = held || std::any_of(l.addresses.begin(), l.addresses.end(),
                                       [&](const Address& a) { return round_addresses_.count(a) > 0; });
    if (!out.ops.empty()) {
        for (const auto& op : out.ops)
            if (op.kind == cache::ElementOp::Kind::add)
                round_addresses_.insert(op.address);
        round_ops_.insert(round_ops_.end(), out.ops.begin(), out.ops.end());
        round_holds_.push_back(std::chrono::steady_clock::now());
    }
    for (const auto& l : out.learned)
        state_->learned(meta.now, l.endpoint, l.names, l.addresses, l.ttl);
    for (const auto& reply : out.replies)
        send_reply(reply);
    round_verdicts_.push_back(RoundVerdict{p.queue, p.id, out.accept, held, std::move(out.replacement)});
}

bool Manager::write_elements(const std::vector<cache::ElementOp>& ops)
{
    std::string problem;
    const int r = update_table_->update(config_->settings.table, ops, refresh_, &problem);
    if (r == -ETIMEDOUT || r == -EAGAIN) {
        ++datapath_timeouts_;
        log::warning("set update not acknowledged within response-max-delay; answer released");
        return false;
    }
    if (r < 0) {
        ++datapath_errors_;
        log::error("set update failed: " + problem);
        return false;
    }
    return true;
}

void Manager::send_reply(const std::vector<uint8_t>& packet)
{
    if (int r = replies_.send(packet); r < 0)
        log::warning("cannot send a refusal: " + errno_text(r));
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
    std::string problem;
    if (!ops.empty())
        table_->update(config_->settings.table, ops, refresh_, &problem);
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
    c.datapath_timeouts = datapath_timeouts_;
    c.datapath_errors = datapath_errors_;
    c.nfqueue_packets = queues_.stats().packets;
    c.nfqueue_enobufs = queues_.stats().enobufs;
    c.kernel_queue_full = kq.queue_full;
    c.kernel_undelivered = kq.undelivered;
    c.drop_log_packets = nflog_.packets();
    c.drop_log_enobufs = nflog_.enobufs();
    c.conntrack_overruns = flows_.overruns();
    c.state_write_errors = state_->write_errors();
    c.unexplained_elements = unexplained_elements_;
    c.reloads = reloads_;
    c.reload_failures = reload_failures_;
    c.restores = restores_;
    c.unit_changes = units_.changes();
    c.units_without_cgroup = cgroup::without_cgroup(units_.cgroups());
    c.hold_us = hold_us_;
    c.query_copies_lost = copies_.enobufs();
    c.renewals_written = cache_.renewals_written();
    c.renewals_deferred = cache_.renewals_deferred();
    c.audit_entries = recorder_.entries();
    c.audit_evictions = recorder_.evictions();
    return c;
}

size_t Manager::clean_cache(const FqdnMatcher* pattern, const std::optional<std::string>& pattern_text)
{
    std::vector<cache::ElementOp> ops;
    const auto t = now();
    const size_t removed = cache_.clean(pattern, t, ops);
    state_->cleaned(t, pattern_text);
    update_sets(ops, "cache clean");
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
        record_query(e, t);
        if (!monitoring)
            continue;
        // An answer that taught: the selectors whose sets took its addresses.
        const bool learned = e.kind == dns::Event::Kind::answer && e.learned;
        bus_->emit(e, t, learned ? cache_.selectors_matching(e.names) : std::vector<std::string>{},
                   learned ? hold_us : 0);
    }
}

int Manager::on_nflog(sd_event_source*, int, uint32_t, void* self)
{
    auto* m = static_cast<Manager*>(self);
    m->nflog_.receive([m](const nflog::Logged& l) { m->on_logged(l); });
    return 0;
}

void Manager::open_nflog()
{
    const auto& s = config_->settings;
    const std::optional<uint16_t> want
        = s.log_rate > 0 ? std::optional<uint16_t>(static_cast<uint16_t>(s.log_group)) : std::nullopt;
    if (want == nflog_group_ && (nflog_.is_open() || !want))
        return;
    nflog_source_.reset();
    nflog_.close();
    nflog_group_ = want;
    if (!want)
        return;
    if (int r = nflog_.open(*want); r < 0) {
        // Enforcement does not depend on it: only `fqdnctl monitor` loses
        // its drops.
        log::warning("cannot read NFLOG group " + std::to_string(*want) + " (" + errno_text(r)
                     + (r == -EPERM || r == -EBUSY ? ", another program reads it; set log-group" : "")
                     + "): fqdnctl monitor will show no drops");
        return;
    }
    sd_event_source* src = nullptr;
    if (sd_event_add_io(event_.get(), &src, nflog_.fd(), EPOLLIN, on_nflog, this) >= 0)
        nflog_source_.reset(src);
}

int Manager::open_copies(const config::Config& config)
{
    const std::optional<uint16_t> want
        = ruleset::copies_queries(config) ? std::optional<uint16_t>(ruleset::query_log_group(config.settings)) : std::nullopt;
    if (want == copies_group_)
        return 0;
    nflog::Reader reader;
    if (want) {
        // Room for a burst of queries: a copy lost is an answer dropped.
        if (int r = reader.open(*want, nflog::Reader::whole_packet, 8 << 20); r < 0) {
            log::error("cannot read NFLOG group " + std::to_string(*want) + " (" + errno_text(r)
                       + (r == -EPERM || r == -EBUSY ? ", another program reads it; set log-group" : "")
                       + "), where queries under a DNS rule allowing every name are copied");
            return r;
        }
    }
    // What the old group still holds belongs to queries already passed.
    read_copies();
    copies_source_.reset();
    copies_ = std::move(reader);
    copies_group_ = want;
    if (!want)
        return 0;
    sd_event_source* src = nullptr;
    if (int r = sd_event_add_io(event_.get(), &src, copies_.fd(), EPOLLIN, on_copies, this); r < 0) {
        log::error("cannot watch the query copies: " + errno_text(r));
        return r;
    }
    copies_source_.reset(src);
    // Before the queues, when both are ready.
    sd_event_source_set_priority(src, SD_EVENT_PRIORITY_IMPORTANT);
    return 0;
}

int Manager::on_copies(sd_event_source*, int, uint32_t, void* self)
{
    static_cast<Manager*>(self)->read_copies();
    return 0;
}

void Manager::read_copies()
{
    if (!copies_.is_open())
        return;
    copies_.receive([this](const nflog::Logged& l) {
        if (l.prefix != ruleset::query_log_prefix)
            return;
        dns::PacketMeta meta;
        meta.hook = l.hook == NF_INET_FORWARD ? dns::Hook::forward
            : l.hook == NF_INET_LOCAL_OUT    ? dns::Hook::output
            : l.hook == NF_INET_LOCAL_IN     ? dns::Hook::input
                                             : dns::Hook::other;
        meta.direction = dns::Direction::original; // the rules copy only that
        meta.uid = l.uid;
        meta.gid = l.gid;
        if (l.indev)
            meta.indev = interface_name(l.indev);
        meta.now = now();
        engine_->copied(l.payload, meta);
    });
}

void Manager::on_logged(const nflog::Logged& l)
{
    const auto d = nflog::attribute(l, ruleset::log_prefix);
    if (!d)
        return;
    // The names of a flood's one destination: one walk a second.
    const cache::Time t = now();
    if (!(d->destination == last_drop_address_) || t - last_drop_time_ >= std::chrono::seconds(1)) {
        last_drop_address_ = d->destination;
        last_drop_names_ = cache_.names_of(d->destination);
        last_drop_time_ = t;
    }
    record_flow(*d, last_drop_names_, t);
    if (!bus_ || !bus_->monitoring())
        return;
    bus_->emit(*d, t, d->indev ? interface_name(d->indev) : "", last_drop_names_);
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

std::filesystem::path Manager::audit_file() const
{
    return std::filesystem::path(config_->settings.state_directory) / "audit.json";
}

void Manager::load_recording()
{
    std::ifstream in(audit_file());
    if (!in)
        return; // nothing recorded yet
    std::stringstream text;
    text << in.rdbuf();
    std::string problem;
    if (!recorder_.from_json(text.str(), &problem))
        log::warning("ignoring " + audit_file().string() + ": " + problem);
}

void Manager::save_recording()
{
    audit_save_armed_ = false;
    if (!recorder_.dirty())
        return;
    if (int r = cache::write_atomically(audit_file(), recorder_.to_json()); r < 0) {
        log::warning("cannot write " + audit_file().string() + ": " + errno_text(r));
        return;
    }
    recorder_.mark_saved();
}

void Manager::schedule_recording_save()
{
    if (!recorder_.dirty() || audit_save_armed_)
        return;
    if (int r = event_reset_time_relative(event_.get(), audit_save_timer_, CLOCK_MONOTONIC, 60'000'000, 1'000'000,
                                          on_audit_save_timer, this);
        r < 0)
        log::error("cannot arm the timer that saves the audit recording: " + errno_text(r));
    else
        audit_save_armed_ = true;
}

int Manager::on_audit_save_timer(sd_event_source*, uint64_t, void* self)
{
    static_cast<Manager*>(self)->save_recording();
    return 0;
}

void Manager::record_query(const dns::Event& e, cache::Time t)
{
    if (e.kind != dns::Event::Kind::query_allowed)
        return;
    for (const std::string& policy : audit::policies_for_query(*config_, e.endpoint, e.server))
        recorder_.lookup(policy, e.question.name, e.server, t);
    schedule_recording_save();
}

void Manager::record_flow(const nflog::Drop& d, const std::vector<std::string>& names, cache::Time t)
{
    // Only what one of the running policies' rules logged.
    if (std::none_of(config_->policies.begin(), config_->policies.end(),
                     [&](const config::Policy& p) { return p.name == d.policy; }))
        return;
    recorder_.flow(d.policy, d.destination, d.protocol, d.port, names, t);
    schedule_recording_save();
}

size_t Manager::forget_recording(const std::optional<std::string>& policy)
{
    const size_t removed = recorder_.forget(policy);
    save_recording();
    log::info("forgot " + std::to_string(removed) + " recorded entries" + (policy ? " of policy " + *policy : ""));
    return removed;
}

} // namespace fqdnd
