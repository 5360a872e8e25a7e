#include "manager.hpp"

// glibc before the kernel headers, which then leave its definitions alone.
#include <arpa/inet.h>


#include "cache/format.hpp"
#include "cache/persist.hpp"
#include "state/store.hpp"
#include "dns/packet.hpp"
#include "fqdn/matcher.hpp"
#include "fqdn/name.hpp"
#include "config/loader.hpp"
#include "cgroup/watch.hpp"
#include "log.hpp"
#include "ruleset/compile.hpp"

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <systemd/sd-daemon.h>

#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#include <cstring>
#include <map>
#include <set>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

namespace fqdnd {

namespace {

// A table changed by someone else is put back this long after the last
// change seen, so that a burst of events (nft flush ruleset) costs one rebuild.
constexpr uint64_t restore_delay_usec = 200'000;

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

    std::string problem;
    if (options_.queue_mode)
        queue_mode_ = *options_.queue_mode;
    else if (int r = table_->probe_queue(table, queue_mode_, &problem); r < 0) {
        log::error("this kernel takes neither the nft queue expression nor the xtables NFQUEUE target: " + problem);
        return r;
    }
    if (options_.element_refresh)
        refresh_ = *options_.element_refresh;
    else if (int r = table_->probe_refresh(table, refresh_, &problem); r < 0) {
        log::error("cannot probe set element refresh: " + problem);
        return r;
    }
    log::info(std::string("NFQUEUE: ") + (queue_mode_ == nft::QueueMode::native ? "native nft queue expression"
                                                                                : "xtables NFQUEUE target (nft compat)")
              + "; set element refresh: " + std::string(nft::to_string(refresh_)));

    auto units = find_units(*config_, nullptr);
    if (!units) {
        log::error("not starting");
        return -EINVAL;
    }
    if (int r = open_copies(*config_); r < 0)
        return r;
    if (int r = apply_ruleset(*config_, *units, "start"); r < 0)
        return r;
    units_ = std::move(*units);

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
    if (!config_->settings.pre_cache.empty())
        state_->load_file(config_->settings.pre_cache, "pre-cache", cache_, now(), ops);
    if (!ops.empty() && table_->update(table, ops, refresh_, &problem) < 0)
        log::warning("restoring the sets from the cache: " + problem);
    reconcile_sets();
    state_->begin();
    if (int r = open_conntrack(); r < 0)
        return r;

    if (int r = open_monitor(); r < 0)
        return r;
    if (int r = open_queues(); r < 0)
        return r;
    open_nflog();
    watch_units();
    // The metrics for node_exporter's textfile collector, when asked for.
    if (int r = event_reset_time_relative(event_.get(), metrics_timer_, CLOCK_MONOTONIC, 0, 1'000'000, on_metrics_timer,
                                          this);
        r < 0)
        log::error("cannot arm the metrics timer: " + errno_text(r));
    // The bus is how administrators look in; fqdnd enforces without it.
    bus_ = std::make_unique<ManagerBus>(*this);
    bus_->start(event_.get());

    // Signals through the loop: blocked here, delivered by signalfd.
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD}) // SIGCHLD: the state writer
        sigaddset(&mask, s);
    if (sigprocmask(SIG_BLOCK, &mask, nullptr) < 0)
        return -errno;
    for (auto [signal, source] : {std::pair{SIGTERM, &sigterm_}, std::pair{SIGINT, &sigint_},
                                  std::pair{SIGHUP, &sighup_}, std::pair{SIGUSR1, &sigusr1_}}) {
        sd_event_source* src = nullptr;
        // Without them fqdnd could be neither stopped cleanly nor reloaded.
        if (int r = sd_event_add_signal(event_.get(), &src, signal, on_signal, this); r < 0) {
            log::error(std::string("cannot watch ") + sigabbrev_np(signal) + ": " + errno_text(r));
            return r;
        }
        source->reset(src);
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
    // The table stays: enforcement goes on while fqdnd is down.
    log::info("stopping; table inet " + config_->settings.table + " stays in place");
    return r;
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
    config::LoadResult loaded = config::load_config(options_.config_file, options_.config_given);
    if (!loaded.config) {
        for (const auto& d : loaded.errors) {
            log::error(d.to_string());
            if (errors)
                errors->push_back(d.to_string());
        }
        ++reload_failures_;
        log::error("reload refused: " + std::to_string(loaded.errors.size())
                   + (loaded.errors.size() == 1 ? " error" : " errors") + "; the running configuration stays");
        return -EINVAL;
    }
    if (*loaded.config == *config_) {
        log::info("reload: nothing changed");
        return 0;
    }
    const config::Settings &now_s = config_->settings, &new_s = loaded.config->settings;
    std::string fixed;
    // The queues are bound at start: rules queueing elsewhere would meet no
    // listener and be bypassed, ungated. The journal is open in the state
    // directory.
    if (new_s.queue != now_s.queue || new_s.queues != now_s.queues)
        fixed = "queue and queues change only at a restart (running: queue " + std::to_string(now_s.queue)
            + ", queues " + std::to_string(now_s.queues) + ")";
    else if (new_s.state_directory != now_s.state_directory)
        fixed = "state-directory changes only at a restart (running: " + now_s.state_directory + ")";
    if (!fixed.empty()) {
        const std::string& e = fixed;
        log::error(e);
        if (errors)
            errors->push_back(e);
        ++reload_failures_;
        log::error("reload refused; the running configuration stays");
        return -EINVAL;
    }
    auto units = find_units(*loaded.config, errors);
    if (!units) {
        ++reload_failures_;
        log::error("reload refused; the running configuration stays");
        return -EINVAL;
    }
    if (int r = open_copies(*loaded.config); r < 0) {
        if (errors)
            errors->push_back("cannot read NFLOG group " + std::to_string(ruleset::query_log_group(new_s)) + ": "
                              + errno_text(r));
        ++reload_failures_;
        log::error("reload refused; the running configuration stays");
        return r;
    }
    sd_notify(0, "RELOADING=1");
    const std::string old_table = config_->settings.table;
    if (int r = apply_ruleset(*loaded.config, *units, "reload"); r < 0) {
        ++reload_failures_;
        sd_notify(0, "READY=1");
        return r;
    }
    config_ = std::move(loaded.config);
    units_ = std::move(*units);
    watch_units();
    engine_->configure(*config_);
    interface_names_.clear();
    cache_.set_limits(limits_of(config_->settings));
    std::vector<cache::ElementOp> ops;
    cache_.set_selectors(config_->fqdn_selectors(), now(), ops);
    std::string problem;
    if (!ops.empty() && table_->update(config_->settings.table, ops, refresh_, &problem) < 0)
        log::warning("reload: filling the sets of new selectors: " + problem);
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

int Manager::open_monitor()
{
    // Room for the events of our own reloads; a lost event only costs a
    // check of the table (restore()).
    if (int r = monitor_.open(4 << 20); r < 0) {
        log::error("cannot watch nftables events: " + errno_text(r));
        return r;
    }
    sd_event_source* src = nullptr;
    if (int r = sd_event_add_io(event_.get(), &src, monitor_.fd(), EPOLLIN, on_monitor, this); r < 0)
        return r;
    monitor_source_.reset(src);
    return 0;
}

int Manager::on_monitor(sd_event_source*, int, uint32_t, void* self)
{
    auto* m = static_cast<Manager*>(self);
    const nft::Monitor::Seen seen = m->monitor_.read(m->config_->settings.table, m->nl_.portid());
    // Lost events: whatever they said, check the table.
    if (seen.changed)
        m->foreign_change_ = true;
    if (seen.changed || seen.lost)
        m->schedule_restore();
    return 0;
}

void Manager::schedule_restore()
{
    if (int r = event_reset_time_relative(event_.get(), restore_timer_, CLOCK_MONOTONIC, restore_delay_usec, 10'000,
                                          on_restore_timer, this);
        r < 0)
        log::error("cannot arm the timer that puts the table back: " + errno_text(r));
}

int Manager::on_restore_timer(sd_event_source*, uint64_t, void* self)
{
    static_cast<Manager*>(self)->restore();
    return 0;
}

void Manager::restore()
{
    // Someone else changed our table (or flushed the whole ruleset): put
    // the ruleset back as configured. Sets that survived keep their
    // elements; the cache refills any that were deleted.
    // After lost events alone (our own large batches can overflow the
    // monitor), the table may well be as we left it: then, as far as a
    // cheap listing tells, there is nothing to do. A change someone else
    // was seen making is always undone.
    const bool foreign = std::exchange(foreign_change_, false);
    if (!foreign && table_->matches(ruleset::compile(*config_)))
        return;
    const bool present = table_->exists(config_->settings.table);
    log::warning(std::string("table inet ") + config_->settings.table + (present ? " was changed" : " was deleted")
                 + " by someone else; putting it back");
    if (apply_ruleset(*config_, units_, "restore") < 0)
        return;
    ++restores_;
    std::vector<cache::ElementOp> ops;
    cache_.resync(now(), ops);
    std::string problem;
    if (!ops.empty() && table_->update(config_->settings.table, ops, refresh_, &problem) < 0)
        log::warning("restore: refilling the sets: " + problem);
}

std::optional<cgroup::UnitCgroups> Manager::find_units(const config::Config& config, std::vector<std::string>* errors)
{
    const std::vector<std::string> names = config.units();
    if (names.empty())
        return cgroup::UnitCgroups{};
    cgroup::Search found = cgroup::find_units(names);
    for (const auto& [unit, problem] : found.problems) {
        log::error(problem);
        if (errors)
            errors->push_back(problem);
    }
    if (!found.problems.empty())
        return std::nullopt;
    // At boot fqdnd starts before the services that policies name: their
    // rules are in place, matching nothing, and follow them when they start.
    const std::string root = cgroup::hierarchy_root().value_or("the cgroup v2 hierarchy");
    for (const auto& [unit, where] : found.cgroups)
        if (!where)
            log::warning("unit " + unit + " has no cgroup below " + root
                         + " (not running): the rules that select it match nothing until it starts");
    return std::move(found.cgroups);
}

void Manager::watch_units()
{
    std::vector<std::string> names;
    for (const auto& [unit, where] : units_)
        names.push_back(unit);
    if (names.empty()) {
        // No policy names a unit: nothing is watched.
        units_source_.reset();
        units_timer_.reset();
        units_watch_.close();
        units_polled_ = false;
        return;
    }
    const std::optional<std::string> root = cgroup::hierarchy_root();
    if (units_watch_.is_open() && root) {
        units_watch_.watch(*root, names); // the same directories; the names change
        return;
    }
    if (units_polled_)
        return;
    int r = root ? units_watch_.watch(*root, names) : -ENOENT;
    sd_event_source* src = nullptr;
    if (r == 0 && (r = sd_event_add_io(event_.get(), &src, units_watch_.fd(), EPOLLIN, on_units, this)) >= 0) {
        units_source_.reset(src);
        log::info("following the cgroups of " + std::to_string(names.size()) + (names.size() == 1 ? " unit" : " units")
                  + ": inotify on " + std::to_string(units_watch_.directories()) + " directories of " + *root);
        // What came or went before the watch began.
        refresh_units();
        return;
    }
    poll_units(r);
}

void Manager::poll_units(int why)
{
    units_source_.reset();
    units_watch_.close();
    if (!units_polled_)
        log::warning("cannot watch the cgroup hierarchy with inotify (" + errno_text(why)
                     + "): looking at the units' cgroups once a second instead");
    units_polled_ = true;
    if (int r = event_reset_time_relative(event_.get(), units_timer_, CLOCK_MONOTONIC, 1'000'000, 100'000,
                                          on_units_timer, this);
        r < 0)
        log::error("cannot arm the timer that looks at the units' cgroups: " + errno_text(r));
}

int Manager::on_units(sd_event_source*, int, uint32_t, void* self)
{
    auto* m = static_cast<Manager*>(self);
    const cgroup::Watch::Seen seen = m->units_watch_.read();
    if (seen.error < 0)
        m->poll_units(seen.error); // a directory without a watch: a unit there would go unseen
    if (seen.named || seen.error < 0)
        m->refresh_units();
    return 0;
}

int Manager::on_units_timer(sd_event_source*, uint64_t, void* self)
{
    auto* m = static_cast<Manager*>(self);
    m->refresh_units();
    if (m->units_polled_)
        m->poll_units(0);
    return 0;
}

void Manager::refresh_units()
{
    if (units_.empty())
        return;
    // Once a second without inotify: a stat of each cgroup while every unit
    // has one, a walk only when one has none.
    if (units_polled_ && cgroup::unchanged(units_))
        return;
    std::vector<std::string> names;
    for (const auto& [unit, where] : units_)
        names.push_back(unit);
    cgroup::Search found = cgroup::find_units(names);
    for (const auto& [unit, problem] : found.problems) {
        // fqdnd cannot refuse what happens on the host: the unit's rules stay.
        found.cgroups[unit] = units_[unit];
        log::warning(problem + "; its rules stay as they are");
    }
    const std::vector<std::string> changed = cgroup::changes(units_, found.cgroups);
    if (changed.empty())
        return;
    std::string what;
    for (const std::string& c : changed)
        what += (what.empty() ? "" : "; ") + c;
    log::info("putting the ruleset in place again: " + what);
    if (apply_ruleset(*config_, found.cgroups, "units") < 0) {
        // Tried again in a second, with whatever the units have then.
        if (int r = event_reset_time_relative(event_.get(), units_timer_, CLOCK_MONOTONIC, 1'000'000, 100'000,
                                              on_units_timer, this);
            r < 0)
            log::error("cannot arm the timer that looks at the units' cgroups: " + errno_text(r));
        return;
    }
    units_ = std::move(found.cgroups);
    ++unit_changes_;
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
    round_verdicts_.clear();
    round_ops_.clear();
    round_addresses_.clear();
    round_holds_.clear();
    if (options_.log_dns || (bus_ && bus_->monitoring()))
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
    const bool watched = options_.log_dns || (bus_ && bus_->monitoring());
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

std::string Manager::interface_name(uint32_t index)
{
    auto it = interface_names_.find(index);
    if (it != interface_names_.end())
        return it->second;
    char name[IF_NAMESIZE] = {};
    std::string n = if_indextoname(index, name) ? name : "";
    // Bounded: interfaces come and go; a full table starts over.
    if (interface_names_.size() > 4096)
        interface_names_.clear();
    interface_names_.emplace(index, n);
    return n;
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

int Manager::open_conntrack()
{
    if (int r = conntrack_.open(ruleset::ct_mark_flow, options_.conntrack_buffer); r < 0) {
        log::error("cannot subscribe to conntrack events: " + errno_text(r));
        return r;
    }
    sd_event_source* src = nullptr;
    if (int r = sd_event_add_io(event_.get(), &src, conntrack_.fd(), EPOLLIN, on_conntrack, this); r < 0)
        return r;
    ct_source_.reset(src);
    // The flows alive now: the events only tell what changes from here.
    resync_flows();
    return 0;
}

int Manager::on_conntrack(sd_event_source*, int, uint32_t, void* self)
{
    auto* m = static_cast<Manager*>(self);
    const auto t = now();
    const bool lost = m->conntrack_.receive([m, t](const ct::Flow& f) {
        if (f.alive)
            m->cache_.flow_opened(f.id, f.src, f.dst, t);
        else
            m->cache_.flow_closed(f.id, t);
    });
    if (lost) {
        // Events were lost: the counts are wrong until a dump sets them
        // right. Soon, not at once: the burst that overran us is still on.
        log::warning("conntrack events lost (overrun " + std::to_string(m->conntrack_.overruns())
                     + "); receive buffer now " + std::to_string(m->conntrack_.buffer()) + " bytes; resyncing");
        if (int r = event_reset_time_relative(m->event_.get(), m->resync_timer_, CLOCK_MONOTONIC, 100'000, 10'000,
                                              on_resync_timer, m);
            r < 0)
            log::error("cannot arm the conntrack resync: " + errno_text(r));
    }
    m->expire();
    return 0;
}

int Manager::on_resync_timer(sd_event_source*, uint64_t, void* self)
{
    static_cast<Manager*>(self)->resync_flows();
    return 0;
}

void Manager::resync_flows()
{
    std::vector<ct::Flow> flows;
    if (int r = conntrack_.dump(flows); r < 0) {
        log::warning("conntrack dump failed: " + errno_text(r));
        return;
    }
    std::vector<cache::Cache::Flow> live;
    for (const auto& f : flows)
        live.push_back({f.id, f.src, f.dst});
    cache_.flows_reset(live, now());
    expire();
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
    const nfq::KernelDrops kq = kernel_drops();
    return bus::Status{config_->settings.table,
                  std::string(nft::to_string(queue_mode_)),
                  static_cast<uint32_t>(config_->policies.size()),
                  cache_.names(),
                  cache_.addresses(),
                  cache_.connection_addresses(),
                  cache_.live_flows(),
                  config_->fqdn_selectors().size(),
                  kq.queue_full,
                  kq.undelivered};
}

nfq::KernelDrops Manager::kernel_drops() const
{
    // Our queues' drops by the kernel: fqdnd never asks it to let them
    // through instead.
    return nfq::kernel_drops(config_->settings.queue, 2 * config_->settings.queues);
}

std::vector<metrics::Sample> Manager::metric_samples() const
{
    const nfq::KernelDrops kq = kernel_drops();
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
    c.conntrack_overruns = conntrack_.overruns();
    c.state_write_errors = state_->write_errors();
    c.unexplained_elements = unexplained_elements_;
    c.reloads = reloads_;
    c.reload_failures = reload_failures_;
    c.restores = restores_;
    c.unit_changes = unit_changes_;
    c.units_without_cgroup = static_cast<uint64_t>(
        std::count_if(units_.begin(), units_.end(), [](const auto& u) { return !u.second; }));
    c.hold_us = hold_us_;
    return metrics::collect(c);
}

size_t Manager::clean_cache(const FqdnMatcher* pattern, const std::optional<std::string>& pattern_text)
{
    std::vector<cache::ElementOp> ops;
    const auto t = now();
    const size_t removed = cache_.clean(pattern, t, ops);
    state_->cleaned(t, pattern_text);
    std::string problem;
    if (!ops.empty() && table_->update(config_->settings.table, ops, refresh_, &problem) < 0)
        log::warning("cache clean: " + problem);
    state_->changed();
    arm_expiry();
    return removed;
}

void Manager::reconcile_sets()
{
    // What the sets must hold, by the cache restored: anything else there
    // is something fqdnd cannot account for (a journal lost to a full disk,
    // policies changed while it was down, someone's `nft add element`).
    std::vector<cache::ElementOp> want;
    cache_.resync(now(), want);
    std::set<std::pair<uint64_t, Address>> explained;
    for (const auto& op : want)
        explained.emplace(op.tag, op.address);
    std::map<uint64_t, std::string> selector_of;
    for (const FqdnSelector& s : config_->fqdn_selectors())
        selector_of.emplace(ruleset::selector_tag(s), s.to_string());
    const std::string& table = config_->settings.table;
    size_t removed = 0, logged = 0;
    for (const Family f : {Family::ipv4, Family::ipv6}) {
        const std::string set = ruleset::fqdn_set(f);
        std::vector<nft::Table::ListedElement> listed;
        if (int r = table_->list_elements(table, set, listed); r < 0) {
            log::warning("cannot list the set " + set + " to check it against the cache: " + errno_text(r));
            continue;
        }
        std::map<uint64_t, std::vector<Address>> extra;
        for (const auto& e : listed) {
            const uint64_t tag = e.tag.value_or(0);
            if (explained.contains({tag, e.address}))
                continue;
            extra[tag].push_back(e.address);
            if (++logged > 20)
                continue; // the count says the rest
            const auto sel = selector_of.find(tag);
            const auto names = cache_.names_of(e.address, 4);
            std::string known;
            for (const auto& n : names)
                known += (known.empty() ? "" : ", ") + n;
            log::warning("removing " + e.address.to_string() + " from set " + set + " (selector "
                         + (sel != selector_of.end() ? sel->second : "of no running policy") + ", "
                         + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(e.expires).count())
                         + " s left in the kernel"
                         + (known.empty() ? ", no name in the cache" : ", the cache knows it as " + known)
                         + "): the state does not explain it");
        }
        for (const auto& [tag, addresses] : extra) {
            std::string problem;
            if (table_->delete_elements(table, set, tag, addresses, &problem) < 0)
                log::warning("cannot remove unexplained elements from " + set + ": " + problem);
            removed += addresses.size();
        }
    }
    unexplained_elements_ += removed;
    if (removed > 0)
        log::warning("the sets held " + std::to_string(removed)
                     + " elements that neither the state file nor the journal explains; removed");
}

int Manager::on_metrics_timer(sd_event_source*, uint64_t, void* self)
{
    auto* m = static_cast<Manager*>(self);
    const std::string& file = m->config_->settings.metrics_file;
    if (!file.empty()) {
        if (int r = cache::write_atomically(file, metrics::format_prometheus(m->metric_samples())); r < 0)
            log::warning("cannot write the metrics file " + file + ": " + errno_text(r));
    }
    // Every 15 s, whether or not a file is set now: a reload may set one.
    if (int r = event_reset_time_relative(m->event_.get(), m->metrics_timer_, CLOCK_MONOTONIC, 15'000'000, 1'000'000,
                                          on_metrics_timer, m);
        r < 0)
        log::error("cannot arm the metrics timer: " + errno_text(r));
    return 0;
}

void Manager::report_events(uint64_t hold_us)
{
    const bool monitoring = bus_ && bus_->monitoring();
    const cache::Time t = now();
    for (const dns::Event& e : engine_->take_events()) {
        if (options_.log_dns)
            log::info(dns::describe(e));
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
                     + (r == -EBUSY ? ", another program reads it; set log-group" : "")
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
                       + (r == -EBUSY ? ", another program reads it; set log-group" : "")
                       + "), where queries under a DNS rule allowing every name are copied");
            return r;
        }
    }
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
    if (!bus_ || !bus_->monitoring())
        return;
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
    bus_->emit(*d, t, d->indev ? interface_name(d->indev) : "", last_drop_names_);
}

void Manager::dump_cache()
{
    const std::string table = cache::format_table(cache_.entries());
    log::info("cache:\n" + table);

    // The hold time of answers that changed the sets, as upper bounds.
    uint64_t total = 0;
    for (uint64_t n : hold_us_)
        total += n;
    auto quantile = [&](double q) {
        uint64_t seen = 0;
        for (size_t i = 0; i < hold_us_.size(); ++i) {
            seen += hold_us_[i];
            if (total && static_cast<double>(seen) >= q * static_cast<double>(total))
                return int64_t{1} << i;
        }
        return int64_t{0};
    };
    const dns::Stats& st = engine_->stats();
    log::info("stats: queries allowed " + std::to_string(st.queries_allowed) + ", refused "
              + std::to_string(st.queries_refused) + ", malformed " + std::to_string(st.queries_malformed)
              + "; answers inspected " + std::to_string(st.answers_inspected) + ", learned "
              + std::to_string(st.answers_learned) + ", unmatched " + std::to_string(st.answers_unmatched)
              + "; cache names " + std::to_string(cache_.names()) + ", addresses " + std::to_string(cache_.addresses())
              + ", connection " + std::to_string(cache_.connection_addresses()) + ", live flows "
              + std::to_string(cache_.live_flows()) + ", GC deletions " + std::to_string(cache_.gc_deletions())
              + ", conntrack overruns " + std::to_string(conntrack_.overruns())
              + "; queue packets " + std::to_string(queues_.stats().packets) + ", ENOBUFS "
              + std::to_string(queues_.stats().enobufs) + ", dropped by the kernel "
              + std::to_string(kernel_drops().queue_full) + "; set updates timed out "
              + std::to_string(datapath_timeouts_) + ", failed " + std::to_string(datapath_errors_)
              + "; answer hold: " + std::to_string(total) + " held, p50 < " + std::to_string(quantile(0.5))
              + " us, p99 < " + std::to_string(quantile(0.99)) + " us; state write errors "
              + std::to_string(state_->write_errors()));
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

} // namespace fqdnd
