// The ruleset compiled from policies: what each chain holds, in which
// order, before any of it reaches the kernel.
#include "config/loader.hpp"
#include "ruleset/compile.hpp"

#include "config-text.hpp"

#include <doctest/doctest.h>

#include <algorithm>

using namespace fqdnd;
using namespace fqdnd::ruleset;

namespace {

// Without drop logging unless `settings` say otherwise: the shape of the
// chains is what most cases look at; logging has cases of its own.
Ruleset compile_text(const std::string& policies, const std::string& settings = "[daemon]\nlog-rate = 0\n")
{
    return compile(config_of(policies, settings));
}

const Chain& chain(const Ruleset& rs, const std::string& name)
{
    for (const Chain& c : rs.chains)
        if (c.name == name)
            return c;
    FAIL("no chain " << name);
    throw 0;
}

template <typename T>
const T* find(const Rule& r)
{
    for (const Expr& e : r.exprs)
        if (const auto* x = std::get_if<T>(&e))
            return x;
    return nullptr;
}

template <typename T>
bool has(const Rule& r)
{
    return find<T>(r) != nullptr;
}

// The comments of a chain's rules, in order.
std::vector<std::string> comments(const Chain& c)
{
    std::vector<std::string> out;
    for (const Rule& r : c.rules)
        out.push_back(r.comment);
    return out;
}

const char* two_policies = R"([[policy]]
name = "a"
[policy.selector]
sources = ["192.0.2.0/29"]
[[policy.egress]]
to-fqdns = [{ match-pattern = "*.k8s.intra" }]
[[policy.egress]]
to-dns-servers = ["203.0.113.53", "2001:db8::53"]
dns = [{ match-pattern = "*" }]

[[policy]]
name = "b"
[policy.selector]
sources = ["192.0.2.0/29"]
users = [0]
[[policy.egress]]
to-fqdns = [{ match-name = "api.github.com" }, { match-pattern = "*.k8s.intra" }]
ports = [{ port = 443, protocol = "tcp" }, { port = 8443, protocol = "tcp" }, { port = 53, protocol = "any" }]
)";

} // namespace

TEST_CASE("one tagged set per family for every FQDN selector, each selector tagged stably")
{
    const Ruleset rs = compile_text(two_policies);
    REQUIRE(rs.sets.size() == 2);
    CHECK(rs.sets[0].name == "fqdn4");
    CHECK(rs.sets[0].family == Family::ipv4);
    CHECK(rs.sets[1].name == "fqdn6");
    CHECK(rs.sets[1].family == Family::ipv6);
    CHECK((rs.sets[0].tagged && rs.sets[1].tagged));
    const auto k8s = *FqdnSelector::parse_pattern("*.K8S.intra.", nullptr);
    // FNV-1a of "match-pattern: *.k8s.intra.": the same in every build and
    // release, or a restart would lose what the kernel holds.
    CHECK(selector_tag(k8s) == 0x812a0c7f411d30e5ULL);
    CHECK(set_key(k8s, Family::ipv4) == "fqdn4:0x812a0c7f.0x411d30e5");
    CHECK(set_key(k8s, Family::ipv6) == "fqdn6:0x812a0c7f.0x411d30e5");
    CHECK(selector_tag(*FqdnSelector::parse_name("echo.k8s.intra", nullptr))
          != selector_tag(*FqdnSelector::parse_pattern("echo.k8s.intra", nullptr)));
    // Every rule that allows by the selector looks up its tag.
    size_t lookups = 0;
    for (const Chain& c : rs.chains)
        for (const Rule& r : c.rules)
            for (const Expr& e : r.exprs)
                if (const auto* x = std::get_if<AddrInSet>(&e); x && x->tag == selector_tag(k8s)) {
                    CHECK(x->set == fqdn_set(x->family));
                    ++lookups;
                }
    CHECK(lookups >= 2);
}

TEST_CASE("policies selecting the same endpoint add up: every jump before any drop")
{
    const Ruleset rs = compile_text(two_policies);
    CHECK(comments(chain(rs, "forward")) == std::vector<std::string>{
        "policy a: DNS that may ask every name: queries pass, a copy to fqdnd",
        "DNS flows: queries are checked by fqdnd",
        "DNS flows: answers are inspected by fqdnd",
        "policy a: DNS as the reply of a flow from outside",
        "policy b: DNS as the reply of a flow from outside",
        "established flows",
        "related to a flow begun outside, going back",
        "policy a: packets conntrack calls invalid",
        "policy b: packets conntrack calls invalid",
        "policy a: DNS",
        "policy a: DNS to a server no rule lists",
        "policy b: DNS to a server no rule lists",
        "policy a",
        "policy b",
        "policy a: related to a flow, not allowed",
        "policy a: not allowed",
        "policy b: related to a flow, not allowed",
        "policy b: not allowed",
    });
    // Local processes only where a policy selects them (b: uid 0).
    CHECK(comments(chain(rs, "output")) == std::vector<std::string>{
        "DNS flows: queries are checked by fqdnd",
        "DNS flows: this host's answers to clients are inspected by fqdnd",
        "answers fqdnd sends itself",
        "policy b: DNS as the reply of a flow from outside",
        "established and related flows",
        "policy b: packets conntrack calls invalid",
        "policy b: DNS to a server no rule lists",
        "policy b",
        "policy b: not allowed",
    });
    // Forwarded clients (a) asking this host's own resolver: gated at input.
    CHECK(comments(chain(rs, "input")) == std::vector<std::string>{
        "policy a: DNS that may ask every name: queries pass, a copy to fqdnd",
        "DNS flows: answers are inspected by fqdnd",
        "DNS flows: clients' queries to this host are checked by fqdnd",
        "policy a: DNS to this host conntrack calls invalid",
        "policy b: DNS to this host conntrack calls invalid",
        "policy a: DNS to this host",
        "policy a: DNS to this host, which no rule lists",
        "policy b: DNS to this host, which no rule lists",
    });
}

TEST_CASE("queries and answers go to queues of their own, by conntrack's direction")
{
    const Ruleset rs = compile_text(two_policies, "[daemon]\nlog-rate = 0\nqueue = 100\nqueues = 2\n");
    auto queue_of = [](const Rule& r) {
        for (const Expr& e : r.exprs)
            if (const auto* q = std::get_if<Queue>(&e))
                return *q;
        FAIL("no queue in " << r.comment);
        return Queue{};
    };
    auto reply_of = [](const Rule& r) {
        for (const Expr& e : r.exprs)
            if (const auto* d = std::get_if<CtReply>(&e))
                return d->reply;
        FAIL("no direction in " << r.comment);
        return false;
    };
    size_t queued = 0;
    for (const char* name : {"forward", "output", "input"})
        for (const Rule& r : chain(rs, name).rules)
            if (has<Queue>(r)) {
                ++queued;
                const Queue q = queue_of(r);
                CHECK(q.count == 2);
                CHECK(q.first == (reply_of(r) ? 102 : 100));
            }
    CHECK(queued == 6);
    // A flow's first packet, in a policy's DNS chain, is a query.
    for (const Rule& r : chain(rs, "dns_a").rules)
        CHECK(queue_of(r).first == 100);
}

TEST_CASE("DNS servers are queued per family on tcp and udp 53 by default, marking the flow")
{
    const Ruleset rs = compile_text(two_policies);
    const Chain& dns = chain(rs, "dns_a");
    REQUIRE(dns.rules.size() == 2);
    for (const Rule& r : dns.rules) {
        CHECK(has<Queue>(r));
        CHECK(has<CtMarkSet>(r));
        const auto& ports = std::get<L4Ports>(r.exprs[1]);
        CHECK(ports.ports == std::vector<uint16_t>{53});
        CHECK(ports.protocols == std::vector<L4>{L4::tcp, L4::udp});
    }
    CHECK(std::get<AddrInList>(dns.rules[0].exprs[0]).family == Family::ipv4);
    CHECK(std::get<AddrInList>(dns.rules[1].exprs[0]).family == Family::ipv6);
    const Queue q = std::get<Queue>(dns.rules[0].exprs.back());
    CHECK(q.first == 5300);
    CHECK(q.count == 1);
    CHECK(q.bypass);
}

TEST_CASE("port limits group by protocol; any is tcp, udp and sctp")
{
    const Ruleset rs = compile_text(two_policies);
    const Chain& allow = chain(rs, "allow_b");
    // 2 selectors x 2 families x 2 protocol groups (tcp {443, 8443}; any {53}).
    REQUIRE(allow.rules.size() == 8);
    const auto& tcp = std::get<L4Ports>(allow.rules[0].exprs[1]);
    CHECK(tcp.protocols == std::vector<L4>{L4::tcp});
    CHECK(tcp.ports == std::vector<uint16_t>{443, 8443});
    const auto& any = std::get<L4Ports>(allow.rules[4].exprs[1]);
    CHECK(any.protocols == std::vector<L4>{L4::tcp, L4::udp, L4::sctp});
    for (const Rule& r : allow.rules)
        CHECK(has<Accept>(r));
}

TEST_CASE("audit policies log and accept instead of dropping, DNS included")
{
    const Ruleset rs = compile_text(R"([[policy]]
name = "watch"
audit = true
[policy.selector]
interfaces = ["veth*"]
[[policy.egress]]
to-cidrs = ["198.51.100.0/24"]
)", "");
    const Chain& fwd = chain(rs, "forward");
    CHECK(comments(fwd) == std::vector<std::string>{
        "DNS flows: queries are checked by fqdnd",
        "DNS flows: answers are inspected by fqdnd",
        "established flows",
        "related to a flow begun outside, going back",
        "policy watch: packets conntrack calls invalid",
        "policy watch",
        "policy watch: related to a flow, not allowed",
        "policy watch: log (audit)",
        "policy watch (audit): would drop",
    });
    // What conntrack calls invalid passes unrecorded, as it did before.
    const Rule& invalid = fwd.rules[4];
    CHECK(find<CtState>(invalid)->invalid);
    CHECK_FALSE(has<Log>(invalid));
    CHECK(std::holds_alternative<Accept>(invalid.exprs.back()));
    const Rule& log = fwd.rules[fwd.rules.size() - 2];
    REQUIRE(has<Log>(log));
    CHECK(std::get<Log>(log.exprs.back()).prefix == "fqdnd audit watch");
    CHECK_FALSE(has<Accept>(log));
    const Rule& last = fwd.rules.back();
    CHECK(has<Accept>(last));
    CHECK_FALSE(has<Drop>(last));
    CHECK(std::get<InterfaceName>(last.exprs[0]).name == "veth*");
}

TEST_CASE("drops are logged to the NFLOG group through one shared limit; log-rate 0 logs nothing")
{
    const char* policy = R"([[policy]]
name = "echo"
[policy.selector]
sources = ["192.0.2.0/29"]
[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
dns = [{ match-pattern = "*" }]
)";
    auto r = config::load_config_text("[daemon]\nlog-group = 7\nlog-rate = 20\n", "/etc/fqdnd/fqdnd.toml",
                                      {{"p.toml", policy}});
    REQUIRE(r.config);
    const Ruleset rs = compile(*r.config);
    REQUIRE(rs.limits.size() == 1);
    CHECK(rs.limits[0].name == "drop_log");
    CHECK(rs.limits[0].rate == 20);
    const Chain& fwd = chain(rs, "forward");
    std::vector<std::string> prefixes;
    for (const Rule& rule : fwd.rules)
        for (const Expr& e : rule.exprs)
            if (const auto* log = std::get_if<Log>(&e); log && log->prefix != query_log_prefix) {
                CHECK(log->group == std::optional<uint16_t>(7));
                // The limit comes before the log, after every match.
                CHECK(std::holds_alternative<LimitRef>(rule.exprs[rule.exprs.size() - 2]));
                CHECK_FALSE(has<Drop>(rule));
                prefixes.push_back(log->prefix);
            }
    CHECK(prefixes == std::vector<std::string>{"fqdnd dns-server echo", "fqdnd drop echo"});

    auto quiet = config::load_config_text("[daemon]\nlog-rate = 0\n", "/etc/fqdnd/fqdnd.toml", {{"p.toml", policy}});
    REQUIRE(quiet.config);
    const Ruleset none = compile(*quiet.config);
    CHECK(none.limits.empty());
    for (const Chain& c : none.chains)
        for (const Rule& rule : c.rules) {
            CHECK_FALSE(has<LimitRef>(rule));
            // Only the query copies, which no limit may thin out.
            if (const auto* log = find<Log>(rule))
                CHECK(log->prefix == query_log_prefix);
        }
}

TEST_CASE("queries under a rule allowing every name pass unheld, copied to the next NFLOG group")
{
    const char* policy = R"([[policy]]
name = "all"
[policy.selector]
sources = ["192.0.2.0/29"]
[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
ports = [{ port = 53, protocol = "any" }, { port = 5353, protocol = "tcp" }]
dns = [{ match-pattern = "*" }]

[[policy]]
name = "narrow"
[policy.selector]
sources = ["192.0.2.8/29"]
[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
dns = [{ match-pattern = "*.k8s.intra" }]

[[policy]]
name = "tcp-only"
[policy.selector]
sources = ["192.0.2.16/29"]
[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
ports = [{ port = 53, protocol = "tcp" }]
dns = [{ match-pattern = "*" }]
)";
    auto r = config::load_config_text("[daemon]\nlog-group = 7\n", "/etc/fqdnd/fqdnd.toml", {{"p.toml", policy}});
    REQUIRE(r.config);
    CHECK(copies_queries(*r.config));
    CHECK(query_log_group(r.config->settings) == 8);
    const Ruleset rs = compile(*r.config);
    for (const char* hook : {"forward", "input"}) {
        const Chain& c = chain(rs, hook);
        REQUIRE(c.rules.size() > 1);
        // First in the chain, before any queue: UDP to the server's port,
        // in the query's direction, marked as DNS (its answers are queued),
        // copied whole and accepted.
        const Rule& copy = c.rules[0];
        CAPTURE(hook);
        const auto* log = find<Log>(copy);
        REQUIRE(log);
        CHECK(log->prefix == query_log_prefix);
        CHECK(log->group == std::optional<uint16_t>(8));
        CHECK_FALSE(has<LimitRef>(copy));
        CHECK(std::holds_alternative<Accept>(copy.exprs.back()));
        const auto* ports = find<L4Ports>(copy);
        REQUIRE(ports);
        CHECK(ports->protocols == std::vector<L4>{L4::udp});
        CHECK(ports->ports == std::vector<uint16_t>{53});
        const auto* dir = find<CtReply>(copy);
        REQUIRE(dir);
        CHECK_FALSE(dir->reply);
        const auto* mark = find<CtMarkSet>(copy);
        REQUIRE(mark);
        CHECK(mark->bits == (ct_mark_dns | ct_mark_client));
        CHECK(has<InterfaceName>(copy) == (std::string(hook) == "input")); // not from the loopback
        // One copy rule: the narrow and the TCP-only policies are queued.
        size_t copies = 0;
        for (const Rule& rule : c.rules)
            if (const auto* l = find<Log>(rule); l && l->prefix == query_log_prefix)
                ++copies;
        CHECK(copies == 1);
    }
    // Nothing to copy: no group is needed.
    auto narrow = config::load_config_text("", "/etc/fqdnd/fqdnd.toml", {{"p.toml", R"([[policy]]
name = "narrow"
[policy.selector]
sources = ["192.0.2.8/29"]
[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
dns = [{ match-pattern = "*.k8s.intra" }]
)"}});
    REQUIRE(narrow.config);
    CHECK_FALSE(copies_queries(*narrow.config));
}

TEST_CASE("local = true selects every local process; fail-open off drops DNS without fqdnd")
{
    auto r = config::load_config_text("[daemon]\nfail-open = false\nqueue = 7\nqueues = 2\nlog-rate = 0\n", "/etc/fqdnd/fqdnd.toml",
                                      {{"p.toml", "[[policy]]\nname = \"l\"\n[policy.selector]\nlocal = true\n"
                                                  "[[policy.egress]]\nto-dns-servers = [\"127.0.0.53\"]\n"
                                                  "dns = [{ match-name = \"example.com\" }]\n"}});
    REQUIRE(r.config);
    const Ruleset rs = compile(*r.config);
    const Chain& out = chain(rs, "output");
    REQUIRE(out.rules.size() == 10);
    CHECK(find<CtState>(out.rules[5])->invalid);
    CHECK(std::get<Jump>(out.rules[6].exprs[0]).chain == "dns_l");
    CHECK(chain(rs, "forward").rules.size() == 4);
    const Queue q = std::get<Queue>(chain(rs, "dns_l").rules[0].exprs.back());
    CHECK(q.first == 7);
    CHECK(q.count == 2);
    CHECK_FALSE(q.bypass);
}

TEST_CASE("the reverse-path chain drops sources that do not route back, strict unless relaxed")
{
    const Ruleset strict = compile_text(two_policies);
    const Chain& rp = chain(strict, "reverse_path");
    REQUIRE(rp.hook == Hook::prerouting);
    CHECK(rp.priority < -200); // before conntrack: a spoofed packet leaves no state
    const Rule& last = rp.rules.back();
    REQUIRE(has<NoRouteBack>(last));
    CHECK(std::get<NoRouteBack>(last.exprs[0]).strict);
    CHECK(has<Drop>(last));
    // Every rule before the drop is a narrow exemption that accepts.
    for (size_t i = 0; i + 1 < rp.rules.size(); ++i)
        CHECK(has<Accept>(rp.rules[i]));

    const Ruleset loose = compile_text(two_policies, "[daemon]\nlog-rate = 0\nreverse-path-filter = \"loose\"\n");
    CHECK_FALSE(std::get<NoRouteBack>(chain(loose, "reverse_path").rules.back().exprs[0]).strict);

    const Ruleset off = compile_text(two_policies, "[daemon]\nlog-rate = 0\nreverse-path-filter = \"off\"\n");
    for (const Chain& c : off.chains)
        CHECK(c.name != "reverse_path");
}

TEST_CASE("with no policy there is no reverse-path check: nothing is selected")
{
    const Ruleset rs = compile_text("");
    for (const Chain& c : rs.chains)
        CHECK(c.name != "reverse_path");
}

TEST_CASE("fqdnd's own replies are untracked before conntrack sees them")
{
    const Ruleset rs = compile_text(two_policies);
    const Chain& c = chain(rs, "notrack_replies");
    REQUIRE(c.hook == Hook::output);
    CHECK(c.priority < -200);
    REQUIRE(c.rules.size() == 1);
    CHECK(has<MetaMarkHas>(c.rules[0]));
    CHECK(std::get<MetaMarkHas>(c.rules[0].exprs[0]).bits == packet_mark_reply);
    CHECK(has<Notrack>(c.rules[0]));
}

TEST_CASE("forward: related packets pass going back on flows begun outside, else as a policy allows")
{
    const Ruleset rs = compile_text(two_policies);
    const Chain& fwd = chain(rs, "forward");
    auto rule = [&](const std::string& comment) -> const Rule& {
        auto it = std::find_if(fwd.rules.begin(), fwd.rules.end(), [&](const Rule& r) { return r.comment == comment; });
        REQUIRE(it != fwd.rules.end());
        return *it;
    };
    const Rule& established = rule("established flows");
    CHECK(find<CtState>(established)->established);
    CHECK_FALSE(find<CtState>(established)->related);
    const Rule& back = rule("related to a flow begun outside, going back");
    CHECK(find<CtState>(back)->related);
    CHECK_FALSE(find<CtState>(back)->established);
    CHECK(find<CtReply>(back)->reply);
    CHECK(find<CtMarkHas>(back)->bits == ct_mark_client);
    CHECK(find<CtMarkHas>(back)->negate);
    CHECK(std::holds_alternative<Accept>(back.exprs.back()));
    // Not logged, so not recorded for `policy suggest`: before the log rule.
    const Rule& related = rule("policy a: related to a flow, not allowed");
    CHECK(std::holds_alternative<Drop>(related.exprs.back()));
    CHECK(&related < &rule("policy a: not allowed"));
    // Every flow a policy lets a client begin is marked as the client's.
    for (const Chain& c : rs.chains)
        for (const Rule& r : c.rules)
            if (std::holds_alternative<Accept>(r.exprs.back()) && c.name.starts_with("allow_")) {
                const auto* mark = find<CtMarkSet>(r);
                REQUIRE_MESSAGE(mark, r.comment);
                CHECK((mark->bits & ct_mark_client) != 0);
            }
    // Output accepts related packets as before (this host's own errors).
    const Chain& out = chain(rs, "output");
    auto it = std::find_if(out.rules.begin(), out.rules.end(),
                           [](const Rule& r) { return r.comment == "established and related flows"; });
    REQUIRE(it != out.rules.end());
    CHECK(find<CtState>(*it)->related);
}
