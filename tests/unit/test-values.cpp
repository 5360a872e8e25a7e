// Durations and addresses as the configuration writes them.
#include "config/address.hpp"
#include "config/duration.hpp"
#include "metrics.hpp"

#include <algorithm>

#include <doctest/doctest.h>

using namespace fqdnd;
using namespace std::chrono_literals;

TEST_CASE("durations read as Cilium's options write them")
{
    CHECK(parse_duration("100ms") == 100ms);
    CHECK(parse_duration("0s") == 0s);
    CHECK(parse_duration("0") == 0s);
    CHECK(parse_duration("1h") == 1h);
    CHECK(parse_duration("1h30m") == 90min);
    CHECK(parse_duration("2.5s") == 2500ms);
    CHECK(parse_duration("250us") == 250us);
    CHECK(parse_duration("1500ns") == 1us);
    CHECK_FALSE(parse_duration(""));
    CHECK_FALSE(parse_duration("5"));
    CHECK_FALSE(parse_duration("-1s"));
    CHECK_FALSE(parse_duration("1 s"));
    CHECK_FALSE(parse_duration("1d"));
    CHECK_FALSE(parse_duration("s"));
    CHECK_FALSE(parse_duration("99999999999999999999h"));
    CHECK(format_duration(90min) == "1h30m");
    CHECK(format_duration(100ms) == "100ms");
    CHECK(format_duration(0s) == "0s");
    for (auto d : {Duration(1), Duration(123456789), Duration(3600000000)})
        CHECK(parse_duration(format_duration(d)) == d);
}

TEST_CASE("addresses and CIDRs, IPv4 and IPv6")
{
    auto c = Cidr::parse("192.0.2.0/29");
    REQUIRE(c);
    CHECK(c->prefix == 29);
    CHECK(c->contains(*Address::parse("192.0.2.7")));
    CHECK_FALSE(c->contains(*Address::parse("192.0.2.8")));
    CHECK_FALSE(c->contains(*Address::parse("2001:db8::1")));
    c = Cidr::parse("2001:db8::/32");
    REQUIRE(c);
    CHECK(c->contains(*Address::parse("2001:db8:ffff::1")));
    CHECK(c->to_string() == "2001:db8::/32");
    CHECK(Cidr::parse("203.0.113.53")->is_host());
    CHECK(Cidr::parse("2001:db8::53")->prefix == 128);
    CHECK(Cidr::parse("0.0.0.0/0"));
    std::string error;
    CHECK_FALSE(Cidr::parse("192.0.2.1/29", &error));
    CHECK(error == "\"192.0.2.1/29\" has host bits set; did you mean 192.0.2.0/29?");
    CHECK_FALSE(Cidr::parse("192.0.2.0/", &error));
    CHECK_FALSE(Cidr::parse("192.0.2.0/-1", &error));
    CHECK_FALSE(Cidr::parse("2001:db8::/129", &error));
    CHECK_FALSE(Cidr::parse("", &error));
    CHECK(Address::parse("::ffff:192.0.2.1")->family == Family::ipv6);
}

TEST_CASE("every metric of the table has a value, and no sample is of no metric")
{
    const auto samples = metrics::collect(metrics::Counters{});
    for (const metrics::Info* info : metrics::table) {
        const bool valued = std::any_of(samples.begin(), samples.end(), [&](const metrics::Sample& s) {
            return s.name == info->name || s.name.rfind(std::string(info->name) + "_", 0) == 0;
        });
        CHECK_MESSAGE(valued, info->name);
    }
    const std::string text = metrics::format_prometheus(samples);
    CHECK(text.find("untyped") == std::string::npos);
    // A sample the table does not know (a newer daemon) is printed, not lost.
    CHECK(metrics::format_prometheus({{"fqdnd_from_the_future_total", "", 1}}).find("fqdnd_from_the_future_total 1")
          != std::string::npos);
}
