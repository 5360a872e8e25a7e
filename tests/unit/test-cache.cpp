// The lookup cache: renewals, limits, sharing between endpoints, expiry.
#include "cache/cache.hpp"
#include "cache/format.hpp"
#include "ruleset/compile.hpp"

#include "address-literal.hpp"

#include <doctest/doctest.h>

using namespace fqdnd;
using namespace fqdnd::cache;
using namespace std::chrono_literals;

namespace {

struct Fixture {
    Cache cache{Limits{std::chrono::seconds(60), 2}};
    Time now{std::chrono::sys_days{std::chrono::year{2026} / 4 / 19}};
    std::vector<ElementOp> ops;
    Fixture() { cache.set_selectors({*FqdnSelector::parse_pattern("*.k8s.intra", nullptr)}, now, ops); }
};

} // namespace

TEST_CASE("addresses live max(TTL, min-ttl) and a new answer renews them")
{
    Fixture f;
    f.cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 30, f.now, f.ops);
    REQUIRE(f.ops.size() == 1);
    CHECK(f.ops[0].timeout == 60s);
    CHECK_FALSE(f.ops[0].exists);
    f.ops.clear();
    f.now += 30s;
    f.cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 300, f.now, f.ops);
    REQUIRE(f.ops.size() == 1);
    CHECK(f.ops[0].timeout == 300s);
    CHECK(f.ops[0].exists);
    f.ops.clear();
    f.now += 299s;
    f.cache.expire(f.now, f.ops);
    CHECK(f.cache.names() == 1);
    f.now += 2s;
    f.cache.expire(f.now, f.ops);
    CHECK(f.cache.names() == 0);
    CHECK(f.ops.empty()); // the kernel's timeout removes the element itself
}

TEST_CASE("an address shared by endpoints stays in the set until the last holder expires")
{
    Fixture f;
    f.cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 30, f.now, f.ops);
    f.now += 20s;
    f.ops.clear();
    f.cache.learn("192.0.2.3", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 30, f.now, f.ops);
    // The kernel still has 40 s of 60: the renewal waits until half is left.
    CHECK(f.ops.empty());
    CHECK(f.cache.next_deadline() == f.now + 10s);
    f.now += 10s;
    f.cache.expire(f.now, f.ops);
    REQUIRE(f.ops.size() == 1); // the kernel's timeout grows to the later expiry
    CHECK(f.ops[0].timeout == 50s);
    CHECK(f.ops[0].exists);
    f.now += 35s;
    f.ops.clear();
    f.cache.expire(f.now, f.ops);
    CHECK(f.cache.names() == 1);
    CHECK(f.cache.sets_holding(ip("203.0.113.2")).size() == 1);
    CHECK(f.ops.empty());
}

TEST_CASE("max-ip-per-hostname: the addresses that expire first go, and leave the set")
{
    Fixture f;
    f.cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 30, f.now, f.ops);
    f.now += 10s;
    f.cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.3")}, 30, f.now, f.ops);
    f.now += 10s;
    f.ops.clear();
    f.cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.4")}, 30, f.now, f.ops);
    REQUIRE(f.ops.size() == 2);
    CHECK(f.ops[1].kind == ElementOp::Kind::remove);
    CHECK(f.ops[1].address == ip("203.0.113.2"));
    const auto e = f.cache.entries();
    REQUIRE(e.size() == 1);
    CHECK(e[0].mappings.size() == 2);
}

TEST_CASE("a new selector's sets are filled from what the cache already knows")
{
    Fixture f;
    f.cache.learn("192.0.2.2", {"a.b.k8s.intra."}, {ip("203.0.113.4")}, 30, f.now, f.ops);
    CHECK(f.ops.empty()); // *.k8s.intra does not match a.b.k8s.intra
    const auto deep = *FqdnSelector::parse_pattern("**.k8s.intra", nullptr);
    f.cache.set_selectors({*FqdnSelector::parse_pattern("*.k8s.intra", nullptr), deep}, f.now, f.ops);
    REQUIRE(f.ops.size() == 1);
    CHECK(f.ops[0].tag == ruleset::selector_tag(deep));
    CHECK(f.ops[0].family == Family::ipv4);
    std::vector<ElementOp> resync;
    f.cache.resync(f.now, resync);
    CHECK(resync.size() == 1);
}

TEST_CASE("the element the cache holds for a tag and an address: as resync gives it, with the kernel's time left")
{
    Fixture f;
    const uint64_t tag = ruleset::selector_tag(*FqdnSelector::parse_pattern("*.k8s.intra", nullptr));
    f.cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 30, f.now, f.ops);
    f.now += 10s;
    const auto e = f.cache.element(tag, ip("203.0.113.2"), f.now);
    REQUIRE(e);
    CHECK(e->kind == ElementOp::Kind::add);
    CHECK(e->tag == tag);
    CHECK(e->family == Family::ipv4);
    CHECK(e->timeout == 50s);
    std::vector<ElementOp> resync;
    f.cache.resync(f.now, resync);
    REQUIRE(resync.size() == 1);
    CHECK(resync[0].timeout == e->timeout);
    CHECK_FALSE(f.cache.element(tag, ip("203.0.113.3"), f.now));   // another address
    CHECK_FALSE(f.cache.element(tag + 1, ip("203.0.113.2"), f.now)); // another selector's tag
    f.now += 50s;
    CHECK_FALSE(f.cache.element(tag, ip("203.0.113.2"), f.now)); // the kernel's time is over
}

TEST_CASE("a selector that goes takes its elements out of the sets; one that stays keeps them")
{
    Fixture f;
    const auto k8s = *FqdnSelector::parse_pattern("*.k8s.intra", nullptr);
    const auto echo = *FqdnSelector::parse_name("echo.k8s.intra", nullptr);
    f.cache.set_selectors({k8s, echo}, f.now, f.ops);
    f.ops.clear();
    f.cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 30, f.now, f.ops);
    REQUIRE(f.ops.size() == 2);
    f.ops.clear();
    f.cache.set_selectors({k8s}, f.now, f.ops);
    REQUIRE(f.ops.size() == 1);
    CHECK(f.ops[0].kind == ElementOp::Kind::remove);
    CHECK(f.ops[0].tag == ruleset::selector_tag(echo));
    CHECK(f.ops[0].address == ip("203.0.113.2"));
    CHECK(f.cache.sets_holding(ip("203.0.113.2")) == std::vector<std::string>{ruleset::set_key(k8s, Family::ipv4)});
    // What the monitor reports as the selectors an answer filled.
    CHECK(f.cache.selectors_matching({"www.example.org.", "echo.k8s.intra."})
          == std::vector<std::string>{k8s.to_string()});
}

TEST_CASE("the cache prints like cilium fqdn cache list")
{
    Fixture f;
    f.cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2"), ip("203.0.113.3")}, 30, f.now, f.ops);
    const std::string table = format_table(f.cache.entries());
    CHECK(table == "Endpoint    Source   FQDN              TTL   ExpirationTime             IPs\n"
                   "192.0.2.2   lookup   echo.k8s.intra.   60    2026-04-19T00:01:00.000Z   203.0.113.2,203.0.113.3\n");
}

TEST_CASE("the operations of a round of answers become one net change per element")
{
    using K = ElementOp::Kind;
    const Address a = ip("203.0.113.2"), b = ip("203.0.113.3"), c = ip("203.0.113.4"), d = ip("203.0.113.5");
    std::vector<ElementOp> ops{
        {K::add, 1, Family::ipv4, a, 30s, false},   // new, then renewed: one add, not there before
        {K::remove, 1, Family::ipv4, b, {}, true},  // removed, then learned again: an add over it
        {K::add, 1, Family::ipv4, a, 60s, true},
        {K::add, 1, Family::ipv4, b, 45s, false},
        {K::add, 1, Family::ipv4, c, 30s, false},   // added and evicted in the round: nothing
        {K::remove, 1, Family::ipv4, c, {}, true},
        {K::add, 2, Family::ipv4, a, 30s, false},   // another selector's element: its own
        {K::add, 1, Family::ipv4, d, 30s, true},    // renewed, then removed: a remove
        {K::remove, 1, Family::ipv4, d, {}, true},
    };
    coalesce(ops);
    REQUIRE(ops.size() == 4);
    CHECK((ops[0].kind == K::add && ops[0].tag == 1 && ops[0].address == a && ops[0].timeout == 60s && !ops[0].exists));
    CHECK((ops[1].kind == K::add && ops[1].address == b && ops[1].timeout == 45s && ops[1].exists));
    CHECK((ops[2].kind == K::add && ops[2].tag == 2 && ops[2].address == a));
    CHECK((ops[3].kind == K::remove && ops[3].address == d));
}

TEST_CASE("lazy renewals: a name answered every 30 s is written to the kernel twice an hour")
{
    Cache cache{Limits{std::chrono::hours(1), 50}};
    Time now{std::chrono::sys_days{std::chrono::year{2026} / 4 / 19}};
    std::vector<ElementOp> ops;
    cache.set_selectors({*FqdnSelector::parse_pattern("*.k8s.intra", nullptr)}, now, ops);
    const Time start = now;
    size_t writes = 0;
    // Kernel deadline and mapping expiry, as the ops and answers say.
    Time kernel = now, mapping = now;
    for (int i = 0; i < 240; ++i) { // two hours
        // The expiry timer, as the daemon arms it, up to this answer.
        for (auto d = cache.next_deadline(); d && *d <= now; d = cache.next_deadline()) {
            CHECK(kernel >= *d); // never behind: the renewal comes before the element ends
            cache.expire(*d, ops);
            for (const auto& op : ops) {
                CHECK(op.kind == ElementOp::Kind::add);
                kernel = *d + std::chrono::duration_cast<std::chrono::milliseconds>(op.timeout);
            }
            writes += ops.size();
            ops.clear();
        }
        cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 30, now, ops);
        mapping = now + std::chrono::hours(1);
        for (const auto& op : ops)
            kernel = now + std::chrono::duration_cast<std::chrono::milliseconds>(op.timeout);
        writes += ops.size();
        ops.clear();
        // While fqdnd runs, the kernel never ends before the mapping minus
        // what a renewal is waiting for; after a crash now, it ends at most
        // half a grant early.
        CHECK(kernel + std::chrono::minutes(30) >= mapping);
        CHECK(kernel > now + std::chrono::minutes(29));
        now += 30s;
    }
    CHECK(now - start == std::chrono::hours(2));
    CHECK(writes >= 4);
    CHECK(writes <= 6); // the first, then about every half hour
    CHECK(cache.renewals_deferred() > 200);
}

TEST_CASE("lazy renewals: a short grant, a removal and a restore are written at once")
{
    Fixture f; // min-ttl 60 s
    f.ops.clear();
    // TTL 30, min-ttl 60: 60 s granted; 15 s later 45 s left (> 30): waits.
    f.cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 30, f.now, f.ops);
    f.ops.clear();
    f.cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 30, f.now + 15s, f.ops);
    CHECK(f.ops.empty());
    // 35 s later only 25 s are left: written with the answer.
    f.cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 30, f.now + 35s, f.ops);
    REQUIRE(f.ops.size() == 1);
    CHECK(f.ops[0].timeout == 60s);
    f.ops.clear();
    // The renewal that was waiting is stale now: its deadline writes nothing.
    f.cache.expire(f.now + 36s, f.ops);
    CHECK(f.ops.empty());
    // Cleaned while a renewal waits: the element goes, and nothing is renewed.
    f.cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 30, f.now + 40s, f.ops);
    CHECK(f.ops.empty());
    f.cache.clean(nullptr, f.now + 41s, f.ops);
    REQUIRE(f.ops.size() == 1);
    CHECK(f.ops[0].kind == ElementOp::Kind::remove);
    f.ops.clear();
    f.cache.expire(f.now + 100s, f.ops);
    CHECK(f.ops.empty());
}
