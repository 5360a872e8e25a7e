#pragma once

#include "unique-fd.hpp"

#include <cstdint>
#include <span>

// fqdnd's own answers to queued queries (REFUSED, a TCP reset), sent in the
// server's name as whole IP packets through raw sockets. Their mark lets
// fqdnd's rules pass them and keeps conntrack from tracking them.
namespace fqdnd::nfq {

class ReplySender {
public:
    // Opens both raw sockets, marked `mark`. 0 or a negative errno.
    int open(uint32_t mark);
    // Sends an IPv4 or IPv6 packet to its destination address. 0 or a
    // negative errno (EINVAL: not a whole IP header).
    int send(std::span<const uint8_t> packet) const;

private:
    UniqueFd raw4_, raw6_;
};

} // namespace fqdnd::nfq
