// At start, the kernel's FQDN sets against the cache the state brought
// back: which elements nothing explains, grouped for removal, and what the
// log says of each.
#include "state/reconcile.hpp"

#include "cache/cache.hpp"
#include "ruleset/compile.hpp"

#include "address-literal.hpp"

#include <doctest/doctest.h>

using namespace fqdnd;
using namespace std::chrono_literals;

TEST_CASE("an element is explained only by its selector's tag and address in the restored cache")
{
    const cache::Time now{std::chrono::sys_days{std::chrono::year{2026} / 12 / 1}};
    const FqdnSelector k8s = *FqdnSelector::parse_pattern("*.k8s.intra", nullptr);
    const FqdnSelector web = *FqdnSelector::parse_name("web.example.", nullptr);
    const uint64_t k8s_tag = ruleset::selector_tag(k8s), web_tag = ruleset::selector_tag(web);
    cache::Cache cache;
    std::vector<cache::ElementOp> ops;
    cache.set_selectors({k8s, web}, now, ops);
    cache.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 300, now, ops);
    cache.learn("192.0.2.2", {"web.example."}, {ip("203.0.113.9")}, 300, now, ops);
    std::vector<cache::ElementOp> want;
    cache.resync(now, want);

    const std::vector<state::SetElement> listed{
        {k8s_tag, ip("203.0.113.2")}, // learned
        {web_tag, ip("203.0.113.2")}, // the address, but not web.example.'s
        {k8s_tag, ip("203.0.113.7")}, // nothing learned it
        {web_tag, ip("203.0.113.9")}, // learned
        {std::nullopt, ip("203.0.113.9")}, // untagged: no selector's
        {k8s_tag, ip("203.0.113.8")},
    };
    const state::Unexplained u = state::unexplained(want, listed);
    CHECK(u.listed == std::vector<size_t>{1, 2, 4, 5});
    CHECK(u.by_tag.size() == 3);
    CHECK(u.by_tag.at(k8s_tag) == std::vector<Address>{ip("203.0.113.7"), ip("203.0.113.8")});
    CHECK(u.by_tag.at(web_tag) == std::vector<Address>{ip("203.0.113.2")});
    CHECK(u.by_tag.at(0) == std::vector<Address>{ip("203.0.113.9")});
}

TEST_CASE("a set that holds only what the cache explains needs nothing removed")
{
    const std::vector<cache::ElementOp> want{
        {cache::ElementOp::Kind::add, 5, Family::ipv4, ip("203.0.113.2"), 300s, false},
        {cache::ElementOp::Kind::add, 5, Family::ipv6, ip("2001:db8::2"), 300s, false},
    };
    const state::Unexplained u
        = state::unexplained(want, {{5, ip("203.0.113.2")}, {5, ip("2001:db8::2")}});
    CHECK(u.listed.empty());
    CHECK(u.by_tag.empty());
    // An empty cache explains nothing.
    CHECK(state::unexplained({}, {{5, ip("203.0.113.2")}}).listed == std::vector<size_t>{0});
}

TEST_CASE("the log says of an unexplained element its selector, its time left and the names the cache knows")
{
    const std::string sel = "*.k8s.intra";
    CHECK(state::describe_unexplained(ip("203.0.113.7"), "fqdn4", &sel, 90s, {"a.k8s.intra.", "b.k8s.intra."})
          == "removing 203.0.113.7 from set fqdn4 (selector *.k8s.intra, 90 s left in the kernel, the cache knows it "
             "as a.k8s.intra., b.k8s.intra.): the state does not explain it");
    CHECK(state::describe_unexplained(ip("2001:db8::7"), "fqdn6", nullptr, 1500ms, {})
          == "removing 2001:db8::7 from set fqdn6 (selector of no running policy, 1 s left in the kernel, no name "
             "in the cache): the state does not explain it");
}
