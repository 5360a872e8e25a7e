// The connection-aware lifecycle with an injected clock and injected flow
// events: every transition and limit of DESIGN.md behaviour 5-9.
#include "cache/cache.hpp"
#include "cache/format.hpp"
#include "cache/persist.hpp"
#include "ruleset/compile.hpp"

#include "address-literal.hpp"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <tuple>

using namespace fqdnd;
using namespace fqdnd::cache;
using namespace std::chrono_literals;

namespace {

const Address client = *Address::parse("192.0.2.2");
const Address other_client = *Address::parse("192.0.2.3");

struct Fixture {
    Cache cache;
    Time now{std::chrono::sys_days{std::chrono::year{2026} / 4 / 19}};
    std::vector<ElementOp> ops;
    explicit Fixture(Limits l = Limits{std::chrono::seconds(1), 50, std::chrono::seconds(5), 10000}) : cache(l)
    {
        cache.set_selectors({*FqdnSelector::parse_pattern("*.k8s.intra", nullptr)}, now, ops);
    }
    void learn(const char* name, const char* addr, const std::string& endpoint = "192.0.2.2")
    {
        cache.learn(endpoint, {name}, {ip(addr)}, 1, now, ops);
    }
    void advance(std::chrono::milliseconds d)
    {
        now += d;
        cache.expire(now, ops);
    }
    std::optional<Source> source_of(const char* name, const char* addr) const
    {
        for (const auto& e : cache.entries())
            if (e.name == name)
                for (const auto& m : e.mappings)
                    if (m.address == ip(addr))
                        return m.source;
        return std::nullopt;
    }
    bool removed(const char* addr) const
    {
        for (const auto& op : ops)
            if (op.kind == ElementOp::Kind::remove && op.address == ip(addr))
                return true;
        return false;
    }
};

} // namespace

TEST_CASE("a lookup without flows expires and is gone")
{
    Fixture f;
    f.learn("echo.k8s.intra.", "203.0.113.2");
    f.advance(1100ms);
    CHECK_FALSE(f.source_of("echo.k8s.intra.", "203.0.113.2"));
    CHECK(f.cache.gc_deletions() == 1);
}

TEST_CASE("an expired lookup with a live flow becomes connection, and its kernel timeout is renewed")
{
    Fixture f;
    f.learn("echo.k8s.intra.", "203.0.113.2");
    f.cache.flow_opened(1, client, ip("203.0.113.2"), f.now);
    f.ops.clear();
    f.advance(1100ms);
    CHECK(f.source_of("echo.k8s.intra.", "203.0.113.2") == Source::connection);
    CHECK(f.cache.connection_addresses() == 1);
    REQUIRE(f.ops.size() == 1);
    // The kernel gets timeouts rounded up to a whole second.
    CHECK(f.ops[0].timeout >= connection_margin);
    CHECK(f.ops[0].timeout < connection_margin + 1s);
    // Renewed every half margin while it lives.
    f.ops.clear();
    f.advance(std::chrono::duration_cast<std::chrono::milliseconds>(connection_margin) / 2 + 1s);
    CHECK(f.ops.size() == 1);
    CHECK(f.source_of("echo.k8s.intra.", "203.0.113.2") == Source::connection);
}

TEST_CASE("a flow of another client does not keep an endpoint's mapping")
{
    Fixture f;
    f.learn("echo.k8s.intra.", "203.0.113.2");
    f.cache.flow_opened(1, other_client, ip("203.0.113.2"), f.now);
    f.advance(1100ms);
    CHECK_FALSE(f.source_of("echo.k8s.intra.", "203.0.113.2"));
}

TEST_CASE("the last flow closing starts the grace period; a new flow cancels it; then it goes")
{
    Fixture f;
    f.learn("echo.k8s.intra.", "203.0.113.2");
    f.cache.flow_opened(1, client, ip("203.0.113.2"), f.now);
    f.advance(1100ms);
    f.cache.flow_opened(2, client, ip("203.0.113.2"), f.now);
    f.cache.flow_closed(1, f.now);
    f.advance(10s);
    CHECK(f.source_of("echo.k8s.intra.", "203.0.113.2") == Source::connection); // flow 2 lives
    f.cache.flow_closed(2, f.now);
    f.cache.flow_closed(2, f.now); // a second close of the same flow counts once
    f.advance(4s);
    CHECK(f.source_of("echo.k8s.intra.", "203.0.113.2") == Source::connection); // within grace
    f.cache.flow_opened(3, client, ip("203.0.113.2"), f.now);                  // used again
    f.cache.flow_closed(3, f.now);
    f.advance(4s);
    CHECK(f.source_of("echo.k8s.intra.", "203.0.113.2") == Source::connection); // grace started over
    f.ops.clear();
    f.advance(2s);
    CHECK_FALSE(f.source_of("echo.k8s.intra.", "203.0.113.2"));
    CHECK(f.removed("203.0.113.2")); // out of the set at once, not at the kernel timeout
}

TEST_CASE("a new DNS answer makes a connection mapping a lookup again")
{
    Fixture f;
    f.learn("echo.k8s.intra.", "203.0.113.2");
    f.cache.flow_opened(1, client, ip("203.0.113.2"), f.now);
    f.advance(1100ms);
    REQUIRE(f.source_of("echo.k8s.intra.", "203.0.113.2") == Source::connection);
    f.learn("echo.k8s.intra.", "203.0.113.2");
    CHECK(f.source_of("echo.k8s.intra.", "203.0.113.2") == Source::lookup);
    CHECK(f.cache.connection_addresses() == 0);
}

TEST_CASE("max-deferred-connection-deletes: never-used go first, the oldest of them first")
{
    Fixture f(Limits{std::chrono::seconds(1), 50, std::chrono::seconds(5), 2});
    f.learn("a.k8s.intra.", "203.0.113.2");
    f.cache.flow_opened(1, client, ip("203.0.113.2"), f.now);
    f.learn("b.k8s.intra.", "203.0.113.3");
    f.cache.flow_opened(2, client, ip("203.0.113.3"), f.now);
    f.advance(1100ms);
    CHECK(f.cache.connection_addresses() == 2);
    f.cache.flow_opened(3, client, ip("203.0.113.3"), f.now); // b is used
    f.advance(1s);
    f.learn("c.k8s.intra.", "203.0.113.4");
    f.cache.flow_opened(4, client, ip("203.0.113.4"), f.now);
    f.advance(1100ms); // c becomes connection too: three, over the limit of two
    CHECK(f.cache.connection_addresses() == 2);
    CHECK_FALSE(f.source_of("a.k8s.intra.", "203.0.113.2")); // never used, oldest
    CHECK(f.source_of("b.k8s.intra.", "203.0.113.3") == Source::connection); // used
    CHECK(f.source_of("c.k8s.intra.", "203.0.113.4") == Source::connection); // never used, newer
    CHECK(f.removed("203.0.113.2"));
}

TEST_CASE("max-ip-per-hostname applies to connection addresses too")
{
    Fixture f(Limits{std::chrono::seconds(1), 2, std::chrono::seconds(5), 10000});
    f.learn("echo.k8s.intra.", "203.0.113.2");
    f.cache.flow_opened(1, client, ip("203.0.113.2"), f.now);
    f.advance(1100ms);
    f.learn("echo.k8s.intra.", "203.0.113.3");
    f.learn("echo.k8s.intra.", "203.0.113.4");
    const auto e = f.cache.entries();
    REQUIRE(e.size() == 1);
    CHECK(e[0].mappings.size() == 2);
    CHECK_FALSE(f.source_of("echo.k8s.intra.", "203.0.113.2")); // the connection one expired first
}

TEST_CASE("after a dump the flow counts are what the dump says")
{
    Fixture f;
    f.learn("echo.k8s.intra.", "203.0.113.2");
    f.cache.flow_opened(1, client, ip("203.0.113.2"), f.now);
    f.cache.flow_opened(2, client, ip("203.0.113.2"), f.now);
    CHECK(f.cache.live_flows() == 2);
    // Events were lost: flow 1 closed unseen, flow 3 opened unseen.
    f.cache.flows_reset({{2, client, ip("203.0.113.2")}, {3, client, ip("203.0.113.2")}}, f.now);
    CHECK(f.cache.live_flows() == 2);
    f.cache.flow_closed(2, f.now);
    f.cache.flow_closed(3, f.now);
    f.cache.flow_closed(1, f.now); // unknown now: ignored
    CHECK(f.cache.live_flows() == 0);
}

TEST_CASE("local endpoints count every flow to the address")
{
    Fixture f;
    f.learn("echo.k8s.intra.", "203.0.113.2", "uid:0");
    f.cache.flow_opened(1, ip("198.51.100.1"), ip("203.0.113.2"), f.now);
    f.advance(1100ms);
    CHECK(f.source_of("echo.k8s.intra.", "203.0.113.2") == Source::connection);
}

TEST_CASE("the state round-trips through JSON; restore drops expired lookups and keeps connections idle")
{
    Fixture f;
    f.learn("echo.k8s.intra.", "203.0.113.2");
    f.cache.flow_opened(1, client, ip("203.0.113.2"), f.now);
    f.advance(1100ms);
    f.learn("web.k8s.intra.", "203.0.113.3");
    const std::string json = to_json(f.cache.entries());
    std::string error;
    const auto records = from_json(json, error);
    REQUIRE_MESSAGE(records, error);
    CHECK(records->size() == 2);

    Fixture g;
    g.now = f.now;
    restore_all(g.cache, *records, g.now, g.ops);
    CHECK(g.cache.entries().size() == 2);
    CHECK(g.source_of("echo.k8s.intra.", "203.0.113.2") == Source::connection);
    // No flow came back in the dump: after the grace period it goes.
    g.cache.flows_reset({}, g.now);
    g.advance(5100ms);
    CHECK_FALSE(g.source_of("echo.k8s.intra.", "203.0.113.2"));

    Fixture h;
    h.now = f.now + 10s; // the lookup expired while fqdnd was down
    restore_all(h.cache, *records, h.now, h.ops);
    CHECK_FALSE(h.source_of("web.k8s.intra.", "203.0.113.3"));
}

TEST_CASE("the state file is the JSON document of the cache's entries, laid out as nlohmann writes it")
{
    // The cache's entries as the writer had them: one object per endpoint,
    // name, source and times, its addresses in one list.
    std::vector<Cache::Entry> entries;
    const Time t0{std::chrono::sys_days{std::chrono::year{2026} / 4 / 19}};
    auto m = [&](const char* a, Source s, std::chrono::milliseconds lookup, std::chrono::milliseconds expires,
                 uint32_t ttl) { return Mapping{ip(a), t0 + lookup, t0 + expires, ttl, s, false, {}}; };
    entries.push_back({"192.0.2.2", "echo.k8s.intra.",
                       {m("203.0.113.2", Source::lookup, 0ms, 30s, 30), m("203.0.113.3", Source::lookup, 0ms, 30s, 30),
                        m("203.0.113.4", Source::connection, 1s, 90s, 30), m("2001:db8::1", Source::lookup, 5ms, 30s, 30),
                        m("2001:db8::2", Source::lookup, 0ms, 30s, 3600)}});
    entries.push_back({"uid:0", "odd\\032\"name\x01\x7f.", {m("198.51.100.9", Source::lookup, 999ms, 61999ms, 60)}});
    entries.push_back({"192.0.2.3", "none.k8s.intra.", {}});

    nlohmann::json expected = nlohmann::json::array();
    for (const auto& e : entries) {
        std::map<std::tuple<Source, Time, Time, uint32_t>, std::vector<std::string>> groups;
        for (const Mapping& x : e.mappings)
            groups[{x.source, x.lookup, x.expires, x.ttl}].push_back(x.address.to_string());
        for (const auto& [k, ips] : groups) {
            const auto& [source, lookup, expires, ttl] = k;
            expected.push_back({{"endpoint", e.endpoint}, {"fqdn", e.name}, {"ips", ips},
                                {"lookup-time", rfc3339(lookup)}, {"expiration-time", rfc3339(expires)},
                                {"ttl", ttl}, {"source", std::string(to_string(source))}});
        }
    }
    // Names are in presentation form (ldns writes other bytes as \DDD), so
    // ASCII; control characters and quotes are escaped.
    const std::string written = to_json(entries);
    CHECK(nlohmann::json::parse(written) == expected);
    // Byte for byte where nlohmann would escape nothing.
    entries.erase(entries.begin() + 1);
    expected.erase(expected.begin() + 4);
    CHECK(to_json(entries) == expected.dump(2) + "\n");
    CHECK(to_json({}) == "[]\n");
}

TEST_CASE("the state file gives back UTF-8 as it was, and stays JSON whatever the bytes")
{
    // Found by a hostile review: bytes over 0x7f were each written as
    // \u00XX, which reads back as another character: an endpoint from an
    // edited state file grew at every save.
    const Time t0{std::chrono::sys_days{std::chrono::year{2026} / 4 / 19}};
    const Mapping m{ip("203.0.113.2"), t0, t0 + 30s, 30, Source::lookup, false, {}};
    std::vector<Cache::Entry> entries{{"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "echo.k8s.intra.", {m}}};
    std::string error;
    for (int cycle = 0; cycle < 3; ++cycle) {
        const auto records = from_json(to_json(entries), error);
        REQUIRE_MESSAGE(records, error);
        REQUIRE(records->size() == 1);
        CHECK(records->front().endpoint == entries.front().endpoint);
        entries.front().endpoint = records->front().endpoint;
    }
    // Bytes that are not UTF-8 (a lone continuation, an overlong form, a
    // surrogate, a cut sequence) still make a file that reads.
    entries.front().endpoint = "\x80 \xc0\xaf \xed\xa0\x80 \xe2\x82";
    CHECK(from_json(to_json(entries), error));
}

TEST_CASE("corrupt or truncated JSON is refused with the reason")
{
    std::string error;
    CHECK_FALSE(from_json("[{\"fqdn\": \"x\", \"ips\": [", error));
    CHECK(error == "not valid JSON");
    CHECK_FALSE(from_json("{}", error));
    CHECK_FALSE(from_json("[{\"fqdn\": \"x.\", \"ips\": [\"nope\"], \"expiration-time\": \"2026-04-19T16:21:57.997Z\"}]", error));
    CHECK(error.find("entry 1") != std::string::npos);
    CHECK_FALSE(from_json("[{\"fqdn\": \"x.\", \"ips\": [], \"expiration-time\": \"yesterday\"}]", error));
    CHECK(parse_rfc3339("2026-04-19T16:21:57.997Z")->time_since_epoch().count() % 1000 == 997);
    CHECK_FALSE(parse_rfc3339("2026-04-19 16:21:57Z"));
    // cilium's own output: endpoint ids are numbers.
    const auto r = from_json(R"([{"endpoint": 66, "fqdn": "echo.k8s.intra.", "ips": ["172.17.0.2"],
        "lookup-time": "2022-04-19T15:21:57.997Z", "expiration-time": "2022-04-19T16:21:57.997Z", "ttl": 3600, "source": "lookup"}])", error);
    REQUIRE(r);
    CHECK((*r)[0].endpoint == "66");
}

TEST_CASE("through random answers, flows and time, the sets hold what the cache says and nothing more")
{
    // A model of the kernel's sets, fed only the element operations: at
    // every step each mapping's address is in the set of every selector its
    // name matches, until at least its expiry, and no element outlives its
    // last holder by more than a second.
    const std::vector<FqdnSelector> selectors{*FqdnSelector::parse_pattern("*.k8s.intra", nullptr),
                                              *FqdnSelector::parse_pattern("echo.k8s.intra", nullptr)};
    std::map<std::string, uint64_t> tag_of;
    for (const auto& s : selectors)
        tag_of[s.to_string()] = ruleset::selector_tag(s);
    Limits limits{std::chrono::seconds(1), 3, std::chrono::seconds(2), 4};
    SUBCASE("within every bound") {}
    SUBCASE("over max-names and max-addresses")
    {
        limits.max_names = 4;
        limits.max_addresses = 6;
    }
    Fixture f(limits);
    f.cache.set_selectors(selectors, f.now, f.ops);
    std::map<std::pair<uint64_t, Address>, Time> kernel;
    auto apply = [&] {
        for (const auto& op : f.ops) {
            if (op.kind == ElementOp::Kind::add)
                kernel[{op.tag, op.address}] = f.now + std::chrono::duration_cast<std::chrono::milliseconds>(op.timeout);
            else
                kernel.erase({op.tag, op.address});
        }
        f.ops.clear();
    };
    const std::vector<std::string> endpoints{"192.0.2.2", "192.0.2.3", "uid:0"};
    const std::vector<std::string> names{"a.k8s.intra.", "b.k8s.intra.", "echo.k8s.intra.", "x.example."};
    std::vector<Address> pool;
    for (int i = 1; i <= 12; ++i)
        pool.push_back(ip(("203.0.113." + std::to_string(i)).c_str()));
    std::mt19937 rng(20261128);
    auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
    std::map<uint32_t, std::pair<Address, Address>> open;
    uint32_t next_flow = 1;
    size_t connections_seen = 0;

    for (int step = 0; step < 6000; ++step) {
        const size_t what = pick(100);
        size_t taught = 0; // the names an answer taught may pass the bound
        if (what < 40) {
            std::vector<std::string> chain{names[pick(names.size())]};
            if (pick(3) == 0)
                chain.push_back(names[pick(names.size())]);
            taught = chain.size();
            std::vector<Address> addrs;
            for (size_t i = 0, n = 1 + pick(3); i < n; ++i)
                addrs.push_back(pool[pick(pool.size())]);
            f.cache.learn(endpoints[pick(endpoints.size())], chain, addrs, static_cast<uint32_t>(pick(4)), f.now, f.ops);
        } else if (what < 60) {
            const Address src = pick(2) ? client : other_client;
            const Address dst = pool[pick(pool.size())];
            open[next_flow] = {src, dst};
            f.cache.flow_opened(next_flow++, src, dst, f.now);
        } else if (what < 75 && !open.empty()) {
            auto it = std::next(open.begin(), static_cast<long>(pick(open.size())));
            f.cache.flow_closed(it->first, f.now);
            open.erase(it);
        } else if (what < 97) {
            f.now += std::chrono::milliseconds(pick(1500));
            f.cache.expire(f.now, f.ops);
        } else if (what < 98) {
            f.cache.clean(nullptr, f.now, f.ops);
        } else {
            if (!open.empty())
                open.erase(std::next(open.begin(), static_cast<long>(pick(open.size()))));
            std::vector<Cache::Flow> flows;
            for (const auto& [id, p] : open)
                flows.push_back({id, p.first, p.second});
            f.cache.flows_reset(flows, f.now);
        }
        apply();

        size_t total = 0, connections = 0, lookup_names = 0;
        std::set<std::pair<uint64_t, Address>> held;
        for (const auto& e : f.cache.entries()) {
            REQUIRE(e.mappings.size() <= 3);
            total += e.mappings.size();
            lookup_names += std::any_of(e.mappings.begin(), e.mappings.end(),
                                        [](const Mapping& m) { return m.source == Source::lookup; });
            for (const auto& m : e.mappings) {
                connections += m.source == Source::connection;
                for (const auto& s : f.cache.selectors_matching({e.name})) {
                    const auto k = std::make_pair(tag_of.at(s), m.address);
                    held.insert(k);
                    const auto in = kernel.find(k);
                    REQUIRE_MESSAGE(in != kernel.end(), "step " << step << ": " << e.name << " " << m.address.to_string());
                    CHECK(in->second > f.now);
                    if (m.source == Source::lookup)
                        CHECK(in->second >= m.expires);
                }
            }
        }
        for (const auto& [k, expiry] : kernel)
            if (expiry > f.now + 1s)
                REQUIRE_MESSAGE(held.count(k), "step " << step << ": " << k.second.to_string() << " lingers");
        REQUIRE(total == f.cache.addresses());
        REQUIRE(connections == f.cache.connection_addresses());
        REQUIRE(connections <= 4);
        REQUIRE(lookup_names == f.cache.lookup_names());
        REQUIRE(total - connections == f.cache.lookup_addresses());
        REQUIRE(f.cache.lookup_names() <= std::max(limits.max_names, taught));
        REQUIRE(f.cache.lookup_addresses() <= std::max(limits.max_addresses, 3 * taught));
        connections_seen = std::max(connections_seen, connections);
        if (const auto next = f.cache.next_deadline(); next && what >= 75 && what < 97)
            REQUIRE(*next > f.now);
    }
    CHECK(connections_seen > 0); // the walk reached the connection states
    if (limits.max_names < 100)
        CHECK(f.cache.evictions() > 0); // and the bound

    // What is left round-trips through the state file.
    std::string error;
    const auto records = from_json(to_json(f.cache.entries()), error);
    REQUIRE_MESSAGE(records, error);
    Fixture g(limits);
    g.cache.set_selectors(selectors, f.now, g.ops);
    restore_all(g.cache, *records, f.now, g.ops);
    auto flat = [](const std::vector<Cache::Entry>& entries) {
        std::set<std::tuple<std::string, std::string, Address, Source, Time, Time, uint32_t>> out;
        for (const auto& e : entries)
            for (const auto& m : e.mappings)
                out.insert({e.endpoint, e.name, m.address, m.source, m.lookup, m.expires, m.ttl});
        return out;
    };
    CHECK(flat(g.cache.entries()) == flat(f.cache.entries()));
}

namespace {

// The lifecycle fixture with a global bound of `names` and `addresses`.
Limits bounded(size_t names, size_t addresses)
{
    Limits l{std::chrono::seconds(1), 50, std::chrono::seconds(5), 10000};
    l.max_names = names;
    l.max_addresses = addresses;
    return l;
}

} // namespace

TEST_CASE("max-addresses: the lookup that expires soonest is evicted, and leaves the set")
{
    Fixture f(bounded(100, 3));
    f.cache.learn("192.0.2.2", {"a.k8s.intra."}, {ip("203.0.113.1")}, 300, f.now, f.ops);
    f.cache.learn("192.0.2.2", {"b.k8s.intra."}, {ip("203.0.113.2")}, 100, f.now, f.ops);
    f.cache.learn("192.0.2.2", {"c.k8s.intra."}, {ip("203.0.113.3")}, 200, f.now, f.ops);
    CHECK(f.cache.evictions() == 0);
    f.ops.clear();
    f.cache.learn("192.0.2.2", {"d.k8s.intra."}, {ip("203.0.113.4")}, 400, f.now, f.ops);
    CHECK(f.cache.addresses() == 3);
    CHECK(f.cache.evictions() == 1);
    CHECK(f.removed("203.0.113.2")); // b's, the soonest to expire
    CHECK_FALSE(f.source_of("b.k8s.intra.", "203.0.113.2"));
    CHECK(f.cache.names() == 3);
    CHECK(f.cache.sets_holding(ip("203.0.113.2")).empty());
}

TEST_CASE("an answer is never evicted by itself, even when it expires soonest")
{
    Fixture f(bounded(100, 3));
    f.cache.learn("192.0.2.2", {"a.k8s.intra."}, {ip("203.0.113.1")}, 300, f.now, f.ops);
    f.cache.learn("192.0.2.2", {"b.k8s.intra."}, {ip("203.0.113.2")}, 200, f.now, f.ops);
    f.ops.clear();
    // Two addresses that expire before anything else: b's goes, not theirs.
    f.cache.learn("192.0.2.2", {"e.k8s.intra."}, {ip("203.0.113.5"), ip("203.0.113.6")}, 10, f.now, f.ops);
    CHECK(f.cache.addresses() == 3);
    CHECK(f.source_of("e.k8s.intra.", "203.0.113.5") == Source::lookup);
    CHECK(f.source_of("e.k8s.intra.", "203.0.113.6") == Source::lookup);
    CHECK(f.removed("203.0.113.2"));
    CHECK(f.source_of("a.k8s.intra.", "203.0.113.1") == Source::lookup);
    // An answer larger than the bound stays whole, until the next one.
    f.cache.learn("192.0.2.2", {"big.k8s.intra."},
                  {ip("203.0.113.7"), ip("203.0.113.8"), ip("203.0.113.9"), ip("203.0.113.10")}, 10, f.now, f.ops);
    CHECK(f.cache.names() == 1);
    CHECK(f.cache.addresses() == 4);
}

TEST_CASE("max-names: the name whose address expires soonest is evicted whole")
{
    Fixture f(bounded(2, 1000));
    f.cache.learn("192.0.2.2", {"a.k8s.intra."}, {ip("203.0.113.1")}, 300, f.now, f.ops);
    f.cache.learn("192.0.2.2", {"a.k8s.intra."}, {ip("203.0.113.2")}, 50, f.now, f.ops);
    f.cache.learn("192.0.2.2", {"b.k8s.intra."}, {ip("203.0.113.3")}, 100, f.now, f.ops);
    f.ops.clear();
    f.cache.learn("192.0.2.2", {"c.k8s.intra."}, {ip("203.0.113.4")}, 1, f.now, f.ops);
    CHECK(f.cache.names() == 2);
    CHECK(f.cache.lookup_names() == 2);
    CHECK(f.removed("203.0.113.1"));
    CHECK(f.removed("203.0.113.2"));
    CHECK(f.cache.evictions() == 2); // one per address
    CHECK(f.source_of("b.k8s.intra.", "203.0.113.3") == Source::lookup);
    CHECK(f.source_of("c.k8s.intra.", "203.0.113.4") == Source::lookup);
    // Names count per endpoint: the other endpoint's c evicts this one's c,
    // which expires soonest.
    f.cache.learn("192.0.2.3", {"c.k8s.intra."}, {ip("203.0.113.4")}, 200, f.now, f.ops);
    CHECK(f.cache.names() == 2);
    CHECK(f.source_of("b.k8s.intra.", "203.0.113.3") == Source::lookup);
    const auto entries = f.cache.entries();
    REQUIRE(entries.size() == 2);
    CHECK(entries[1].endpoint == "192.0.2.3");
    CHECK(entries[1].name == "c.k8s.intra.");
}

TEST_CASE("a flood of names keeps the cache within both bounds, evicting soonest expiry first")
{
    Fixture f(bounded(100, 150));
    for (uint32_t i = 0; i < 2000; ++i) {
        // Two addresses per name; later answers live longer.
        const Address a = ip(("2001:db8::" + std::to_string(i % 9000 + 1)).c_str());
        Address b = a;
        b.bytes[0] = 0x30;
        f.cache.learn("192.0.2.2", {"n" + std::to_string(i) + ".k8s.intra."}, {a, b}, 60 + i, f.now, f.ops);
        REQUIRE(f.cache.names() <= 100);
        REQUIRE(f.cache.addresses() <= 150);
    }
    // What is left is the latest: 75 names of two addresses.
    const auto entries = f.cache.entries();
    CHECK(entries.size() == 75);
    for (const auto& e : entries)
        CHECK(std::stoul(e.name.substr(1)) >= 2000 - 75);
    CHECK(f.cache.evictions() == 2 * (2000 - 75));
}

TEST_CASE("an evicted lookup with a live flow stays, as connection, within max-deferred-connection-deletes")
{
    Fixture f(bounded(100, 1));
    f.learn("a.k8s.intra.", "203.0.113.1");
    f.cache.flow_opened(1, client, ip("203.0.113.1"), f.now);
    f.ops.clear();
    f.learn("b.k8s.intra.", "203.0.113.2");
    CHECK(f.cache.evictions() == 1);
    CHECK(f.source_of("a.k8s.intra.", "203.0.113.1") == Source::connection);
    CHECK_FALSE(f.removed("203.0.113.1")); // the flow goes on
    CHECK(f.cache.lookup_addresses() == 1);
    CHECK(f.cache.connection_addresses() == 1);
    CHECK(f.cache.lookup_names() == 1);
    // Then it lives as any connection address: gone after its flow and the grace.
    f.cache.flow_closed(1, f.now);
    f.advance(5100ms);
    CHECK_FALSE(f.source_of("a.k8s.intra.", "203.0.113.1"));
    CHECK(f.removed("203.0.113.1"));
}

TEST_CASE("a reload that lowers the bound evicts down to it")
{
    Fixture f(bounded(100, 1000));
    const std::vector<FqdnSelector> selectors{*FqdnSelector::parse_pattern("*.k8s.intra", nullptr)};
    for (uint32_t i = 1; i <= 5; ++i)
        f.cache.learn("192.0.2.2", {"n" + std::to_string(i) + ".k8s.intra."},
                      {ip(("203.0.113." + std::to_string(i)).c_str())}, 100 * i, f.now, f.ops);
    f.ops.clear();
    // What start and reload do: the limits, then the selectors.
    f.cache.set_limits(bounded(2, 1000));
    f.cache.set_selectors(selectors, f.now, f.ops);
    CHECK(f.cache.names() == 2);
    CHECK(f.cache.evictions() == 3);
    for (const char* gone : {"203.0.113.1", "203.0.113.2", "203.0.113.3"})
        CHECK(f.removed(gone));
    CHECK(f.source_of("n5.k8s.intra.", "203.0.113.5") == Source::lookup);
    f.ops.clear();
    f.cache.set_limits(bounded(100, 1));
    f.cache.set_selectors(selectors, f.now, f.ops);
    CHECK(f.cache.addresses() == 1);
    CHECK(f.removed("203.0.113.4"));
}

TEST_CASE("a state file over the bound is restored down to it")
{
    Fixture f(bounded(100, 1000));
    for (uint32_t i = 1; i <= 5; ++i)
        f.cache.learn("192.0.2.2", {"n" + std::to_string(i) + ".k8s.intra."},
                      {ip(("203.0.113." + std::to_string(i)).c_str())}, 100 * i, f.now, f.ops);
    std::string error;
    const auto records = from_json(to_json(f.cache.entries()), error);
    REQUIRE(records);
    Fixture g(bounded(3, 1000));
    restore_all(g.cache, *records, g.now, g.ops);
    CHECK(g.cache.names() == 3);
    CHECK_FALSE(g.source_of("n1.k8s.intra.", "203.0.113.1"));
    CHECK(g.source_of("n5.k8s.intra.", "203.0.113.5") == Source::lookup);
}
