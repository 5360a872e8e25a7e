// The units follower on a private sd-event loop, over a directory tree that
// stands for the cgroup hierarchy: when it puts the ruleset in place again,
// with what, and what it keeps when that fails. No root needed.
#include "cgroup/follower.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <sys/stat.h>
#include <systemd/sd-event.h>
#include <unistd.h>

using namespace fqdnd;
using namespace fqdnd::cgroup;

namespace {

struct Tree {
    std::string root;
    Tree()
    {
        char tmpl[] = "/tmp/fqdnd-follower.XXXXXX";
        REQUIRE(mkdtemp(tmpl));
        root = tmpl;
    }
    ~Tree() { std::filesystem::remove_all(root); }
    void mkdir(const std::string& rel) const { REQUIRE(::mkdir((root + "/" + rel).c_str(), 0755) == 0); }
    void rmdir(const std::string& rel) const { REQUIRE(::rmdir((root + "/" + rel).c_str()) == 0); }
};

// A follower whose "ruleset" records what it was given, and fails while
// `refuse` is set.
struct Run {
    SdEventPtr event;
    std::vector<UnitCgroups> applied;
    bool refuse = false;
    Follower follower;
    explicit Run(const Tree& t)
        : follower(
            [this](const UnitCgroups& u) {
                applied.push_back(u);
                return refuse ? -EIO : 0;
            },
            t.root)
    {
        sd_event* e = nullptr;
        REQUIRE(sd_event_new(&e) >= 0);
        event.reset(e);
    }
    // Runs the loop until the ruleset was applied `n` times in all, or
    // `limit` passed.
    void run_until(size_t n, std::chrono::milliseconds limit = std::chrono::milliseconds(3000))
    {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (applied.size() < n && std::chrono::steady_clock::now() < end)
            REQUIRE(sd_event_run(event.get(), 50'000) >= 0);
    }
};

} // namespace

TEST_CASE("units are looked up below the hierarchy; one not running has no cgroup and is no error")
{
    Tree t;
    t.mkdir("system.slice");
    t.mkdir("system.slice/web.service");
    Run run(t);
    std::vector<std::string> errors;
    const auto found = run.follower.look_up({"web.service", "db.service"}, &errors);
    REQUIRE(found);
    CHECK(errors.empty());
    REQUIRE(found->at("web.service"));
    CHECK(found->at("web.service")->path == t.root + "/system.slice/web.service");
    CHECK_FALSE(found->at("db.service"));
    CHECK(run.follower.look_up({}, &errors)->empty());
}

TEST_CASE("units whose cgroup cannot be told refuse the configuration, each problem reported")
{
    Tree t;
    t.mkdir("a.slice");
    t.mkdir("b.slice");
    t.mkdir("a.slice/web.service");
    t.mkdir("b.slice/web.service");
    Run run(t);
    std::vector<std::string> errors;
    CHECK_FALSE(run.follower.look_up({"web.service"}, &errors));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("web.service") != std::string::npos);
}

TEST_CASE("a unit that starts, then stops, puts the ruleset in place again with its cgroup")
{
    Tree t;
    t.mkdir("system.slice");
    Run run(t);
    run.follower.follow(run.event.get(), *run.follower.look_up({"web.service"}, nullptr));
    CHECK(run.applied.empty()); // nothing came before the watch began
    CHECK(run.follower.changes() == 0);

    t.mkdir("system.slice/other.service");
    run.run_until(1, std::chrono::milliseconds(200));
    CHECK(run.applied.empty()); // not a unit a policy names

    t.mkdir("system.slice/web.service");
    run.run_until(1);
    REQUIRE(run.applied.size() == 1);
    REQUIRE(run.applied[0].at("web.service"));
    CHECK(run.applied[0].at("web.service")->path == t.root + "/system.slice/web.service");
    CHECK(run.follower.cgroups() == run.applied[0]);
    CHECK(run.follower.changes() == 1);

    t.rmdir("system.slice/web.service");
    run.run_until(2);
    REQUIRE(run.applied.size() == 2);
    CHECK_FALSE(run.applied[1].at("web.service"));
    CHECK_FALSE(run.follower.cgroups().at("web.service"));
    CHECK(run.follower.changes() == 2);
}

TEST_CASE("when the ruleset cannot be put in place, the old cgroups stay and it is tried again in a second")
{
    Tree t;
    t.mkdir("system.slice");
    Run run(t);
    run.follower.follow(run.event.get(), *run.follower.look_up({"web.service"}, nullptr));
    run.refuse = true;
    t.mkdir("system.slice/web.service");
    run.run_until(1);
    REQUIRE(run.applied.size() == 1);
    CHECK_FALSE(run.follower.cgroups().at("web.service"));
    CHECK(run.follower.changes() == 0);

    run.refuse = false;
    run.run_until(2);
    REQUIRE(run.applied.size() == 2);
    REQUIRE(run.follower.cgroups().at("web.service"));
    CHECK(run.follower.changes() == 1);
}

TEST_CASE("a unit already running when the watch begins is taken at once")
{
    Tree t;
    t.mkdir("system.slice");
    Run run(t);
    const auto before = *run.follower.look_up({"web.service"}, nullptr);
    t.mkdir("system.slice/web.service"); // between the lookup and the watch
    run.follower.follow(run.event.get(), before);
    REQUIRE(run.applied.size() == 1);
    CHECK(run.applied[0].at("web.service"));
    CHECK(run.follower.changes() == 1);
}

TEST_CASE("with no unit named, nothing is followed")
{
    Tree t;
    Run run(t);
    run.follower.follow(run.event.get(), {});
    t.mkdir("web.service");
    run.run_until(1, std::chrono::milliseconds(200));
    CHECK(run.applied.empty());
    CHECK(run.follower.cgroups().empty());
}
