#pragma once

#include "config/address.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

// IP packets as NFQUEUE hands them over: decoded without trusting a byte,
// and the UDP replies fqdnd sends in a server's name. No kernel calls.
namespace fqdnd::dns {

enum class Transport : uint8_t { udp = 17, tcp = 6 };

struct PacketInfo {
    Address src, dst;
    Transport transport = Transport::udp;
    uint16_t sport = 0, dport = 0;
    std::span<const uint8_t> payload; // UDP or TCP payload
    size_t l4_offset = 0;             // where the UDP or TCP header starts in the packet
    // TCP only
    uint32_t seq = 0, ack = 0;
    uint8_t tcp_flags = 0;
    uint16_t window = 0; // as sent, unscaled
};

inline constexpr uint8_t tcp_fin = 0x01, tcp_syn = 0x02, tcp_rst = 0x04, tcp_psh = 0x08, tcp_ack = 0x10,
                          tcp_urg = 0x20;

// IPv6 extension headers walked at most; a packet with more is not decoded
// (the kernel walks them all, so its transport would go unread).
inline constexpr int max_ipv6_extension_headers = 8;

// IPv4 or IPv6 (extension headers walked), then UDP or TCP. Nothing for a
// fragment, a truncated header, too many extension headers or any other
// protocol.
std::optional<PacketInfo> decode(std::span<const uint8_t> packet) noexcept;

// `packet` (as decode() read it into `info`) with its TCP payload replaced by
// `payload` of the same length, the TCP checksum computed anew.
std::vector<uint8_t> replace_tcp_payload(std::span<const uint8_t> packet, const PacketInfo& info,
                                         std::span<const uint8_t> payload);

// The headers of a packet that may be cut short (NFLOG hands over its first
// bytes): addresses, protocol, and the destination port of TCP, UDP and
// SCTP (0 for other protocols or when the port was cut off). Past
// max_ipv6_extension_headers the protocol is the extension header's.
struct FlowHeaders {
    Address src, dst;
    uint8_t protocol = 0;
    uint16_t dport = 0;
};
std::optional<FlowHeaders> decode_headers(std::span<const uint8_t> packet) noexcept;

// An IP/UDP packet from `from` to `to` carrying `payload`, checksums filled.
std::vector<uint8_t> build_udp(const Address& from, uint16_t sport, const Address& to, uint16_t dport,
                               std::span<const uint8_t> payload);

// An IP/TCP segment (flags, seq, ack, payload), checksums filled.
std::vector<uint8_t> build_tcp(const Address& from, uint16_t sport, const Address& to, uint16_t dport, uint32_t seq,
                               uint32_t ack, uint8_t flags, std::span<const uint8_t> payload);

} // namespace fqdnd::dns
