#include "nft/encode.hpp"

// glibc before the kernel headers, which then leave its definitions alone.
#include <arpa/inet.h>
#include <net/if.h>


#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/xt_NFQUEUE.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>

namespace fqdnd::nft {

using namespace ruleset;

std::string_view to_string(QueueMode m) noexcept
{
    return m == QueueMode::native ? "native" : "compat";
}

namespace {

// nftables' datatype ids and byte orders, as `nft list` reads them back.
constexpr uint32_t type_inet_proto = 12, type_inet_service = 13, type_ipaddr = 7, type_ip6addr = 8, type_mark = 19;
// A concatenation's type: the types of its fields, 6 bits each.
constexpr uint32_t concat_type(std::initializer_list<uint32_t> types)
{
    uint32_t t = 0;
    for (uint32_t x : types)
        t = (t << 6) | x;
    return t;
}
constexpr uint32_t byteorder_big_endian = 2;

struct RuleFree {
    void operator()(nftnl_rule* r) const noexcept { nftnl_rule_free(r); }
};
struct SetFree {
    void operator()(nftnl_set* s) const noexcept { nftnl_set_free(s); }
};
struct UdataFree {
    void operator()(nftnl_udata_buf* b) const noexcept { nftnl_udata_buf_free(b); }
};

// A set element key in network order: 4 or 16 bytes of address, or a port.
struct Key {
    uint8_t bytes[16];
    uint32_t len;
    uint32_t flags = 0;
};

void set_userdata(nftnl_set* s, const std::string& comment)
{
    std::unique_ptr<nftnl_udata_buf, UdataFree> ud(nftnl_udata_buf_alloc(512));
    nftnl_udata_put_u32(ud.get(), NFTNL_UDATA_SET_KEYBYTEORDER, byteorder_big_endian);
    if (!comment.empty())
        nftnl_udata_put_strz(ud.get(), NFTNL_UDATA_SET_COMMENT, comment.substr(0, 127).c_str());
    nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(ud.get()), nftnl_udata_buf_len(ud.get()));
}

// An anonymous constant set, created in the batch before the rule that
// binds it; it lives and dies with that rule.
std::string add_anonymous_set(Batch& batch, const std::string& table, uint32_t key_type, uint32_t key_len,
                              bool interval, const std::vector<Key>& keys, uint32_t set_id)
{
    const std::string name = "__set%d";
    std::unique_ptr<nftnl_set, SetFree> s(nftnl_set_alloc());
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, name.c_str());
    nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_u32(s.get(), NFTNL_SET_ID, set_id);
    nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS,
                      NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | (interval ? NFT_SET_INTERVAL : 0));
    nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, key_type);
    nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, key_len);
    set_userdata(s.get(), "");
    nlmsghdr* nlh = batch.add(NFT_MSG_NEWSET, NFPROTO_INET, NLM_F_CREATE, "anonymous set in table " + table);
    nftnl_set_nlmsg_build_payload(nlh, s.get());
    batch.commit(nlh);

    for (const Key& k : keys) {
        nftnl_set_elem* e = nftnl_set_elem_alloc();
        nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, k.bytes, k.len);
        if (k.flags)
            nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_FLAGS, k.flags);
        nftnl_set_elem_add(s.get(), e);
    }
    nlh = batch.add(NFT_MSG_NEWSETELEM, NFPROTO_INET, NLM_F_CREATE, "elements of an anonymous set",
                    64 + keys.size() * 64);
    nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
    batch.commit(nlh);
    return name;
}

// An address range, first and last address included, in network order.
struct Range {
    std::array<uint8_t, 16> first, last;
};

// CIDRs as ranges: sorted, with overlapping and touching ones merged.
std::vector<Range> merged_ranges(std::vector<Cidr> cidrs, size_t len)
{
    std::sort(cidrs.begin(), cidrs.end());
    std::vector<Range> ranges;
    for (const Cidr& c : cidrs) {
        Range r{c.address.bytes, c.address.bytes};
        for (unsigned bit = c.prefix; bit < c.max_prefix(); ++bit)
            r.last[bit / 8] |= static_cast<uint8_t>(0x80u >> (bit % 8));
        // Sorted by start, so a range overlaps or touches only the last one.
        if (!ranges.empty()) {
            std::array<uint8_t, 16> next = ranges.back().last;
            bool carry = true;
            for (size_t i = len; i-- > 0 && carry;)
                carry = ++next[i] == 0;
            if (!carry && std::memcmp(r.first.data(), next.data(), len) <= 0) {
                if (std::memcmp(r.last.data(), ranges.back().last.data(), len) > 0)
                    ranges.back().last = r.last;
                continue;
            }
            if (carry) // the previous range already reaches the top
                continue;
        }
        ranges.push_back(r);
    }
    return ranges;
}

// The prefix length of a range that is exactly one prefix, or nothing.
std::optional<unsigned> prefix_of(const Range& r, size_t len)
{
    unsigned bit = 0;
    while (bit < len * 8 && ((r.first[bit / 8] ^ r.last[bit / 8]) & (0x80u >> (bit % 8))) == 0)
        ++bit;
    for (unsigned b = bit; b < len * 8; ++b) {
        const uint8_t m = static_cast<uint8_t>(0x80u >> (b % 8));
        if ((r.first[b / 8] & m) != 0 || (r.last[b / 8] & m) == 0)
            return std::nullopt;
    }
    return bit;
}

// Ranges as interval-set keys: each a start and (unless it reaches the top
// of the address space) an end one past its last address.
std::vector<Key> interval_keys(const std::vector<Range>& ranges, size_t len)
{
    std::vector<Key> keys;
    for (const Range& r : ranges) {
        Key start{};
        std::memcpy(start.bytes, r.first.data(), len);
        start.len = static_cast<uint32_t>(len);
        keys.push_back(start);
        Key end{};
        std::memcpy(end.bytes, r.last.data(), len);
        end.len = static_cast<uint32_t>(len);
        bool carry = true;
        for (size_t i = len; i-- > 0 && carry;)
            carry = ++end.bytes[i] == 0;
        if (!carry) {
            end.flags = NFT_SET_ELEM_INTERVAL_END;
            keys.push_back(end);
        }
    }
    return keys;
}

class RuleWriter {
public:
    RuleWriter(Batch& batch, const std::string& table, QueueMode mode, const cgroup::UnitCgroups& units,
               uint32_t& next_set_id)
        : batch_(batch), table_(table), mode_(mode), units_(units), next_set_id_(next_set_id),
          rule_(nftnl_rule_alloc())
    {
    }

    nftnl_rule* rule() { return rule_.get(); }

    int write(const Expr& e, std::string* problem)
    {
        return std::visit([&](const auto& x) { return put(x, problem); }, e);
    }

private:
    nftnl_expr* add(const char* name)
    {
        nftnl_expr* e = nftnl_expr_alloc(name);
        nftnl_rule_add_expr(rule_.get(), e);
        return e;
    }

    void meta(uint32_t key, uint32_t dreg = NFT_REG_1)
    {
        nftnl_expr* e = add("meta");
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
        nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
    }
    void ct(uint32_t key)
    {
        nftnl_expr* e = add("ct");
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, key);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, NFT_REG_1);
    }
    void cmp(uint32_t op, const void* data, uint32_t len)
    {
        nftnl_expr* e = add("cmp");
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
        nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
    }
    // first <= register <= last, compared as bytes (network order), as nft
    // writes `ip daddr a-b`.
    void range(const void* first, const void* last, uint32_t len)
    {
        cmp(NFT_CMP_GTE, first, len);
        cmp(NFT_CMP_LTE, last, len);
    }
    void bitwise(uint32_t len, const void* mask, const void* xor_, uint32_t reg = NFT_REG_1)
    {
        nftnl_expr* e = add("bitwise");
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_SREG, reg);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_DREG, reg);
        nftnl_expr_set_u32(e, NFTNL_EXPR_BITWISE_LEN, len);
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_MASK, mask, len);
        nftnl_expr_set(e, NFTNL_EXPR_BITWISE_XOR, xor_, len);
    }
    void payload(uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg = NFT_REG_1)
    {
        nftnl_expr* e = add("payload");
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
        nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
    }
    void lookup(const std::string& set, uint32_t set_id)
    {
        nftnl_expr* e = add("lookup");
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
        nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set.c_str());
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID, set_id);
    }
    void lookup_named(const std::string& set, uint32_t sreg)
    {
        nftnl_expr* e = add("lookup");
        nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, sreg);
        nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, set.c_str());
    }
    void verdict(int v, const std::string* chain = nullptr)
    {
        nftnl_expr* e = add("immediate");
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
        nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(v));
        if (chain)
            nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, chain->c_str());
    }
    void nfproto(Family f)
    {
        meta(NFT_META_NFPROTO);
        const uint8_t v = f == Family::ipv4 ? NFPROTO_IPV4 : NFPROTO_IPV6;
        cmp(NFT_CMP_EQ, &v, 1);
    }
    void address(bool source, Family f)
    {
        nfproto(f);
        if (f == Family::ipv4)
            payload(NFT_PAYLOAD_NETWORK_HEADER, source ? 12 : 16, 4);
        else
            payload(NFT_PAYLOAD_NETWORK_HEADER, source ? 8 : 24, 16);
    }
    void l4protos(const std::vector<L4>& protocols)
    {
        meta(NFT_META_L4PROTO);
        if (protocols.size() == 1) {
            const uint8_t p = static_cast<uint8_t>(protocols[0]);
            cmp(NFT_CMP_EQ, &p, 1);
            return;
        }
        std::vector<Key> keys;
        for (L4 p : protocols) {
            Key k{};
            k.bytes[0] = static_cast<uint8_t>(p);
            k.len = 1;
            keys.push_back(k);
        }
        const uint32_t id = next_set_id_++;
        lookup(add_anonymous_set(batch_, table_, type_inet_proto, 1, false, keys, id), id);
    }

    int put(const NfProto& x, std::string*)
    {
        nfproto(x.family);
        return 0;
    }
    int put(const AddrInSet& x, std::string*)
    {
        if (!x.tag) {
            address(x.source, x.family);
            lookup_named(x.set, NFT_REG_1);
            return 0;
        }
        // (tag . address) @set: the tag's two halves in the first two
        // 32-bit registers, the address after them, as a concatenation.
        // Each half is the packet mark with every bit replaced, not an
        // immediate: nft knows a mark's type and prints `meta mark & T | T`
        // (T whatever the mark), which it reads back; an immediate it
        // prints as `T [invalid type]`, which nft (1.0.6) cannot parse.
        nfproto(x.family);
        const std::array<uint32_t, 2> halves = tag_halves(*x.tag);
        const uint32_t keep_none = 0;
        meta(NFT_META_MARK, NFT_REG_1);
        bitwise(4, &keep_none, &halves[0], NFT_REG_1);
        meta(NFT_META_MARK, NFT_REG32_01);
        bitwise(4, &keep_none, &halves[1], NFT_REG32_01);
        if (x.family == Family::ipv4)
            payload(NFT_PAYLOAD_NETWORK_HEADER, x.source ? 12 : 16, 4, NFT_REG32_02);
        else
            payload(NFT_PAYLOAD_NETWORK_HEADER, x.source ? 8 : 24, 16, NFT_REG32_02);
        lookup_named(x.set, NFT_REG_1);
        return 0;
    }
    int put(const AddrInList& x, std::string*)
    {
        address(x.source, x.family);
        const uint32_t len = x.family == Family::ipv4 ? 4 : 16;
        const std::vector<Range> ranges = merged_ranges(x.cidrs, len);
        if (ranges.size() == 1) {
            // One range is a compare, not an anonymous set: the kernel
            // finds sets by a walk of the table's list, so thousands of
            // them make every change slower. It is also what nft makes of
            // a one-element set when it reads a listing back: a prefix is
            // a mask and a compare ("ip saddr 192.0.2.0/29"), any other
            // range two compares ("ip daddr 203.0.113.53-203.0.113.54").
            const Range& r = ranges[0];
            if (const auto prefix = prefix_of(r, len)) {
                if (*prefix < len * 8) {
                    std::array<uint8_t, 16> mask{}, zero{};
                    for (unsigned bit = 0; bit < *prefix; ++bit)
                        mask[bit / 8] |= static_cast<uint8_t>(0x80u >> (bit % 8));
                    bitwise(len, mask.data(), zero.data());
                }
                cmp(NFT_CMP_EQ, r.first.data(), len);
            } else {
                range(r.first.data(), r.last.data(), len);
            }
            return 0;
        }
        const uint32_t id = next_set_id_++;
        const uint32_t type = x.family == Family::ipv4 ? type_ipaddr : type_ip6addr;
        lookup(add_anonymous_set(batch_, table_, type, len, true, interval_keys(ranges, len), id), id);
        return 0;
    }
    int put(const L4Protos& x, std::string*)
    {
        l4protos(x.protocols);
        return 0;
    }
    int put(const L4Ports& x, std::string*)
    {
        l4protos(x.protocols);
        payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
        if (x.ports.size() == 1) {
            const uint16_t port = htons(x.ports[0]);
            cmp(NFT_CMP_EQ, &port, 2);
            return 0;
        }
        std::vector<Key> keys;
        for (uint16_t p : x.ports) {
            Key k{};
            const uint16_t n = htons(p);
            std::memcpy(k.bytes, &n, 2);
            k.len = 2;
            keys.push_back(k);
        }
        const uint32_t id = next_set_id_++;
        lookup(add_anonymous_set(batch_, table_, type_inet_service, 2, false, keys, id), id);
        return 0;
    }
    int put(const InterfaceName& x, std::string*)
    {
        meta(x.output ? NFT_META_OIFNAME : NFT_META_IIFNAME);
        const uint32_t op = x.negate ? NFT_CMP_NEQ : NFT_CMP_EQ;
        // "veth*" compares the prefix only; a plain name the whole register
        // (IFNAMSIZ bytes, the kernel pads the name with NULs), as nft does.
        if (!x.name.empty() && x.name.back() == '*')
            cmp(op, x.name.data(), static_cast<uint32_t>(x.name.size() - 1));
        else {
            char buf[IFNAMSIZ] = {};
            std::memcpy(buf, x.name.data(), std::min<size_t>(x.name.size(), IFNAMSIZ - 1));
            cmp(op, buf, IFNAMSIZ);
        }
        return 0;
    }
    int put(const SocketUid& x, std::string*)
    {
        meta(NFT_META_SKUID);
        cmp(NFT_CMP_EQ, &x.uid, 4);
        return 0;
    }
    int put(const SocketGid& x, std::string*)
    {
        meta(NFT_META_SKGID);
        cmp(NFT_CMP_EQ, &x.gid, 4);
        return 0;
    }
    int put(const SocketCgroup& x, std::string* problem)
    {
        const auto found = units_.find(x.unit);
        if (found == units_.end()) {
            if (problem)
                *problem = "unit " + x.unit + " was not looked up";
            return -ENOENT;
        }
        // The kernel compares a cgroup v2 id (the directory's inode) at the
        // depth of the unit's cgroup. A unit without one (not running) is
        // compared with 0, which no cgroup has: its rule is there, in the
        // same place, and matches nothing until fqdnd sees the unit start.
        const cgroup::UnitCgroup none{"", 1, 0};
        const cgroup::UnitCgroup& where = found->second ? *found->second : none;
        nftnl_expr* e = add("socket");
        nftnl_expr_set_u32(e, NFTNL_EXPR_SOCKET_KEY, NFT_SOCKET_CGROUPV2);
        nftnl_expr_set_u32(e, NFTNL_EXPR_SOCKET_LEVEL, where.level);
        nftnl_expr_set_u32(e, NFTNL_EXPR_SOCKET_DREG, NFT_REG_1);
        cmp(NFT_CMP_EQ, &where.id, 8);
        return 0;
    }
    int put(const CtState& x, std::string*)
    {
        ct(NFT_CT_STATE);
        const uint32_t mask = (x.established ? NF_CT_STATE_BIT(IP_CT_ESTABLISHED) : 0)
            | (x.related ? NF_CT_STATE_BIT(IP_CT_RELATED) : 0) | (x.invalid ? NF_CT_STATE_INVALID_BIT : 0);
        const uint32_t zero = 0;
        bitwise(4, &mask, &zero);
        cmp(NFT_CMP_NEQ, &zero, 4);
        return 0;
    }
    int put(const CtMarkHas& x, std::string*)
    {
        ct(NFT_CT_MARK);
        const uint32_t zero = 0;
        bitwise(4, &x.bits, &zero);
        cmp(x.negate ? NFT_CMP_NEQ : NFT_CMP_EQ, &x.bits, 4);
        return 0;
    }
    int put(const CtReply& x, std::string*)
    {
        ct(NFT_CT_DIRECTION);
        // enum ip_conntrack_dir: original 0, reply 1 (not in the uapi headers).
        const uint8_t dir = x.reply ? 1 : 0;
        cmp(NFT_CMP_EQ, &dir, 1);
        return 0;
    }
    int put(const MetaMarkHas& x, std::string*)
    {
        meta(NFT_META_MARK);
        const uint32_t zero = 0;
        bitwise(4, &x.bits, &zero);
        cmp(NFT_CMP_EQ, &x.bits, 4);
        return 0;
    }
    int put(const CtMarkSet& x, std::string*)
    {
        // ct mark set ct mark | bits: keep every bit that is not ours.
        ct(NFT_CT_MARK);
        const uint32_t mask = ~x.bits;
        bitwise(4, &mask, &x.bits);
        nftnl_expr* e = add("ct");
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_MARK);
        nftnl_expr_set_u32(e, NFTNL_EXPR_CT_SREG, NFT_REG_1);
        return 0;
    }
    int put(const Counter&, std::string*)
    {
        add("counter");
        return 0;
    }
    int put(const Log& x, std::string*)
    {
        nftnl_expr* e = add("log");
        nftnl_expr_set_str(e, NFTNL_EXPR_LOG_PREFIX, x.prefix.substr(0, 127).c_str());
        if (x.group) {
            nftnl_expr_set_u16(e, NFTNL_EXPR_LOG_GROUP, *x.group);
            if (x.snaplen)
                nftnl_expr_set_u32(e, NFTNL_EXPR_LOG_SNAPLEN, *x.snaplen);
        }
        return 0;
    }
    int put(const LimitRef& x, std::string*)
    {
        nftnl_expr* e = add("objref");
        nftnl_expr_set_u32(e, NFTNL_EXPR_OBJREF_IMM_TYPE, NFT_OBJECT_LIMIT);
        nftnl_expr_set_str(e, NFTNL_EXPR_OBJREF_IMM_NAME, x.name.c_str());
        return 0;
    }
    int put(const Queue& x, std::string*)
    {
        const bool fanout = false;
        if (mode_ == QueueMode::native) {
            nftnl_expr* e = add("queue");
            nftnl_expr_set_u16(e, NFTNL_EXPR_QUEUE_NUM, x.first);
            nftnl_expr_set_u16(e, NFTNL_EXPR_QUEUE_TOTAL, x.count);
            uint16_t flags = x.bypass ? NFT_QUEUE_FLAG_BYPASS : 0;
            if (fanout)
                flags |= NFT_QUEUE_FLAG_CPU_FANOUT;
            nftnl_expr_set_u16(e, NFTNL_EXPR_QUEUE_FLAGS, flags);
        } else {
            // What iptables-nft emits for -j NFQUEUE: the xtables target
            // through nft_compat, for kernels without nft_queue.
            xt_NFQ_info_v3 info{};
            info.queuenum = x.first;
            info.queues_total = x.count;
            info.flags = x.bypass ? NFQ_FLAG_BYPASS : 0;
            nftnl_expr* e = add("target");
            nftnl_expr_set_str(e, NFTNL_EXPR_TG_NAME, "NFQUEUE");
            nftnl_expr_set_u32(e, NFTNL_EXPR_TG_REV, 3);
            // libnftnl keeps the pointer: the info must outlive the rule.
            void* copy = std::malloc(sizeof(info));
            std::memcpy(copy, &info, sizeof(info));
            nftnl_expr_set(e, NFTNL_EXPR_TG_INFO, copy, sizeof(info));
        }
        return 0;
    }
    int put(const Accept&, std::string*)
    {
        verdict(NF_ACCEPT);
        return 0;
    }
    int put(const Drop&, std::string*)
    {
        verdict(NF_DROP);
        return 0;
    }
    int put(const Jump& x, std::string*)
    {
        verdict(NFT_JUMP, &x.chain);
        return 0;
    }
    int put(const Notrack&, std::string*)
    {
        add("notrack");
        return 0;
    }
    int put(const NoRouteBack& x, std::string*)
    {
        // What nft emits for `fib saddr . mark [. iif] oif missing`: the
        // result is whether a route back exists, compared with 0.
        nftnl_expr* e = add("fib");
        uint32_t flags = NFTA_FIB_F_SADDR | NFTA_FIB_F_MARK | NFTA_FIB_F_PRESENT;
        if (x.strict)
            flags |= NFTA_FIB_F_IIF;
        nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, flags);
        nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_OIF);
        nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, NFT_REG_1);
        const uint32_t zero = 0;
        cmp(NFT_CMP_EQ, &zero, 4);
        return 0;
    }
    int put(const Icmpv6Type& x, std::string*)
    {
        nfproto(Family::ipv6);
        l4protos({L4::icmpv6});
        payload(NFT_PAYLOAD_TRANSPORT_HEADER, 0, 1);
        cmp(NFT_CMP_EQ, &x.type, 1);
        return 0;
    }

    Batch& batch_;
    const std::string& table_;
    QueueMode mode_;
    const cgroup::UnitCgroups& units_;
    uint32_t& next_set_id_;
    std::unique_ptr<nftnl_rule, RuleFree> rule_;
};

} // namespace

int encode_rule(Batch& batch, const std::string& table, const std::string& chain, const Rule& rule, QueueMode mode,
                const cgroup::UnitCgroups& units, uint32_t& next_set_id, std::string* problem)
{
    RuleWriter w(batch, table, mode, units, next_set_id);
    for (const Expr& e : rule.exprs)
        if (int r = w.write(e, problem); r < 0)
            return r;
    nftnl_rule* r = w.rule();
    nftnl_rule_set_str(r, NFTNL_RULE_TABLE, table.c_str());
    nftnl_rule_set_str(r, NFTNL_RULE_CHAIN, chain.c_str());
    nftnl_rule_set_u32(r, NFTNL_RULE_FAMILY, NFPROTO_INET);
    if (!rule.comment.empty()) {
        std::unique_ptr<nftnl_udata_buf, UdataFree> ud(nftnl_udata_buf_alloc(256));
        nftnl_udata_put_strz(ud.get(), NFTNL_UDATA_RULE_COMMENT, rule.comment.substr(0, 127).c_str());
        nftnl_rule_set_data(r, NFTNL_RULE_USERDATA, nftnl_udata_buf_data(ud.get()), nftnl_udata_buf_len(ud.get()));
    }
    nlmsghdr* nlh = batch.add(NFT_MSG_NEWRULE, NFPROTO_INET, NLM_F_CREATE | NLM_F_APPEND,
                              "rule in chain " + chain + " (" + rule.comment + ")");
    nftnl_rule_nlmsg_build_payload(nlh, r);
    batch.commit(nlh);
    return 0;
}

void encode_address_set(Batch& batch, const std::string& table, const AddressSet& set, uint32_t set_id)
{
    std::unique_ptr<nftnl_set, SetFree> s(nftnl_set_alloc());
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.c_str());
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set.name.c_str());
    nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, NFPROTO_INET);
    nftnl_set_set_u32(s.get(), NFTNL_SET_ID, set_id);
    // As nft makes `type mark . mark . ipv4_addr; flags timeout`: without
    // NFT_SET_CONCAT and field lengths (which only interval sets need), so
    // that the kernel takes the set in a saved listing for the same one.
    nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, NFT_SET_TIMEOUT);
    const uint32_t type = set.family == Family::ipv4 ? type_ipaddr : type_ip6addr;
    const uint32_t len = set.family == Family::ipv4 ? 4 : 16;
    nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, set.tagged ? concat_type({type_mark, type_mark, type}) : type);
    nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, set.tagged ? tag_len + len : len);
    set_userdata(s.get(), set.comment);
    nlmsghdr* nlh = batch.add(NFT_MSG_NEWSET, NFPROTO_INET, NLM_F_CREATE, "set " + set.name + " (" + set.comment + ")");
    nftnl_set_nlmsg_build_payload(nlh, s.get());
    batch.commit(nlh);
}

} // namespace fqdnd::nft
