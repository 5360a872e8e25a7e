#pragma once

#include "cache/cache.hpp"
#include "dns/engine.hpp"
#include "fnv.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <unordered_set>
#include <vector>

namespace fqdnd::dns {

// The packets read in one wakeup of the queues (a round), and the order in
// which their verdicts may go out. An answer that brings the kernel
// something (element operations) is held until the round's one set
// transaction is done; so is an answer without operations whose address an
// earlier answer of the same round is still bringing. Everything else
// (queries, answers the sets already hold long enough) may go before the
// transaction. Verdicts go out in the order the packets came, within each
// of the two groups. No kernel here: the caller sends.
class Round {
public:
    using Clock = std::chrono::steady_clock;

    struct Verdict {
        uint16_t queue = 0;
        uint32_t id = 0;
        bool accept = false;
        bool held = false;                // waits for the round's set transaction
        std::vector<uint8_t> replacement; // the packet to pass instead, when not empty
        bool sent = false;
    };

    // Takes a packet's outcome (its operations and replacement are moved
    // out); returns whether its verdict waits for the transaction.
    bool add(uint16_t queue, uint32_t id, Outcome& out, Clock::time_point arrived);

    bool empty() const noexcept { return verdicts_.empty(); }
    // The round's element operations, in the order the answers came.
    std::vector<cache::ElementOp>& ops() noexcept { return ops_; }
    // When the first answer that waits for the transaction arrived.
    std::optional<Clock::time_point> first_hold() const
    {
        return holds_.empty() ? std::nullopt : std::optional(holds_.front());
    }

    // Hands every verdict not yet sent to `send`, in order: those that wait
    // for nothing, or (held_too) every one. Returns how many went.
    size_t release(bool held_too, const std::function<void(const Verdict&)>& send);

    // How long each answer with operations waited, up to `done`, into a
    // histogram of powers of two of microseconds (bucket i counts holds
    // under 2^i us); returns the longest.
    template <size_t N>
    uint64_t record_holds(Clock::time_point done, std::array<uint64_t, N>& histogram) const
    {
        uint64_t longest = 0;
        for (const auto& arrived : holds_) {
            const auto us = static_cast<uint64_t>(
                std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(done - arrived).count()));
            longest = std::max(longest, us);
            size_t bucket = 0;
            while (bucket + 1 < N && (uint64_t{1} << bucket) <= us)
                ++bucket;
            ++histogram[bucket];
        }
        return longest;
    }

    void clear();

private:
    std::vector<Verdict> verdicts_;
    std::vector<cache::ElementOp> ops_;
    // The addresses ops_ adds.
    std::unordered_set<Address, fnv::AddressHash> adding_;
    std::vector<Clock::time_point> holds_; // arrival of answers with operations
};

} // namespace fqdnd::dns
