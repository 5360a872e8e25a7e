#include "dns/packet.hpp"

#include <algorithm>
#include <cstring>

namespace fqdnd::dns {

namespace {

uint16_t be16(const uint8_t* p) noexcept
{
    return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

uint32_t be32(const uint8_t* p) noexcept
{
    return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3];
}

void put16(uint8_t* p, uint16_t v) noexcept
{
    p[0] = static_cast<uint8_t>(v >> 8);
    p[1] = static_cast<uint8_t>(v);
}

void put32(uint8_t* p, uint32_t v) noexcept
{
    put16(p, static_cast<uint16_t>(v >> 16));
    put16(p + 2, static_cast<uint16_t>(v));
}

uint32_t sum(std::span<const uint8_t> data, uint32_t acc = 0) noexcept
{
    size_t i = 0;
    for (; i + 1 < data.size(); i += 2)
        acc += be16(&data[i]);
    if (i < data.size())
        acc += static_cast<uint32_t>(data[i]) << 8;
    return acc;
}

uint16_t fold(uint32_t acc) noexcept
{
    while (acc >> 16)
        acc = (acc & 0xffff) + (acc >> 16);
    return static_cast<uint16_t>(~acc);
}

// Hop-by-hop options, routing, destination options.
bool is_walked_extension(uint8_t next) noexcept
{
    return next == 0 || next == 43 || next == 60;
}

bool transport(std::span<const uint8_t> l4, uint8_t proto, PacketInfo& info) noexcept
{
    if (proto == 17) {
        if (l4.size() < 8)
            return false;
        const uint16_t len = be16(&l4[4]);
        if (len < 8 || len > l4.size())
            return false;
        info.transport = Transport::udp;
        info.sport = be16(&l4[0]);
        info.dport = be16(&l4[2]);
        info.payload = l4.subspan(8, len - 8u);
        return true;
    }
    if (proto == 6) {
        if (l4.size() < 20)
            return false;
        const size_t off = static_cast<size_t>(l4[12] >> 4) * 4;
        if (off < 20 || off > l4.size())
            return false;
        info.transport = Transport::tcp;
        info.sport = be16(&l4[0]);
        info.dport = be16(&l4[2]);
        info.seq = be32(&l4[4]);
        info.ack = be32(&l4[8]);
        info.tcp_flags = l4[13];
        info.window = be16(&l4[14]);
        info.payload = l4.subspan(off);
        return true;
    }
    return false;
}

// The pseudo-header sum of RFC 768 / RFC 8200 8.1.
uint32_t pseudo(const Address& from, const Address& to, uint8_t proto, size_t len) noexcept
{
    uint32_t acc = sum(std::span(from.bytes.data(), from.size()));
    acc = sum(std::span(to.bytes.data(), to.size()), acc);
    return acc + proto + static_cast<uint32_t>(len);
}

std::vector<uint8_t> build_ip(const Address& from, const Address& to, uint8_t proto, std::vector<uint8_t> l4,
                              size_t checksum_offset)
{
    put16(&l4[checksum_offset], 0);
    uint16_t c = fold(sum(l4, pseudo(from, to, proto, l4.size())));
    if (proto == 17 && c == 0)
        c = 0xffff;
    put16(&l4[checksum_offset], c);

    std::vector<uint8_t> out;
    if (from.family == Family::ipv4) {
        out.resize(20);
        out[0] = 0x45;
        put16(&out[2], static_cast<uint16_t>(20 + l4.size()));
        put16(&out[6], 0x4000); // don't fragment
        out[8] = 64;
        out[9] = proto;
        std::memcpy(&out[12], from.bytes.data(), 4);
        std::memcpy(&out[16], to.bytes.data(), 4);
        put16(&out[10], fold(sum(out)));
    } else {
        out.resize(40);
        out[0] = 0x60;
        put16(&out[4], static_cast<uint16_t>(l4.size()));
        out[6] = proto;
        out[7] = 64;
        std::memcpy(&out[8], from.bytes.data(), 16);
        std::memcpy(&out[24], to.bytes.data(), 16);
    }
    out.insert(out.end(), l4.begin(), l4.end());
    return out;
}

} // namespace

std::optional<PacketInfo> decode(std::span<const uint8_t> p) noexcept
{
    if (p.empty())
        return std::nullopt;
    PacketInfo info;
    const unsigned version = p[0] >> 4;
    if (version == 4) {
        if (p.size() < 20)
            return std::nullopt;
        const size_t ihl = static_cast<size_t>(p[0] & 0x0f) * 4;
        const size_t total = be16(&p[2]);
        if (ihl < 20 || total < ihl || total > p.size())
            return std::nullopt;
        // A fragment other than a whole datagram is not inspected.
        if ((be16(&p[6]) & 0x3fff) != 0)
            return std::nullopt;
        info.src = Address::v4(&p[12]);
        info.dst = Address::v4(&p[16]);
        if (!transport(p.subspan(ihl, total - ihl), p[9], info))
            return std::nullopt;
        info.l4_offset = ihl;
        return info;
    }
    if (version == 6) {
        if (p.size() < 40)
            return std::nullopt;
        const size_t total = 40 + static_cast<size_t>(be16(&p[4]));
        if (total > p.size())
            return std::nullopt;
        info.src = Address::v6(&p[8]);
        info.dst = Address::v6(&p[24]);
        uint8_t next = p[6];
        size_t off = 40;
        // Hop-by-hop, routing and destination options; a fragment header
        // ends the walk (not inspected).
        int hops = 0;
        for (; hops < max_ipv6_extension_headers && is_walked_extension(next); ++hops) {
            if (off + 8 > total)
                return std::nullopt;
            const size_t len = (static_cast<size_t>(p[off + 1]) + 1) * 8;
            next = p[off];
            off += len;
        }
        // Past the bound another extension header would be read as the
        // transport header: not decoded (transport() takes only TCP and UDP).
        if (off > total || !transport(p.subspan(off, total - off), next, info))
            return std::nullopt;
        info.l4_offset = off;
        return info;
    }
    return std::nullopt;
}

std::optional<FlowHeaders> decode_headers(std::span<const uint8_t> p) noexcept
{
    if (p.empty())
        return std::nullopt;
    FlowHeaders h;
    size_t off = 0;
    bool first_fragment = true;
    const unsigned version = p[0] >> 4;
    if (version == 4) {
        if (p.size() < 20)
            return std::nullopt;
        off = static_cast<size_t>(p[0] & 0x0f) * 4;
        if (off < 20)
            return std::nullopt;
        h.src = Address::v4(&p[12]);
        h.dst = Address::v4(&p[16]);
        h.protocol = p[9];
        first_fragment = (be16(&p[6]) & 0x1fff) == 0;
    } else if (version == 6) {
        if (p.size() < 40)
            return std::nullopt;
        h.src = Address::v6(&p[8]);
        h.dst = Address::v6(&p[24]);
        uint8_t next = p[6];
        off = 40;
        for (int hops = 0; hops < max_ipv6_extension_headers && (is_walked_extension(next) || next == 44); ++hops) {
            if (off + 8 > p.size())
                break; // cut short: the protocol is as far as we can see
            if (next == 44) {
                first_fragment = (be16(&p[off + 2]) & 0xfff8) == 0;
                next = p[off];
                off += 8;
                continue;
            }
            const size_t len = (static_cast<size_t>(p[off + 1]) + 1) * 8;
            next = p[off];
            off += len;
        }
        h.protocol = next;
    } else {
        return std::nullopt;
    }
    const bool ports = h.protocol == 6 || h.protocol == 17 || h.protocol == 132;
    if (ports && first_fragment && off + 4 <= p.size())
        h.dport = be16(&p[off + 2]);
    return h;
}

std::vector<uint8_t> replace_tcp_payload(std::span<const uint8_t> packet, const PacketInfo& info,
                                         std::span<const uint8_t> payload)
{
    std::vector<uint8_t> out(packet.begin(), packet.end());
    const size_t start = static_cast<size_t>(info.payload.data() - packet.data());
    std::copy(payload.begin(), payload.end(), out.begin() + static_cast<std::ptrdiff_t>(start));
    const size_t end = start + info.payload.size();
    const std::span<uint8_t> l4(out.data() + info.l4_offset, end - info.l4_offset);
    put16(&l4[16], 0);
    put16(&l4[16], fold(sum(l4, pseudo(info.src, info.dst, 6, l4.size()))));
    return out;
}

std::vector<uint8_t> build_udp(const Address& from, uint16_t sport, const Address& to, uint16_t dport,
                               std::span<const uint8_t> payload)
{
    std::vector<uint8_t> l4(8 + payload.size());
    put16(&l4[0], sport);
    put16(&l4[2], dport);
    put16(&l4[4], static_cast<uint16_t>(l4.size()));
    // std::copy: an empty payload has no data pointer to hand to memcpy.
    std::copy(payload.begin(), payload.end(), l4.begin() + 8);
    return build_ip(from, to, 17, std::move(l4), 6);
}

std::vector<uint8_t> build_tcp(const Address& from, uint16_t sport, const Address& to, uint16_t dport, uint32_t seq,
                               uint32_t ack, uint8_t flags, std::span<const uint8_t> payload)
{
    std::vector<uint8_t> l4(20 + payload.size());
    put16(&l4[0], sport);
    put16(&l4[2], dport);
    put32(&l4[4], seq);
    put32(&l4[8], ack);
    l4[12] = 5 << 4;
    l4[13] = flags;
    put16(&l4[14], 65535);
    std::copy(payload.begin(), payload.end(), l4.begin() + 20);
    return build_ip(from, to, 6, std::move(l4), 16);
}

} // namespace fqdnd::dns
