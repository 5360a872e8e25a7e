// The cgroups of the units that policies name: which directory a search
// takes for a unit, and what the log says changed between two searches.
#include "cgroup/units.hpp"
#include "config/loader.hpp"

#include <doctest/doctest.h>

using namespace fqdnd;
using namespace fqdnd::cgroup;

TEST_CASE("a unit's cgroup is the shallowest directory of its name")
{
    UnitSearch s({"foo.service", "bar.service"});
    CHECK(s.wants("foo.service"));
    CHECK_FALSE(s.wants("other.service"));
    // A user's foo.service deeper down, seen first, then the system's.
    s.saw("foo.service", {"/r/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service", 5, 70});
    s.saw("foo.service", {"/r/system.slice/foo.service", 2, 42});
    s.saw("foo.service", {"/r/machine.slice/x.scope/system.slice/foo.service", 4, 90});
    s.saw("other.service", {"/r/system.slice/other.service", 2, 7});
    const Search r = s.result();
    CHECK(r.problems.empty());
    REQUIRE(r.cgroups.size() == 2);
    REQUIRE(r.cgroups.at("foo.service"));
    CHECK(*r.cgroups.at("foo.service") == UnitCgroup{"/r/system.slice/foo.service", 2, 42});
}

TEST_CASE("a unit that is not running has no cgroup, which is no problem")
{
    UnitSearch s({"foo.service"});
    const Search r = s.result();
    CHECK(r.problems.empty());
    REQUIRE(r.cgroups.contains("foo.service"));
    CHECK_FALSE(r.cgroups.at("foo.service"));
}

TEST_CASE("two cgroups of a unit's name at its shallowest depth are ambiguous")
{
    UnitSearch s({"app.slice"});
    s.saw("app.slice", {"/r/user.slice/user-1000.slice/user@1000.service/app.slice", 4, 1});
    s.saw("app.slice", {"/r/user.slice/user-1001.slice/user@1001.service/app.slice", 4, 2});
    Search r = s.result();
    REQUIRE(r.problems.contains("app.slice"));
    CHECK(r.problems.at("app.slice").find("more than one cgroup") != std::string::npos);
    CHECK_FALSE(r.cgroups.at("app.slice"));

    // One shallower settles it.
    s.saw("app.slice", {"/r/app.slice", 1, 3});
    r = s.result();
    CHECK(r.problems.empty());
    CHECK(r.cgroups.at("app.slice")->id == 3);
}

TEST_CASE("the log names what changed: a unit started, restarted or stopped")
{
    const UnitCgroup a{"/r/system.slice/a.service", 2, 7}, a2{"/r/system.slice/a.service", 2, 9};
    const UnitCgroups none{{"a.service", std::nullopt}, {"b.service", std::nullopt}};
    const UnitCgroups started{{"a.service", a}, {"b.service", std::nullopt}};
    const UnitCgroups restarted{{"a.service", a2}, {"b.service", std::nullopt}};

    CHECK(changes(none, none).empty());
    CHECK(changes(started, started).empty());
    CHECK(changes(none, started) == std::vector<std::string>{"a.service started (cgroup id 7)"});
    CHECK(changes(started, restarted) == std::vector<std::string>{"a.service restarted (cgroup id 9, was 7)"});
    CHECK(changes(restarted, none) == std::vector<std::string>{"a.service stopped (cgroup id 9 is gone)"});
    // A unit that only one side knows (a reload named it) is no change.
    CHECK(changes(UnitCgroups{}, started).empty());
}

TEST_CASE("a search again takes the units' new cgroups and says what changed")
{
    const UnitCgroup a{"/r/system.slice/a.service", 2, 7}, b{"/r/system.slice/b.service", 2, 8};
    const UnitCgroups known{{"a.service", a}, {"b.service", std::nullopt}};

    // b.service started, a.service stopped.
    Update u = update(known, Search{{{"a.service", std::nullopt}, {"b.service", b}}, {}});
    CHECK(u.cgroups == UnitCgroups{{"a.service", std::nullopt}, {"b.service", b}});
    CHECK(u.changes
          == std::vector<std::string>{"a.service stopped (cgroup id 7 is gone)", "b.service started (cgroup id 8)"});
    CHECK(u.warnings.empty());

    // The same cgroups again: nothing to put in place.
    u = update(known, Search{known, {}});
    CHECK(u.cgroups == known);
    CHECK(u.changes.empty());
}

TEST_CASE("a unit whose cgroup cannot be told now keeps the one it had, with a warning")
{
    const UnitCgroup a{"/r/system.slice/a.service", 2, 7}, b{"/r/system.slice/b.service", 2, 8};
    const UnitCgroups known{{"a.service", a}, {"b.service", std::nullopt}};
    // Two a.service at one depth: ambiguous, its entry empty; b.service started.
    const Update u = update(known, Search{{{"a.service", std::nullopt}, {"b.service", b}},
                                          {{"a.service", "unit a.service: two cgroups at level 2"}}});
    CHECK(u.cgroups == UnitCgroups{{"a.service", a}, {"b.service", b}});
    CHECK(u.changes == std::vector<std::string>{"b.service started (cgroup id 8)"});
    CHECK(u.warnings == std::vector<std::string>{"unit a.service: two cgroups at level 2; its rules stay as they are"});
}

TEST_CASE("units without a cgroup are counted for the metrics")
{
    CHECK(without_cgroup({}) == 0);
    CHECK(without_cgroup({{"a.service", UnitCgroup{"/r/a.service", 1, 3}},
                          {"b.service", std::nullopt},
                          {"c.service", std::nullopt}})
          == 2);
}

TEST_CASE("the units a configuration names: every policy's, sorted, once each")
{
    auto r = config::load_config_text("", "/etc/fqdnd/fqdnd.toml", {{"p.toml", R"(
[[policy]]
name = "a"
[policy.selector]
units = ["web.service", "cron.service"]
[[policy.egress]]
to-cidrs = ["192.0.2.0/24"]

[[policy]]
name = "b"
[policy.selector]
units = ["web.service"]
users = ["root"]
[[policy.egress]]
to-cidrs = ["192.0.2.0/24"]

[[policy]]
name = "c"
[policy.selector]
sources = ["192.0.2.0/29"]
[[policy.egress]]
to-cidrs = ["192.0.2.0/24"]
)"}});
    for (const auto& e : r.errors)
        MESSAGE(e.to_string());
    REQUIRE(r.config);
    CHECK(r.config->units() == std::vector<std::string>{"cron.service", "web.service"});
}
