#include "manager.hpp"

// glibc before the kernel headers, which then leave its definitions alone.
#include <arpa/inet.h>


#include "config/loader.hpp"
#include "log.hpp"
#include "ruleset/compile.hpp"

#include <libnftnl/chain.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <systemd/sd-daemon.h>

#include <cerrno>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <csignal>
#include <cstring>
#include <vector>

namespace fqdnd {

namespace {

// A table changed by someone else is put back this long after the last
// change seen, so that a burst of events (nft flush ruleset) costs one rebuild.
constexpr uint64_t restore_delay_usec = 200'000;

std::string errno_text(int r)
{
    return std::strerror(r < 0 ? -r : r);
}

// The table an nf_tables event is about, or "" when it cannot tell.
std::string event_table(const nlmsghdr* nlh)
{
    const int type = NFNL_MSG_TYPE(nlh->nlmsg_type);
    auto name = [](auto* obj, auto get, uint16_t attr) -> std::string {
        const char* s = get(obj, attr);
        return s ? s : "";
    };
    switch (type) {
    case NFT_MSG_NEWTABLE:
    case NFT_MSG_DELTABLE: {
        nftnl_table* t = nftnl_table_alloc();
        std::string n = nftnl_table_nlmsg_parse(nlh, t) == 0 ? name(t, nftnl_table_get_str, NFTNL_TABLE_NAME) : "";
        nftnl_table_free(t);
        return n;
    }
    case NFT_MSG_NEWCHAIN:
    case NFT_MSG_DELCHAIN: {
        nftnl_chain* c = nftnl_chain_alloc();
        std::string n = nftnl_chain_nlmsg_parse(nlh, c) == 0 ? name(c, nftnl_chain_get_str, NFTNL_CHAIN_TABLE) : "";
        nftnl_chain_free(c);
        return n;
    }
    case NFT_MSG_NEWRULE:
    case NFT_MSG_DELRULE: {
        nftnl_rule* r = nftnl_rule_alloc();
        std::string n = nftnl_rule_nlmsg_parse(nlh, r) == 0 ? name(r, nftnl_rule_get_str, NFTNL_RULE_TABLE) : "";
        nftnl_rule_free(r);
        return n;
    }
    case NFT_MSG_NEWSET:
    case NFT_MSG_DELSET: {
        nftnl_set* s = nftnl_set_alloc();
        std::string n = nftnl_set_nlmsg_parse(nlh, s) == 0 ? name(s, nftnl_set_get_str, NFTNL_SET_TABLE) : "";
        nftnl_set_free(s);
        return n;
    }
    default:
        return "";
    }
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

    if (int r = apply_ruleset(*config_, "start"); r < 0)
        return r;

    if (int r = open_monitor(); r < 0)
        return r;

    // Signals through the loop: blocked here, delivered by signalfd.
    sigset_t mask;
    sigemptyset(&mask);
    for (int s : {SIGTERM, SIGINT, SIGHUP})
        sigaddset(&mask, s);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    sd_event_source* src = nullptr;
    sd_event_add_signal(event_.get(), &src, SIGTERM, on_signal, this);
    sigterm_.reset(src);
    sd_event_add_signal(event_.get(), &src, SIGINT, on_signal, this);
    sigint_.reset(src);
    sd_event_add_signal(event_.get(), &src, SIGHUP, on_signal, this);
    sighup_.reset(src);
    sd_event_set_watchdog(event_.get(), true);

    log::info("ready: " + config::summary(*config_) + "; table inet " + table);
    sd_notifyf(0, "READY=1\nSTATUS=Enforcing %zu policies in table inet %s", config_->policies.size(), table.c_str());
    return 0;
}

int Manager::run()
{
    const int r = sd_event_loop(event_.get());
    sd_notify(0, "STOPPING=1");
    // The table stays: enforcement goes on while fqdnd is down.
    log::info("stopping; table inet " + config_->settings.table + " stays in place");
    return r;
}

int Manager::apply_ruleset(const config::Config& config, const char* why)
{
    const ruleset::Ruleset rs = ruleset::compile(config);
    std::string problem;
    if (int r = table_->apply(rs, queue_mode_, &problem); r < 0) {
        log::error(std::string("cannot put the ruleset in place (") + why + "): " + problem);
        return r;
    }
    return 0;
}

int Manager::reload()
{
    config::LoadResult loaded = config::load_config(options_.config_file, options_.config_given);
    if (!loaded.config) {
        for (const auto& d : loaded.errors)
            log::error(d.to_string());
        log::error("reload refused: " + std::to_string(loaded.errors.size())
                   + " errors; the running configuration stays");
        return -EINVAL;
    }
    if (*loaded.config == *config_) {
        log::info("reload: nothing changed");
        return 0;
    }
    sd_notify(0, "RELOADING=1");
    const std::string old_table = config_->settings.table;
    if (int r = apply_ruleset(*loaded.config, "reload"); r < 0) {
        sd_notify(0, "READY=1");
        return r;
    }
    config_ = std::move(loaded.config);
    if (config_->settings.table != old_table) {
        std::string problem;
        if (table_->remove(old_table, &problem) < 0)
            log::warning("cannot remove the previous table inet " + old_table + ": " + problem);
    }
    log::info("reloaded: " + config::summary(*config_));
    sd_notifyf(0, "READY=1\nSTATUS=Enforcing %zu policies in table inet %s", config_->policies.size(),
               config_->settings.table.c_str());
    return 0;
}

int Manager::open_monitor()
{
    if (int r = monitor_.open(1u << (NFNLGRP_NFTABLES - 1)); r < 0) {
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
    static_cast<Manager*>(self)->on_nft_event();
    return 0;
}

void Manager::on_nft_event()
{
    std::vector<char> buf(1 << 16);
    while (true) {
        const ssize_t n = recv(monitor_.fd(), buf.data(), buf.size(), MSG_DONTWAIT);
        if (n < 0) {
            if (errno == ENOBUFS) {
                // Events were lost: whatever they said, check the table.
                schedule_restore();
                continue;
            }
            return;
        }
        int len = static_cast<int>(n);
        for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(nlh, len);
             nlh = mnl_nlmsg_next(nlh, &len)) {
            // Our own changes come back too: they carry our port id.
            if (nlh->nlmsg_pid == nl_.portid())
                continue;
            const int type = NFNL_MSG_TYPE(nlh->nlmsg_type);
            if (type == NFT_MSG_NEWSETELEM || type == NFT_MSG_DELSETELEM || type == NFT_MSG_NEWGEN)
                continue;
            if (event_table(nlh) == config_->settings.table)
                schedule_restore();
        }
    }
}

void Manager::schedule_restore()
{
    uint64_t now = 0;
    sd_event_now(event_.get(), CLOCK_MONOTONIC, &now);
    if (!restore_timer_) {
        sd_event_source* src = nullptr;
        if (sd_event_add_time(event_.get(), &src, CLOCK_MONOTONIC, now + restore_delay_usec, 10'000,
                              on_restore_timer, this) >= 0)
            restore_timer_.reset(src);
        return;
    }
    sd_event_source_set_time(restore_timer_.get(), now + restore_delay_usec);
    sd_event_source_set_enabled(restore_timer_.get(), SD_EVENT_ONESHOT);
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
    const bool present = table_->exists(config_->settings.table);
    log::warning(std::string("table inet ") + config_->settings.table + (present ? " was changed" : " was deleted")
                 + " by someone else; putting it back");
    apply_ruleset(*config_, "restore");
}

int Manager::on_signal(sd_event_source* s, const struct signalfd_siginfo* si, void* self)
{
    auto* m = static_cast<Manager*>(self);
    if (si->ssi_signo == SIGHUP) {
        m->reload();
        return 0;
    }
    return sd_event_exit(sd_event_source_get_event(s), 0);
}

} // namespace fqdnd
