#pragma once

#include "cache/cache.hpp"
#include "config/model.hpp"
#include "dns/message.hpp"
#include "dns/packet.hpp"
#include "fqdn/matcher.hpp"

#include <array>
#include <cstdint>
#include <deque>
#include <set>
#include <functional>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

// What fqdnd does with each queued DNS packet: queries checked against the
// DNS rules of the policies that select the client (refused ones answered by
// fqdnd itself), answers matched to remembered queries and taught to the
// cache. Plain C++: the caller applies the verdict, sends the replies and
// writes the element operations to the kernel before releasing an answer.
namespace fqdnd::dns {

enum class Hook : uint8_t { input, forward, output, other };

// The packet's direction in its conntrack flow. fqdnd queues only flows
// whose first packet went from a client to a listed server, so `original`
// is the client's side. Unknown: told by the listed servers' addresses and
// ports when one side only fits; otherwise judged as original (a query).
enum class Direction : uint8_t { unknown, original, reply };

struct PacketMeta {
    Hook hook = Hook::forward;
    Direction direction = Direction::unknown;
    std::optional<uint32_t> uid, gid; // the socket's owner, for local processes
    std::string indev;                // input interface, for forwarded clients
    cache::Time now{};
};

struct Outcome {
    bool accept = true;
    // When accepted: the packet to pass instead of the one queued, of the
    // same length (a TCP segment whose refused queries were blanked).
    std::vector<uint8_t> replacement;
    std::vector<std::vector<uint8_t>> replies; // IP packets to send in the server's name
    std::vector<cache::ElementOp> ops;         // to be in the kernel before the verdict
    // Answers taught to the cache, as learn() took them: for the journal,
    // written before the verdict too.
    struct Learned {
        std::string endpoint;
        std::vector<std::string> names;
        std::vector<Address> addresses;
        uint32_t ttl = 0;
    };
    std::vector<Learned> learned;
};

// Counters, each visible in metrics.
struct Stats {
    uint64_t queries_allowed = 0;
    uint64_t queries_refused = 0;
    uint64_t queries_malformed = 0;
    uint64_t answers_inspected = 0;
    uint64_t answers_learned = 0;
    uint64_t answers_unmatched = 0;   // no remembered query: state unchanged
    uint64_t answers_malformed = 0;
    uint64_t packets_undecodable = 0;   // dropped
    uint64_t packets_no_direction = 0;  // no direction, not even from the addresses: judged as queries
    // TCP segments dropped, each fail-closed (by reason).
    uint64_t tcp_unknown_stream = 0;     // data on a stream fqdnd does not follow (client reset)
    uint64_t tcp_gap = 0;                // beyond the next byte expected: the sender retransmits
    uint64_t tcp_urgent = 0;             // URG set: the peer's stack would take bytes out of the stream
    uint64_t tcp_second_syn = 0;         // a SYN not the stream's own, or a SYN-ACK of another connection
    uint64_t tcp_resent_acknowledged = 0; // data the server acknowledged, sent again: unread, not passed
    uint64_t tcp_bad_ack = 0;            // data whose ACK is not of what the server sent
    uint64_t tcp_cookie_shaped = 0;      // data whose ACK is a SYN cookie's at no message boundary: reset
    uint64_t tcp_after_server_close = 0; // data after the server's FIN: dropped, the client reset
    uint64_t tcp_retransmit_changed = 0; // resent bytes differ from those inspected
    uint64_t tcp_unacked_full = 0;       // too many bytes not yet acknowledged by the server
    uint64_t tcp_oversized = 0;          // a query longer than max_tcp_query, or an answer than DNS allows
    uint64_t tcp_after_refusal = 0;      // server data after fqdnd refused in its name: out of step, dropped
    uint64_t tcp_queries_blanked = 0;    // refused queries overwritten in a segment passed for allowed ones
    uint64_t tcp_streams_evicted = 0;    // the table was full: the stalest stream was freed
    uint64_t tcp_streams_expired = 0;    // idle, or closed and lingered
    uint64_t tcp_streams_stalled = 0;    // server bytes unacknowledged by the client too long
    uint64_t tcp_resets_ignored = 0;     // an RST its receiver would not take: passed, the stream kept
    uint64_t queries_evicted = 0;        // unanswered, forgotten as max_pending_queries were waiting
    uint64_t queries_expired = 0;        // unanswered after query_timeout
    uint64_t answers_wrong_question = 0; // matched a query's id and ports, not its question
    // Copies of queries passed unheld under a rule allowing every name:
    // remembered, or (not remembered: their answers are dropped) not a
    // UDP query fqdnd can read, or no rule allows them (a reload since).
    uint64_t queries_copied = 0;
    uint64_t queries_copied_unread = 0;
    uint64_t queries_copied_unallowed = 0;
    // Queries and answers refused as malformed, by reason (index: Malformed).
    std::array<uint64_t, static_cast<size_t>(Malformed::count)> malformed{};
};

// A DNS event, for the log and `fqdnctl monitor`.
struct Event {
    enum class Kind : uint8_t { query_allowed, query_refused, answer } kind;
    std::string endpoint;
    Question question;
    std::vector<std::string> names;
    std::vector<Address> addresses;
    uint32_t ttl = 0;
    Address server;      // the DNS server asked, or answering
    uint8_t rcode = 0;   // an answer's
    bool learned = false; // an answer that put its addresses in the cache
};

// query-allowed, query-refused, answer: as the log and `fqdnctl monitor`
// name them.
std::string_view to_string(Event::Kind k) noexcept;
// One line of --log-dns: "ENDPOINT KIND: NAME type T server S", and for an
// answer the chain, the addresses, TTL and rcode.
std::string describe(const Event& e);

class Engine {
public:
    Engine(const config::Config& config, cache::Cache& cache);

    // Replaces the policies (a reload); remembered queries stay.
    void configure(const config::Config& config);

    Outcome handle(std::span<const uint8_t> packet, const PacketMeta& meta);

    // A copy of a query the kernel passed without holding it (its rule
    // allows every name): remembered for its answer as a queued query
    // would be, if a rule allows it; otherwise only counted.
    void copied(std::span<const uint8_t> packet, const PacketMeta& meta);
    // Called when an answer matches no remembered query, before it is
    // judged unmatched: the caller reads the query copies still waiting
    // (each sent before the answer it gets), through copied().
    void on_unmatched(std::function<void()> f) { read_copies_ = std::move(f); }

    const Stats& stats() const noexcept { return stats_; }
    // Events are kept for take_events() only when someone reads them.
    void record_events(bool on) noexcept { record_events_ = on; }
    std::vector<Event> take_events() { return std::exchange(events_, {}); }
    size_t pending_queries() const noexcept { return queries_.size(); }

    // How long a query is remembered for its answer.
    static constexpr std::chrono::seconds query_timeout{10};
    static constexpr size_t max_pending_queries = 65536;
    // Questions remembered under one client port and id (A and AAAA asked
    // at once); a look at a key reads no more than these.
    static constexpr size_t max_questions_per_key = 4;
    static constexpr size_t max_tcp_streams = 4096;
    // A stream is freed when idle this long, or this long after both FINs.
    static constexpr std::chrono::seconds tcp_idle_timeout{60};
    static constexpr std::chrono::seconds tcp_fin_linger{5};
    // Server bytes the client leaves unacknowledged this long end the stream.
    static constexpr std::chrono::seconds tcp_unacknowledged_timeout{30};
    // Client bytes passed but not yet acknowledged by the server, kept to
    // check retransmissions against; beyond it segments wait for an ack.
    static constexpr size_t max_tcp_unacked = 16384;
    // The two-byte length and the longest DNS message.
    static constexpr size_t max_tcp_message = 2 + 65535;
    // The longest query over TCP fqdnd waits for (EDNS padding makes them
    // a few hundred bytes); a longer length prefix is refused unread.
    static constexpr size_t max_tcp_query = 4096;
    // The largest packet a verdict may replace (a netlink attribute's
    // length is 16 bits).
    static constexpr size_t max_replacement = 65000;

private:
    struct DnsRule {
        const config::Policy* policy;
        std::vector<Cidr> servers;
        std::vector<config::PortRule> ports;
        FqdnMatcher names;
    };
    struct QueryKey {
        Address client, server;
        uint16_t client_port, server_port, id;
        Transport transport;
        bool operator==(const QueryKey&) const = default;
    };
    struct QueryKeyHash {
        size_t operator()(const QueryKey& k) const noexcept;
    };
    struct Pending {
        Question question;
        std::string endpoint;
        cache::Time time;
    };
    // A TCP connection, by its client's side.
    struct StreamKey {
        Address client, server;
        uint16_t client_port, server_port;
        bool operator==(const StreamKey&) const = default;
    };
    struct StreamKeyHash {
        size_t operator()(const StreamKey& k) const noexcept;
    };
    struct Half {
        uint32_t next_seq = 0;       // the first byte not yet inspected
        std::vector<uint8_t> buffer; // an incomplete message
        bool fin = false;
    };
    struct Owner;
    struct Stream {
        Half client, server;
        bool synced = false;  // the server's SYN-ACK was seen: `acked` is the server's
        bool refused = false; // a query was refused: the client's later data is dropped
        uint32_t acked = 0;   // the server's highest acknowledgement of client bytes
        uint32_t server_acked = 0; // the client's highest acknowledgement of server bytes
        cache::Time server_acked_at{}; // when it last moved (or server bytes began to wait for it)
        bool zero_window = false;      // the client's last acknowledgement closed its window
        uint32_t client_isn = 0;
        uint32_t server_isn = 0;
        // The client acknowledged the server's SYN-ACK: it sees the
        // server's packets (a client that spoofs another's address does not).
        bool established = false;
        std::vector<uint8_t> unacked; // client bytes [acked, client.next_seq), as passed
        cache::Time last{};
        std::optional<cache::Time> closed; // both sides sent FIN
        Owner* owner = nullptr;              // in owners_ (stream_owner)
        std::list<StreamKey>::iterator age;  // in half_open_ or established_
        std::list<StreamKey>::iterator own;  // in its owner's lists of the same
    };
    // An endpoint's streams (an IPv6 client's by its /64), stalest first.
    struct Owner {
        const std::string* name = nullptr; // its key in owners_
        size_t count = 0;
        std::list<StreamKey> half_open, established;
    };

    bool selects(const config::Policy& p, const PacketInfo& pkt, const PacketMeta& meta) const;
    std::string endpoint_of(const PacketInfo& pkt, const PacketMeta& meta) const;
    Direction direction_of(const PacketInfo& pkt, const PacketMeta& meta) const;
    // Queries: true to let the message through.
    bool on_query(const Query& q, const PacketInfo& pkt, const PacketMeta& meta, bool copy = false);
    void on_answer(std::span<const uint8_t> wire, const PacketInfo& pkt, const PacketMeta& meta, Outcome& out);
    void refuse(const Query& q, const PacketInfo& pkt, Outcome& out);
    void handle_tcp(std::span<const uint8_t> packet, const PacketInfo& pkt, const PacketMeta& meta, Outcome& out);
    void tcp_from_client(std::span<const uint8_t> packet, const PacketInfo& pkt, const PacketMeta& meta, Stream& s,
                         Outcome& out);
    void tcp_from_server(const PacketInfo& pkt, const PacketMeta& meta, Stream& s, Outcome& out);
    void reset_client(const PacketInfo& pkt, Outcome& out);
    // Client data whose ACK would open a connection at a shifted point of
    // both streams under SYN cookies, where fqdnd would read another
    // framing than the server.
    static bool cookie_shaped(const Stream& s, const PacketInfo& pkt);
    // A pure ACK in the server's name of what the server acknowledged, as
    // its own duplicate ACK would be.
    static void acknowledge_client(const Stream& s, const PacketInfo& pkt, Outcome& out);
    // The client's acknowledgement of server bytes, from a segment passed.
    void client_acknowledged(Stream& s, const PacketInfo& pkt, cache::Time now);
    // Whether the receiver of an RST on `s` could take it: on an open
    // connection only at the sequence number it expects next (RFC 5961);
    // any in its window once it closed or before the handshake is done;
    // in SYN_SENT one that acknowledges the SYN.
    static bool reset_acceptable(const Stream& s, const PacketInfo& pkt, bool from_server);
    void forget_old(cache::Time now);
    void expire_streams(cache::Time now);
    // Room for a new stream when the table is full. When one endpoint
    // holds more than a sixteenth of the table, its stalest stream not yet
    // established, else its stalest; otherwise the stalest stream whose
    // client has not acknowledged the server's SYN-ACK (what a SYN flood
    // from many addresses leaves), else the stalest of the endpoint that
    // holds the most. So a flood frees its own streams, not another
    // client's connections or handshakes.
    void make_room_for_stream();
    // An endpoint's count of streams, changed by `delta`, in by_count_ too.
    void recount(Owner& o, int delta);
    // A packet of the stream: the newest of its list.
    void touch(Stream& s, cache::Time now);
    // The lists `s` is in: all streams of its kind (half-open or
    // established), and its owner's of that kind.
    std::list<StreamKey>& all_of_kind(const Stream& s) { return s.established ? established_ : half_open_; }
    std::list<StreamKey>& own_of_kind(const Stream& s) { return s.established ? s.owner->established : s.owner->half_open; }
    // Whose a stream is, for that count: its endpoint, an IPv6 client by
    // its /64 (any address of which it may take).
    std::string stream_owner(const PacketInfo& pkt, const PacketMeta& meta) const;
    void forget_stream(std::unordered_map<StreamKey, Stream, StreamKeyHash>::iterator it);

    cache::Cache& cache_;
    uint8_t reject_rcode_ = rcode_refused;
    // Kept alive here: DnsRule points into it.
    std::vector<config::Policy> policies_;
    std::vector<DnsRule> rules_;
    // Several questions may share a key: a client that asks A and AAAA at
    // once from one socket with one id (older musl) gets both answers.
    std::unordered_multimap<QueryKey, Pending, QueryKeyHash> queries_;
    std::deque<std::pair<cache::Time, QueryKey>> query_order_;
    std::unordered_map<StreamKey, Stream, StreamKeyHash> streams_;
    std::unordered_map<std::string, Owner> owners_; // nodes: an Owner stays where it is
    std::set<std::pair<size_t, Owner*>> by_count_;  // the last holds the most
    // The streams by their last packet, stalest first: a SYN flood's
    // eviction takes the front, not a scan of the table.
    std::list<StreamKey> half_open_, established_;
    cache::Time streams_swept_{};
    Stats stats_;
    std::vector<Event> events_;
    bool record_events_ = true;
    std::function<void()> read_copies_;
};

} // namespace fqdnd::dns
