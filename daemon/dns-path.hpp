#pragma once

#include "cache/cache.hpp"
#include "config/model.hpp"
#include "dns/engine.hpp"
#include "dns/round.hpp"
#include "interface-names.hpp"
#include "nflog/nflog.hpp"
#include "nfq/queue.hpp"
#include "nfq/reply.hpp"
#include "nft/encode.hpp"
#include "nft/netlink.hpp"
#include "nft/table.hpp"
#include "sd-util.hpp"

#include <systemd/sd-event.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace fqdnd {

// The DNS path on the event loop: the queues of queries and answers, the
// copies of queries passed unheld, the element updates answers wait for,
// and the refusals sent in a server's name. Each wakeup of the queues is a
// round (dns::Round): its packets go to the engine, its set updates to the
// kernel as one transaction, then its verdicts go out.
class DnsPath {
public:
    struct Hooks {
        std::function<cache::Time()> now;
        // Called before any verdict of a round: what a client is told was
        // learned must survive a crash of fqdnd.
        std::function<void()> before_verdicts;
        // An answer taught the cache (for the journal), before its verdict.
        std::function<void(const dns::Outcome::Learned&, cache::Time)> learned;
        // Whether anyone reads the engine's events.
        std::function<bool()> watched;
        // After a round: whether it wrote the sets, and its longest hold.
        std::function<void(bool wrote, uint64_t hold_us)> round_done;
    };

    DnsPath(dns::Engine& engine, InterfaceNames& interfaces, Hooks hooks);

    // Binds the queues of `s`, opens the socket of element updates (acks
    // awaited at most response-max-delay) and the raw sockets of refusals.
    // A negative errno, logged.
    // `destroy`: the kernel takes NFT_MSG_DESTROYSETELEM (Table::probe_destroy).
    int open(sd_event* event, const config::Settings& s, nft::Refresh refresh, bool destroy);
    // The table and queue numbers of a reloaded configuration.
    void configure(const config::Settings& s);
    // Binds the NFLOG group where `config`'s rules copy queries (none:
    // unbinds). A negative errno, logged, and the running group stays.
    int open_copies(sd_event* event, const config::Config& config);
    bool copies_open() const noexcept { return copies_.is_open(); }

    // Up to `max` queued packets, then the round's transaction and verdicts.
    void serve(size_t max);
    // Every queued packet gets its verdict, then the queues are unbound.
    void close();

    // Every query copy waiting, to the engine.
    void read_copies();

    // The port of the socket whose transactions update the sets.
    uint32_t updates_portid() const noexcept { return updates_.portid(); }

    uint64_t timeouts() const noexcept { return timeouts_; }
    uint64_t errors() const noexcept { return errors_; }
    const nfq::QueueStats& queue_stats() const noexcept { return queues_.stats(); }
    uint64_t copies_lost() const noexcept { return copies_.enobufs(); }
    // How long answers that changed the sets were held, in powers of two
    // of microseconds: bucket i counts holds under 2^i us.
    const std::array<uint64_t, 24>& holds() const noexcept { return hold_us_; }

    static constexpr size_t round_packets = 64;
    // A round ends once its first held answer has waited this long.
    static constexpr std::chrono::microseconds round_hold_budget{200};

private:
    // Set updates wait for the kernel at most response-max-delay.
    int bound_wait(const config::Settings& s);
    void on_packet(const nfq::Packet& p);
    void commit_round();
    // Writes the round's operations; false when the batch failed or
    // outlived response-max-delay (the answers are released anyway).
    bool write_elements(const std::vector<cache::ElementOp>& ops);
    dns::PacketMeta meta_of(std::optional<uint8_t> hook, uint32_t indev, std::optional<uint32_t> uid,
                            std::optional<uint32_t> gid);
    static int on_queue(sd_event_source*, int fd, uint32_t revents, void* self);
    static int on_copies(sd_event_source*, int fd, uint32_t revents, void* self);

    dns::Engine& engine_;
    InterfaceNames& interfaces_;
    Hooks hooks_;
    std::string table_;
    uint32_t first_queue_ = 0, queues_per_direction_ = 1;
    nft::Refresh refresh_ = nft::Refresh::readd;
    nfq::Queues queues_;
    SdEventSourcePtr queue_source_;
    nft::Netlink updates_;
    std::unique_ptr<nft::Table> update_table_;
    nfq::ReplySender replies_;
    // Copies of the queries passed unheld (ruleset::query_log_group), read
    // before every round of answers.
    nflog::Reader copies_;
    SdEventSourcePtr copies_source_;
    std::optional<uint16_t> copies_group_;
    dns::Round round_;
    uint64_t timeouts_ = 0, errors_ = 0;
    std::array<uint64_t, 24> hold_us_{};
};

} // namespace fqdnd
