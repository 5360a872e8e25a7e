#include "nflog/nflog.hpp"

#include "dns/packet.hpp"

#include <netinet/in.h>

// glibc before the kernel headers, which then leave its definitions alone.
#include <arpa/inet.h>

#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>

#include <array>
#include <cerrno>
#include <sys/socket.h>

namespace fqdnd::nflog {

int Reader::configure(uint16_t group, const std::function<void(nlmsghdr*)>& fill) noexcept
{
    std::array<char, 256> buf{};
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    nlh->nlmsg_seq = nl_.next_seq();
    auto* nfg = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
    nfg->nfgen_family = AF_UNSPEC;
    nfg->version = NFNETLINK_V0;
    nfg->res_id = htons(group);
    fill(nlh);
    if (mnl_socket_sendto(nl_.get(), nlh, nlh->nlmsg_len) < 0)
        return -errno;
    std::array<char, 4096> rbuf{};
    const ssize_t n = mnl_socket_recvfrom(nl_.get(), rbuf.data(), rbuf.size());
    if (n < 0)
        return -errno;
    if (mnl_cb_run(rbuf.data(), static_cast<size_t>(n), nlh->nlmsg_seq, mnl_socket_get_portid(nl_.get()), nullptr,
                   nullptr)
        < 0)
        return -errno;
    return 0;
}

int Reader::open(uint16_t group, uint32_t range, int buffer) noexcept
{
    close();
    if (int r = nl_.open(); r < 0)
        return r;
    timeval tv{1, 0};
    setsockopt(nl_.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    int r = configure(group, [](nlmsghdr* nlh) {
        nfulnl_msg_config_cmd cmd{NFULNL_CFG_CMD_BIND};
        mnl_attr_put(nlh, NFULA_CFG_CMD, sizeof(cmd), &cmd);
    });
    if (r < 0) {
        close();
        return r;
    }
    r = configure(group, [range](nlmsghdr* nlh) {
        nfulnl_msg_config_mode mode{};
        mode.copy_range = htonl(range);
        mode.copy_mode = NFULNL_COPY_PACKET;
        mnl_attr_put(nlh, NFULA_CFG_MODE, sizeof(mode), &mode);
        // Each packet as it comes: the rate is limited by the rules.
        mnl_attr_put_u32(nlh, NFULA_CFG_QTHRESH, htonl(1));
    });
    if (r < 0) {
        close();
        return r;
    }
    tv = {0, 0};
    if (setsockopt(nl_.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0
        || (buffer > 0 && setsockopt(nl_.fd(), SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof(buffer)) < 0
            && setsockopt(nl_.fd(), SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer)) < 0)) {
        r = -errno;
        close();
        return r;
    }
    buf_.resize(range > copy_range ? 256 * 1024 : 64 * 1024);
    return 0;
}

void Reader::close() noexcept
{
    nl_ = nft::Netlink{};
}

void Reader::receive(const std::function<void(const Logged&)>& handler) noexcept
{
    if (!is_open())
        return;
    for (int rounds = 0; rounds < 64; ++rounds) {
        const ssize_t n = recv(nl_.fd(), buf_.data(), buf_.size(), MSG_DONTWAIT);
        if (n < 0) {
            if (errno == ENOBUFS) {
                ++enobufs_; // logged packets lost; nothing else depends on them
                continue;
            }
            return;
        }
        int len = static_cast<int>(n);
        for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buf_.data()); mnl_nlmsg_ok(nlh, len);
             nlh = mnl_nlmsg_next(nlh, &len)) {
            if (nlh->nlmsg_type != ((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET))
                continue;
            std::array<const nlattr*, NFULA_MAX + 1> attr{};
            const int r = mnl_attr_parse(
                nlh, sizeof(nfgenmsg),
                [](const nlattr* a, void* data) {
                    const auto type = mnl_attr_get_type(a);
                    if (type <= NFULA_MAX)
                        (*static_cast<std::array<const nlattr*, NFULA_MAX + 1>*>(data))[type] = a;
                    return MNL_CB_OK;
                },
                &attr);
            if (r < 0)
                continue;
            Logged l;
            if (const nlattr* a = attr[NFULA_PREFIX]) {
                const auto* text = static_cast<const char*>(mnl_attr_get_payload(a));
                const size_t max = mnl_attr_get_payload_len(a);
                size_t size = 0;
                while (size < max && text[size])
                    ++size;
                l.prefix = std::string_view(text, size);
            }
            if (const nlattr* a = attr[NFULA_PAYLOAD])
                l.payload = std::span(static_cast<const uint8_t*>(mnl_attr_get_payload(a)), mnl_attr_get_payload_len(a));
            if (const nlattr* a = attr[NFULA_IFINDEX_INDEV]; a && mnl_attr_get_payload_len(a) == 4)
                l.indev = ntohl(mnl_attr_get_u32(a));
            if (const nlattr* a = attr[NFULA_IFINDEX_OUTDEV]; a && mnl_attr_get_payload_len(a) == 4)
                l.outdev = ntohl(mnl_attr_get_u32(a));
            if (const nlattr* a = attr[NFULA_UID]; a && mnl_attr_get_payload_len(a) == 4)
                l.uid = ntohl(mnl_attr_get_u32(a));
            if (const nlattr* a = attr[NFULA_GID]; a && mnl_attr_get_payload_len(a) == 4)
                l.gid = ntohl(mnl_attr_get_u32(a));
            if (const nlattr* a = attr[NFULA_PACKET_HDR]; a && mnl_attr_get_payload_len(a) >= sizeof(nfulnl_msg_packet_hdr))
                l.hook = static_cast<const nfulnl_msg_packet_hdr*>(mnl_attr_get_payload(a))->hook;
            ++packets_;
            handler(l);
        }
    }
}

std::string busy_hint(int error)
{
    return error == -EPERM || error == -EBUSY ? ", another program reads it; set log-group" : "";
}

std::optional<RulePrefix> parse_prefix(std::string_view logged, std::string_view prefix)
{
    if (logged.substr(0, prefix.size()) != prefix)
        return std::nullopt;
    logged.remove_prefix(prefix.size());
    const auto space = logged.find(' ');
    if (space == std::string_view::npos || space == 0 || space + 1 == logged.size())
        return std::nullopt;
    return RulePrefix{logged.substr(0, space), logged.substr(space + 1)};
}

std::string protocol_name(uint8_t protocol)
{
    switch (protocol) {
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    case IPPROTO_SCTP: return "sctp";
    case IPPROTO_ICMP: return "icmp";
    case IPPROTO_ICMPV6: return "icmpv6";
    default: return std::to_string(protocol);
    }
}

std::string Drop::endpoint() const
{
    // A forwarded packet has come in on an interface; a local one has not.
    if (indev)
        return source.to_string();
    return uid ? "uid:" + std::to_string(*uid) : "local";
}

std::optional<Drop> attribute(const Logged& l, std::string_view prefix)
{
    const auto rule = parse_prefix(l.prefix, prefix);
    if (!rule)
        return std::nullopt;
    const auto h = dns::decode_headers(l.payload);
    if (!h)
        return std::nullopt;
    return Drop{std::string(rule->kind), std::string(rule->policy), h->src, h->dst, protocol_name(h->protocol), h->dport,
                l.indev, l.uid};
}

} // namespace fqdnd::nflog
