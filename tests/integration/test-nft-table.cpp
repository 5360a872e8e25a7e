// The nf_tables adapter against the real kernel, in a network namespace of
// its own (unshare at start, gone when the process ends): element timeouts
// renewed both ways, batches with errors, adoption of an existing table.
#define DOCTEST_CONFIG_IMPLEMENT
#include "config/loader.hpp"
#include "nft/monitor.hpp"
#include "nft/table.hpp"
#include "ruleset/compile.hpp"

#include <doctest/doctest.h>

#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>

using namespace fqdnd;
using namespace std::chrono_literals;

namespace {

ruleset::Ruleset echo_ruleset()
{
    auto r = config::load_config_text("", "/etc/fqdnd/fqdnd.toml",
                                      {{"p.toml", "[[policy]]\nname = \"echo\"\n[policy.selector]\n"
                                                  "sources = [\"192.0.2.0/29\"]\n[[policy.egress]]\n"
                                                  "to-fqdns = [{ match-pattern = \"*.k8s.intra\" }]\n"}});
    REQUIRE(r.config);
    return ruleset::compile(*r.config);
}

const uint64_t k8s_tag = ruleset::selector_tag(*FqdnSelector::parse_pattern("*.k8s.intra", nullptr));

nft::Monitor::Seen read(nft::Monitor& monitor, nft::Netlink& own)
{
    nft::Monitor::Seen seen;
    monitor.read("fqdnd", own.portid(), 1000, seen);
    return seen;
}

std::string hex32(uint64_t v)
{
    char buf[9];
    std::snprintf(buf, sizeof buf, "%08x", static_cast<unsigned>(v));
    return buf;
}

const nft::Table::ListedElement* find(const std::vector<nft::Table::ListedElement>& v, const Address& a)
{
    for (const auto& e : v)
        if (e.address == a && e.tag == k8s_tag)
            return &e;
    return nullptr;
}

// fqdnd's echo table, applied by a socket of its own.
struct EchoTable {
    nft::Netlink nl;
    nft::Table table{nl};
    const ruleset::Ruleset rs = echo_ruleset();
    std::string problem;
    EchoTable()
    {
        REQUIRE(nl.open() == 0);
        REQUIRE_MESSAGE(table.apply(rs, nft::QueueMode::compat, {}, &problem) == 0, problem);
    }
};

} // namespace

TEST_CASE_FIXTURE(EchoTable, "set element timeouts are renewed by re-add and by delete-add")
{
    const std::string set = rs.sets[0].family == Family::ipv4 ? rs.sets[0].name : rs.sets[1].name;
    const Address a = *Address::parse("203.0.113.2");

    nft::Refresh probed{};
    REQUIRE_MESSAGE(table.probe_refresh("fqdnd", probed, &problem) == 0, problem);
    MESSAGE("this kernel renews element timeouts by " << nft::to_string(probed));

    for (nft::Refresh how : {nft::Refresh::delete_add, probed}) {
        CAPTURE(nft::to_string(how));
        REQUIRE(table.add_elements("fqdnd", set, k8s_tag, {{a, 10min, false}}, how, &problem) == 0);
        std::vector<nft::Table::ListedElement> listed;
        REQUIRE(table.list_elements("fqdnd", set, listed) == 0);
        REQUIRE(find(listed, a));
        CHECK(find(listed, a)->timeout == 10min);

        REQUIRE_MESSAGE(table.add_elements("fqdnd", set, k8s_tag, {{a, 2h, true}}, how, &problem) == 0, problem);
        listed.clear();
        REQUIRE(table.list_elements("fqdnd", set, listed) == 0);
        REQUIRE(find(listed, a));
        CHECK(find(listed, a)->timeout == 2h);
        CHECK(find(listed, a)->expires > 90min);

        REQUIRE(table.delete_elements("fqdnd", set, k8s_tag, {a}, &problem) == 0);
    }
}

TEST_CASE_FIXTURE(EchoTable, "a failing batch changes nothing and says which object failed")
{
    // Deleting an element that is not there fails the whole batch.
    const int r = table.delete_elements("fqdnd", rs.sets[0].name, k8s_tag,
                                        {*Address::parse(rs.sets[0].family == Family::ipv4 ? "192.0.2.77" : "2001:db8::77")},
                                        &problem);
    CHECK(r == -ENOENT);
    CHECK(problem.find("deleting 1 elements of set " + rs.sets[0].name) != std::string::npos);
}

TEST_CASE_FIXTURE(EchoTable, "delete_each deletes what is there when one of a batch is gone already")
{
    const std::vector<Address> all{*Address::parse("203.0.113.21"), *Address::parse("203.0.113.22"),
                                   *Address::parse("203.0.113.23")};
    // This kernel (6.18) has the idempotent delete; the retries are for
    // older ones. Both ways.
    CHECK(table.probe_destroy("fqdnd"));
    for (const bool destroy : {true, false}) {
        CAPTURE(destroy);
        nft::Table t(nl);
        if (destroy)
            REQUIRE(t.probe_destroy("fqdnd"));
        REQUIRE(t.add_elements("fqdnd", "fqdn4", k8s_tag, {{all[0], 10min, false}, {all[2], 10min, false}},
                               nft::Refresh::readd, &problem)
                == 0);
        // A plain delete fails whole on the missing one.
        CHECK(t.delete_elements("fqdnd", "fqdn4", k8s_tag, all, nullptr) == -ENOENT);
        problem.clear();
        CHECK(t.delete_each("fqdnd", "fqdn4", k8s_tag, all, &problem) == 3);
        CHECK(problem.empty()); // gone already is not a failure
        std::vector<nft::Table::ListedElement> listed;
        REQUIRE(t.list_elements("fqdnd", "fqdn4", listed) == 0);
        for (const Address& a : all)
            CHECK(find(listed, a) == nullptr);
    }
}

TEST_CASE_FIXTURE(EchoTable, "update removes what is there when one of its removals is gone already, with its adds")
{
    const Address gone = *Address::parse("203.0.113.31"), there = *Address::parse("203.0.113.32"),
                  added = *Address::parse("203.0.113.33");
    const auto op = [](cache::ElementOp::Kind kind, const Address& a) {
        return cache::ElementOp{kind, k8s_tag, Family::ipv4, a, 10min, false};
    };
    for (const bool destroy : {true, false}) {
        CAPTURE(destroy);
        nft::Table t(nl);
        t.assume_destroy(destroy);
        REQUIRE(t.add_elements("fqdnd", "fqdn4", k8s_tag, {{there, 10min, false}}, nft::Refresh::readd, &problem)
                == 0);
        problem.clear();
        const std::vector<cache::ElementOp> ops{op(cache::ElementOp::Kind::add, added),
                                                op(cache::ElementOp::Kind::remove, gone),
                                                op(cache::ElementOp::Kind::remove, there)};
        CHECK_MESSAGE(t.update("fqdnd", ops, nft::Refresh::readd, &problem) == 0, problem);
        std::vector<nft::Table::ListedElement> listed;
        REQUIRE(t.list_elements("fqdnd", "fqdn4", listed) == 0);
        CHECK(find(listed, there) == nullptr);
        CHECK(find(listed, added) != nullptr);
        REQUIRE(t.delete_each("fqdnd", "fqdn4", k8s_tag, {added}, &problem) == 1);
    }
}

TEST_CASE_FIXTURE(EchoTable, "the generation changes with every transaction; a stable listing says when it could not be had")
{
    uint32_t g1 = 0, g2 = 0, g3 = 0;
    REQUIRE(table.generation(g1) == 0);
    REQUIRE(table.generation(g2) == 0);
    CHECK(g1 == g2);
    REQUIRE(table.add_elements("fqdnd", "fqdn4", k8s_tag, {{*Address::parse("203.0.113.31"), 10min, false}},
                               nft::Refresh::readd, &problem)
            == 0);
    REQUIRE(table.generation(g3) == 0);
    CHECK(g3 != g2);
    std::vector<nft::Table::ListedElement> listed;
    REQUIRE(table.list_elements_stable("fqdnd", "fqdn4", listed) == 0);
    CHECK(find(listed, *Address::parse("203.0.113.31")) != nullptr);
    CHECK(table.delete_elements("fqdnd", "fqdn4", k8s_tag, {*Address::parse("203.0.113.31")}, &problem) == 0);
}

TEST_CASE_FIXTURE(EchoTable, "applying again adopts the table: set elements stay")
{
    const auto& set = rs.sets[0].family == Family::ipv4 ? rs.sets[0] : rs.sets[1];
    const Address a = *Address::parse("203.0.113.9");
    REQUIRE(table.add_elements("fqdnd", set.name, k8s_tag, {{a, 1h, false}}, nft::Refresh::readd, &problem) == 0);
    REQUIRE(table.apply(rs, nft::QueueMode::compat, {}, &problem) == 0);
    std::vector<nft::Table::ListedElement> listed;
    REQUIRE(table.list_elements("fqdnd", set.name, listed) == 0);
    CHECK(find(listed, a));
    CHECK(listed.size() == 1);
    CHECK(table.remove("fqdnd", &problem) == 0);
    CHECK_FALSE(table.exists("fqdnd"));
}

TEST_CASE_FIXTURE(EchoTable, "the table monitor drops the transactions of fqdnd's own ports, and sees every other")
{
    const std::string set = rs.sets[0].family == Family::ipv4 ? rs.sets[0].name : rs.sets[1].name;

    // The DNS path's socket of set updates.
    nft::Netlink updates;
    REQUIRE(updates.open() == 0);
    nft::Table dns_path(updates);

    nft::Monitor monitor;
    REQUIRE(monitor.open(1 << 20) == 0);
    REQUIRE(monitor.ignore({nl.portid(), updates.portid()}) == 0);
    pollfd p{monitor.fd(), POLLIN, 0};
    // What the DNS path does every round: nothing reaches the socket.
    for (const char* a : {"203.0.113.7", "203.0.113.8"})
        REQUIRE_MESSAGE(dns_path.add_elements("fqdnd", set, k8s_tag, {{*Address::parse(a), 10min, false}},
                                              nft::Refresh::readd, &problem) == 0,
                        problem);
    REQUIRE(dns_path.delete_elements("fqdnd", set, k8s_tag, {*Address::parse("203.0.113.7")}, &problem) == 0);
    CHECK(poll(&p, 1, 200) == 0);

    // Found by a hostile review of a filter by event type: the kernel sends
    // a transaction's events in one datagram, so one that begins with set
    // elements and then changes the table was dropped whole. Another port's
    // transactions are all seen, whatever they begin with.
    REQUIRE(std::system(("nft 'flush set inet fqdnd " + set + "; add chain inet fqdnd sneaky'").c_str()) == 0);
    CHECK(poll(&p, 1, 2000) == 1);
    CHECK(read(monitor, nl).changed);
    REQUIRE(std::system("nft 'add table inet other; add set inet other s { type ipv4_addr; }'") == 0);
    CHECK_FALSE(read(monitor, nl).changed);
    REQUIRE(std::system(("nft 'add element inet other s { 192.0.2.1 }; insert rule inet fqdnd " + rs.chains[0].name
                         + " accept'")
                            .c_str())
            == 0);
    CHECK(poll(&p, 1, 2000) == 1);
    CHECK(read(monitor, nl).changed);

    // Another port deleting the table: seen.
    nft::Netlink other;
    REQUIRE(other.open() == 0);
    nft::Table by_other(other);
    REQUIRE(by_other.remove("fqdnd", &problem) == 0);
    CHECK(poll(&p, 1, 2000) == 1);
    CHECK(read(monitor, nl).changed);
    std::system("nft delete table inet other");

    // A table of fqdnd's name in another family is someone else's: neither
    // its changes nor its elements count (found by a hostile review).
    REQUIRE(std::system("nft 'add table ip fqdnd; add set ip fqdnd fqdn4 { type mark . mark . ipv4_addr; }; "
                        "add element ip fqdnd fqdn4 { 0x1 . 0x2 . 192.0.2.1 }'")
            == 0);
    REQUIRE(poll(&p, 1, 2000) == 1);
    nft::Monitor::Seen decoy;
    CHECK_FALSE(monitor.read("fqdnd", nl.portid(), 100, decoy));
    CHECK_FALSE(decoy.changed);
    CHECK(decoy.elements.empty());
    std::system("nft delete table ip fqdnd");
}

TEST_CASE_FIXTURE(EchoTable, "the monitor tells which set elements another port added or deleted, and only those of its table")
{
    nft::Monitor monitor;
    REQUIRE(monitor.open(1 << 20) == 0);
    REQUIRE(monitor.ignore({nl.portid()}) == 0);
    pollfd p{monitor.fd(), POLLIN, 0};
    // fqdnd's own: not even read.
    REQUIRE(table.add_elements("fqdnd", "fqdn4", k8s_tag, {{*Address::parse("203.0.113.7"), 10min, false}},
                               nft::Refresh::readd, &problem)
            == 0);
    CHECK(poll(&p, 1, 200) == 0);

    const std::string tag = "0x" + hex32(k8s_tag >> 32) + " . 0x" + hex32(k8s_tag & 0xffffffff);
    REQUIRE(std::system(("nft 'add element inet fqdnd fqdn4 { " + tag + " . 203.0.113.9 timeout 1h }; "
                         "add element inet fqdnd fqdn6 { " + tag + " . 2001:db8::9 timeout 1h }; "
                         "delete element inet fqdnd fqdn4 { " + tag + " . 203.0.113.7 }'")
                            .c_str())
            == 0);
    REQUIRE(poll(&p, 1, 2000) == 1);
    nft::Monitor::Seen seen = read(monitor, nl);
    CHECK_FALSE(seen.changed);
    CHECK_FALSE(seen.lost);
    REQUIRE(seen.elements.size() == 3);
    std::vector<std::string> got;
    for (const auto& c : seen.elements) {
        CHECK(c.element.tag == k8s_tag);
        got.push_back(std::string(c.added ? "+" : "-") + c.set + " " + c.element.address.to_string());
    }
    std::sort(got.begin(), got.end());
    CHECK(got == std::vector<std::string>{"+fqdn4 203.0.113.9", "+fqdn6 2001:db8::9", "-fqdn4 203.0.113.7"});

    // A flush of the set: each element, as deleted.
    REQUIRE(std::system("nft flush set inet fqdnd fqdn4") == 0);
    REQUIRE(poll(&p, 1, 2000) == 1);
    seen = read(monitor, nl);
    REQUIRE(seen.elements.size() == 1);
    CHECK_FALSE(seen.elements[0].added);
    CHECK(seen.elements[0].element.address.to_string() == "203.0.113.9");

    // More than the caller keeps: said, not kept.
    std::string many = "nft 'add element inet fqdnd fqdn4 { ";
    for (int i = 1; i <= 10; ++i)
        many += (i > 1 ? ", " : "") + tag + " . 198.51.100." + std::to_string(i);
    REQUIRE(std::system((many + " }'").c_str()) == 0);
    REQUIRE(poll(&p, 1, 2000) == 1);
    nft::Monitor::Seen few;
    CHECK(monitor.read("fqdnd", nl.portid(), 4, few));
    CHECK(few.elements.size() == 4);
    CHECK(few.elements_dropped);

    // Another table's elements do not count.
    REQUIRE(std::system("nft 'add table inet other; add set inet other s { type ipv4_addr; }'") == 0);
    read(monitor, nl);
    REQUIRE(std::system("nft 'add element inet other s { 192.0.2.1 }'") == 0);
    REQUIRE(poll(&p, 1, 2000) == 1);
    nft::Monitor::Seen other;
    CHECK_FALSE(monitor.read("fqdnd", nl.portid(), 100, other));
    CHECK(other.elements.empty());
    std::system("nft delete table inet other");
}

int main(int argc, char** argv)
{
    if (geteuid() != 0) {
        std::puts("SKIP: needs root for a network namespace of its own");
        return 77;
    }
    if (unshare(CLONE_NEWNET) != 0) {
        std::perror("unshare(CLONE_NEWNET)");
        return 1;
    }
    doctest::Context context(argc, argv);
    return context.run();
}
