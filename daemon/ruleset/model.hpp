#pragma once

#include "config/address.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

// The ruleset fqdnd wants in the kernel, as plain data: compiled from the
// configuration (compile.cpp) and translated to netlink by nft/encode.cpp.
// No kernel calls here.
namespace fqdnd::ruleset {

// Bits of the conntrack mark that fqdnd owns; it never touches the others.
inline constexpr uint32_t ct_mark_mask = 0x00f00000;
// The flow is DNS to an allowed server: its packets go to NFQUEUE.
inline constexpr uint32_t ct_mark_dns = 0x00100000;
// A flow that an FQDN set allowed: conntrack tells fqdnd when it opens and
// closes (filtered in the kernel by this bit), to keep its address alive.
inline constexpr uint32_t ct_mark_flow = 0x00400000;
// A flow that a policy let a selected endpoint begin. In forward, packets
// RELATED to such a flow are judged by the policies of whoever sends them;
// those related to a flow begun outside (a client's error about a packet
// that reached it) pass.
inline constexpr uint32_t ct_mark_client = 0x00800000;
// The packet mark of the answers fqdnd sends itself (a refused query's
// REFUSED, in the server's name): never filtered by fqdnd's own rules.
inline constexpr uint32_t packet_mark_reply = 0x00200000;

// Chains run before the usual filter priority (0; firewalld's inet table
// uses +10), so fqdnd decides first; a packet it accepts still crosses
// their chains, which may drop it.
inline constexpr int chain_priority = -10;
// The reverse-path check runs before conntrack (-200), so a spoofed packet
// leaves no state; as firewalld's rpfilter, at raw + 10.
inline constexpr int rpfilter_priority = -290;
// fqdnd's own replies are untracked before conntrack sees them (raw).
inline constexpr int notrack_priority = -300;

enum class Hook : uint8_t { forward, output, input, prerouting };
enum class L4 : uint8_t { tcp = 6, udp = 17, icmpv6 = 58, sctp = 132 };

// One match or statement of a rule, in the order the kernel evaluates them.
struct NfProto { Family family; };                       // meta nfproto ipv4
// ip daddr @set, or with a tag: (tag . ip daddr) @set, the tag a constant
// that names an FQDN selector (see AddressSet).
struct AddrInSet { bool source; Family family; std::string set; std::optional<uint64_t> tag; };
struct AddrInList { bool source; Family family; std::vector<Cidr> cidrs; }; // anonymous interval set
struct L4Ports { std::vector<L4> protocols; std::vector<uint16_t> ports; }; // meta l4proto { } th dport { }
struct L4Protos { std::vector<L4> protocols; };
struct InterfaceName { std::string name; bool output = false; bool negate = false; }; // "veth*" is a prefix
struct SocketUid { uint32_t uid; };
struct SocketGid { uint32_t gid; };
struct SocketCgroup { std::string unit; };                // socket cgroupv2: the unit's cgroup, given to the encoder
struct CtState { bool established, related, invalid = false; }; // ct state { established, related, invalid } (those true)
struct CtMarkHas { uint32_t bits; bool negate = false; };  // ct mark & bits == bits (negate: !=)
struct CtReply { bool reply; };                            // ct direction
struct CtMarkSet { uint32_t bits; };                       // ct mark set ct mark | bits
struct MetaMarkHas { uint32_t bits; };                     // meta mark & bits == bits
struct Counter {};
// To an NFLOG group, or the kernel log; `snaplen` bytes of each packet,
// or (none) as many as the group's reader asked for.
struct Log { std::string prefix; std::optional<uint16_t> group; std::optional<uint32_t> snaplen; };
struct LimitRef { std::string name; };                     // limit name "x": a limit object rules share
struct Queue { uint16_t first; uint16_t count; bool bypass; };
struct Accept {};
struct Drop {};
struct Jump { std::string chain; };
struct Notrack {};
// fib saddr . mark [. iif] oif missing: no route back to the source (through
// the interface it came in on, when `strict`).
struct NoRouteBack { bool strict; };
struct Icmpv6Type { uint8_t type; };                       // icmpv6 type N (and meta l4proto icmpv6)

using Expr = std::variant<NfProto, AddrInSet, AddrInList, L4Ports, L4Protos, InterfaceName, SocketUid, SocketGid,
                          SocketCgroup, CtState, CtMarkHas, CtReply, CtMarkSet, MetaMarkHas, Counter, Log, LimitRef,
                          Queue, Accept, Drop, Jump, Notrack, NoRouteBack, Icmpv6Type>;

struct Rule {
    std::vector<Expr> exprs;
    std::string comment; // stored as rule userdata: `nft list` shows it
};

struct Chain {
    std::string name;
    std::optional<Hook> hook; // base chain when set
    std::vector<Rule> rules;
    int priority = chain_priority; // a base chain's
};

// A named set of addresses with per-element timeouts. fqdnd's FQDN sets
// are tagged: one per family for all FQDN selectors, each element the
// selector's tag and an address (nft: `type mark . mark . ipv4_addr`),
// because the kernel finds a table's named sets by walking a list, so a
// pair of sets per selector made a transaction with thousands of them cost
// the square of their number. Their contents belong to the cache, not to
// the ruleset: a reload keeps the elements.
struct AddressSet {
    std::string name;
    Family family;
    std::string comment;
    bool tagged = false;
};

// The sets of every FQDN selector's addresses.
inline constexpr std::string_view fqdn_set4 = "fqdn4";
inline constexpr std::string_view fqdn_set6 = "fqdn6";
inline std::string fqdn_set(Family f)
{
    return std::string(f == Family::ipv4 ? fqdn_set4 : fqdn_set6);
}
// A tag is two mark fields, in host byte order as nft prints marks: the
// high half first.
inline constexpr uint32_t tag_len = 8;
inline std::array<uint32_t, 2> tag_halves(uint64_t tag)
{
    return {static_cast<uint32_t>(tag >> 32), static_cast<uint32_t>(tag)};
}

// A named limit object: a token bucket that every rule naming it shares,
// so the total rate is bounded however many rules there are.
struct LimitObject {
    std::string name;
    uint64_t rate;  // packets per second
    uint32_t burst; // packets
};

// Logged drops carry a prefix "fqdnd <kind> <policy>", read back by fqdnd.
inline constexpr std::string_view log_prefix = "fqdnd ";
inline constexpr std::string_view log_limit_name = "drop_log";
// Bytes of a dropped packet copied to the group: the headers are enough to
// tell who sent what where.
inline constexpr uint32_t drop_log_snaplen = 128;
// The prefix of query copies (query_log_group).
inline constexpr std::string_view query_log_prefix = "fqdnd query";

struct Ruleset {
    std::string table;
    std::vector<LimitObject> limits;
    std::vector<AddressSet> sets;
    std::vector<Chain> chains;
};

} // namespace fqdnd::ruleset
