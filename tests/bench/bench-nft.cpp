// Set updates through the nf_tables adapter, in a network namespace of its
// own: elements per second in batches of 1,000 and 10,000, and the latency
// of a small batch (what a DNS answer waits for), against a batch of one.
#include "config/loader.hpp"
#include "nft/table.hpp"
#include "ruleset/compile.hpp"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

using namespace fqdnd;
using Clock = std::chrono::steady_clock;

namespace {

// Addresses from 2001:db8::/32 only: documentation space, never routed.
Address nth(uint32_t i)
{
    Address a = *Address::parse("2001:db8::");
    a.bytes[12] = static_cast<uint8_t>(i >> 24);
    a.bytes[13] = static_cast<uint8_t>(i >> 16);
    a.bytes[14] = static_cast<uint8_t>(i >> 8);
    a.bytes[15] = static_cast<uint8_t>(i);
    return a;
}

double percentile(std::vector<double> v, double p)
{
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

} // namespace

int main()
{
    if (geteuid() != 0 || unshare(CLONE_NEWNET) != 0) {
        std::puts("SKIP: needs root for a network namespace of its own");
        return 77;
    }
    auto loaded = config::load_config_text("", "/etc/fqdnd/fqdnd.toml",
                                           {{"p.toml", "[[policy]]\nname = \"b\"\n[policy.selector]\nlocal = true\n"
                                                       "[[policy.egress]]\nto-fqdns = [{ match-pattern = \"*\" }]\n"}});
    const auto rs = ruleset::compile(*loaded.config);
    nft::Netlink nl;
    if (nl.open() < 0)
        return 1;
    nft::Table table(nl);
    std::string problem;
    if (table.apply(rs, nft::QueueMode::compat, {}, &problem) < 0) {
        std::printf("apply: %s\n", problem.c_str());
        return 1;
    }
    nft::Refresh refresh{};
    table.probe_refresh("fqdnd", refresh, &problem);
    const std::string set = rs.sets[0].family == Family::ipv6 ? rs.sets[0].name : rs.sets[1].name;
    const uint64_t tag = 0x812a0c7f411d30e5ULL; // a selector's, as DNS answers add them

    uint32_t next = 1;
    for (size_t batch : {1000u, 10000u}) {
        const int rounds = batch == 1000 ? 50 : 10;
        const auto t0 = Clock::now();
        for (int r = 0; r < rounds; ++r) {
            std::vector<nft::Element> elements;
            for (size_t i = 0; i < batch; ++i)
                elements.push_back({nth(next++), std::chrono::hours(1), false});
            if (table.add_elements("fqdnd", set, tag, elements, refresh, &problem) < 0) {
                std::printf("add: %s\n", problem.c_str());
                return 1;
            }
        }
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        std::printf("batches of %5zu: %.0f elements/s (%d batches, set grows to %u)\n", batch,
                    static_cast<double>(batch) * rounds / s, rounds, next - 1);
    }

    // Small batches, as one DNS answer brings: new addresses each time.
    for (size_t batch : {1u, 10u}) {
        std::vector<double> us;
        for (int r = 0; r < 2000; ++r) {
            std::vector<nft::Element> elements;
            for (size_t i = 0; i < batch; ++i)
                elements.push_back({nth(next++), std::chrono::hours(1), false});
            const auto t0 = Clock::now();
            table.add_elements("fqdnd", set, tag, elements, refresh, &problem);
            us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        }
        std::printf("batch of %2zu: median %.0f us, p99 %.0f us (2000 batches)\n", batch, percentile(us, 0.5),
                    percentile(us, 0.99));
    }
    // Renewing existing elements, the path a repeated answer takes: the
    // probed way first, then delete-add (what kernels before 6.12 need).
    for (nft::Refresh how : {refresh, nft::Refresh::delete_add}) {
        std::vector<double> us;
        for (int r = 0; r < 2000; ++r) {
            std::vector<nft::Element> elements;
            for (uint32_t i = 0; i < 10; ++i)
                elements.push_back({nth(1 + (static_cast<uint32_t>(r) * 10 + i) % 50000), std::chrono::hours(2), true});
            const auto t0 = Clock::now();
            if (table.add_elements("fqdnd", set, tag, elements, how, &problem) < 0) {
                std::printf("renew: %s\n", problem.c_str());
                return 1;
            }
            us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
        }
        std::printf("renewing 10 elements (%s): median %.0f us, p99 %.0f us\n",
                    std::string(nft::to_string(how)).c_str(), percentile(us, 0.5), percentile(us, 0.99));
        if (how == nft::Refresh::delete_add)
            break;
    }
    return 0;
}
