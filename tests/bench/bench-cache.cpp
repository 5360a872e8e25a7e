// The cache at scale: 100,000 names and 1,000,000 addresses. Memory per
// address (RSS), writing and restoring the state file, and flow events per
// second, the journal (a line per answer, and its replay), against learning
// (the baseline) in the same process.
// With --bound: the cache at its default global bound (max-names,
// max-addresses), filled past it by a flood of one-address names and by
// names of ten addresses, each in a child of its own so that RSS is its own.
#include "cache/cache.hpp"
#include "cache/journal.hpp"
#include "cache/persist.hpp"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>
#include <sys/wait.h>
#include <cstdlib>
#include <cstring>

using namespace fqdnd;
using namespace fqdnd::cache;
using Clock = std::chrono::steady_clock;

namespace {

long rss_kib()
{
    std::ifstream in("/proc/self/statm");
    long pages = 0, resident = 0;
    in >> pages >> resident;
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

Address nth(uint32_t i)
{
    Address a = *Address::parse("2001:db8::");
    a.bytes[12] = static_cast<uint8_t>(i >> 24);
    a.bytes[13] = static_cast<uint8_t>(i >> 16);
    a.bytes[14] = static_cast<uint8_t>(i >> 8);
    a.bytes[15] = static_cast<uint8_t>(i);
    return a;
}

double seconds_since(Clock::time_point t)
{
    return std::chrono::duration<double>(Clock::now() - t).count();
}

// Learns `names` names of `per_name` addresses each into a cache at the
// default limits, past its bound, and prints what it holds and its RSS.
void fill_past_bound(const char* what, uint32_t names, uint32_t per_name)
{
    const Time now{std::chrono::milliseconds(1'800'000'000'000)};
    std::vector<ElementOp> ops;
    const long rss0 = rss_kib();
    Cache cache; // the defaults of fqdnd.toml
    cache.set_selectors({*FqdnSelector::parse_pattern("*.k8s.intra", nullptr)}, now, ops);
    std::vector<Address> addrs(per_name);
    const auto t = Clock::now();
    for (uint32_t n = 0; n < names; ++n) {
        for (uint32_t i = 0; i < per_name; ++i)
            addrs[i] = nth(n * per_name + i);
        ops.clear();
        // Later answers live longer, as a flood's do.
        cache.learn("192.0.2.2", {"n" + std::to_string(n) + ".k8s.intra."}, addrs, 30 + n, now, ops);
    }
    const double learn_s = seconds_since(t);
    ops.clear();
    ops.shrink_to_fit();
    const long rss1 = rss_kib();
    std::printf("%s: learned %u names x %u addresses in %.2f s (%.0f answers/s); holds %zu names, %zu addresses, "
                "%llu evictions; RSS %ld MiB for the cache (%.0f bytes per address, %.0f per name); process %ld MiB\n",
                what, names, per_name, learn_s, static_cast<double>(names) / learn_s, cache.names(), cache.addresses(),
                static_cast<unsigned long long>(cache.evictions()), (rss1 - rss0) / 1024,
                static_cast<double>(rss1 - rss0) * 1024.0 / static_cast<double>(cache.addresses()),
                static_cast<double>(rss1 - rss0) * 1024.0 / static_cast<double>(cache.names()), rss1 / 1024);
}

int bound_benchmark()
{
    const Limits defaults;
    std::printf("default bound: max-names %zu, max-addresses %zu\n", defaults.max_names, defaults.max_addresses);
    const auto in_child = [](auto&& run) {
        const pid_t pid = fork();
        if (pid == 0) {
            run();
            std::fflush(stdout);
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
    };
    std::fflush(stdout);
    in_child([&] { fill_past_bound("flood, 1 address per name", static_cast<uint32_t>(3 * defaults.max_names), 1); });
    in_child([&] {
        fill_past_bound("10 addresses per name", static_cast<uint32_t>(3 * defaults.max_addresses / 10), 10);
    });
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc > 1 && std::strcmp(argv[1], "--bound") == 0)
        return bound_benchmark();
    const uint32_t names = argc > 1 ? static_cast<uint32_t>(std::stoul(argv[1])) : 100000;
    const uint32_t per_name = 10;
    const Time now{std::chrono::milliseconds(1'800'000'000'000)};
    std::vector<ElementOp> ops;
    const long rss0 = rss_kib();
    {
        Cache cache(Limits{std::chrono::hours(1), 50, std::chrono::seconds(0), 10000});
        cache.set_selectors({*FqdnSelector::parse_pattern("*.k8s.intra", nullptr)}, now, ops);
        // As fqdnd does at start: the tables sized for the bounds (unless
        // NO_RESERVE, to compare).
        if (!std::getenv("NO_RESERVE"))
            cache.set_limits(cache.limits());
        const long rss_sized = rss_kib();
        auto t = Clock::now();
        std::vector<Address> addrs(per_name);
        // The slowest single answer: what a client whose answer it is waits.
        double slowest_ms = 0;
        uint32_t slowest_at = 0, over_1ms = 0;
        for (uint32_t n = 0; n < names; ++n) {
            for (uint32_t i = 0; i < per_name; ++i)
                addrs[i] = nth(n * per_name + i);
            ops.clear();
            const auto one = Clock::now();
            cache.learn("192.0.2.2", {"n" + std::to_string(n) + ".k8s.intra."}, addrs, 30, now, ops);
            const double ms = std::chrono::duration<double, std::milli>(Clock::now() - one).count();
            over_1ms += ms > 1.0 ? 1 : 0;
            if (ms > slowest_ms) {
                slowest_ms = ms;
                slowest_at = n;
            }
        }
        const double learn_s = seconds_since(t);
        // What the journal adds to each of those answers: its line, and the
        // append (one write per round of 64 answers, to tmpfs or disk).
        std::string journal;
        {
            char jdir[] = "/tmp/fqdnd-bench-journal.XXXXXX";
            Journal j(mkdtemp(jdir) ? jdir : "/tmp");
            j.start(1);
            std::string round;
            t = Clock::now();
            for (uint32_t n = 0; n < names; ++n) {
                for (uint32_t i = 0; i < per_name; ++i)
                    addrs[i] = nth(n * per_name + i);
                round += journal_learn(now, "192.0.2.2", {"n" + std::to_string(n) + ".k8s.intra."}, addrs, 30);
                if (n % 64 == 63) {
                    j.append(round);
                    journal += round;
                    round.clear();
                }
            }
            j.append(round);
            journal += round;
            const double journal_s = seconds_since(t);
            std::printf("journal: %.2f s for %u answers of %u addresses (%.1f us each; learning them took %.1f us), "
                        "%zu MiB\n",
                        journal_s, names, per_name, journal_s * 1e6 / names, learn_s * 1e6 / names, journal.size() >> 20);
            j.drop_before(2);
            rmdir(jdir);
        }
        ops.clear();
        ops.shrink_to_fit();
        const long rss1 = rss_kib();
        const size_t total = cache.addresses();
        std::printf("names %u, addresses %zu (each in one selector's set)\n", names, total);
        std::printf("learn: %.2f s, %.0f addresses/s (baseline)\n", learn_s, static_cast<double>(total) / learn_s);
        std::printf("empty cache sized for max-names %zu, max-addresses %zu: %ld KiB\n", cache.limits().max_names,
                    cache.limits().max_addresses, rss_sized - rss0);
        std::printf("slowest answer: %.1f ms (the %u-th name); answers over 1 ms: %u\n", slowest_ms, slowest_at + 1,
                    over_1ms);
        std::printf("RSS: %.0f bytes per address (%ld MiB in all)\n",
                    static_cast<double>(rss1 - rss0) * 1024.0 / static_cast<double>(total), (rss1 - rss0) / 1024);

        t = Clock::now();
        const std::string json = to_json(cache.entries());
        std::printf("state file: %.2f s to write %zu MiB of JSON\n", seconds_since(t), json.size() >> 20);

        // What fqdnd's loop pays for the same write: the fork of a writer.
        char dir[] = "/tmp/fqdnd-bench.XXXXXX";
        if (mkdtemp(dir)) {
            const std::string path = std::string(dir) + "/cache.json";
            t = Clock::now();
            const pid_t pid = spawn_writer(path, cache);
            const double fork_s = seconds_since(t);
            int status = 0;
            waitpid(pid, &status, 0);
            std::printf("forked writer: the loop waits %.1f ms (fork); the child wrote in %.2f s, exit %d\n",
                        fork_s * 1000, seconds_since(t), WIFEXITED(status) ? WEXITSTATUS(status) : -1);
            std::remove(path.c_str());
            rmdir(dir);
        }

        // Flow events: one open and one close per address.
        t = Clock::now();
        for (uint32_t i = 0; i < total; ++i)
            cache.flow_opened(i, *Address::parse("192.0.2.2"), nth(i), now);
        for (uint32_t i = 0; i < total; ++i)
            cache.flow_closed(i, now);
        const double flow_s = seconds_since(t);
        std::printf("flow events: %.0f per second (%zu events, core only)\n", 2.0 * static_cast<double>(total) / flow_s,
                    2 * static_cast<size_t>(total));

        Cache restored(Limits{std::chrono::hours(1), 50, std::chrono::seconds(0), 10000});
        restored.set_selectors({*FqdnSelector::parse_pattern("*.k8s.intra", nullptr)}, now, ops);
        t = Clock::now();
        std::string error;
        const auto records = from_json(json, error);
        const double parse_s = seconds_since(t);
        ops.clear();
        restore_all(restored, *records, now, ops);
        std::printf("restore: %.2f s (%.2f s parsing, %.2f s into the cache), %zu element operations\n",
                    seconds_since(t), parse_s, seconds_since(t) - parse_s, ops.size());

        // A crash just before the next snapshot: the journal of every answer
        // replayed over a cache that has them all (the worst case: every
        // line a renewal that changes nothing).
        t = Clock::now();
        ops.clear();
        const ReplayResult r = replay_journal(journal, restored, now, ops);
        std::printf("journal replay: %.2f s for %zu answers (%zu unreadable), %zu element operations\n",
                    seconds_since(t), r.answers, r.bad_lines, ops.size());
    }
    return 0;
}
