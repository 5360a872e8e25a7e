#pragma once

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
};

// What a drop rule's prefix says: "<prefix><kind> <policy>" (the prefix
// "fqdnd "), or nothing for another's log line.
struct RulePrefix {
    std::string_view kind, policy;
};
std::optional<RulePrefix> parse_prefix(std::string_view logged, std::string_view prefix);

// "tcp", "udp", "sctp", "icmp", "icmpv6", or the number.
std::string protocol_name(uint8_t protocol);

class Reader {
public:
    // Binds `group`. Only one socket may bind a group in a network
    // namespace: EBUSY says another fqdnd (or ulogd) has it.
    int open(uint16_t group) noexcept;
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

private:
    int configure(uint16_t group, const std::function<void(nlmsghdr*)>& fill) noexcept;

    nft::Netlink nl_;
    std::vector<char> buf_;
    uint64_t packets_ = 0, enobufs_ = 0;
};

} // namespace fqdnd::nflog
