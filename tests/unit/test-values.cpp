// Durations and addresses as the configuration writes them; the metrics
// and the log summary made of the daemon's counters.
#include "config/address.hpp"
#include "config/duration.hpp"
#include "metrics.hpp"

#include <algorithm>
#include <array>

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

namespace {

double value_of(const std::vector<metrics::Sample>& samples, const std::string& name, const std::string& labels = "")
{
    for (const auto& s : samples)
        if (s.name == name && s.labels == labels)
            return s.value;
    FAIL("no sample " << name << "{" << labels << "}");
    return -1;
}

} // namespace

TEST_CASE("the samples carry the daemon's counters, each under its metric")
{
    metrics::Counters c;
    c.names = 3;
    c.addresses = 7;
    c.live_flows = 2;
    c.dns.queries_refused = 5;
    c.dns.answers_inspected = 10;
    c.dns.answers_learned = 6;
    c.conntrack_overruns = 4;
    c.unexplained_elements = 9;
    c.unit_changes = 1;
    c.restores = 13;
    c.restore_failures = 14;
    c.units_without_cgroup = 2;
    c.kernel_queue_full = 11;
    c.kernel_undelivered = 12;
    c.hold_us[5] = 3;  // under 32 us
    c.hold_us[10] = 1; // under 1024 us
    const auto samples = metrics::collect(c);
    CHECK(value_of(samples, "fqdnd_active_names") == 3);
    CHECK(value_of(samples, "fqdnd_active_addresses") == 7);
    CHECK(value_of(samples, "fqdnd_live_flows") == 2);
    CHECK(value_of(samples, "fqdnd_dns_queries_total", "verdict=\"refused\"") == 5);
    CHECK(value_of(samples, "fqdnd_dns_answers_total", "result=\"learned\"") == 6);
    CHECK(value_of(samples, "fqdnd_dns_answers_total", "result=\"inspected\"") == 4); // without addresses
    CHECK(value_of(samples, "fqdnd_conntrack_overruns_total") == 4);
    CHECK(value_of(samples, "fqdnd_state_unexplained_elements_total") == 9);
    CHECK(value_of(samples, "fqdnd_ruleset_unit_changes_total") == 1);
    CHECK(value_of(samples, "fqdnd_ruleset_restores_total") == 13);
    CHECK(value_of(samples, "fqdnd_ruleset_restore_failures_total") == 14);
    CHECK(value_of(samples, "fqdnd_units_without_cgroup") == 2);
    CHECK(value_of(samples, "fqdnd_nfqueue_kernel_dropped_total", "reason=\"queue-full\"") == 11);
    CHECK(value_of(samples, "fqdnd_nfqueue_kernel_dropped_total", "reason=\"socket\"") == 12);
    // The histogram is cumulative, in seconds.
    CHECK(value_of(samples, "fqdnd_answer_hold_seconds_bucket", "le=\"0.000016\"") == 0);
    CHECK(value_of(samples, "fqdnd_answer_hold_seconds_bucket", "le=\"0.000032\"") == 3);
    CHECK(value_of(samples, "fqdnd_answer_hold_seconds_bucket", "le=\"0.001024\"") == 4);
    CHECK(value_of(samples, "fqdnd_answer_hold_seconds_bucket", "le=\"+Inf\"") == 4);
    CHECK(value_of(samples, "fqdnd_answer_hold_seconds_count") == 4);
}

TEST_CASE("hold quantiles are the bucket bound that the fraction of holds falls under")
{
    std::array<uint64_t, 24> hold{};
    CHECK(metrics::hold_quantile(hold, 0.5) == 0); // nothing held
    hold[3] = 98; // under 8 us
    hold[12] = 2; // under 4096 us
    CHECK(metrics::hold_quantile(hold, 0.5) == 8);
    CHECK(metrics::hold_quantile(hold, 0.98) == 8);
    CHECK(metrics::hold_quantile(hold, 0.99) == 4096);
    CHECK(metrics::hold_quantile(hold, 1.0) == 4096);
}

TEST_CASE("the SIGUSR1 summary line gives the counters and the hold quantiles")
{
    metrics::Counters c;
    c.dns.queries_allowed = 4;
    c.dns.queries_refused = 1;
    c.dns.answers_inspected = 3;
    c.dns.answers_learned = 2;
    c.names = 2;
    c.addresses = 5;
    c.connection_addresses = 1;
    c.live_flows = 6;
    c.gc_deletions = 7;
    c.conntrack_overruns = 8;
    c.nfqueue_packets = 9;
    c.nfqueue_enobufs = 10;
    c.kernel_queue_full = 11;
    c.datapath_timeouts = 12;
    c.datapath_errors = 13;
    c.hold_us[2] = 1;
    c.hold_us[6] = 1;
    c.state_write_errors = 14;
    CHECK(metrics::summary(c)
          == "stats: queries allowed 4, refused 1, malformed 0; answers inspected 3, learned 2, unmatched 0; cache "
             "names 2, addresses 5, connection 1, live flows 6, GC deletions 7, conntrack overruns 8; queue packets 9, "
             "ENOBUFS 10, dropped by the kernel 11; set updates timed out 12, failed 13; answer hold: 2 held, p50 < 4 "
             "us, p99 < 64 us; state write errors 14");
}
