#include "nft/monitor.hpp"

#include "nft/objects.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <libmnl/libmnl.h>
#include <linux/filter.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>
#include <vector>

namespace fqdnd::nft {

namespace {

template <typename Ptr, typename Parse, typename Get>
std::string table_of(const nlmsghdr* nlh, Ptr obj, Parse parse, Get get, uint16_t attr)
{
    if (!obj || parse(nlh, obj.get()) != 0)
        return "";
    const char* s = get(obj.get(), attr);
    return s ? s : "";
}

} // namespace

std::string event_table(const nlmsghdr* nlh)
{
    switch (NFNL_MSG_TYPE(nlh->nlmsg_type)) {
    case NFT_MSG_NEWTABLE:
    case NFT_MSG_DELTABLE:
        return table_of(nlh, TablePtr(nftnl_table_alloc()), nftnl_table_nlmsg_parse, nftnl_table_get_str,
                        NFTNL_TABLE_NAME);
    case NFT_MSG_NEWCHAIN:
    case NFT_MSG_DELCHAIN:
        return table_of(nlh, ChainPtr(nftnl_chain_alloc()), nftnl_chain_nlmsg_parse, nftnl_chain_get_str,
                        NFTNL_CHAIN_TABLE);
    case NFT_MSG_NEWRULE:
    case NFT_MSG_DELRULE:
        return table_of(nlh, RulePtr(nftnl_rule_alloc()), nftnl_rule_nlmsg_parse, nftnl_rule_get_str,
                        NFTNL_RULE_TABLE);
    case NFT_MSG_NEWSET:
    case NFT_MSG_DELSET:
        return table_of(nlh, SetPtr(nftnl_set_alloc()), nftnl_set_nlmsg_parse, nftnl_set_get_str, NFTNL_SET_TABLE);
    default:
        return "";
    }
}

int Monitor::open(int buffer)
{
    if (int r = nl_.open(1u << (NFNLGRP_NFTABLES - 1)); r < 0)
        return r;
    if (setsockopt(nl_.fd(), SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer) < 0
        && setsockopt(nl_.fd(), SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer) < 0)
        return -errno;
    return 0;
}

int Monitor::ignore(const std::vector<uint32_t>& portids)
{
    // Each datagram of the group holds the events of one transaction (the
    // kernel gathers a commit's events, then sends its generation alone),
    // so a datagram's first message tells whose transaction it is. Those
    // of `portids` never count (read() skips them); fqdnd's own set updates
    // make one every round of the DNS path, and the kernel now drops them
    // before they wake the socket. A message's port id is at byte 12, in
    // host order; BPF loads words in network order.
    std::vector<sock_filter> code{BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(nlmsghdr, nlmsg_pid))};
    for (size_t i = 0; i < portids.size(); ++i)
        code.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ntohl(portids[i]),
                                static_cast<uint8_t>(portids.size() - i), 0));
    code.push_back(BPF_STMT(BPF_RET | BPF_K, 0xffffffff));
    code.push_back(BPF_STMT(BPF_RET | BPF_K, 0));
    const sock_fprog prog{static_cast<unsigned short>(code.size()), code.data()};
    if (setsockopt(nl_.fd(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
        return -errno;
    ignored_ = portids;
    return 0;
}

bool Monitor::read(const std::string& table, uint32_t own_portid, size_t max_elements, Seen& seen)
{
    bool counted = false;
    RawBuffer& buf = nl_.replies();
    std::string event_table_name, set;
    std::vector<Table::ListedElement> elements;
    while (true) {
        const ssize_t n = recv(nl_.fd(), buf.data(), buf.size(), MSG_DONTWAIT);
        if (n < 0) {
            if (errno == ENOBUFS) {
                seen.lost = counted = true;
                continue;
            }
            return counted;
        }
        int len = static_cast<int>(n);
        for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(nlh, len);
             nlh = mnl_nlmsg_next(nlh, &len)) {
            if (nlh->nlmsg_pid == own_portid
                || std::find(ignored_.begin(), ignored_.end(), nlh->nlmsg_pid) != ignored_.end())
                continue;
            const int type = NFNL_MSG_TYPE(nlh->nlmsg_type);
            if (type == NFT_MSG_NEWGEN)
                continue;
            // fqdnd's table is inet: one of the same name in another family
            // (found by a hostile review: `table ip fqdnd` with a set fqdn4)
            // is someone else's.
            if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(nfgenmsg))
                || static_cast<const nfgenmsg*>(mnl_nlmsg_get_payload(nlh))->nfgen_family != NFPROTO_INET)
                continue;
            if (type != NFT_MSG_NEWSETELEM && type != NFT_MSG_DELSETELEM) {
                if (event_table(nlh) == table)
                    seen.changed = counted = true;
                continue;
            }
            // Someone else's elements: which, in which set of the table.
            elements.clear();
            if (!Table::parse_elements(nlh, event_table_name, set, elements)) {
                seen.lost = counted = true; // cannot tell which: check everything
                continue;
            }
            if (event_table_name != table)
                continue;
            counted = true;
            for (const auto& e : elements) {
                if (seen.elements.size() >= max_elements) {
                    seen.elements_dropped = true;
                    break;
                }
                seen.elements.push_back({type == NFT_MSG_NEWSETELEM, set, e});
            }
        }
    }
}

} // namespace fqdnd::nft
