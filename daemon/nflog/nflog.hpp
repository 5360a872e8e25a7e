#pragma once

#include "config/address.hpp"
#include "nft/netlink.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

// The NFLOG group fqdnd's drop rules log to, read over libmnl. The kernel
// limits how many packets a second reach it (the rules' shared limit).
namespace fqdnd::nflog {

struct Logged {
    std::string_view prefix;            // "fqdnd drop echo"
    std::span<const uint8_t> payload;   // the first bytes of the packet
    uint32_t indev = 0, outdev = 0;     // interface indexes, 0 when none
    std::optional<uint32_t> uid, gid;   // of the local socket that sent it
    std::optional<uint8_t> hook;        // NF_INET_*, where the rule logged it
};

// What a drop rule's prefix says: "<prefix><kind> <policy>" (the prefix
// "fqdnd "), or nothing for another's log line.
struct RulePrefix {
    std::string_view kind, policy;
};
std::optional<RulePrefix> parse_prefix(std::string_view logged, std::string_view prefix);

// "tcp", "udp", "sctp", "icmp", "icmpv6", or the number.
std::string protocol_name(uint8_t protocol);

// A drop one of fqdnd's rules logged, as far as the prefix and the packet's
// first bytes tell.
struct Drop {
    std::string kind, policy; // from the prefix
    Address source, destination;
    std::string protocol;     // protocol_name()
    uint16_t port = 0;        // 0 when the protocol has none
    uint32_t indev = 0;       // the input interface of a forwarded packet
    std::optional<uint32_t> uid;
    // Whom it is about: a forwarded packet's source address; for a local
    // one "uid:N", or "local" when the socket's owner is not known.
    std::string endpoint() const;
};
// Nothing for another's log line or a packet that does not decode.
std::optional<Drop> attribute(const Logged& l, std::string_view prefix);

// What to add to the text of an error binding a group: only one socket
// may bind a group in a network namespace, and the kernel says EPERM (or
// EBUSY) when another holds it.
std::string busy_hint(int error);

class Reader {
public:
    // Binds `group`, copying `range` bytes of each packet, with a receive
    // buffer of at least `buffer` bytes (0: the system's default). Only one
    // socket may bind a group in a network namespace: EPERM says another
    // fqdnd (or ulogd) has it.
    int open(uint16_t group, uint32_t range = copy_range, int buffer = 0) noexcept;
    void close() noexcept;
    bool is_open() const noexcept { return nl_.is_open(); }
    int fd() const noexcept { return nl_.fd(); }

    // Reads every message waiting, without blocking.
    void receive(const std::function<void(const Logged&)>& handler) noexcept;

    uint64_t packets() const noexcept { return packets_; }
    uint64_t enobufs() const noexcept { return enobufs_; }

    // Bytes of each packet copied: IPv6 with a few extension headers and
    // the ports.
    static constexpr uint32_t copy_range = 128;
    // Whole packets: a DNS query over UDP, with its IP and UDP headers.
    static constexpr uint32_t whole_packet = 0xffff;

private:
    int configure(uint16_t group, const std::function<void(nlmsghdr*)>& fill) noexcept;

    nft::Netlink nl_;
    std::vector<char> buf_;
    uint64_t packets_ = 0, enobufs_ = 0;
};

} // namespace fqdnd::nflog
