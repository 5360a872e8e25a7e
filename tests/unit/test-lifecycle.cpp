// The connection-aware lifecycle with an injected clock and injected flow
// events: every transition and limit of DESIGN.md behaviour 5-9.
#include "cache/cache.hpp"
#include "cache/persist.hpp"
#include "ruleset/compile.hpp"

#include <doctest/doctest.h>

#include <map>
#include <random>
#include <set>
#include <tuple>

using namespace fqdnd;
using namespace fqdnd::cache;
using namespace std::chrono_literals;

namespace {

Address ip(const char* s)
{
    return *Address::parse(s);
}

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
    Fixture f(Limits{std::chrono::seconds(1), 3, std::chrono::seconds(2), 4});
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
        if (what < 40) {
            std::vector<std::string> chain{names[pick(names.size())]};
            if (pick(3) == 0)
                chain.push_back(names[pick(names.size())]);
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

        size_t total = 0, connections = 0;
        std::set<std::pair<uint64_t, Address>> held;
        for (const auto& e : f.cache.entries()) {
            REQUIRE(e.mappings.size() <= 3);
            total += e.mappings.size();
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
        connections_seen = std::max(connections_seen, connections);
        if (const auto next = f.cache.next_deadline(); next && what >= 75 && what < 97)
            REQUIRE(*next > f.now);
    }
    CHECK(connections_seen > 0); // the walk reached the connection states

    // What is left round-trips through the state file.
    std::string error;
    const auto records = from_json(to_json(f.cache.entries()), error);
    REQUIRE_MESSAGE(records, error);
    Fixture g(Limits{std::chrono::seconds(1), 3, std::chrono::seconds(2), 4});
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
