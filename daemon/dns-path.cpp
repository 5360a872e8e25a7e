#include "dns-path.hpp"

// glibc before the kernel headers, which then leave its definitions alone.
#include <arpa/inet.h>

#include "log.hpp"
#include "ruleset/compile.hpp"

#include <linux/netfilter.h>

#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>

namespace fqdnd {

DnsPath::DnsPath(dns::Engine& engine, InterfaceNames& interfaces, Hooks hooks)
    : engine_(engine), interfaces_(interfaces), hooks_(std::move(hooks))
{
    engine_.on_unmatched([this] { read_copies(); });
}

void DnsPath::configure(const config::Settings& s)
{
    table_ = s.table;
    first_queue_ = static_cast<uint32_t>(s.queue);
    queues_per_direction_ = static_cast<uint32_t>(s.queues);
    if (updates_.is_open())
        bound_wait(s); // a reload may change response-max-delay
}

int DnsPath::bound_wait(const config::Settings& s)
{
    const auto delay = std::max<int64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(s.response_max_delay).count(), 1000);
    timeval tv{static_cast<time_t>(delay / 1'000'000), static_cast<suseconds_t>(delay % 1'000'000)};
    if (setsockopt(updates_.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0) {
        const int r = -errno;
        log::error("cannot bound the wait for set updates: " + errno_text(r));
        return r;
    }
    return 0;
}

int DnsPath::open(sd_event* event, const config::Settings& s, nft::Refresh refresh, bool destroy)
{
    configure(s);
    refresh_ = refresh;
    if (int r = queues_.open(static_cast<uint16_t>(s.queue), static_cast<uint16_t>(2 * s.queues), 4096); r < 0) {
        log::error("cannot bind NFQUEUE " + std::to_string(s.queue) + ": " + errno_text(r));
        return r;
    }
    sd_event_source* src = nullptr;
    if (int r = sd_event_add_io(event, &src, queues_.fd(), EPOLLIN, on_queue, this); r < 0) {
        log::error("cannot watch the queues: " + errno_text(r));
        return r;
    }
    queue_source_.reset(src);

    // Element updates on a socket of their own, whose acks are awaited at
    // most response-max-delay: without it an answer could wait on the
    // kernel without end.
    if (int r = updates_.open(); r < 0) {
        log::error("cannot open a netfilter netlink socket for set updates: " + errno_text(r));
        return r;
    }
    if (int r = bound_wait(s); r < 0)
        return r;
    update_table_ = std::make_unique<nft::Table>(updates_);
    update_table_->assume_destroy(destroy);

    // Refused queries are answered in the server's name, through raw
    // sockets whose packets carry the mark fqdnd's rules let pass.
    if (int r = replies_.open(ruleset::packet_mark_reply); r < 0) {
        log::error("cannot open a raw socket for replies: " + errno_text(r));
        return r;
    }
    return 0;
}

int DnsPath::open_copies(sd_event* event, const config::Config& config)
{
    const std::optional<uint16_t> want = ruleset::copies_queries(config)
        ? std::optional<uint16_t>(ruleset::query_log_group(config.settings))
        : std::nullopt;
    if (want == copies_group_)
        return 0;
    nflog::Reader reader;
    // Room for a burst of queries: a copy lost is an answer dropped.
    if (want) {
        if (int r = reader.open(*want, nflog::Reader::whole_packet, 8 << 20); r < 0) {
            log::error("cannot read NFLOG group " + std::to_string(*want) + " (" + errno_text(r)
                       + nflog::busy_hint(r) + "), where queries under a DNS rule allowing every name are copied");
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
    if (int r = sd_event_add_io(event, &src, copies_.fd(), EPOLLIN, on_copies, this); r < 0) {
        log::error("cannot watch the query copies: " + errno_text(r));
        return r;
    }
    copies_source_.reset(src);
    // Before the queues, when both are ready.
    if (int r = sd_event_source_set_priority(src, SD_EVENT_PRIORITY_IMPORTANT); r < 0)
        log::warning("cannot read the query copies before the queues: " + errno_text(r));
    return 0;
}

int DnsPath::on_copies(sd_event_source*, int, uint32_t, void* self)
{
    static_cast<DnsPath*>(self)->read_copies();
    return 0;
}

int DnsPath::on_queue(sd_event_source*, int, uint32_t, void* self)
{
    static_cast<DnsPath*>(self)->serve(round_packets);
    return 0;
}

dns::PacketMeta DnsPath::meta_of(std::optional<uint8_t> hook, uint32_t indev, std::optional<uint32_t> uid,
                                 std::optional<uint32_t> gid)
{
    dns::PacketMeta meta;
    meta.hook = hook == NF_INET_FORWARD ? dns::Hook::forward
        : hook == NF_INET_LOCAL_OUT     ? dns::Hook::output
        : hook == NF_INET_LOCAL_IN      ? dns::Hook::input
                                        : dns::Hook::other;
    meta.uid = uid;
    meta.gid = gid;
    if (indev)
        meta.indev = interfaces_.name(indev);
    meta.now = hooks_.now();
    return meta;
}

void DnsPath::read_copies()
{
    // A monitor may have come since the last round: its queries too.
    engine_.record_events(hooks_.watched());
    if (!copies_.is_open())
        return;
    copies_.receive([this](const nflog::Logged& l) {
        if (l.prefix != ruleset::query_log_prefix)
            return;
        dns::PacketMeta meta = meta_of(l.hook, l.indev, l.uid, l.gid);
        meta.direction = dns::Direction::original; // the rules copy only that
        engine_.copied(l.payload, meta);
    });
}

void DnsPath::serve(size_t max)
{
    // The copies of queries passed unheld, before the answers to them;
    // whether anyone reads the engine's events is asked there, once a
    // round (it walks the policies), not for every packet.
    read_copies();
    // A round ends when the queue is empty, after `max` packets, or once
    // its first held answer has waited round_hold_budget for the rest.
    const std::function<void(const nfq::Packet&)> handler = [this](const nfq::Packet& p) { on_packet(p); };
    for (size_t n = 0; n < max; ++n) {
        if (queues_.receive(handler, 1) == 0)
            break;
        const auto first = round_.first_hold();
        if (first && dns::Round::Clock::now() - *first > round_hold_budget)
            break;
    }
    commit_round();
}

void DnsPath::on_packet(const nfq::Packet& p)
{
    dns::PacketMeta meta = meta_of(p.hook, p.indev, p.uid, p.gid);
    // Conntrack's direction, as the rules queued it: queries (original)
    // to the first queues, answers (reply) to the next as many.
    meta.direction = p.queue >= first_queue_ + queues_per_direction_ ? dns::Direction::reply
                                                                      : dns::Direction::original;
    dns::Outcome out = engine_.handle(p.payload, meta);
    for (const auto& l : out.learned)
        hooks_.learned(l, meta.now);
    for (const auto& reply : out.replies)
        if (int r = replies_.send(reply); r < 0)
            log::warning("cannot send a refusal: " + errno_text(r));
    // An answer is released only once its addresses are in the sets (or
    // response-max-delay passed: then it goes anyway, and is counted): at
    // the end of the round, with every packet read after it.
    round_.add(p.queue, p.id, out, dns::Round::Clock::now());
}

void DnsPath::commit_round()
{
    if (!round_.empty())
        hooks_.before_verdicts();
    auto send = [this](const dns::Round::Verdict& v) {
        if (v.accept && !v.replacement.empty())
            queues_.verdict(v.queue, v.id, v.replacement);
        else
            queues_.verdict(v.queue, v.id, v.accept);
    };
    uint64_t hold_us = 0;
    const bool wrote = !round_.ops().empty();
    if (wrote) {
        // What waits for no set update goes before the transaction.
        if (round_.release(false, send))
            queues_.flush();
        // One transaction for every answer of the round: under load most
        // of an answer's cost is the transaction, not its elements.
        cache::coalesce(round_.ops());
        write_elements(round_.ops());
        hold_us = round_.record_holds(dns::Round::Clock::now(), hold_us_);
    }
    if (round_.release(true, send))
        queues_.flush();
    round_.clear();
    hooks_.round_done(wrote, hold_us);
}

bool DnsPath::write_elements(const std::vector<cache::ElementOp>& ops)
{
    std::string problem;
    const int r = update_table_->update(table_, ops, refresh_, &problem);
    if (r == -ETIMEDOUT || r == -EAGAIN) {
        ++timeouts_;
        log::warning("set update not acknowledged within response-max-delay; answer released");
        return false;
    }
    if (r < 0) {
        ++errors_;
        log::error("set update failed: " + problem);
        return false;
    }
    return true;
}

void DnsPath::close()
{
    serve(SIZE_MAX);
    queue_source_.reset();
    queues_.close();
}

} // namespace fqdnd
