#pragma once

#include "nft/netlink.hpp"

#include <cstddef>
#include <cstdint>
#include <deque>
#include <istream>
#include <functional>
#include <optional>
#include <span>
#include <vector>

// NFQUEUE through libnetfilter_queue over libmnl: one socket bound to the
// queues fqdnd's rules fan DNS out to. Packets come with their socket's
// uid/gid and input interface; every one gets a verdict.
namespace fqdnd::nfq {

struct Packet {
    uint16_t queue = 0;
    uint32_t id = 0;
    uint8_t hook = 0;
    std::span<const uint8_t> payload;
    std::optional<uint32_t> uid, gid;
    uint32_t indev = 0;
};

struct QueueStats {
    uint64_t packets = 0;
    uint64_t enobufs = 0;  // the kernel could not deliver: packets were lost to us
    uint64_t verdict_errors = 0;
    uint64_t verdict_messages = 0; // verdicts sent, a batch counting once
    uint64_t dropped_while_binding = 0; // queued before the last queue was bound
    uint64_t unseen_drops = 0; // batch drops of what fqdnd did not read (ids skipped)
};

// The kernel's own counts of a range of queues in this network namespace
// (/proc/net/netfilter/nfnetlink_queue): packets it dropped because a queue
// was full, and because it could not hand them to the listener's socket.
struct KernelDrops {
    uint64_t queue_full = 0, undelivered = 0;
};
KernelDrops kernel_drops(uint32_t first, uint32_t count);
// The same from the text of that file.
KernelDrops parse_kernel_drops(std::istream& in, uint32_t first, uint32_t count);

class Queues {
public:
    // Binds queues [first, first + count). A full queue drops: nothing
    // passes ungated while fqdnd listens.
    int open(uint16_t first, uint16_t count, uint32_t max_len) noexcept;
    int fd() const noexcept { return nl_.fd(); }

    // Reads the packets waiting, at most `max`, without blocking, and hands
    // each to `handler`; returns how many. The packet's bytes live until the
    // next call. Its verdict may come later, but in the order packets came.
    size_t receive(const std::function<void(const Packet&)>& handler, size_t max = SIZE_MAX) noexcept;

    // NF_ACCEPT or NF_DROP. An accept of the oldest packet of its queue
    // still waiting is gathered into a batch verdict (the kernel's batch
    // accepts every packet of the queue up to an id), sent when a drop
    // comes, after a few, or at flush(); by then every accepted packet's
    // work must be done. An accept while an older packet of its queue
    // still waits goes alone, at once: a batch would release that one too.
    void verdict(uint16_t queue, uint32_t id, bool accept) noexcept;
    // NF_ACCEPT with the packet replaced by `packet` (same length keeps TCP
    // in step); sent at once, after the accepts gathered before it.
    void verdict(uint16_t queue, uint32_t id, std::span<const uint8_t> packet) noexcept;
    void flush() noexcept;

    // Unbinds: the kernel then accepts (fail-open) or drops what it queues.
    void close() noexcept;

    const QueueStats& stats() const noexcept { return stats_; }

    // Enough for a DNS message over TCP with its headers.
    static constexpr uint32_t copy_range = 0xffff;

private:
    nft::Netlink nl_;
    uint16_t first_ = 0, count_ = 0;
    std::vector<char> buf_;
    // Per queue: the ids read and not yet given a verdict, oldest first,
    // as the kernel holds them; and the accepts gathered for a batch.
    struct Waiting {
        uint16_t queue;
        std::deque<uint32_t> ids;
        uint32_t batch_last = 0;
        uint32_t batch_count = 0;
        uint32_t last_read = 0; // the last id read (ids start at 1)
        // An id was skipped, or a verdict did not go: the kernel may hold a
        // packet fqdnd has no verdict for. No accept is batched then.
        bool gap = false;
    };
    std::vector<Waiting> waiting_;
    Waiting& waiting(uint16_t queue);
    // Takes `id` off its queue's waiting list; whether it was the oldest.
    static bool settle(Waiting& w, uint32_t id) noexcept;
    void send_batch(Waiting& w) noexcept;
    void note_read(Waiting& w, uint32_t id) noexcept;
    int send_config(uint16_t queue, const std::function<void(nlmsghdr*)>& fill) noexcept;
    bool send_verdict(uint16_t queue, uint32_t id, bool accept, bool batch,
                      std::span<const uint8_t> packet = {}) noexcept;
    static constexpr uint32_t max_batch = 32;
    QueueStats stats_;
};

} // namespace fqdnd::nfq
