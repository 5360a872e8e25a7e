#include "dns/engine.hpp"

#include "fnv.hpp"
#include "fqdn/name.hpp"

#include <algorithm>

namespace fqdnd::dns {

namespace {

bool interface_matches(const std::string& pattern, const std::string& name)
{
    if (!pattern.empty() && pattern.back() == '*')
        return name.compare(0, pattern.size() - 1, pattern, 0, pattern.size() - 1) == 0;
    return pattern == name;
}

bool port_allows(const std::vector<config::PortRule>& ports, uint16_t port, Transport t)
{
    return std::any_of(ports.begin(), ports.end(), [&](const config::PortRule& p) {
        if (p.port != port)
            return false;
        return p.protocol == config::Protocol::any
            || (p.protocol == config::Protocol::tcp && t == Transport::tcp)
            || (p.protocol == config::Protocol::udp && t == Transport::udp);
    });
}

uint16_t be16(const uint8_t* p) noexcept
{
    return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

// How far sequence number a is after b (negative: before).
int32_t seq_after(uint32_t a, uint32_t b) noexcept
{
    return static_cast<int32_t>(a - b);
}

} // namespace

size_t Engine::QueryKeyHash::operator()(const QueryKey& k) const noexcept
{
    size_t h = (static_cast<size_t>(k.client_port) << 32) ^ (static_cast<size_t>(k.server_port) << 16) ^ k.id
        ^ static_cast<size_t>(k.transport);
    return fnv::hash(k.server, fnv::hash(k.client, h));
}

size_t Engine::StreamKeyHash::operator()(const StreamKey& k) const noexcept
{
    return fnv::hash(k.server, fnv::hash(k.client, (static_cast<uint64_t>(k.client_port) << 16) ^ k.server_port));
}

Engine::Engine(const config::Config& config, cache::Cache& cache) : cache_(cache)
{
    configure(config);
}

void Engine::configure(const config::Config& config)
{
    reject_rcode_ = config.settings.reject_response_code == config::RejectCode::name_error ? rcode_nxdomain
                                                                                          : rcode_refused;
    policies_ = config.policies;
    rules_.clear();
    for (const config::Policy& p : policies_)
        for (const config::EgressRule& r : p.egress)
            if (r.is_dns())
                rules_.push_back(DnsRule{&p, r.to_dns_servers, r.ports, FqdnMatcher(r.dns)});
}

bool Engine::selects(const config::Policy& p, const PacketInfo& pkt, const PacketMeta& meta) const
{
    const config::Selector& s = p.selector;
    // Forwarded clients' queries come through forward, or through input
    // when they ask this host's own resolver (queued only from outside
    // the loopback).
    if (meta.hook == Hook::forward || meta.hook == Hook::input) {
        if (std::any_of(s.sources.begin(), s.sources.end(), [&](const Cidr& c) { return c.contains(pkt.src); }))
            return true;
        return std::any_of(s.interfaces.begin(), s.interfaces.end(),
                           [&](const std::string& i) { return interface_matches(i, meta.indev); });
    }
    if (meta.hook != Hook::output)
        return false;
    if (s.local)
        return true;
    if (meta.uid && std::any_of(s.users.begin(), s.users.end(), [&](const auto& u) { return u.id == *meta.uid; }))
        return true;
    if (meta.gid && std::any_of(s.groups.begin(), s.groups.end(), [&](const auto& g) { return g.id == *meta.gid; }))
        return true;
    // NFQUEUE does not say a packet's cgroup: a unit policy's DNS rules
    // apply to every local query that its rules' servers receive.
    return !s.units.empty();
}

std::string Engine::endpoint_of(const PacketInfo& pkt, const PacketMeta& meta) const
{
    if (meta.hook == Hook::forward || meta.hook == Hook::input)
        return pkt.src.to_string();
    return meta.uid ? "uid:" + std::to_string(*meta.uid) : "local";
}

void Engine::forget_old(cache::Time now)
{
    while (!query_order_.empty()
           && (query_order_.front().first + query_timeout <= now || query_order_.size() > max_pending_queries)) {
        // Only the entry that was queued then (a repeated query moves on).
        auto [first, last] = queries_.equal_range(query_order_.front().second);
        auto it = std::find_if(first, last, [&](const auto& e) { return e.second.time == query_order_.front().first; });
        if (it != last) {
            ++(query_order_.front().first + query_timeout <= now ? stats_.queries_expired : stats_.queries_evicted);
            queries_.erase(it);
        }
        query_order_.pop_front();
    }
}

Outcome Engine::handle(std::span<const uint8_t> packet, const PacketMeta& meta)
{
    Outcome out;
    forget_old(meta.now);
    const auto pkt = decode(packet);
    if (!pkt) {
        // Not something fqdnd can read (a fragment, another protocol, too
        // many extension headers) on a DNS flow: it cannot be judged.
        ++stats_.packets_undecodable;
        out.accept = false;
        return out;
    }
    PacketMeta judged = meta;
    judged.direction = direction_of(*pkt, meta);
    if (judged.direction == Direction::unknown)
        ++stats_.packets_no_direction;
    if (pkt->transport == Transport::tcp) {
        handle_tcp(packet, *pkt, judged, out);
        return out;
    }
    // The flow's direction says query or answer, never the QR bit the
    // client wrote: from the client's side everything is a query.
    if (judged.direction == Direction::reply) {
        on_answer(pkt->payload, *pkt, meta, out);
        return out;
    }
    Malformed why;
    const auto q = parse_query(pkt->payload, &why);
    if (!q) {
        ++stats_.queries_malformed;
        ++stats_.malformed[static_cast<size_t>(why)];
        out.accept = false;
        return out;
    }
    out.accept = on_query(*q, *pkt, meta);
    if (!out.accept)
        refuse(*q, *pkt, out);
    return out;
}

void Engine::copied(std::span<const uint8_t> packet, const PacketMeta& meta)
{
    ++stats_.queries_copied;
    forget_old(meta.now);
    const auto pkt = decode(packet);
    Malformed why;
    const auto q = pkt && pkt->transport == Transport::udp ? parse_query(pkt->payload, &why) : std::nullopt;
    if (!q) {
        // It reached the server, which answers it as it would without
        // fqdnd; its answer matches nothing here and is dropped.
        ++stats_.queries_copied_unread;
        return;
    }
    if (!on_query(*q, *pkt, meta, true))
        ++stats_.queries_copied_unallowed;
}

Direction Engine::direction_of(const PacketInfo& pkt, const PacketMeta& meta) const
{
    if (meta.direction != Direction::unknown)
        return meta.direction;
    // The daemon always says (by the queue, that is conntrack's direction);
    // without its word (tests, fuzzing): fqdnd queues only flows that began
    // toward a listed server's DNS port, so that side is the server's. A
    // packet that fits both ways, or neither, stays unknown.
    auto server_side = [&](const Address& a, uint16_t port) {
        return std::any_of(rules_.begin(), rules_.end(), [&](const DnsRule& r) {
            return port_allows(r.ports, port, pkt.transport)
                && std::any_of(r.servers.begin(), r.servers.end(), [&](const Cidr& c) { return c.contains(a); });
        });
    };
    const bool to_server = server_side(pkt.dst, pkt.dport), from_server = server_side(pkt.src, pkt.sport);
    if (to_server != from_server)
        return to_server ? Direction::original : Direction::reply;
    return Direction::unknown;
}

bool Engine::on_query(const Query& q, const PacketInfo& pkt, const PacketMeta& meta, bool copy)
{
    const std::string endpoint = endpoint_of(pkt, meta);
    bool allowed = false;
    if (const auto name = normalize_name(q.question.name)) {
        for (const DnsRule& r : rules_) {
            if (!selects(*r.policy, pkt, meta) || !port_allows(r.ports, pkt.dport, pkt.transport))
                continue;
            if (std::none_of(r.servers.begin(), r.servers.end(), [&](const Cidr& c) { return c.contains(pkt.dst); }))
                continue;
            if (!r.names.match(*name).empty()) {
                allowed = true;
                break;
            }
        }
    }
    if (!allowed && copy)
        return false; // it passed; only its answer will not count
    if (record_events_)
        events_.push_back(Event{allowed ? Event::Kind::query_allowed : Event::Kind::query_refused, endpoint,
                                q.question, {}, {}, 0, pkt.dst, 0, false});
    if (!allowed) {
        ++stats_.queries_refused;
        return false;
    }
    ++stats_.queries_allowed;
    const QueryKey key{pkt.src, pkt.dst, pkt.sport, pkt.dport, q.id, pkt.transport};
    // The same question again (a retransmission) moves on; another one
    // is remembered beside it, up to max_questions_per_key (so that every
    // look at a key stays short), the oldest going first.
    auto [first, last] = queries_.equal_range(key);
    auto same = std::find_if(first, last, [&](const auto& e) { return e.second.question == q.question; });
    if (same != last) {
        same->second = Pending{q.question, endpoint, meta.now};
    } else {
        if (static_cast<size_t>(std::distance(first, last)) >= max_questions_per_key) {
            ++stats_.queries_evicted;
            queries_.erase(std::min_element(first, last, [](const auto& a, const auto& b) {
                return a.second.time < b.second.time;
            }));
        }
        queries_.emplace(key, Pending{q.question, endpoint, meta.now});
    }
    query_order_.emplace_back(meta.now, key);
    return true;
}

void Engine::refuse(const Query& q, const PacketInfo& pkt, Outcome& out)
{
    const std::vector<uint8_t> reply = build_reject(q, reject_rcode_);
    if (reply.empty())
        return;
    if (pkt.transport == Transport::udp) {
        out.replies.push_back(build_udp(pkt.dst, pkt.dport, pkt.src, pkt.sport, reply));
        return;
    }
    // TCP: the answer goes in the server's name at the server's next
    // sequence number when fqdnd saw it; otherwise the client is reset.
    auto it = streams_.find(StreamKey{pkt.src, pkt.dst, pkt.sport, pkt.dport});
    if (it == streams_.end() || !it->second.synced) {
        reset_client(pkt, out);
        return;
    }
    const uint32_t ack = pkt.seq + static_cast<uint32_t>(pkt.payload.size());
    std::vector<uint8_t> framed{static_cast<uint8_t>(reply.size() >> 8), static_cast<uint8_t>(reply.size())};
    framed.insert(framed.end(), reply.begin(), reply.end());
    Stream& stream = it->second;
    Half& server = stream.server;
    out.replies.push_back(build_tcp(pkt.dst, pkt.dport, pkt.src, pkt.sport, server.next_seq, ack, tcp_psh | tcp_ack,
                                    framed));
    if (server.next_seq == stream.server_acked)
        stream.server_acked_at = stream.last; // waiting for the client from now on (touched by this packet)
    server.next_seq += static_cast<uint32_t>(framed.size());
}

bool Engine::cookie_shaped(const Stream& s, const PacketInfo& pkt)
{
    // A SYN cookie checks only ack - seq against the server's ISN less
    // the client's: an ACK that acknowledges as many of the server's bytes
    // as it is past the client's own first byte is a valid cookie ACK at
    // that point. Harmless where both streams are at a message boundary
    // of fqdnd's reading: the client's start or its next byte with no
    // message begun, and all the server sent with none begun.
    if (pkt.ack - (s.server_isn + 1) != pkt.seq - (s.client_isn + 1))
        return false;
    const bool client_boundary
        = pkt.seq == s.client_isn + 1 || (pkt.seq == s.client.next_seq && s.client.buffer.empty());
    const bool server_boundary = pkt.ack == s.server.next_seq && s.server.buffer.empty();
    return !(client_boundary && server_boundary);
}

bool Engine::reset_acceptable(const Stream& s, const PacketInfo& pkt, bool from_server)
{
    // The receiver expects a number between what it acknowledged and the
    // end of what fqdnd passed to it (a FIN counts one).
    auto between = [&](uint32_t low, const Half& sender) {
        return seq_after(pkt.seq, low) >= 0 && seq_after(pkt.seq, sender.next_seq + (sender.fin ? 1 : 0)) <= 0;
    };
    // But Linux takes any RST within its window on a connection it has
    // closed (an orphaned socket in FIN_WAIT2), or whose handshake the
    // client has not completed (SYN_RECV): fqdnd cannot tell that window,
    // and takes any there. A DNS server that closed answers nothing more.
    if (!from_server)
        return s.server.fin || !s.established || between(s.acked, s.client);
    if (s.client.fin)
        return true;
    // A client still in SYN_SENT (its SYN-ACK lost after fqdnd, or none
    // yet) takes an RST that acknowledges its SYN, whatever its number.
    if (!s.established && (pkt.tcp_flags & tcp_ack) && seq_after(pkt.ack, s.client_isn) > 0
        && seq_after(pkt.ack, s.client.next_seq) <= 0)
        return true;
    return s.synced && between(s.server_acked, s.server);
}

void Engine::acknowledge_client(const Stream& s, const PacketInfo& pkt, Outcome& out)
{
    // At the client's own acknowledgement (its next expected byte) when
    // it is one of the server's; else past all the server sent.
    const uint32_t end = s.server.next_seq + (s.server.fin ? 1 : 0);
    const bool sane = (pkt.tcp_flags & tcp_ack) && seq_after(pkt.ack, s.server_acked) >= 0 && seq_after(pkt.ack, end) <= 0;
    out.replies.push_back(build_tcp(pkt.dst, pkt.dport, pkt.src, pkt.sport, sane ? pkt.ack : end, s.acked, tcp_ack, {}));
}

void Engine::reset_client(const PacketInfo& pkt, Outcome& out)
{
    // Linux takes a RST only at exactly the sequence number it expects
    // (RFC 5961): the client's acknowledgement; in SYN-SENT, one whose
    // ACK covers its SYN.
    const uint32_t len = static_cast<uint32_t>(pkt.payload.size());
    if (pkt.tcp_flags & tcp_syn)
        out.replies.push_back(build_tcp(pkt.dst, pkt.dport, pkt.src, pkt.sport, 0, pkt.seq + 1 + len,
                                        tcp_rst | tcp_ack, {}));
    else if (pkt.tcp_flags & tcp_ack)
        out.replies.push_back(build_tcp(pkt.dst, pkt.dport, pkt.src, pkt.sport, pkt.ack, pkt.seq + len,
                                        tcp_rst | tcp_ack, {}));
}

void Engine::on_answer(std::span<const uint8_t> wire, const PacketInfo& pkt, const PacketMeta& meta, Outcome& out)
{
    if (wire.size() < 2) {
        ++stats_.answers_malformed;
        ++stats_.malformed[static_cast<size_t>(Malformed::unparsable)];
        return;
    }
    const QueryKey key{pkt.dst, pkt.src, pkt.dport, pkt.sport, be16(wire.data()), pkt.transport};
    auto it = queries_.find(key);
    if (it == queries_.end() && read_copies_ && pkt.transport == Transport::udp) {
        read_copies_();
        it = queries_.find(key);
    }
    // An answer to no query fqdnd saw (another id, a query long gone or
    // never copied, a forgery) teaches nothing and is dropped: given to
    // the client it would point at addresses that are not open, for as
    // long as the client caches it; dropped, the client asks again. Over
    // TCP the segment passes (dropping it would stall the stream).
    const auto unmatched = [&] {
        ++stats_.answers_unmatched;
        if (pkt.transport == Transport::udp)
            out.accept = false;
    };
    if (it == queries_.end())
        return unmatched();
    Malformed why;
    auto a = parse_answer(wire, &why);
    if (!a) {
        ++stats_.answers_malformed;
        ++stats_.malformed[static_cast<size_t>(why)];
        return;
    }
    auto matching = [&] {
        auto [first, last] = queries_.equal_range(key);
        auto found = std::find_if(first, last, [&](const auto& e) { return e.second.question == a->question; });
        return found == last ? queries_.end() : found;
    };
    it = matching();
    if (it == queries_.end() && read_copies_ && pkt.transport == Transport::udp) {
        read_copies_(); // its own question's copy may be the one still waiting
        it = matching();
    }
    if (it == queries_.end()) {
        ++stats_.answers_wrong_question;
        return unmatched();
    }
    // The first answer consumes the query: a second one changes nothing.
    const std::string endpoint = it->second.endpoint;
    queries_.erase(it);
    ++stats_.answers_inspected;
    const bool learns = a->rcode == rcode_noerror && !a->addresses.empty();
    if (record_events_)
        events_.push_back(Event{Event::Kind::answer, endpoint, a->question, a->names, a->addresses, a->ttl, pkt.src,
                                a->rcode, learns});
    if (!learns)
        return;
    ++stats_.answers_learned;
    cache_.learn(endpoint, a->names, a->addresses, a->ttl, meta.now, out.ops);
    // The answer is done with: its names and addresses move to the journal.
    out.learned.push_back(Outcome::Learned{endpoint, std::move(a->names), std::move(a->addresses), a->ttl});
}

void Engine::expire_streams(cache::Time now)
{
    if (now >= streams_swept_ && now - streams_swept_ < std::chrono::seconds(1))
        return;
    streams_swept_ = now;
    for (auto it = streams_.begin(); it != streams_.end();) {
        const Stream& s = it->second;
        if (s.last + tcp_idle_timeout <= now || (s.closed && *s.closed + tcp_fin_linger <= now)) {
            ++stats_.tcp_streams_expired;
            forget_stream(it++);
        } else if (s.synced && (seq_after(s.server.next_seq, s.server_acked) > 0 || s.zero_window)
                   && s.server_acked_at + tcp_unacknowledged_timeout <= now) {
            // The server's bytes unacknowledged for so long: the client
            // withholds them, until the server gives its connection up
            // without a word (its retransmissions time out) and a SYN
            // cookie could open another at these ports. Its later data is
            // unknown, dropped and reset.
            ++stats_.tcp_streams_stalled;
            forget_stream(it++);
        } else
            ++it;
    }
}

std::string Engine::stream_owner(const PacketInfo& pkt, const PacketMeta& meta) const
{
    // A client may take any address of its IPv6 prefix (/64) for its own.
    if (pkt.src.family == Family::ipv6 && (meta.hook == Hook::forward || meta.hook == Hook::input)) {
        Address prefix = pkt.src;
        std::fill(prefix.bytes.begin() + 8, prefix.bytes.end(), uint8_t{0});
        return Cidr{prefix, 64}.to_string();
    }
    return endpoint_of(pkt, meta);
}

void Engine::forget_stream(std::unordered_map<StreamKey, Stream, StreamKeyHash>::iterator it)
{
    Stream& s = it->second;
    all_of_kind(s).erase(s.age);
    own_of_kind(s).erase(s.own);
    recount(*s.owner, -1);
    if (s.owner->count == 0)
        owners_.erase(*s.owner->name);
    streams_.erase(it);
}

void Engine::client_acknowledged(Stream& s, const PacketInfo& pkt, cache::Time now)
{
    // The stall clock runs from the last progress, or from when a zero
    // window began (the server's bytes then wait unsent, and its probes
    // time out without a word as its retransmissions do).
    if (pkt.ack != s.server_acked || (pkt.window == 0 && !s.zero_window))
        s.server_acked_at = now;
    s.zero_window = pkt.window == 0;
    s.server_acked = pkt.ack;
    if (!s.established) {
        established_.splice(established_.end(), half_open_, s.age);
        s.owner->established.splice(s.owner->established.end(), s.owner->half_open, s.own);
        s.established = true;
    }
}

void Engine::recount(Owner& o, int delta)
{
    by_count_.erase({o.count, &o});
    o.count = delta > 0 ? o.count + 1 : o.count - 1;
    if (o.count > 0)
        by_count_.insert({o.count, &o});
}

void Engine::make_room_for_stream()
{
    if (by_count_.empty())
        return;
    // Each choice is the front of a list: a flood costs a constant per SYN.
    const Owner& top = *by_count_.rbegin()->second;
    const StreamKey* victim = nullptr;
    if (top.count > max_tcp_streams / 16)
        // One endpoint holds a good share (one source's flood, handshakes
        // completed or not): its own go, those not established first.
        victim = !top.half_open.empty() ? &top.half_open.front() : &top.established.front();
    else if (!half_open_.empty())
        // Many sources, each with a few: what a SYN flood leaves goes first
        // (a client's own handshake completes within its round trip).
        victim = &half_open_.front();
    else
        victim = &top.established.front();
    forget_stream(streams_.find(*victim));
    ++stats_.tcp_streams_evicted;
}

void Engine::touch(Stream& s, cache::Time now)
{
    s.last = now;
    all_of_kind(s).splice(all_of_kind(s).end(), all_of_kind(s), s.age);
    own_of_kind(s).splice(own_of_kind(s).end(), own_of_kind(s), s.own);
}

void Engine::handle_tcp(std::span<const uint8_t> packet, const PacketInfo& pkt, const PacketMeta& meta, Outcome& out)
{
    expire_streams(meta.now);
    const bool from_server = meta.direction == Direction::reply;
    const StreamKey key = from_server ? StreamKey{pkt.dst, pkt.src, pkt.dport, pkt.sport}
                                      : StreamKey{pkt.src, pkt.dst, pkt.sport, pkt.dport};
    auto it = streams_.find(key);
    if (pkt.tcp_flags & tcp_rst) {
        out.accept = pkt.payload.empty();
        if (it == streams_.end())
            return;
        // Only an RST its receiver could take ends the stream for fqdnd (the
        // client's later data on it is then unknown, and dropped). Conntrack
        // passes any in the window: a neighbour forging them blind in a
        // client's name would otherwise cut the client's next query, though
        // the server ignored them all. Passed either way, the receiver judges.
        if (reset_acceptable(it->second, pkt, from_server))
            forget_stream(it);
        else
            ++stats_.tcp_resets_ignored;
        return;
    }
    if (pkt.tcp_flags & tcp_urg) {
        // DNS has no use for urgent data, and the receiving stack takes the
        // urgent byte out of the stream (without SO_OOBINLINE): the server
        // would read other bytes than fqdnd did.
        ++stats_.tcp_urgent;
        out.accept = false;
        return;
    }
    if (!from_server && (pkt.tcp_flags & (tcp_syn | tcp_ack)) == tcp_syn) {
        if (it != streams_.end() && !it->second.closed) {
            // The same SYN again: nothing changes (data with it is judged
            // as any resent data). Another sequence number: the server
            // ignores it on a connection it has, and so does fqdnd. Once
            // the client acknowledged the SYN-ACK it resends no SYN: the
            // same one then is a new connection at a server that has let
            // the old one go, whose bytes fqdnd would take for the old.
            if (pkt.seq != it->second.client_isn || it->second.established) {
                ++stats_.tcp_second_syn;
                out.accept = false;
                return;
            }
            touch(it->second, meta.now);
            if (!pkt.payload.empty())
                tcp_from_client(packet, pkt, meta, it->second, out);
            return;
        }
        // A connection from its first byte (or the port used again once
        // both sides closed): until the server's SYN-ACK agrees, no data passes.
        if (it != streams_.end()) // the port again after both sides closed
            forget_stream(it);
        if (streams_.size() >= max_tcp_streams)
            make_room_for_stream();
        Stream& s = streams_.emplace(key, Stream{}).first->second;
        auto [owner, fresh] = owners_.try_emplace(stream_owner(pkt, meta));
        if (fresh)
            owner->second.name = &owner->first;
        s.owner = &owner->second;
        recount(*s.owner, +1);
        s.age = half_open_.insert(half_open_.end(), key);
        s.own = s.owner->half_open.insert(s.owner->half_open.end(), key);
        s.client_isn = pkt.seq;
        s.client.next_seq = pkt.seq + 1;
        s.acked = pkt.seq + 1;
        s.last = meta.now;
        if (!pkt.payload.empty()) // TCP Fast Open: inspected like any data
            tcp_from_client(packet, pkt, meta, s, out);
        return;
    }
    if (it == streams_.end()) {
        // fqdnd never saw it begin (evicted, expired, reset, restarted):
        // it cannot tell what the server has read.
        if (!pkt.payload.empty()) {
            ++stats_.tcp_unknown_stream;
            out.accept = false;
            if (!from_server)
                reset_client(pkt, out);
        }
        return;
    }
    Stream& s = it->second;
    if (from_server && (pkt.tcp_flags & tcp_syn) && s.synced && pkt.seq != s.server_isn) {
        // Another connection at the server on the same ports (it let the
        // one fqdnd follows go): out of step, so dropped and forgotten.
        // The client's SYN again begins a stream followed anew.
        ++stats_.tcp_second_syn;
        out.accept = false;
        forget_stream(it);
        return;
    }
    touch(s, meta.now);
    if (from_server) {
        tcp_from_server(pkt, meta, s, out);
    } else {
        tcp_from_client(packet, pkt, meta, s, out);
        // The client's acknowledgement of the server's bytes counts from a
        // segment the server reads: passed, and at a sequence number it
        // takes (an old one it discards unread, ACK and all).
        if (out.accept && s.synced && (pkt.tcp_flags & tcp_ack) && !(pkt.tcp_flags & tcp_syn)
            && seq_after(pkt.seq, s.acked) >= 0 && seq_after(pkt.seq, s.client.next_seq + (s.client.fin ? 1 : 0)) <= 0
            && seq_after(pkt.ack, s.server_acked) >= 0
            && seq_after(pkt.ack, s.server.next_seq + (s.server.fin ? 1 : 0)) <= 0)
            client_acknowledged(s, pkt, meta.now);
    }
    if (s.client.fin && s.server.fin && !s.closed)
        s.closed = meta.now;
}

void Engine::tcp_from_client(std::span<const uint8_t> packet, const PacketInfo& pkt, const PacketMeta& meta,
                             Stream& s, Outcome& out)
{
    const bool syn = pkt.tcp_flags & tcp_syn;
    const uint32_t seq = pkt.seq + (syn ? 1 : 0);
    const uint32_t len = static_cast<uint32_t>(pkt.payload.size());
    auto drop = [&](uint64_t& counter) {
        ++counter;
        out.accept = false;
    };
    if (len == 0) {
        if (pkt.tcp_flags & tcp_fin) {
            // A FIN past what fqdnd passed the server would keep out of
            // order, and then take an RST at its end (the SACK's edge).
            if (seq_after(seq, s.client.next_seq) > 0)
                return drop(stats_.tcp_gap);
            if (seq == s.client.next_seq)
                s.client.fin = true;
        }
        return;
    }
    if (s.refused) {
        out.accept = false;
        return;
    }
    // Bytes the server acknowledged it discards as long as it has the
    // connection. But a server that lost it may take them anew (a SYN
    // cookie opens a connection from an ACK alone, at sequence numbers of
    // the client's choosing): unread, they must not reach it. A client
    // sends them again when the acknowledgement was lost after fqdnd:
    // fqdnd acknowledges them in the server's name, as the server would,
    // and the client goes on from there (a SYN's data is judged again).
    if (!syn && seq_after(seq, s.acked) < 0) {
        drop(stats_.tcp_resent_acknowledged);
        acknowledge_client(s, pkt, out);
        return;
    }
    if (s.server.fin) {
        // The server closed: it reads nothing new (Linux resets the
        // client). Nor may anything else at its address take these bytes
        // for a connection of its own (its socket may be gone, and a SYN
        // cookie opens one from an ACK).
        drop(stats_.tcp_after_server_close);
        reset_client(pkt, out);
        return;
    }
    if (!s.synced && !syn)
        return drop(stats_.tcp_unknown_stream); // before the server's SYN-ACK
    // Data acknowledges what the server sent, no more (and no less than
    // the client did before). An ACK beyond it is no ACK of this
    // connection: under SYN cookies one with both numbers shifted opens
    // another at the server, reading from the shift, at another message
    // boundary. Conntrack refuses those too, unless told to be liberal.
    if (!syn
        && (!(pkt.tcp_flags & tcp_ack) || seq_after(pkt.ack, s.server_acked) < 0
            || seq_after(pkt.ack, s.server.next_seq + (s.server.fin ? 1 : 0)) > 0))
        return drop(stats_.tcp_bad_ack);
    if (seq_after(seq, s.client.next_seq) > 0)
        return drop(stats_.tcp_gap);
    if (!syn && cookie_shaped(s, pkt)) {
        // Were the server's connection gone (its retransmissions timed
        // out, sooner than fqdnd notices if it is tuned so), this ACK
        // would open another there, read from a point where fqdnd's view
        // of either side has no message boundary. Closed: the client may
        // connect again.
        drop(stats_.tcp_cookie_shaped);
        s.refused = true;
        reset_client(pkt, out);
        return;
    }
    // Bytes from the server's acknowledgement to next_seq it may not have
    // yet: they must be the bytes inspected.
    const uint32_t end = seq + len;
    const uint32_t from = seq_after(seq, s.acked) > 0 ? seq : s.acked;
    const uint32_t to = seq_after(end, s.client.next_seq) < 0 ? end : s.client.next_seq;
    if (seq_after(to, from) > 0) {
        const auto resent = pkt.payload.subspan(from - seq, to - from);
        const auto kept = s.unacked.begin() + (from - s.acked);
        if (!std::equal(resent.begin(), resent.end(), kept))
            return drop(stats_.tcp_retransmit_changed);
    }
    if (seq_after(end, s.client.next_seq) <= 0) {
        if (pkt.tcp_flags & tcp_fin)
            s.client.fin = true;
        return; // nothing new
    }
    const size_t skip = s.client.next_seq - seq;
    const auto fresh = pkt.payload.subspan(skip);
    if (s.unacked.size() + fresh.size() > max_tcp_unacked)
        return drop(stats_.tcp_unacked_full); // resent once the server acknowledges

    std::vector<uint8_t>& buffer = s.client.buffer;
    const size_t before = buffer.size(); // bytes of earlier segments
    buffer.insert(buffer.end(), fresh.begin(), fresh.end());
    s.unacked.insert(s.unacked.end(), fresh.begin(), fresh.end());
    s.client.next_seq = end;
    if (pkt.tcp_flags & tcp_fin)
        s.client.fin = true;

    // Each complete message (two-byte length, then the message) is judged.
    // Refused ones wholly in this segment can be blanked when it also
    // carries allowed ones; one begun in an earlier segment cannot.
    bool allowed = false, partly_passed = false;
    std::vector<std::pair<size_t, size_t>> blank; // payload offset and length of refused messages
    std::vector<Query> refused;
    size_t used = 0;
    while (buffer.size() - used >= 2) {
        const size_t mlen = be16(&buffer[used]);
        if (buffer.size() - used - 2 < mlen)
            break;
        const std::span<const uint8_t> msg(&buffer[used + 2], mlen);
        const bool whole = used >= before;
        const size_t at = whole ? skip + (used - before) + 2 : 0;
        used += 2 + mlen;
        Malformed why;
        const auto q = parse_query(msg, &why); // a message with QR set is malformed here
        if (!q) {
            ++stats_.queries_malformed;
            ++stats_.malformed[static_cast<size_t>(why)];
        } else if (on_query(*q, pkt, meta)) {
            allowed = true;
            continue;
        } else {
            refused.push_back(*q);
        }
        if (whole)
            blank.emplace_back(at, mlen);
        else
            partly_passed = true;
    }
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(used));
    if (buffer.size() >= 2 && be16(buffer.data()) > max_tcp_query) {
        // Queries are small; waiting for a long one would let every stream
        // pin 64 KiB. Refused unread, the connection closed to the client.
        ++stats_.tcp_oversized;
        out.accept = false;
        s.refused = true;
        reset_client(pkt, out);
        return;
    }
    if (blank.empty() && !partly_passed)
        return;
    // A replacement travels in a netlink attribute (16-bit length): a
    // larger segment (GSO) is dropped and answered like a refused one.
    if (allowed && !partly_passed && packet.size() <= max_replacement) {
        // The allowed queries pass; each refused one is overwritten in
        // place (same length: TCP stays in step) by a message with its id
        // and no question, which the server answers with an error.
        std::vector<uint8_t> payload(pkt.payload.begin(), pkt.payload.end());
        // The kept copy holds what the server gets, blanks included: a
        // retransmission with the refused query in it differs, and is dropped.
        // Payload offset p is s.unacked[p - skip + unacked_at]; p >= skip + 2.
        const auto unacked_at = static_cast<std::ptrdiff_t>(s.unacked.size() - fresh.size());
        const auto shift = unacked_at - static_cast<std::ptrdiff_t>(skip);
        for (const auto& [at, n] : blank) {
            const auto first = static_cast<std::ptrdiff_t>(at + std::min<size_t>(n, 2)),
                       last = static_cast<std::ptrdiff_t>(at + n);
            std::fill(payload.begin() + first, payload.begin() + last, uint8_t{0});
            std::fill(s.unacked.begin() + (shift + first), s.unacked.begin() + (shift + last), uint8_t{0});
        }
        out.replacement = replace_tcp_payload(packet, pkt, payload);
        stats_.tcp_queries_blanked += blank.size();
        return;
    }
    // Only refused queries, or one the server has already seen the start
    // of: dropped, answered in the server's name, the stream closed to the
    // client's later data.
    out.accept = false;
    s.refused = true;
    for (const Query& q : refused)
        refuse(q, pkt, out);
}

void Engine::tcp_from_server(const PacketInfo& pkt, const PacketMeta& meta, Stream& s, Outcome& out)
{
    const uint32_t len = static_cast<uint32_t>(pkt.payload.size());
    if (pkt.tcp_flags & tcp_syn) {
        // The SYN-ACK: it must acknowledge the client's SYN, and at most
        // what the client sent with it. Only then is `acked` the server's.
        if ((pkt.tcp_flags & tcp_ack) && !s.synced && seq_after(pkt.ack, s.acked) >= 0
            && seq_after(pkt.ack, s.client.next_seq) <= 0) {
            s.synced = true;
            s.server_isn = pkt.seq;
            s.server.next_seq = pkt.seq + 1;
            s.server_acked = pkt.seq + 1;
            s.server_acked_at = meta.now;
        } else if (len != 0) {
            out.accept = false;
            return;
        }
    }
    if (!s.synced) {
        if (len != 0) {
            ++stats_.tcp_unknown_stream;
            out.accept = false;
        }
        return;
    }
    if (pkt.tcp_flags & tcp_ack) {
        // Never past what fqdnd passed (the FIN's one aside).
        uint32_t ack = pkt.ack;
        if (seq_after(ack, s.client.next_seq) > 0)
            ack = s.client.fin && seq_after(ack, s.client.next_seq) == 1 ? s.client.next_seq : s.acked;
        if (seq_after(ack, s.acked) > 0) {
            s.unacked.erase(s.unacked.begin(), s.unacked.begin() + (ack - s.acked));
            s.acked = ack;
        }
    }
    if (len == 0 || (pkt.tcp_flags & tcp_syn)) {
        if ((pkt.tcp_flags & tcp_fin) && pkt.seq == s.server.next_seq)
            s.server.fin = true;
        return;
    }
    if (s.refused) {
        // fqdnd's REFUSED took sequence numbers in the server's name: the
        // server's own bytes no longer line up with what fqdnd would parse.
        // The connection is closed to the client's data; learn nothing more.
        ++stats_.tcp_after_refusal;
        out.accept = false;
        return;
    }
    if (seq_after(pkt.seq, s.server.next_seq) > 0) {
        ++stats_.tcp_gap;
        out.accept = false;
        return;
    }
    if (pkt.tcp_flags & tcp_fin)
        s.server.fin = true;
    const uint32_t end = pkt.seq + len;
    if (seq_after(end, s.server.next_seq) <= 0)
        return; // the server sends again what the client may have missed
    const auto fresh = pkt.payload.subspan(s.server.next_seq - pkt.seq);
    if (s.server.next_seq == s.server_acked)
        s.server_acked_at = meta.now; // waiting for the client from now on
    std::vector<uint8_t>& buffer = s.server.buffer;
    buffer.insert(buffer.end(), fresh.begin(), fresh.end());
    s.server.next_seq = end;
    size_t used = 0;
    while (buffer.size() - used >= 2) {
        const size_t mlen = be16(&buffer[used]);
        if (buffer.size() - used - 2 < mlen)
            break;
        on_answer(std::span<const uint8_t>(&buffer[used + 2], mlen), pkt, meta, out);
        used += 2 + mlen;
    }
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(used));
    if (buffer.size() > max_tcp_message) {
        ++stats_.tcp_oversized;
        out.accept = false;
    }
}

std::string_view to_string(Event::Kind k) noexcept
{
    switch (k) {
    case Event::Kind::query_allowed: return "query-allowed";
    case Event::Kind::query_refused: return "query-refused";
    case Event::Kind::answer: break;
    }
    return "answer";
}

std::string describe(const Event& e)
{
    std::string line = e.endpoint + " " + std::string(to_string(e.kind)) + ": " + e.question.name + " type "
        + std::to_string(e.question.type) + " server " + e.server.to_string();
    if (e.kind != Event::Kind::answer)
        return line;
    for (size_t i = 1; i < e.names.size(); ++i)
        line += " -> " + e.names[i];
    line += " =";
    for (const auto& a : e.addresses)
        line += " " + a.to_string();
    return line + " ttl " + std::to_string(e.ttl) + " rcode " + std::to_string(e.rcode);
}

} // namespace fqdnd::dns
