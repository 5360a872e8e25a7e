// What the kernel adapters read from the kernel's text and messages, fed
// by hand: no root, no kernel.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "cgroup/watch.hpp"
#include "dns/packet.hpp"
#include "interface-names.hpp"
#include "nflog/nflog.hpp"
#include "nfq/queue.hpp"

#include <doctest/doctest.h>

#include <net/if.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

using namespace fqdnd;

TEST_CASE("the kernel's queue drops are summed over fqdnd's queues only")
{
    // /proc/net/netfilter/nfnetlink_queue as kernel 6.18 writes it.
    std::istringstream text("  100  4242     0 2 65531     7     1        9  1\n"
                            "  101  4242     0 2 65531     0     2       12  1\n"
                            "  102  4242     0 2 65531     5     0        3  1\n"
                            "  104  4242     0 2 65531    40    40        3  1\n"
                            "   99  4243     0 2 65531    50    50        3  1\n");
    const nfq::KernelDrops k = nfq::parse_kernel_drops(text, 100, 4);
    CHECK(k.queue_full == 12);
    CHECK(k.undelivered == 3);
}

TEST_CASE("no queue bound, or a file that is not there, is no drop")
{
    std::istringstream empty("");
    const nfq::KernelDrops k = nfq::parse_kernel_drops(empty, 100, 2);
    CHECK(k.queue_full == 0);
    CHECK(k.undelivered == 0);
    std::istringstream garbage("queue portid\n");
    CHECK(nfq::parse_kernel_drops(garbage, 0, 65535).queue_full == 0);
}

TEST_CASE("a drop rule's log prefix names the kind of drop and the policy")
{
    const auto r = nflog::parse_prefix("fqdnd drop echo web", "fqdnd ");
    REQUIRE(r);
    CHECK(r->kind == "drop");
    CHECK(r->policy == "echo web");
    CHECK_FALSE(nflog::parse_prefix("other drop echo", "fqdnd "));
    CHECK_FALSE(nflog::parse_prefix("fqdnd drop", "fqdnd "));
    CHECK_FALSE(nflog::parse_prefix("fqdnd drop ", "fqdnd "));
    CHECK_FALSE(nflog::parse_prefix("fqdnd  echo", "fqdnd "));
    CHECK(nflog::protocol_name(6) == "tcp");
    CHECK(nflog::protocol_name(58) == "icmpv6");
    CHECK(nflog::protocol_name(47) == "47");
}

TEST_CASE("a logged drop is attributed: to the forwarded packet's source, or to the local socket's owner")
{
    const auto from = *Address::parse("192.0.2.2"), to = *Address::parse("2001:db8::99");
    const auto v4 = dns::build_tcp(from, 40000, *Address::parse("203.0.113.99"), 443, 1, 0, 0x02, {});
    nflog::Logged l{"fqdnd drop echo", v4, 3, 0, std::nullopt, std::nullopt, std::nullopt};
    const auto d = nflog::attribute(l, "fqdnd ");
    REQUIRE(d);
    CHECK(d->kind == "drop");
    CHECK(d->policy == "echo");
    CHECK(d->endpoint() == "192.0.2.2");
    CHECK(d->destination.to_string() == "203.0.113.99");
    CHECK(d->protocol == "tcp");
    CHECK(d->port == 443);

    const auto v6 = dns::build_udp(*Address::parse("2001:db8::2"), 5353, to, 53, {});
    nflog::Logged local{"fqdnd dns-server web", v6, 0, 2, 65534u, 65534u, std::nullopt};
    const auto e = nflog::attribute(local, "fqdnd ");
    REQUIRE(e);
    CHECK(e->endpoint() == "uid:65534");
    CHECK(e->protocol == "udp");
    CHECK(e->port == 53);
    local.uid.reset();
    CHECK(nflog::attribute(local, "fqdnd ")->endpoint() == "local");

    nflog::Logged truncated{"fqdnd drop echo", std::span<const uint8_t>(v4).first(10), 3, 0, std::nullopt, std::nullopt, std::nullopt};
    CHECK_FALSE(nflog::attribute(truncated, "fqdnd "));
    CHECK_FALSE(nflog::attribute(nflog::Logged{"ulogd x", v4, 3, 0, std::nullopt, std::nullopt, std::nullopt}, "fqdnd "));
}

namespace {

// A directory tree that stands for the cgroup hierarchy (inotify and
// inodes behave alike on the test's file system), removed at the end.
struct Tree {
    std::string root;
    Tree()
    {
        char tmpl[] = "/tmp/fqdnd-cgroup.XXXXXX";
        REQUIRE(mkdtemp(tmpl));
        root = tmpl;
    }
    ~Tree() { std::filesystem::remove_all(root); }
    std::string mkdir(const std::string& rel) const
    {
        const std::string p = root + "/" + rel;
        REQUIRE(::mkdir(p.c_str(), 0755) == 0);
        return p;
    }
    void rmdir(const std::string& rel) const { REQUIRE(::rmdir((root + "/" + rel).c_str()) == 0); }
    uint64_t inode(const std::string& rel) const
    {
        struct stat st {};
        REQUIRE(stat((root + "/" + rel).c_str(), &st) == 0);
        return st.st_ino;
    }
};

} // namespace

TEST_CASE("a walk of the hierarchy finds each unit's shallowest cgroup, with its level and inode")
{
    Tree t;
    t.mkdir("system.slice");
    t.mkdir("system.slice/web.service");
    t.mkdir("user.slice");
    t.mkdir("user.slice/user-1000.slice");
    t.mkdir("user.slice/user-1000.slice/user@1000.service");
    t.mkdir("user.slice/user-1000.slice/user@1000.service/app.slice");
    t.mkdir("user.slice/user-1000.slice/user@1000.service/app.slice/web.service");
    t.mkdir("user.slice/user-1000.slice/user@1000.service/app.slice/deep.service");
    t.mkdir("user.slice/user-1000.slice/user@1000.service/app.slice/deep.service/too.service"); // level 6

    const cgroup::Search s = cgroup::find_units(t.root, {"web.service", "deep.service", "too.service", "gone.service"});
    CHECK(s.problems.empty());
    REQUIRE(s.cgroups.at("web.service"));
    CHECK(*s.cgroups.at("web.service")
          == cgroup::UnitCgroup{t.root + "/system.slice/web.service", 2, t.inode("system.slice/web.service")});
    REQUIRE(s.cgroups.at("deep.service"));
    CHECK(s.cgroups.at("deep.service")->level == 5);
    CHECK_FALSE(s.cgroups.at("too.service")); // below the deepest level looked at
    CHECK_FALSE(s.cgroups.at("gone.service"));

    CHECK(cgroup::unchanged({{"web.service", s.cgroups.at("web.service")}}));
    CHECK_FALSE(cgroup::unchanged(s.cgroups)); // gone.service has none
    t.rmdir("system.slice/web.service");
    t.mkdir("system.slice/web.service");
    const uint64_t was = s.cgroups.at("web.service")->id;
    if (t.inode("system.slice/web.service") != was) // a file system may hand the inode out again
        CHECK_FALSE(cgroup::unchanged({{"web.service", s.cgroups.at("web.service")}}));
}

TEST_CASE("the watch tells when a directory of a unit's name comes or goes, at any level a unit can be")
{
    Tree t;
    t.mkdir("system.slice");
    cgroup::Watch w;
    REQUIRE(w.watch(t.root, {"web.service"}) == 0);
    CHECK(w.directories() == 2);
    CHECK_FALSE(w.read().named); // nothing happened

    t.mkdir("system.slice/other.service");
    CHECK_FALSE(w.read().named);
    t.mkdir("system.slice/web.service");
    CHECK(w.read().named);
    t.rmdir("system.slice/web.service");
    CHECK(w.read().named);

    // A slice made after the watch is watched too, and a unit made in it
    // before fqdnd read the slice's event is seen all the same.
    t.mkdir("user.slice");
    t.mkdir("user.slice/web.service");
    CHECK(w.read().named);
    t.rmdir("user.slice/web.service");
    CHECK(w.read().named);
    t.mkdir("user.slice/user-1000.slice");
    t.mkdir("user.slice/user-1000.slice/user@1000.service");
    CHECK_FALSE(w.read().named);
    t.mkdir("user.slice/user-1000.slice/user@1000.service/app.slice");
    CHECK_FALSE(w.read().named);
    t.mkdir("user.slice/user-1000.slice/user@1000.service/app.slice/web.service"); // level 5
    CHECK(w.read().named);
    // Level 5 holds units but nothing that holds units: not watched.
    t.mkdir("user.slice/user-1000.slice/user@1000.service/app.slice/other.service");
    t.mkdir("user.slice/user-1000.slice/user@1000.service/app.slice/other.service/web.service");
    CHECK_FALSE(w.read().named);
    const size_t watched = w.directories();

    // Removed directories are no longer watched; the names can change.
    t.rmdir("user.slice/user-1000.slice/user@1000.service/app.slice/other.service/web.service");
    t.rmdir("user.slice/user-1000.slice/user@1000.service/app.slice/other.service");
    t.rmdir("user.slice/user-1000.slice/user@1000.service/app.slice/web.service");
    t.rmdir("user.slice/user-1000.slice/user@1000.service/app.slice");
    CHECK(w.read().named);
    CHECK(w.directories() == watched - 1);
    REQUIRE(w.watch(t.root, {"db.service"}) == 0);
    t.mkdir("system.slice/web.service");
    CHECK_FALSE(w.read().named);
    t.mkdir("system.slice/db.service");
    CHECK(w.read().named);
    CHECK(w.read().error == 0);
}

TEST_CASE("an interface index is named as the kernel names it; an unknown one is no name")
{
    InterfaceNames names;
    const unsigned lo = if_nametoindex("lo");
    REQUIRE(lo != 0); // every network namespace has one
    CHECK(names.name(lo) == "lo");
    CHECK(names.name(lo) == "lo"); // remembered
    CHECK(names.name(0x7ffffff0) == "");
}
