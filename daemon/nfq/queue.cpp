#include "nfq/queue.hpp"

#include <fstream>

// glibc before the kernel headers, which then leave its definitions alone.
#include <arpa/inet.h>

#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>

#include <algorithm>
#include <array>
#include <optional>
#include <chrono>
#include <cerrno>
#include <sys/socket.h>

namespace fqdnd::nfq {

namespace {

// A queued packet's message, read; nullopt for any other message (or one
// without the packet header, which the kernel always sends).
std::optional<Packet> packet_of(const nlmsghdr* nlh)
{
    if ((nlh->nlmsg_type & 0xff) != NFQNL_MSG_PACKET)
        return std::nullopt;
    nlattr* attr[NFQA_MAX + 1] = {};
    if (nfq_nlmsg_parse(nlh, attr) < 0 || !attr[NFQA_PACKET_HDR])
        return std::nullopt;
    const auto* hdr = static_cast<const nfqnl_msg_packet_hdr*>(mnl_attr_get_payload(attr[NFQA_PACKET_HDR]));
    Packet p;
    p.queue = ntohs(static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh))->res_id);
    p.id = ntohl(hdr->packet_id);
    p.hook = hdr->hook;
    if (attr[NFQA_PAYLOAD])
        p.payload = std::span(static_cast<const uint8_t*>(mnl_attr_get_payload(attr[NFQA_PAYLOAD])),
                              mnl_attr_get_payload_len(attr[NFQA_PAYLOAD]));
    if (attr[NFQA_UID])
        p.uid = ntohl(mnl_attr_get_u32(attr[NFQA_UID]));
    if (attr[NFQA_GID])
        p.gid = ntohl(mnl_attr_get_u32(attr[NFQA_GID]));
    if (attr[NFQA_IFINDEX_INDEV])
        p.indev = ntohl(mnl_attr_get_u32(attr[NFQA_IFINDEX_INDEV]));
    return p;
}

} // namespace

int Queues::send_config(uint16_t queue, const std::function<void(nlmsghdr*)>& fill) noexcept
{
    std::array<char, 512> req{};
    nlmsghdr* nlh = nfq_nlmsg_put(req.data(), NFQNL_MSG_CONFIG, queue);
    nlh->nlmsg_flags |= NLM_F_ACK;
    const uint32_t seq = nl_.next_seq();
    nlh->nlmsg_seq = seq;
    fill(nlh);
    if (mnl_socket_sendto(nl_.get(), nlh, nlh->nlmsg_len) < 0)
        return -errno;
    // Once a queue copies packets, the kernel may queue one before it
    // acknowledges the next request: packets come in among the acks. Each
    // is dropped here (what fqdnd cannot see through must not pass), and
    // its id noted, so that no batch verdict is taken to cover what fqdnd
    // never read. Bounded in time: each read waits at most the socket's
    // timeout while binding, and a flood cannot keep this reading for ever.
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (std::chrono::steady_clock::now() < until) {
        const ssize_t n = recv(nl_.fd(), buf_.data(), buf_.size(), 0);
        if (n < 0 && errno == ENOBUFS) {
            // Packets lost (never queued, their ids skipped), as in
            // receive(); the ack may come yet.
            ++stats_.enobufs;
            continue;
        }
        if (n < 0)
            return -errno;
        int len = static_cast<int>(n);
        for (auto* m = reinterpret_cast<const nlmsghdr*>(buf_.data()); mnl_nlmsg_ok(m, len); m = mnl_nlmsg_next(m, &len)) {
            if (m->nlmsg_type == NLMSG_ERROR) {
                if (m->nlmsg_seq != seq)
                    continue; // an earlier request's, or a verdict's error
                return static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m))->error;
            }
            const auto p = packet_of(m);
            if (!p)
                continue;
            const uint16_t q = p->queue;
            const uint32_t id = p->id;
            note_read(waiting(q), id);
            ++stats_.dropped_while_binding;
            if (!send_verdict(q, id, false, false))
                waiting(q).gap = true;
        }
    }
    return -ETIMEDOUT;
}

int Queues::open(uint16_t first, uint16_t count, uint32_t max_len) noexcept
{
    if (int r = nl_.open(); r < 0)
        return r;
    // Replies come back quickly; a burst of DNS must not overflow.
    int size = 8 << 20;
    setsockopt(nl_.fd(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size));
    timeval tv{1, 0};
    setsockopt(nl_.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    buf_.resize(copy_range + 4096);
    waiting_.clear();
    first_ = first;
    count_ = count;
    // Never NFQA_CFG_F_FAIL_OPEN: with it the kernel accepts what a full
    // queue cannot take, so a flood of queries would pass ungated while
    // fqdnd runs. A full queue drops (counted in queue_dropped); fail-open
    // is the rules' bypass flag, for when no fqdnd listens at all. No
    // conntrack info either: the queue a packet comes on tells its direction.
    const uint32_t flags = NFQA_CFG_F_GSO | NFQA_CFG_F_UID_GID;
    for (uint32_t q = first; q < uint32_t{first} + count; ++q) {
        int r = send_config(static_cast<uint16_t>(q), [](nlmsghdr* nlh) { nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_BIND); });
        if (r < 0)
            return r;
        auto configure = [&](nlmsghdr* nlh) {
            nfq_nlmsg_cfg_put_params(nlh, NFQNL_COPY_PACKET, copy_range);
            nfq_nlmsg_cfg_put_qmaxlen(nlh, max_len);
            mnl_attr_put_u32(nlh, NFQA_CFG_FLAGS, htonl(flags));
            mnl_attr_put_u32(nlh, NFQA_CFG_MASK, htonl(flags | NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_CONNTRACK));
        };
        r = send_config(static_cast<uint16_t>(q), configure);
        if (r < 0)
            return r;
    }
    // From here on the socket is only read when it has something.
    tv = {0, 0};
    setsockopt(nl_.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return 0;
}

size_t Queues::receive(const std::function<void(const Packet&)>& handler, size_t max) noexcept
{
    size_t handled = 0;
    while (handled < max) {
        const ssize_t n = recv(nl_.fd(), buf_.data(), buf_.size(), MSG_DONTWAIT);
        if (n < 0) {
            if (errno == ENOBUFS) {
                // Packets were queued that we will never see: the kernel
                // dropped them (queue_user_dropped). Count, go on.
                ++stats_.enobufs;
                continue;
            }
            break;
        }
        int len = static_cast<int>(n);
        for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buf_.data()); mnl_nlmsg_ok(nlh, len);
             nlh = mnl_nlmsg_next(nlh, &len)) {
            const auto p = packet_of(nlh);
            if (!p)
                continue;
            ++stats_.packets;
            ++handled;
            Waiting& w = waiting(p->queue);
            note_read(w, p->id);
            w.ids.push_back(p->id);
            handler(*p);
        }
    }
    return handled;
}

bool Queues::send_verdict(uint16_t queue, uint32_t id, bool accept, bool batch,
                          std::span<const uint8_t> packet) noexcept
{
    // Room for the headers and the verdict; a replacement packet on top.
    std::array<char, 256> small{}; // libmnl leaves attribute padding unwritten
    std::vector<char> large;
    char* buf = small.data();
    if (!packet.empty()) {
        large.resize(small.size() + MNL_ALIGN(packet.size() + sizeof(nlattr)));
        buf = large.data();
    }
    nlmsghdr* nlh = nfq_nlmsg_put(buf, batch ? NFQNL_MSG_VERDICT_BATCH : NFQNL_MSG_VERDICT, queue);
    nfq_nlmsg_verdict_put(nlh, static_cast<int>(id), accept ? NF_ACCEPT : NF_DROP);
    if (!packet.empty())
        nfq_nlmsg_verdict_put_pkt(nlh, packet.data(), static_cast<uint32_t>(packet.size()));
    ++stats_.verdict_messages;
    if (mnl_socket_sendto(nl_.get(), nlh, nlh->nlmsg_len) < 0) {
        ++stats_.verdict_errors;
        return false;
    }
    return true;
}

void Queues::note_read(Waiting& w, uint32_t id) noexcept
{
    // A fresh queue numbers its packets from 1, one by one: a jump is a
    // packet fqdnd did not read. The kernel may not hold it (lost to
    // ENOBUFS: it was never queued), but nothing may be batched over it
    // until it is surely gone.
    if (id != w.last_read + 1)
        w.gap = true;
    w.last_read = id;
}

Queues::Waiting& Queues::waiting(uint16_t queue)
{
    for (Waiting& w : waiting_)
        if (w.queue == queue)
            return w;
    return waiting_.emplace_back(Waiting{queue, {}, 0, 0, 0, false});
}

bool Queues::settle(Waiting& w, uint32_t id) noexcept
{
    if (!w.ids.empty() && w.ids.front() == id) {
        w.ids.pop_front();
        return true;
    }
    // Verdicts mostly come in order: the id is near the front.
    if (auto it = std::find(w.ids.begin(), w.ids.end(), id); it != w.ids.end())
        w.ids.erase(it);
    return false;
}

void Queues::send_batch(Waiting& w) noexcept
{
    if (w.batch_count == 0)
        return;
    // If it failed, its packets are still queued, unknown to the list.
    if (!send_verdict(w.queue, w.batch_last, true, true))
        w.gap = true;
    w.batch_count = 0;
}

void Queues::verdict(uint16_t queue, uint32_t id, std::span<const uint8_t> packet) noexcept
{
    Waiting& w = waiting(queue);
    // The accepts gathered before it go first.
    send_batch(w);
    settle(w, id);
    if (!send_verdict(queue, id, true, false, packet))
        w.gap = true;
}

void Queues::verdict(uint16_t queue, uint32_t id, bool accept) noexcept
{
    Waiting& w = waiting(queue);
    const bool oldest = settle(w, id);
    if (accept && oldest && !w.gap) {
        // Every packet of the queue up to `id` has its verdict: a batch
        // up to it releases nothing that waits.
        w.batch_last = id;
        if (++w.batch_count >= max_batch)
            send_batch(w);
        return;
    }
    // A drop, or an accept while an older packet waits: alone, after the
    // accepts gathered before it.
    send_batch(w);
    if (!send_verdict(queue, id, accept, false))
        w.gap = true;
}

void Queues::flush() noexcept
{
    for (Waiting& w : waiting_) {
        send_batch(w);
        // Every packet read has its verdict: what the kernel still holds up
        // to the last id read is what fqdnd never saw (or whose verdict
        // did not go). It is dropped, at once, and batches may go again.
        if (w.gap && w.ids.empty() && w.last_read != 0) {
            ++stats_.unseen_drops;
            if (send_verdict(w.queue, w.last_read, false, true))
                w.gap = false;
        }
    }
}

void Queues::close() noexcept
{
    flush();
    waiting_.clear();
    for (uint32_t q = first_; q < uint32_t{first_} + count_ && nl_.is_open(); ++q)
        send_config(static_cast<uint16_t>(q), [](nlmsghdr* nlh) { nfq_nlmsg_cfg_put_cmd(nlh, AF_INET, NFQNL_CFG_CMD_UNBIND); });
}

KernelDrops parse_kernel_drops(std::istream& in, uint32_t first, uint32_t count)
{
    // queue, portid, waiting, copy mode, copy range, queue dropped, user
    // dropped, last id, 1: one line per bound queue.
    KernelDrops k;
    const uint64_t last = uint64_t{first} + count;
    uint64_t queue = 0, portid = 0, total = 0, mode = 0, range = 0, dropped = 0, user = 0;
    std::string rest;
    while (in >> queue >> portid >> total >> mode >> range >> dropped >> user && std::getline(in, rest))
        if (queue >= first && queue < last) {
            k.queue_full += dropped;
            k.undelivered += user;
        }
    return k;
}

KernelDrops kernel_drops(uint32_t first, uint32_t count)
{
    std::ifstream in("/proc/net/netfilter/nfnetlink_queue");
    return parse_kernel_drops(in, first, count);
}

} // namespace fqdnd::nfq
