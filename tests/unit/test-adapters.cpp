// What the kernel adapters read from the kernel's text and messages, fed
// by hand: no root, no kernel.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "dns/packet.hpp"
#include "nflog/nflog.hpp"
#include "nfq/queue.hpp"

#include <doctest/doctest.h>

#include <sstream>

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
    nflog::Logged l{"fqdnd drop echo", v4, 3, 0, std::nullopt, std::nullopt};
    const auto d = nflog::attribute(l, "fqdnd ");
    REQUIRE(d);
    CHECK(d->kind == "drop");
    CHECK(d->policy == "echo");
    CHECK(d->endpoint() == "192.0.2.2");
    CHECK(d->destination.to_string() == "203.0.113.99");
    CHECK(d->protocol == "tcp");
    CHECK(d->port == 443);

    const auto v6 = dns::build_udp(*Address::parse("2001:db8::2"), 5353, to, 53, {});
    nflog::Logged local{"fqdnd dns-server web", v6, 0, 2, 65534u, 65534u};
    const auto e = nflog::attribute(local, "fqdnd ");
    REQUIRE(e);
    CHECK(e->endpoint() == "uid:65534");
    CHECK(e->protocol == "udp");
    CHECK(e->port == 53);
    local.uid.reset();
    CHECK(nflog::attribute(local, "fqdnd ")->endpoint() == "local");

    nflog::Logged truncated{"fqdnd drop echo", std::span<const uint8_t>(v4).first(10), 3, 0, std::nullopt, std::nullopt};
    CHECK_FALSE(nflog::attribute(truncated, "fqdnd "));
    CHECK_FALSE(nflog::attribute(nflog::Logged{"ulogd x", v4, 3, 0, std::nullopt, std::nullopt}, "fqdnd "));
}
