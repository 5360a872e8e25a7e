#include "dns/engine.hpp"

#include "fqdn/name.hpp"

#include <algorithm>

namespace fqdnd::dns {

namespace {

size_t hash_address(size_t h, const Address& a) noexcept
{
    for (size_t i = 0; i < a.size(); ++i)
        h = (h ^ a.bytes[i]) * 1099511628211ULL;
    return h;
}

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

} // namespace

size_t Engine::QueryKeyHash::operator()(const QueryKey& k) const noexcept
{
    size_t h = (static_cast<size_t>(k.client_port) << 32) ^ (static_cast<size_t>(k.server_port) << 16) ^ k.id
        ^ static_cast<size_t>(k.transport);
    return hash_address(hash_address(h, k.client), k.server);
}

size_t Engine::StreamKeyHash::operator()(const StreamKey& k) const noexcept
{
    return hash_address(hash_address((static_cast<size_t>(k.sport) << 16) ^ k.dport, k.src), k.dst);
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
    if (meta.hook == Hook::forward) {
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
    if (meta.hook == Hook::forward)
        return pkt.src.to_string();
    return meta.uid ? "uid:" + std::to_string(*meta.uid) : "local";
}

void Engine::forget_old(cache::Time now)
{
    while (!query_order_.empty()
           && (query_order_.front().first + query_timeout <= now || query_order_.size() > max_pending_queries)) {
        auto it = queries_.find(query_order_.front().second);
        // Only if this is still the entry that was queued then (a repeated
        // query moves on).
        if (it != queries_.end() && it->second.time == query_order_.front().first)
            queries_.erase(it);
        query_order_.pop_front();
    }
}

Outcome Engine::handle(std::span<const uint8_t> packet, const PacketMeta& meta)
{
    Outcome out;
    forget_old(meta.now);
    const auto pkt = decode(packet);
    if (!pkt) {
        // Not something fqdnd can read (a fragment, another protocol): the
        // kernel only queues DNS flows, so this is odd; let it go unlearned.
        ++stats_.packets_undecodable;
        return out;
    }
    if (pkt->transport == Transport::tcp) {
        handle_tcp(*pkt, meta, out);
        return out;
    }
    if (pkt->payload.size() < 3) {
        ++stats_.queries_malformed;
        ++stats_.malformed[static_cast<size_t>(Malformed::unparsable)];
        out.accept = false;
        return out;
    }
    const bool is_answer = pkt->payload[2] & 0x80;
    if (is_answer) {
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
    out.accept = on_query(*q, *pkt, meta, out);
    return out;
}

bool Engine::on_query(const Query& q, const PacketInfo& pkt, const PacketMeta& meta, Outcome& out)
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
    if (record_events_)
        events_.push_back(Event{allowed ? Event::Kind::query_allowed : Event::Kind::query_refused, endpoint,
                                q.question, {}, {}, 0, pkt.dst, 0, false});
    if (!allowed) {
        ++stats_.queries_refused;
        refuse(q, pkt, out);
        return false;
    }
    ++stats_.queries_allowed;
    const QueryKey key{pkt.src, pkt.dst, pkt.sport, pkt.dport, q.id, pkt.transport};
    queries_[key] = Pending{q.question, endpoint, meta.now};
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
    const uint32_t ack = pkt.seq + static_cast<uint32_t>(pkt.payload.size());
    auto reverse = streams_.find(StreamKey{pkt.dst, pkt.src, pkt.dport, pkt.sport});
    if (reverse != streams_.end() && reverse->second.synced) {
        std::vector<uint8_t> framed{static_cast<uint8_t>(reply.size() >> 8), static_cast<uint8_t>(reply.size())};
        framed.insert(framed.end(), reply.begin(), reply.end());
        out.replies.push_back(build_tcp(pkt.dst, pkt.dport, pkt.src, pkt.sport, reverse->second.next_seq, ack,
                                        tcp_psh | tcp_ack, framed));
        reverse->second.next_seq += static_cast<uint32_t>(framed.size());
    } else {
        out.replies.push_back(build_tcp(pkt.dst, pkt.dport, pkt.src, pkt.sport, 0, ack, tcp_rst | tcp_ack, {}));
    }
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
    if (it == queries_.end()) {
        ++stats_.answers_unmatched;
        return;
    }
    Malformed why;
    const auto a = parse_answer(wire, &why);
    if (!a) {
        ++stats_.answers_malformed;
        ++stats_.malformed[static_cast<size_t>(why)];
        return;
    }
    if (!(a->question == it->second.question)) {
        ++stats_.answers_unmatched;
        ++stats_.answers_wrong_question;
        return;
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
}

void Engine::handle_tcp(const PacketInfo& pkt, const PacketMeta& meta, Outcome& out)
{
    const StreamKey key{pkt.src, pkt.dst, pkt.sport, pkt.dport};
    if (pkt.tcp_flags & (tcp_rst)) {
        streams_.erase(key);
        streams_.erase(StreamKey{pkt.dst, pkt.src, pkt.dport, pkt.sport});
        return;
    }
    auto it = streams_.find(key);
    if (it == streams_.end()) {
        if (streams_.size() >= max_tcp_streams) {
            // Drop the stalest stream to bound memory.
            auto oldest = std::min_element(streams_.begin(), streams_.end(),
                                           [](const auto& a, const auto& b) { return a.second.last < b.second.last; });
            streams_.erase(oldest);
        }
        it = streams_.emplace(key, Stream{}).first;
    }
    Stream& s = it->second;
    s.last = meta.now;
    if (pkt.tcp_flags & tcp_syn) {
        s = Stream{pkt.seq + 1, true, false, {}, meta.now};
        return;
    }
    if (s.refused && !pkt.payload.empty()) {
        out.accept = false;
        return;
    }
    if (!pkt.payload.empty()) {
        if (!s.synced) {
            s.synced = true; // joined mid-stream (fqdnd restarted): start here
            s.next_seq = pkt.seq;
        }
        const uint32_t len = static_cast<uint32_t>(pkt.payload.size());
        const int32_t offset = static_cast<int32_t>(s.next_seq - pkt.seq);
        if (offset < 0) {
            // A gap: a segment went missing or came out of order. Nothing
            // after it can be read; the stream passes uninspected.
            ++stats_.tcp_streams_broken;
            streams_.erase(it);
            return;
        }
        if (static_cast<uint32_t>(offset) < len) {
            s.buffer.insert(s.buffer.end(), pkt.payload.begin() + offset, pkt.payload.end());
            s.next_seq = pkt.seq + len;
        }
        // Each complete message (two-byte length, then the message).
        size_t used = 0;
        while (s.buffer.size() - used >= 2) {
            const size_t mlen = be16(&s.buffer[used]);
            if (s.buffer.size() - used - 2 < mlen)
                break;
            const std::span<const uint8_t> msg(&s.buffer[used + 2], mlen);
            used += 2 + mlen;
            if (mlen >= 3 && (msg[2] & 0x80)) {
                on_answer(msg, pkt, meta, out);
                continue;
            }
            Malformed why;
            const auto q = parse_query(msg, &why);
            if (!q) {
                ++stats_.queries_malformed;
                ++stats_.malformed[static_cast<size_t>(why)];
                out.accept = false;
                s.refused = true;
                continue;
            }
            if (!on_query(*q, pkt, meta, out)) {
                out.accept = false;
                s.refused = true;
            }
        }
        s.buffer.erase(s.buffer.begin(), s.buffer.begin() + static_cast<std::ptrdiff_t>(used));
        if (s.buffer.size() > 65537 + 2) {
            ++stats_.tcp_streams_broken;
            streams_.erase(it);
            return;
        }
    }
    if (pkt.tcp_flags & tcp_fin)
        s.next_seq += 1;
}

} // namespace fqdnd::dns
