// explain and selectors, from a configuration and a cache: what `fqdnctl
// explain` and `fqdnctl selectors` show, without the kernel.
#include "config/loader.hpp"
#include "inspect.hpp"

#include "config-text.hpp"

#include <doctest/doctest.h>

using namespace fqdnd;
using namespace std::chrono_literals;

namespace {

const char* policies = R"([[policy]]
name = "web"
[policy.selector]
sources = ["192.0.2.0/29"]
[[policy.egress]]
to-fqdns = [{ match-pattern = "*.k8s.intra" }, { match-name = "api.example" }]
[[policy.egress]]
to-cidrs = ["198.51.100.0/24"]
[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
dns = [{ match-pattern = "*.k8s.intra" }]

[[policy]]
name = "watch"
audit = true
[policy.selector]
sources = ["192.0.2.8/29"]
[[policy.egress]]
to-fqdns = [{ match-name = "api.example" }]
)";

struct Fixture {
    config::Config config;
    cache::Cache cache;
    cache::Time now{std::chrono::sys_days{std::chrono::year{2026} / 12 / 1}};
    Fixture()
    {
        config = config_of(policies);
        std::vector<cache::ElementOp> ops;
        cache.set_selectors(config.fqdn_selectors(), now, ops);
        cache.learn("192.0.2.2", {"www.k8s.intra."}, {*Address::parse("203.0.113.2")}, 300, now, ops);
        cache.learn("192.0.2.9", {"api.example."}, {*Address::parse("203.0.113.2"), *Address::parse("2001:db8::2")},
                    300, now, ops);
    }
};

} // namespace

TEST_CASE("an address: every set that holds it, from which name, for which policies")
{
    Fixture f;
    const auto x = inspect::explain(f.config, f.cache, "203.0.113.2");
    REQUIRE(x);
    CHECK(x->is_address);
    CHECK(x->allowed);
    REQUIRE(x->holders.size() == 2);
    // Ordered by endpoint.
    CHECK(x->holders[0].endpoint == "192.0.2.2");
    CHECK(x->holders[0].name == "www.k8s.intra.");
    CHECK(x->holders[0].selector == "match-pattern: *.k8s.intra.");
    CHECK(x->holders[0].policies == std::vector<std::string>{"web"});
    CHECK(x->holders[1].name == "api.example.");
    CHECK(x->holders[1].policies == std::vector<std::string>{"watch (audit)", "web"});
    CHECK(x->cidr_rules.empty());
}

TEST_CASE("an address no name explains: a to-cidrs rule, or nothing")
{
    Fixture f;
    const auto cidr = inspect::explain(f.config, f.cache, "198.51.100.7");
    REQUIRE(cidr);
    CHECK(cidr->allowed);
    CHECK(cidr->holders.empty());
    CHECK(cidr->cidr_rules == std::vector<std::string>{"web: to-cidrs 198.51.100.0/24"});
    const auto none = inspect::explain(f.config, f.cache, "203.0.113.99");
    REQUIRE(none);
    CHECK_FALSE(none->allowed);
}

TEST_CASE("a name: its addresses, the selectors and DNS rules that take it")
{
    Fixture f;
    const auto x = inspect::explain(f.config, f.cache, "WWW.k8s.intra");
    REQUIRE(x);
    CHECK_FALSE(x->is_address);
    CHECK(x->subject == "www.k8s.intra.");
    REQUIRE(x->holders.size() == 1);
    CHECK(x->holders[0].name == "www.k8s.intra. 203.0.113.2");
    CHECK(x->selector_uses == std::vector<std::string>{"match-pattern: *.k8s.intra. (policy web)"});
    CHECK(x->dns_rules == std::vector<std::string>{"web: may be asked of 203.0.113.53/32"});
    CHECK_FALSE(inspect::explain(f.config, f.cache, "not a name!"));
}

TEST_CASE("selectors: each with its sets, names and addresses")
{
    Fixture f;
    const auto v = inspect::selectors(f.cache);
    REQUIRE(v.size() == 2);
    for (const auto& s : v) {
        if (s.selector == "match-name: api.example.") {
            CHECK(s.names == std::vector<std::string>{"api.example."});
            CHECK(s.addresses == std::vector<std::string>{"2001:db8::2", "203.0.113.2"});
        } else {
            CHECK(s.selector == "match-pattern: *.k8s.intra.");
            CHECK(s.names == std::vector<std::string>{"www.k8s.intra."});
            CHECK(s.addresses == std::vector<std::string>{"203.0.113.2"});
        }
        CHECK(s.set4 != s.set6);
    }
}
