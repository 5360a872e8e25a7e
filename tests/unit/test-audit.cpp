// The audit recording and the policies written from it (`fqdnctl policy
// suggest|diff`), without the kernel.
#include "audit/record.hpp"
#include "audit/suggest.hpp"
#include "config/loader.hpp"

#include "config-text.hpp"

#include <doctest/doctest.h>

#include <algorithm>

using namespace fqdnd;
using namespace std::chrono_literals;

namespace {

const cache::Time t0{std::chrono::sys_days{std::chrono::year{2026} / 12 / 1}};

Address addr(const char* text)
{
    return *Address::parse(text);
}

std::vector<std::string> texts(const audit::Rule& r)
{
    std::vector<std::string> out;
    for (const auto& i : r.items)
        out.push_back(i.text);
    return out;
}

audit::NameUse tcp(std::initializer_list<uint16_t> ports, uint64_t count = 1)
{
    audit::NameUse u;
    for (uint16_t p : ports)
        u.ports.add("tcp", p);
    u.count = count;
    u.last = t0;
    return u;
}

const audit::Rule* rule_with(const std::vector<audit::Rule>& rules, const std::string& text)
{
    for (const auto& r : rules)
        for (const auto& i : r.items)
            if (i.text == text)
                return &r;
    return nullptr;
}

const char* web_policy = R"([[policy]]
name = "web"
audit = true
[policy.selector]
sources = ["192.0.2.0/29"]
[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
ports = [{ port = 53, protocol = "any" }]
dns = [{ match-pattern = "*" }]
)";

config::Config load(const std::string& text)
{
    return config_of(text, "", "web.toml");
}

} // namespace

TEST_CASE("siblings under one parent collapse to *.parent, with their port")
{
    const auto rules = audit::collapse({{"a.svc.intra.", tcp({443})},
                                        {"b.svc.intra.", tcp({443})},
                                        {"c.svc.intra.", tcp({443})}});
    REQUIRE(rules.size() == 1);
    CHECK(texts(rules[0]) == std::vector<std::string>{"*.svc.intra"});
    CHECK(rules[0].items[0].kind == audit::Item::Kind::pattern);
    CHECK(rules[0].items[0].names == std::vector<std::string>{"a.svc.intra", "b.svc.intra", "c.svc.intra"});
    CHECK(rules[0].items[0].count == 3);
    CHECK(rules[0].ports.by_port == std::map<uint16_t, std::string>{{443, "tcp"}});
}

TEST_CASE("a lone name stays a match-name, and a parent is not matched by its own *.")
{
    const auto rules = audit::collapse({{"svc.intra.", tcp({443})}, {"a.svc.intra.", tcp({443})}});
    REQUIRE(rules.size() == 1);
    // Two depths under intra. only: a pattern on one label is never made.
    CHECK(texts(rules[0]) == std::vector<std::string>{"a.svc.intra", "svc.intra"});
    CHECK(rules[0].items[0].kind == audit::Item::Kind::name);
}

TEST_CASE("names at several depths under one domain collapse to **.domain; one depth does not")
{
    auto rules = audit::collapse({{"a.svc.intra.", tcp({443})},
                                  {"b.svc.intra.", tcp({443})},
                                  {"x.deep.svc.intra.", tcp({443})}});
    REQUIRE(rules.size() == 1);
    CHECK(texts(rules[0]) == std::vector<std::string>{"**.svc.intra"});
    CHECK(rules[0].items[0].names.size() == 3);

    // The deepest domain that spans depths, not a broader one.
    rules = audit::collapse({{"x.deep.svc.intra.", tcp({443})},
                             {"y.z.deep.svc.intra.", tcp({443})},
                             {"other.intra.", tcp({443})}});
    REQUIRE(rules.size() == 1);
    CHECK(texts(rules[0]) == std::vector<std::string>{"**.deep.svc.intra", "other.intra"});

    // Siblings of one depth under different parents: two *. patterns.
    rules = audit::collapse({{"a.one.intra.", tcp({80})},
                             {"b.one.intra.", tcp({80})},
                             {"a.two.intra.", tcp({80})},
                             {"b.two.intra.", tcp({80})}});
    REQUIRE(rules.size() == 1);
    CHECK(texts(rules[0]) == std::vector<std::string>{"*.one.intra", "*.two.intra"});
}

TEST_CASE("never * alone nor a pattern on a top-level domain")
{
    const auto rules = audit::collapse({{"a.", tcp({443})}, {"b.", tcp({443})}, {"x.com.", tcp({443})},
                                        {"y.com.", tcp({443})}, {"z.q.org.", tcp({443})}});
    REQUIRE(rules.size() == 1);
    for (const auto& i : rules[0].items) {
        CHECK(i.text != "*");
        CHECK(!i.text.starts_with("*.com"));
        CHECK(!i.text.starts_with("**.com"));
        CHECK(!i.text.starts_with("*.org"));
    }
    CHECK(texts(rules[0]) == std::vector<std::string>{"a", "b", "x.com", "y.com", "z.q.org"});
}

TEST_CASE("mixed ports: a rule per set of ports, siblings collapse only within one")
{
    const auto rules = audit::collapse({{"a.svc.intra.", tcp({443})},
                                        {"b.svc.intra.", tcp({443})},
                                        {"c.svc.intra.", tcp({80})},
                                        {"d.svc.intra.", tcp({80, 443})},
                                        {"e.svc.intra.", tcp({80, 443})}});
    REQUIRE(rules.size() == 3);
    const auto* r443 = rule_with(rules, "*.svc.intra");
    REQUIRE(r443);
    const auto* c = rule_with(rules, "c.svc.intra");
    REQUIRE(c);
    CHECK(c->ports.by_port == std::map<uint16_t, std::string>{{80, "tcp"}});
    CHECK(c->items.size() == 1);
    // a, b with 443; d, e with 80 and 443: each pair its own *.svc.intra.
    size_t stars = 0;
    for (const auto& r : rules)
        for (const auto& i : r.items)
            if (i.text == "*.svc.intra") {
                ++stars;
                CHECK((r.ports.by_port == std::map<uint16_t, std::string>{{443, "tcp"}}
                       || r.ports.by_port == std::map<uint16_t, std::string>{{80, "tcp"}, {443, "tcp"}}));
            }
    CHECK(stars == 2);

    audit::Ports p;
    p.add("tcp", 53);
    p.add("udp", 53);
    CHECK(p.by_port.at(53) == "any");
    p.add("icmp", 0);
    CHECK(p.every);
    CHECK(p.by_port.empty());
}

TEST_CASE("IPv6: flows to AAAA addresses collapse by name; a bare IPv6 address is a /128 to-cidrs entry")
{
    audit::Recorder rec;
    rec.flow("web", addr("2001:db8::a"), "tcp", 443, {"a.svc.intra."}, t0);
    rec.flow("web", addr("2001:db8::b"), "tcp", 443, {"B.svc.intra"}, t0 + 1s);
    rec.flow("web", addr("2001:db8::99"), "udp", 4500, {}, t0 + 2s);
    rec.lookup("web", "a.svc.intra", addr("2001:db8::53"), t0);
    const auto records = rec.records("web");
    REQUIRE(records.size() == 1);
    const auto s = audit::suggest(records[0]);
    REQUIRE(s.fqdns.size() == 1);
    CHECK(texts(s.fqdns[0]) == std::vector<std::string>{"*.svc.intra"});
    REQUIRE(s.cidrs.size() == 1);
    CHECK(texts(s.cidrs[0]) == std::vector<std::string>{"2001:db8::99"});
    CHECK(s.cidrs[0].ports.by_port == std::map<uint16_t, std::string>{{4500, "udp"}});
    REQUIRE(s.dns_servers.size() == 1);
    CHECK(s.dns_servers[0].text == "2001:db8::53");

    const auto config = load(web_policy);
    const std::string toml = audit::to_toml(s, &config.policies[0]);
    const auto back = load(toml);
    REQUIRE(back.policies.size() == 1);
    CHECK(back.policies[0].selector.sources == config.policies[0].selector.sources);
    bool bare = false;
    for (const auto& r : back.policies[0].egress)
        for (const auto& c : r.to_cidrs)
            bare = bare || c.to_string() == "2001:db8::99/128";
    CHECK(bare);
}

TEST_CASE("the issue's scenario: three siblings on 443, a deeper name on 8080, a bare address")
{
    audit::Recorder rec;
    const Address dns = addr("203.0.113.53");
    for (const char* n : {"a.svc.intra", "b.svc.intra", "c.svc.intra", "x.deep.svc.intra"})
        rec.lookup("web", n, dns, t0);
    rec.flow("web", addr("203.0.113.10"), "tcp", 443, {"a.svc.intra."}, t0 + 1s);
    rec.flow("web", addr("203.0.113.11"), "tcp", 443, {"b.svc.intra."}, t0 + 1s);
    rec.flow("web", addr("203.0.113.12"), "tcp", 443, {"c.svc.intra."}, t0 + 1s);
    rec.flow("web", addr("203.0.113.20"), "tcp", 8080, {"x.deep.svc.intra."}, t0 + 1s);
    rec.flow("web", addr("203.0.113.20"), "tcp", 8080, {"x.deep.svc.intra."}, t0 + 5s);
    rec.flow("web", addr("198.51.100.7"), "tcp", 9000, {}, t0 + 2s);
    const auto s = audit::suggest(rec.records("web").at(0));
    REQUIRE(s.fqdns.size() == 2);
    const auto* star = rule_with(s.fqdns, "*.svc.intra");
    REQUIRE(star);
    CHECK(star->items.size() == 1);
    CHECK(star->ports.by_port == std::map<uint16_t, std::string>{{443, "tcp"}});
    const auto* deep = rule_with(s.fqdns, "x.deep.svc.intra");
    REQUIRE(deep);
    CHECK(deep->items.size() == 1);
    CHECK(deep->items[0].count == 2);
    CHECK(deep->ports.by_port == std::map<uint16_t, std::string>{{8080, "tcp"}});
    REQUIRE(s.cidrs.size() == 1);
    CHECK(texts(s.cidrs[0]) == std::vector<std::string>{"198.51.100.7"});
    CHECK(s.looked_up_only.empty());

    const auto config = load(web_policy);
    const std::string toml = audit::to_toml(s, &config.policies[0]);
    INFO(toml);
    CHECK(toml.find("{ match-pattern = \"*.svc.intra\" }, # covers a.svc.intra, b.svc.intra, c.svc.intra; 3 times")
          != std::string::npos);
    CHECK(toml.find("{ match-name = \"x.deep.svc.intra\" }, # 2 times, last seen 2026-12-01T00:00:05") != std::string::npos);
    CHECK(toml.find("\"198.51.100.7\", # 1 time") != std::string::npos);
    const auto back = load(toml);
    const auto& p = back.policies.at(0);
    CHECK(p.audit);
    // to-fqdns 443, to-fqdns 8080, DNS, to-cidrs.
    REQUIRE(p.egress.size() == 4);
    size_t dns_rules = 0;
    for (const auto& r : p.egress)
        if (r.is_dns()) {
            ++dns_rules;
            CHECK(r.to_dns_servers.at(0).to_string() == "203.0.113.53/32");
            REQUIRE(r.dns.size() == 1);
            CHECK(r.dns[0].to_string() == "match-pattern: **.svc.intra.");
        }
    CHECK(dns_rules == 1);

    // Against the policy it came from, what it lacked; against itself, nothing.
    const auto before = audit::diff(rec.records("web").at(0), config.policies[0]);
    CHECK(before.missing.size() == 5);
    CHECK(before.unused.empty());
    const auto after = audit::diff(rec.records("web").at(0), p);
    CHECK(after.missing.empty());
    CHECK(after.unused.empty());
}

TEST_CASE("diff names the rules no recorded use explains")
{
    const auto config = load(std::string(web_policy) + R"(
[[policy.egress]]
to-fqdns = [{ match-name = "old.svc.intra" }]
ports = [{ port = 443, protocol = "tcp" }]
)");
    audit::Recorder rec;
    rec.lookup("web", "a.svc.intra", addr("203.0.113.53"), t0);
    const auto d = audit::diff(rec.records("web").at(0), config.policies[0]);
    CHECK(d.missing.empty());
    REQUIRE(d.unused.size() == 1);
    CHECK(d.unused[0].find("old.svc.intra") != std::string::npos);
}

TEST_CASE("names with odd characters are not recorded; text from the configuration is escaped")
{
    audit::Recorder rec;
    rec.lookup("web", "evil\"]\n[[policy]].intra", addr("203.0.113.53"), t0);
    rec.lookup("web", "a b.intra", addr("203.0.113.53"), t0);
    rec.lookup("web", std::string(300, 'a'), addr("203.0.113.53"), t0);
    rec.flow("web", addr("203.0.113.1"), "tcp", 443, {"x\ny.intra", "#.intra"}, t0);
    rec.flow("web", addr("203.0.113.1"), "t\"cp", 443, {}, t0);
    const auto r = rec.records("web");
    REQUIRE(r.size() == 1);
    CHECK(r[0].lookups.empty());
    REQUIRE(r[0].flows.size() == 1);
    CHECK(r[0].flows[0].names.empty());
    CHECK(rec.entries() == 1);

    CHECK(audit::toml_quote("a\"b\\c\nd") == "\"a\\\"b\\\\c\\u000ad\"");
    config::Policy p;
    p.name = "web";
    p.audit = true;
    p.selector.interfaces = {"veth\"x"};
    const std::string toml = audit::to_toml(audit::suggest(r[0]), &p);
    CHECK(toml.find("interfaces = [\"veth\\\"x\"]") != std::string::npos);
}

TEST_CASE("the recording is bounded per policy and in all; the entry seen longest ago goes first")
{
    audit::Limits limits;
    limits.per_policy = 3;
    limits.total = 5;
    limits.policies = 2;
    limits.names_per_flow = 2;
    limits.servers_per_name = 2;
    audit::Recorder rec(limits);
    const Address dns = addr("203.0.113.53");
    rec.lookup("a", "one.intra", dns, t0);
    rec.lookup("a", "two.intra", dns, t0 + 1s);
    rec.lookup("a", "three.intra", dns, t0 + 2s);
    rec.lookup("a", "one.intra", dns, t0 + 3s); // seen again: now the newest
    rec.lookup("a", "four.intra", dns, t0 + 4s);
    auto r = rec.records("a").at(0);
    std::vector<std::string> names;
    for (const auto& l : r.lookups)
        names.push_back(l.name);
    CHECK(names == std::vector<std::string>{"four.intra.", "one.intra.", "three.intra."});
    CHECK(rec.evictions() == 1);
    CHECK(r.lookups[1].seen.count == 2);

    // The global bound takes the oldest of any policy.
    rec.flow("b", addr("203.0.113.1"), "tcp", 1, {}, t0 + 5s);
    rec.flow("b", addr("203.0.113.2"), "tcp", 2, {}, t0 + 6s);
    CHECK(rec.entries() == 5);
    rec.flow("b", addr("203.0.113.3"), "tcp", 3, {}, t0 + 7s);
    CHECK(rec.entries() == 5);
    CHECK(rec.evictions() == 2);
    CHECK(rec.records("a").at(0).lookups.size() == 2); // three.intra went
    // No third policy.
    rec.flow("c", addr("203.0.113.4"), "tcp", 4, {}, t0 + 8s);
    CHECK(rec.records("c").empty());

    // Names per flow and servers per name.
    rec.flow("b", addr("203.0.113.3"), "tcp", 3, {"x.intra", "y.intra", "z.intra"}, t0 + 9s);
    rec.lookup("a", "four.intra", addr("203.0.113.54"), t0 + 9s);
    rec.lookup("a", "four.intra", addr("203.0.113.55"), t0 + 9s);
    const auto b = rec.records("b"), a = rec.records("a"); // kept: loops over their members
    for (const auto& f : b.at(0).flows)
        CHECK(f.names.size() <= 2);
    for (const auto& l : a.at(0).lookups)
        CHECK(l.servers.size() <= 2);

    // A flood of distinct names keeps the bound.
    for (int i = 0; i < 10000; ++i)
        rec.lookup("a", "n" + std::to_string(i) + ".intra", dns, t0 + 10s + std::chrono::milliseconds(i));
    CHECK(rec.entries() <= 5);
    CHECK(rec.records("a").at(0).lookups.size() <= 3);
}

TEST_CASE("the recording comes back from its JSON; forget clears one policy or all")
{
    audit::Recorder rec;
    rec.lookup("web", "a.svc.intra", addr("203.0.113.53"), t0);
    rec.flow("web", addr("203.0.113.10"), "tcp", 443, {"a.svc.intra."}, t0 + 1s);
    rec.flow("web", addr("203.0.113.10"), "tcp", 443, {"a.svc.intra."}, t0 + 2s);
    rec.flow("db", addr("2001:db8::1"), "udp", 5432, {}, t0);
    CHECK(rec.dirty());
    audit::Recorder back;
    std::string problem;
    REQUIRE(back.from_json(rec.to_json(), &problem));
    CHECK(!back.dirty());
    CHECK(back.entries() == 3);
    const auto w = back.records("web").at(0);
    REQUIRE(w.flows.size() == 1);
    CHECK(w.flows[0].seen.count == 2);
    CHECK(w.flows[0].seen.first == t0 + 1s);
    CHECK(w.flows[0].seen.last == t0 + 2s);
    CHECK(w.flows[0].names == std::vector<std::string>{"a.svc.intra."});
    REQUIRE(w.lookups.size() == 1);
    CHECK(w.lookups[0].servers == std::vector<Address>{addr("203.0.113.53")});

    CHECK(!back.from_json("not json", &problem));
    CHECK(!problem.empty());
    audit::Recorder odd;
    REQUIRE(odd.from_json(R"({"policies":[{"policy":"web","lookups":[{"name":"bad\"name","servers":["203.0.113.53"],
        "count":1,"first":0,"last":0}],"flows":[{"destination":"nope","protocol":"tcp","port":1,"count":1,"first":0,
        "last":0},{"destination":"203.0.113.1","protocol":"tcp","port":70000,"count":1,"first":0,"last":0}]}]})",
                          &problem));
    CHECK(odd.entries() == 0);

    CHECK(back.forget(std::string("db")) == 1);
    CHECK(back.records("db").empty());
    CHECK(back.forget(std::nullopt) == 2);
    CHECK(back.entries() == 0);
}

TEST_CASE("allowed queries are recorded for the audit policies that may select the client")
{
    const auto config = load(std::string(web_policy) + R"(
[[policy]]
name = "strict"
[policy.selector]
sources = ["192.0.2.0/29"]
[[policy.egress]]
to-cidrs = ["198.51.100.0/24"]

[[policy]]
name = "ifaces"
audit = true
[policy.selector]
interfaces = ["veth*"]
[[policy.egress]]
to-dns-servers = ["203.0.113.54"]
dns = [{ match-pattern = "*" }]

[[policy]]
name = "local"
audit = true
[policy.selector]
users = ["root"]
)");
    const Address dns = addr("203.0.113.53");
    // "strict" selects the client too, but enforces: it records drops only.
    CHECK(audit::policies_for_query(config, "192.0.2.2", dns) == std::vector<std::string>{"web"});
    CHECK(audit::policies_for_query(config, "192.0.2.99", dns).empty());
    CHECK(audit::policies_for_query(config, "192.0.2.99", addr("203.0.113.54")) == std::vector<std::string>{"ifaces"});
    CHECK(audit::policies_for_query(config, "uid:0", dns) == std::vector<std::string>{"local"});
    CHECK(audit::policies_for_query(config, "uid:1000", dns).empty());
}

TEST_CASE("every policy's suggestion in one document loads; a recording without its policy is only mentioned")
{
    const auto config = load(std::string(web_policy) + R"(
[[policy]]
name = "db"
[policy.selector]
sources = ["192.0.2.8/29"]
)");
    audit::Recorder rec;
    rec.flow("web", addr("203.0.113.10"), "tcp", 443, {"a.svc.intra."}, t0);
    rec.flow("db", addr("203.0.113.11"), "tcp", 5432, {"pg.db.intra."}, t0);
    rec.flow("gone", addr("203.0.113.12"), "tcp", 80, {"old.intra."}, t0);
    const std::string toml = audit::render_suggestions(rec.records(), config.policies, false);
    INFO(toml);
    const auto back = load(toml);
    REQUIRE(back.policies.size() == 2);
    CHECK(back.policies[0].name == "db");
    CHECK(!back.policies[0].audit);
    CHECK(back.policies[1].name == "web");
    CHECK(toml.find("# Policy gone is not configured now but has a recording") != std::string::npos);
    CHECK(toml.find("old.intra") == std::string::npos);

    const auto json = nlohmann::json::parse(audit::render_suggestions(rec.records(), config.policies, true));
    CHECK(json.size() == 3);
    const auto diffs = nlohmann::json::parse(audit::render_diffs(rec.records(), config.policies, true));
    REQUIRE(diffs.size() == 2);
    CHECK(diffs[0]["policy"] == "db");
    CHECK(diffs[0]["missing"].size() == 1);
}

TEST_CASE("DNS seen only as flows to port 53 (queries not inspected): the server by address, valid as such")
{
    audit::Recorder rec;
    rec.flow("web", addr("203.0.113.53"), "udp", 53, {}, t0);
    rec.flow("web", addr("203.0.113.9"), "icmp", 0, {}, t0);
    const auto s = audit::suggest(rec.records("web").at(0));
    CHECK(s.dns_names.empty());
    REQUIRE(s.dns_servers.size() == 1);
    const auto config = load(web_policy);
    const std::string toml = audit::to_toml(s, &config.policies[0]);
    INFO(toml);
    const auto back = load(toml);
    const auto& egress = back.policies.at(0).egress;
    REQUIRE(egress.size() == 2);
    CHECK(std::none_of(egress.begin(), egress.end(), [](const config::EgressRule& r) { return r.is_dns(); }));
    // ICMP has no ports: its rule opens every port.
    CHECK(std::any_of(egress.begin(), egress.end(), [](const config::EgressRule& r) {
        return r.to_cidrs.size() == 1 && r.to_cidrs[0].to_string() == "203.0.113.9/32" && r.ports.empty();
    }));
    CHECK(std::any_of(egress.begin(), egress.end(), [](const config::EgressRule& r) {
        return r.to_cidrs.size() == 1 && r.to_cidrs[0].to_string() == "203.0.113.53/32" && r.ports.size() == 1
            && r.ports[0].port == 53 && r.ports[0].protocol == config::Protocol::any;
    }));
    const auto json = audit::to_json(s, &config.policies[0]);
    CHECK(json["egress"].size() == 2);
}
