// The order in which one round's verdicts go out (dns::Round): what waits
// for no set update first, the rest after the transaction, each group in
// the order the packets came. No kernel: the test is the sender.
#include "dns/round.hpp"

#include "address-literal.hpp"

#include <doctest/doctest.h>

#include <vector>

using namespace fqdnd;
using dns::Round;

namespace {

dns::Outcome query() { return dns::Outcome{}; }

// An answer that brings `address` to the kernel (one add operation).
dns::Outcome adding(const char* address)
{
    dns::Outcome o;
    o.ops.push_back(cache::ElementOp{cache::ElementOp::Kind::add, 1, Family::ipv4, ip(address), std::chrono::seconds(60)});
    o.learned.push_back(dns::Outcome::Learned{"192.0.2.2", {"a.example"}, {ip(address)}, 60});
    return o;
}

// An answer the sets already hold long enough: learned, nothing to write.
dns::Outcome holding(const char* address)
{
    dns::Outcome o;
    o.learned.push_back(dns::Outcome::Learned{"192.0.2.2", {"a.example"}, {ip(address)}, 60});
    return o;
}

std::vector<uint32_t> release(Round& r, bool held_too)
{
    std::vector<uint32_t> ids;
    r.release(held_too, [&](const Round::Verdict& v) { ids.push_back(v.id); });
    return ids;
}

} // namespace

TEST_CASE("a round: what waits for nothing goes first, the held after, each in arrival order")
{
    Round r;
    const auto t = Round::Clock::now();
    auto q1 = query(), a2 = adding("203.0.113.2"), q3 = query(), a4 = holding("203.0.113.9"), a5 = adding("203.0.113.5");
    CHECK_FALSE(r.add(0, 1, q1, t));
    CHECK(r.add(1, 2, a2, t));
    CHECK_FALSE(r.add(0, 3, q3, t));
    CHECK_FALSE(r.add(1, 4, a4, t));
    CHECK(r.add(1, 5, a5, t));
    CHECK(r.ops().size() == 2);
    CHECK(a2.ops.empty()); // moved into the round
    CHECK(release(r, false) == std::vector<uint32_t>{1, 3, 4});
    CHECK(release(r, false).empty());
    CHECK(release(r, true) == std::vector<uint32_t>{2, 5});
    CHECK(release(r, true).empty());
}

TEST_CASE("a round: an answer with nothing to write waits when an earlier answer is adding its address")
{
    Round r;
    const auto t = Round::Clock::now();
    auto a1 = adding("203.0.113.2"), a2 = holding("203.0.113.2"), a3 = holding("203.0.113.3");
    CHECK(r.add(1, 1, a1, t));
    CHECK(r.add(1, 2, a2, t)); // its address is not in the kernel yet
    CHECK_FALSE(r.add(1, 3, a3, t));
    CHECK(release(r, false) == std::vector<uint32_t>{3});
    CHECK(release(r, true) == std::vector<uint32_t>{1, 2});
}

TEST_CASE("a round: a removal does not hold a later answer of the same address")
{
    Round r;
    const auto t = Round::Clock::now();
    dns::Outcome removing;
    removing.ops.push_back(cache::ElementOp{cache::ElementOp::Kind::remove, 1, Family::ipv4, ip("203.0.113.2")});
    auto a2 = holding("203.0.113.2");
    CHECK(r.add(1, 1, removing, t));
    CHECK_FALSE(r.add(1, 2, a2, t));
}

TEST_CASE("a round: a refusal keeps its verdict and a replacement is passed on")
{
    Round r;
    const auto t = Round::Clock::now();
    dns::Outcome refused;
    refused.accept = false;
    dns::Outcome blanked;
    blanked.replacement = {1, 2, 3};
    r.add(0, 7, refused, t);
    r.add(0, 8, blanked, t);
    std::vector<Round::Verdict> seen;
    r.release(true, [&](const Round::Verdict& v) { seen.push_back(v); });
    REQUIRE(seen.size() == 2);
    CHECK_FALSE(seen[0].accept);
    CHECK(seen[1].accept);
    CHECK(seen[1].replacement == std::vector<uint8_t>{1, 2, 3});
}

TEST_CASE("a round: holds are timed from each held answer's arrival; clear starts over")
{
    Round r;
    const auto t = Round::Clock::now();
    CHECK_FALSE(r.first_hold());
    auto q = query(), a1 = adding("203.0.113.2"), a2 = adding("203.0.113.3");
    r.add(0, 1, q, t - std::chrono::milliseconds(5));
    r.add(1, 2, a1, t - std::chrono::microseconds(300));
    r.add(1, 3, a2, t - std::chrono::microseconds(3));
    REQUIRE(r.first_hold());
    CHECK(*r.first_hold() == t - std::chrono::microseconds(300));
    std::array<uint64_t, 24> histogram{};
    CHECK(r.record_holds(t, histogram) == 300);
    CHECK(histogram[2] == 1); // 3 us: under 4
    CHECK(histogram[9] == 1); // 300 us: under 512
    r.clear();
    CHECK(r.empty());
    CHECK(r.ops().empty());
    CHECK_FALSE(r.first_hold());
    auto a3 = holding("203.0.113.2");
    CHECK_FALSE(r.add(1, 4, a3, t)); // what the cleared round was adding is forgotten
}
