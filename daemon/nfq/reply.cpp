#include "nfq/reply.hpp"

#include <cerrno>
#include <cstring>
#include <netinet/in.h>
#include <sys/socket.h>

namespace fqdnd::nfq {

int ReplySender::open(uint32_t mark)
{
    raw4_.reset(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
    if (!raw4_)
        return -errno;
    raw6_.reset(socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
    if (!raw6_)
        return -errno;
    for (const UniqueFd* fd : {&raw4_, &raw6_})
        if (setsockopt(fd->get(), SOL_SOCKET, SO_MARK, &mark, sizeof mark) < 0)
            return -errno; // unmarked, the replies would meet fqdnd's own rules
    return 0;
}

int ReplySender::send(std::span<const uint8_t> packet) const
{
    // The destination is the header's: an IPv4 header's bytes 16-19, an
    // IPv6 header's 24-39.
    sockaddr_storage to{};
    socklen_t len = 0;
    const int version = packet.empty() ? 0 : packet[0] >> 4;
    if (version == 4 && packet.size() >= 20) {
        auto* sin = reinterpret_cast<sockaddr_in*>(&to);
        sin->sin_family = AF_INET;
        std::memcpy(&sin->sin_addr, &packet[16], 4);
        len = sizeof(sockaddr_in);
    } else if (version == 6 && packet.size() >= 40) {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(&to);
        sin6->sin6_family = AF_INET6;
        std::memcpy(&sin6->sin6_addr, &packet[24], 16);
        len = sizeof(sockaddr_in6);
    } else {
        return -EINVAL;
    }
    const int fd = version == 4 ? raw4_.get() : raw6_.get();
    if (sendto(fd, packet.data(), packet.size(), 0, reinterpret_cast<sockaddr*>(&to), len) < 0)
        return -errno;
    return 0;
}

} // namespace fqdnd::nfq
