#include "ruleset/compile.hpp"

#include "fnv.hpp"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <set>

namespace fqdnd::ruleset {

namespace {

using config::Policy;
using config::Protocol;

std::vector<Cidr> of_family(const std::vector<Cidr>& cidrs, Family f)
{
    std::vector<Cidr> out;
    for (const Cidr& c : cidrs)
        if (c.address.family == f)
            out.push_back(c);
    return out;
}

// The port limits of a rule as match lists, one per protocol group; one empty
// list when the rule has no ports (every port and protocol). "any" is TCP,
// UDP and SCTP as in Cilium; for DNS, TCP and UDP.
std::vector<std::vector<Expr>> port_matches(const std::vector<config::PortRule>& ports, bool dns = false)
{
    if (ports.empty())
        return {{}};
    std::vector<uint16_t> by_proto[3];
    for (const auto& p : ports)
        by_proto[static_cast<int>(p.protocol)].push_back(p.port);
    std::vector<std::vector<Expr>> out;
    if (!by_proto[0].empty())
        out.push_back({L4Ports{{L4::tcp}, by_proto[0]}});
    if (!by_proto[1].empty())
        out.push_back({L4Ports{{L4::udp}, by_proto[1]}});
    if (!by_proto[2].empty())
        out.push_back({dns ? L4Ports{{L4::tcp, L4::udp}, by_proto[2]} : L4Ports{{L4::tcp, L4::udp, L4::sctp}, by_proto[2]}});
    return out;
}

std::string policy_chain(const Policy& p)
{
    return "allow_" + p.name;
}

std::string dns_chain(const Policy& p)
{
    return "dns_" + p.name;
}

bool has_dns_rules(const Policy& p)
{
    return std::any_of(p.egress.begin(), p.egress.end(), [](const auto& r) { return r.is_dns(); });
}

// The matches that select a policy's traffic at one hook; each entry is one
// alternative (a packet may match several: a jump twice does no harm).
std::vector<std::vector<Expr>> selector_matches(const Policy& p, Hook hook)
{
    std::vector<std::vector<Expr>> out;
    const config::Selector& s = p.selector;
    if (hook == Hook::forward) {
        for (Family f : {Family::ipv4, Family::ipv6})
            if (auto cidrs = of_family(s.sources, f); !cidrs.empty())
                out.push_back({AddrInList{true, f, std::move(cidrs)}});
        for (const std::string& i : s.interfaces)
            out.push_back({InterfaceName{i}});
    } else if (hook == Hook::output) {
        if (s.local)
            return {{}};
        for (const auto& u : s.users)
            out.push_back({SocketUid{u.id}});
        for (const auto& g : s.groups)
            out.push_back({SocketGid{g.id}});
        for (const auto& unit : s.units)
            out.push_back({SocketCgroup{unit}});
    }
    return out;
}

std::vector<Expr> join(std::vector<Expr> a, const std::vector<Expr>& b)
{
    a.insert(a.end(), b.begin(), b.end());
    return a;
}

std::vector<Expr> then(std::vector<Expr> a, Expr e)
{
    a.push_back(std::move(e));
    return a;
}

void add_policy_chains(const Policy& p, const Queue& queue, Ruleset& rs)
{
    if (has_dns_rules(p)) {
        Chain dns{dns_chain(p), std::nullopt, {}};
        for (const auto& rule : p.egress) {
            if (!rule.is_dns())
                continue;
            for (Family f : {Family::ipv4, Family::ipv6}) {
                auto servers = of_family(rule.to_dns_servers, f);
                if (servers.empty())
                    continue;
                for (const auto& ports : port_matches(rule.ports, true)) {
                    std::vector<Expr> e{AddrInList{false, f, servers}};
                    e = join(std::move(e), ports);
                    e.insert(e.end(), {CtMarkSet{ct_mark_dns | ct_mark_client}, Counter{}, queue});
                    dns.rules.push_back(Rule{std::move(e), "DNS to an allowed server: queries are checked by fqdnd"});
                }
            }
        }
        rs.chains.push_back(std::move(dns));
    }

    Chain allow{policy_chain(p), std::nullopt, {}};
    for (const auto& rule : p.egress) {
        if (rule.is_dns())
            continue;
        for (const auto& ports : port_matches(rule.ports)) {
            for (const auto& selector : rule.to_fqdns)
                for (Family f : {Family::ipv4, Family::ipv6})
                    allow.rules.push_back(Rule{then(then(join({AddrInSet{false, f, fqdn_set(f), selector_tag(selector)}}, ports),
                                                         CtMarkSet{ct_mark_flow | ct_mark_client}),
                                                    Accept{}),
                                               selector.to_string()});
            for (Family f : {Family::ipv4, Family::ipv6})
                if (auto cidrs = of_family(rule.to_cidrs, f); !cidrs.empty())
                    allow.rules.push_back(
                        Rule{then(then(join({AddrInList{false, f, std::move(cidrs)}}, ports), CtMarkSet{ct_mark_client}),
                                  Accept{}),
                             "to-cidrs"});
        }
    }
    rs.chains.push_back(std::move(allow));
}

// The UDP queries of a DNS rule that allows every name, as a match: they
// are copied to fqdnd, not held. Nothing for other rules. UDP alone: TCP
// queries are followed and gated as a stream.
std::optional<Expr> copied_queries(const config::EgressRule& rule)
{
    if (!rule.is_dns() || std::none_of(rule.dns.begin(), rule.dns.end(), [](const FqdnSelector& d) { return d.is_match_all(); }))
        return std::nullopt;
    if (rule.ports.empty())
        return L4Protos{{L4::udp}};
    std::vector<uint16_t> udp_ports;
    for (const auto& port : rule.ports)
        if (port.protocol != Protocol::tcp)
            udp_ports.push_back(port.port);
    if (udp_ports.empty())
        return std::nullopt;
    return L4Ports{{L4::udp}, udp_ports};
}

} // namespace

bool copies_queries(const config::Config& config)
{
    for (const Policy& p : config.policies)
        for (const auto& rule : p.egress)
            if (copied_queries(rule) && !rule.to_dns_servers.empty())
                return true;
    return false;
}

uint64_t selector_tag(const FqdnSelector& selector)
{
    // A stable name from the selector text, the same in every build.
    return fnv::hash(selector.to_string());
}

std::string set_key(const FqdnSelector& selector, Family family)
{
    const uint64_t t = selector_tag(selector);
    char tag[32];
    std::snprintf(tag, sizeof tag, ":0x%08x.0x%08x", static_cast<unsigned>(t >> 32), static_cast<unsigned>(t));
    return fqdn_set(family) + tag;
}

Ruleset compile(const config::Config& config)
{
    const config::Settings& s = config.settings;
    Ruleset rs;
    rs.table = s.table;
    for (Family f : {Family::ipv4, Family::ipv6})
        rs.sets.push_back(AddressSet{fqdn_set(f), f, "FQDN selectors' addresses: selector tag . address", true});

    // Queries (a flow's original direction, client toward server) go to
    // the first `queues` queues, answers to the next as many: fqdnd tells
    // one from the other by the queue, that is by conntrack's direction,
    // never by a bit the client writes.
    const Queue queue{static_cast<uint16_t>(s.queue), static_cast<uint16_t>(s.queues), s.fail_open};
    const Queue answers{static_cast<uint16_t>(s.queue + s.queues), static_cast<uint16_t>(s.queues), s.fail_open};
    const std::vector<Expr> dns_l4{L4Protos{{L4::udp, L4::tcp}}};

    // The DNS ports of every rule, and 53 always: DNS to any server no rule
    // lists is dropped before any to-cidrs or to-fqdns rule could allow it.
    std::set<uint16_t> dns_ports{53};
    for (const Policy& p : config.policies)
        for (const auto& r : p.egress)
            if (r.is_dns())
                for (const auto& port : r.ports)
                    dns_ports.insert(port.port);
    const L4Ports other_dns{{L4::udp, L4::tcp}, {dns_ports.begin(), dns_ports.end()}};

    // Drops (and what audit policies would drop) go to an NFLOG group that
    // fqdnd reads, through one limit shared by every rule: a flood costs
    // the daemon at most log-rate packets a second.
    const bool logging = s.log_rate > 0;
    if (logging)
        rs.limits.push_back(LimitObject{std::string(log_limit_name), static_cast<uint64_t>(s.log_rate),
                                        static_cast<uint32_t>(s.log_rate)});
    // Packets that are no policy's matter (what conntrack calls invalid,
    // related packets not allowed): counted, not logged; an audit policy
    // passes them, as it passes everything.
    auto unlogged = [](std::vector<Expr> match, const Policy& p, const std::string& what) {
        match.insert(match.end(), {Counter{}, p.audit ? Expr{Accept{}} : Expr{Drop{}}});
        return Rule{std::move(match), "policy " + p.name + ": " + what};
    };
    auto log_rule = [&](std::vector<Expr> match, const std::string& kind, const Policy& p) {
        match.insert(match.end(), {LimitRef{std::string(log_limit_name)},
                                   Log{std::string(log_prefix) + kind + " " + p.name, static_cast<uint16_t>(s.log_group), drop_log_snaplen}});
        return Rule{std::move(match), "policy " + p.name + ": log (" + kind + ")"};
    };

    // Queries under a DNS rule that allows every name are not held: they
    // pass at once, and a copy goes to the query NFLOG group, which fqdnd
    // reads before each round of answers. Each query of such a flow is
    // judged here, by its selector, server and port, before any queue.
    auto mirror_queries = [&](Chain& chain, Hook hook) {
        // The whole query (the reader asks for it): a copy cut short
        // could not be read, and its answer would be dropped.
        const Log copy_to{std::string(query_log_prefix), query_log_group(s), std::nullopt};
        for (const Policy& p : config.policies) {
            for (const auto& rule : p.egress) {
                const auto l4 = copied_queries(rule);
                if (!l4)
                    continue;
                for (Family f : {Family::ipv4, Family::ipv6}) {
                    auto servers = of_family(rule.to_dns_servers, f);
                    if (servers.empty())
                        continue;
                    for (auto m : selector_matches(p, hook == Hook::output ? Hook::output : Hook::forward)) {
                        // A source of one family never asks a server of the other.
                        if (std::any_of(m.begin(), m.end(), [f](const Expr& e) {
                                const auto* a = std::get_if<AddrInList>(&e);
                                return a && a->family != f;
                            }))
                            continue;
                        if (hook == Hook::input)
                            m.push_back(InterfaceName{"lo", false, true});
                        m.insert(m.end(), {AddrInList{false, f, servers}, *l4, CtReply{false},
                                           CtMarkSet{ct_mark_dns | ct_mark_client}, Counter{}, copy_to, Accept{}});
                        chain.rules.push_back(Rule{std::move(m), "policy " + p.name
                                                                     + ": DNS that may ask every name: queries pass, a copy to fqdnd"});
                    }
                }
            }
        }
    };

    for (Hook hook : {Hook::forward, Hook::output, Hook::input}) {
        Chain chain{hook == Hook::forward ? "forward" : hook == Hook::output ? "output" : "input", hook, {}};
        mirror_queries(chain, hook);
        // DNS flows first, so that answers and the later segments of TCP
        // queries reach fqdnd before the established-flow accept. Local
        // processes' queries are queued at output and their answers at
        // input, where every one arrives; queries of forwarded clients to
        // this host's own resolver at input and its answers at output. What
        // crosses the loopback is queued once: at output going, at input
        // coming back.
        const InterfaceName loopback_in{"lo", false, true}, loopback_out{"lo", true, true};
        auto dns_flow = [&](bool reply, std::optional<InterfaceName> not_lo, const char* what) {
            std::vector<Expr> e{CtMarkHas{ct_mark_dns}, CtReply{reply}};
            if (not_lo)
                e.push_back(*not_lo);
            e = join(std::move(e), dns_l4);
            e.insert(e.end(), {Counter{}, reply ? answers : queue});
            chain.rules.push_back(Rule{std::move(e), what});
        };
        if (hook == Hook::forward) {
            dns_flow(false, std::nullopt, "DNS flows: queries are checked by fqdnd");
            dns_flow(true, std::nullopt, "DNS flows: answers are inspected by fqdnd");
        } else if (hook == Hook::output) {
            dns_flow(false, std::nullopt, "DNS flows: queries are checked by fqdnd");
            dns_flow(true, loopback_out, "DNS flows: this host's answers to clients are inspected by fqdnd");
        } else {
            dns_flow(true, std::nullopt, "DNS flows: answers are inspected by fqdnd");
            dns_flow(false, loopback_in, "DNS flows: clients' queries to this host are checked by fqdnd");
            // Forwarded clients asking this host's own resolver: gated as
            // if it were beyond, only not through forward (what conntrack
            // calls invalid, too, as there).
            for (const Policy& p : config.policies)
                for (const auto& m : selector_matches(p, Hook::forward))
                    chain.rules.push_back(unlogged(join(then(m, loopback_in), {other_dns, CtState{false, false, true}}), p,
                                                   "DNS to this host conntrack calls invalid"));
            for (const Policy& p : config.policies)
                if (has_dns_rules(p))
                    for (const auto& m : selector_matches(p, Hook::forward))
                        chain.rules.push_back(
                            Rule{join(then(m, loopback_in), {Jump{dns_chain(p)}}), "policy " + p.name + ": DNS to this host"});
            for (const Policy& p : config.policies)
                if (!p.audit)
                    for (const auto& m : selector_matches(p, Hook::forward)) {
                        if (logging)
                            chain.rules.push_back(log_rule(join(then(m, loopback_in), {other_dns}), "dns-server", p));
                        chain.rules.push_back(Rule{join(then(m, loopback_in), {other_dns, Counter{}, Drop{}}),
                                                   "policy " + p.name + ": DNS to this host, which no rule lists"});
                    }
            rs.chains.push_back(std::move(chain));
            continue;
        }
        if (hook == Hook::output)
            chain.rules.push_back(Rule{{MetaMarkHas{packet_mark_reply}, Accept{}}, "answers fqdnd sends itself"});
        // A flow whose original direction came from outside (a packet
        // spoofed in a server's name, let through as no policy selects its
        // source) must not carry a selected client's DNS as its reply,
        // established and unqueued.
        for (const Policy& p : config.policies)
            for (const auto& m : p.audit ? std::vector<std::vector<Expr>>{} : selector_matches(p, hook))
                chain.rules.push_back(Rule{join(m, {CtReply{true}, CtMarkHas{ct_mark_dns, true}, other_dns, Counter{}, Drop{}}),
                                           "policy " + p.name + ": DNS as the reply of a flow from outside"});
        // Packets RELATED to a flow (ICMP errors quoting it) are so whoever
        // sends them: conntrack does not ask whether the sender is on the
        // flow's path. In forward, those related to a flow a selected
        // client began meet the policies of their sender (untouched when
        // none selects it), or one client could send bytes, and errors
        // that abort connections, to whatever another client talks to.
        // Those going back on a flow begun outside (a client's own port
        // unreachable, the end of a traceroute) pass. This host's own
        // errors about forwarded flows leave through output, where related
        // packets stay accepted.
        if (hook == Hook::forward) {
            chain.rules.push_back(Rule{{CtState{true, false}, Accept{}}, "established flows"});
            chain.rules.push_back(Rule{{CtState{false, true}, CtReply{true}, CtMarkHas{ct_mark_client, true}, Accept{}},
                                       "related to a flow begun outside, going back"});
        } else
            chain.rules.push_back(Rule{{CtState{true, true}, Accept{}}, "established and related flows"});
        // What conntrack calls invalid (a stray RST or FIN of a flow it no
        // longer knows, a segment outside the TCP window) no rule below
        // would accept: each reads the flow's mark. Dropped here, counted
        // and not logged, it is not shown or recorded as a policy's drop
        // ("not allowed" to an address the policy allows). Audit: passed.
        for (const Policy& p : config.policies)
            for (const auto& m : selector_matches(p, hook))
                chain.rules.push_back(unlogged(then(m, CtState{false, false, true}), p, "packets conntrack calls invalid"));

        for (const Policy& p : config.policies)
            if (has_dns_rules(p))
                for (const auto& m : selector_matches(p, hook))
                    chain.rules.push_back(Rule{join(m, {Jump{dns_chain(p)}}), "policy " + p.name + ": DNS"});
        for (const Policy& p : config.policies)
            if (!p.audit)
                for (const auto& m : selector_matches(p, hook)) {
                    if (logging)
                        chain.rules.push_back(log_rule(join(m, {other_dns}), "dns-server", p));
                    chain.rules.push_back(
                        Rule{join(m, {other_dns, Counter{}, Drop{}}), "policy " + p.name + ": DNS to a server no rule lists"});
                }
        for (const Policy& p : config.policies)
            for (const auto& m : selector_matches(p, hook))
                chain.rules.push_back(Rule{join(m, {Jump{policy_chain(p)}}), "policy " + p.name});
        for (const Policy& p : config.policies)
            for (const auto& m : selector_matches(p, hook)) {
                // Related packets no policy allowed (a client's error about
                // a late reply, or one about another client's flow) are
                // neither logged nor recorded: they are not traffic a
                // policy should be written for.
                if (hook == Hook::forward)
                    chain.rules.push_back(unlogged(then(m, CtState{false, true}), p, "related to a flow, not allowed"));
                if (logging)
                    chain.rules.push_back(log_rule(m, p.audit ? "audit" : "drop", p));
                if (p.audit)
                    chain.rules.push_back(Rule{join(m, {CtMarkSet{ct_mark_client}, Counter{}, Accept{}}),
                                               "policy " + p.name + " (audit): would drop"});
                else
                    chain.rules.push_back(Rule{join(m, {Counter{}, Drop{}}), "policy " + p.name + ": not allowed"});
            }
        rs.chains.push_back(std::move(chain));
    }
    for (const Policy& p : config.policies)
        add_policy_chains(p, queue, rs);

    // The answers and resets fqdnd sends in a server's name are untracked:
    // tracked, conntrack would take a refusal as the reply of a new flow
    // whose other direction is the client's, and the client's next query
    // from that port would ride it as established, unqueued.
    rs.chains.push_back(Chain{"notrack_replies", Hook::output,
                              {Rule{{MetaMarkHas{packet_mark_reply}, L4Protos{{L4::udp, L4::tcp}}, Notrack{}},
                                    "answers fqdnd sends itself leave no conntrack state"}},
                              notrack_priority});

    // Selected clients could otherwise spoof a source no policy selects, or
    // bounce an answer forged in the server's name off this host.
    if (s.reverse_path_filter != config::ReversePath::off && !config.policies.empty()) {
        const bool strict = s.reverse_path_filter == config::ReversePath::strict;
        Chain rp{"reverse_path", Hook::prerouting, {}, rpfilter_priority};
        rp.rules.push_back(Rule{{InterfaceName{"lo"}, Accept{}}, "loopback"});
        rp.rules.push_back(Rule{{AddrInList{true, Family::ipv6, {Cidr{Address{Family::ipv6, {}}, 128}}}, Accept{}},
                                "IPv6 from :: (address autoconfiguration; never forwarded)"});
        // Exempt only what cannot leave the link: a broadcast DHCP request
        // from 0.0.0.0, and neighbour discovery to link-scope multicast
        // (duplicate address detection comes from ::).
        const Address broadcast = *Address::parse("255.255.255.255");
        rp.rules.push_back(Rule{{AddrInList{true, Family::ipv4, {Cidr{Address{}, 32}}},
                                 AddrInList{false, Family::ipv4, {Cidr{broadcast, 32}}}, L4Ports{{L4::udp}, {67}},
                                 Accept{}},
                                "DHCP requests come from 0.0.0.0"});
        const Cidr link_multicast{*Address::parse("ff02::"), 16};
        for (uint8_t type : {uint8_t{134}, uint8_t{135}})
            rp.rules.push_back(Rule{{AddrInList{false, Family::ipv6, {link_multicast}}, Icmpv6Type{type}, Accept{}},
                                    "IPv6 router adverts and neighbour solicitations to link-scope multicast"});
        rp.rules.push_back(Rule{{NoRouteBack{strict}, Counter{}, Drop{}},
                                strict ? "no route back to the source through the interface it came in on"
                                       : "no route back to the source"});
        rs.chains.push_back(std::move(rp));
    }
    return rs;
}

} // namespace fqdnd::ruleset
