// The state directory: what a crash and a clean stop leave, and what the
// next start reads back. Runs on a private sd-event loop, without root.
#include "state/store.hpp"

#include "address-literal.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <systemd/sd-event.h>

using namespace fqdnd;
using namespace std::chrono_literals;

namespace {

struct Dir {
    std::filesystem::path path;
    Dir()
    {
        char tmpl[] = "/tmp/fqdnd-state-test.XXXXXX";
        REQUIRE(mkdtemp(tmpl) != nullptr);
        path = tmpl;
    }
    ~Dir() { std::filesystem::remove_all(path); }
    size_t journals() const
    {
        size_t n = 0;
        for (const auto& e : std::filesystem::directory_iterator(path))
            n += e.path().filename().string().rfind("cache.journal.", 0) == 0;
        return n;
    }
};

struct Run {
    SdEventPtr event;
    cache::Time now{std::chrono::sys_days{std::chrono::year{2026} / 12 / 1}};
    cache::Cache cache;
    std::vector<cache::ElementOp> ops;
    std::unique_ptr<state::Store> store;
    explicit Run(const Dir& dir, state::Timing timing = {})
    {
        sd_event* e = nullptr;
        REQUIRE(sd_event_new(&e) >= 0);
        event.reset(e);
        cache.set_selectors({*FqdnSelector::parse_pattern("*.k8s.intra", nullptr)}, now, ops);
        store = std::make_unique<state::Store>(event.get(), dir.path, cache, timing);
        store->load(cache, now, ops);
        store->begin();
    }
    void learn(const char* name, const char* address)
    {
        cache.learn("192.0.2.2", {name}, {ip(address)}, 300, now, ops);
        store->learned(now, "192.0.2.2", {name}, {ip(address)}, 300);
    }
    // Runs the loop (SIGCHLD blocked, for sd-event to watch the writer)
    // until `done` or `limit` has passed; whether `done`.
    template <typename F>
    bool run_until(F done, std::chrono::milliseconds limit)
    {
        sigset_t mask, old;
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        REQUIRE(sigprocmask(SIG_BLOCK, &mask, &old) == 0);
        const auto end = std::chrono::steady_clock::now() + limit;
        while (!done() && std::chrono::steady_clock::now() < end)
            sd_event_run(event.get(), 10'000);
        sigprocmask(SIG_SETMASK, &old, nullptr);
        return done();
    }
};

// Timings short enough for a test: the snapshot's time rules at a few ms.
state::Timing quick(std::chrono::microseconds max_age, uint64_t min_growth = 1 << 20)
{
    return {.min_interval = 1ms, .max_age = max_age, .min_growth = min_growth};
}

} // namespace

TEST_CASE("a crash after flush() loses no answer: the next start replays the journal")
{
    Dir dir;
    {
        Run first(dir);
        first.learn("echo.k8s.intra.", "203.0.113.2");
        first.store->flush();
        // No save_now(): the process dies here.
    }
    Run second(dir);
    CHECK(second.cache.addresses() == 1);
    CHECK(second.cache.names_of(ip("203.0.113.2")) == std::vector<std::string>{"echo.k8s.intra."});
}

TEST_CASE("what was not flushed is not promised: a crash before flush() loses it")
{
    Dir dir;
    {
        Run first(dir);
        first.learn("echo.k8s.intra.", "203.0.113.2");
    }
    Run second(dir);
    CHECK(second.cache.addresses() == 0);
}

TEST_CASE("a clean stop leaves one snapshot and no journal")
{
    Dir dir;
    {
        Run first(dir);
        first.learn("echo.k8s.intra.", "203.0.113.2");
        first.store->flush();
        first.store->save_now();
        CHECK(dir.journals() == 0);
        CHECK(std::filesystem::exists(dir.path / "cache.json"));
    }
    Run second(dir);
    CHECK(second.cache.addresses() == 1);
    CHECK(dir.journals() == 1); // the one begin() opened
}

TEST_CASE("a snapshot by the forked writer lets the journals before it go")
{
    Dir dir;
    Run run(dir, quick(100ms));
    run.learn("echo.k8s.intra.", "203.0.113.2");
    run.store->flush(); // changed(): a snapshot once max_age has passed
    CHECK(dir.journals() == 1);
    CHECK(run.run_until([&] { return std::filesystem::exists(dir.path / "cache.json") && dir.journals() == 1; },
                        60s));
    CHECK(dir.journals() == 1); // the one after the snapshot
    CHECK(run.store->write_errors() == 0);
    CHECK(run.store->snapshot_bytes() == std::filesystem::file_size(dir.path / "cache.json"));
}

TEST_CASE("a change waits for its snapshot until max_age while the journal is small")
{
    Dir dir;
    Run run(dir, quick(400ms));
    const auto start = std::chrono::steady_clock::now();
    run.learn("echo.k8s.intra.", "203.0.113.2");
    run.store->flush();
    CHECK_FALSE(run.run_until([&] { return std::filesystem::exists(dir.path / "cache.json"); }, 200ms));
    CHECK(run.run_until([&] { return std::filesystem::exists(dir.path / "cache.json"); }, 10s));
    CHECK(std::chrono::steady_clock::now() - start >= 400ms);
    // The journal keeps what the snapshot does not hold yet: nothing lost
    // meanwhile (the crash tests above).
}

TEST_CASE("a journal grown as large as the last snapshot makes the next one due at once")
{
    Dir dir;
    Run run(dir, quick(1h, 4096)); // max_age never comes in this test
    // Journal lines past min_growth: a snapshot without waiting an hour.
    for (int i = 0; i < 100; ++i)
        run.learn(("a" + std::to_string(i) + ".k8s.intra.").c_str(), "203.0.113.2");
    run.store->flush();
    REQUIRE(run.store->journal_bytes() >= 4096);
    REQUIRE(run.run_until([&] { return run.store->snapshot_bytes() > 0; }, 60s));
    const uint64_t snapshot = run.store->snapshot_bytes();
    CHECK(run.store->journal_bytes() == 0);
    // A little more is journaled, not snapshotted: the journal is far
    // smaller than the snapshot.
    const auto written = std::filesystem::last_write_time(dir.path / "cache.json");
    run.learn("b.k8s.intra.", "203.0.113.3");
    run.store->flush();
    CHECK(run.store->journal_bytes() < snapshot);
    CHECK_FALSE(run.run_until([&] { return std::filesystem::last_write_time(dir.path / "cache.json") != written; },
                              300ms));
    CHECK(dir.journals() == 1);
    // Once the journal holds as many bytes as the snapshot, it is due.
    for (int i = 0; run.store->journal_bytes() < snapshot && i < 10000; ++i) {
        run.learn(("c" + std::to_string(i) + ".k8s.intra.").c_str(), "203.0.113.4");
        run.store->flush();
    }
    // Not sooner than ten times the first write's length after it began.
    CHECK(run.run_until([&] { return std::filesystem::last_write_time(dir.path / "cache.json") != written; }, 60s));
    CHECK(run.run_until([&] { return dir.journals() == 1; }, 60s));
    CHECK(run.store->write_errors() == 0);
}

TEST_CASE("the journal is synced off the loop, min_interval after an append")
{
    Dir dir;
    Run run(dir, quick(1h));
    CHECK(run.store->journal_syncs() == 0);
    run.learn("echo.k8s.intra.", "203.0.113.2");
    run.store->flush();
    CHECK(run.run_until([&] { return run.store->journal_syncs() >= 1; }, 10s));
    CHECK(run.store->write_errors() == 0);
    // Nothing appended since: no more syncs.
    const uint64_t syncs = run.store->journal_syncs();
    run.run_until([] { return false; }, 50ms);
    CHECK(run.store->journal_syncs() == syncs);
}

TEST_CASE("a writer that fails gives its journals back: due again, counted, the journals kept")
{
    Dir dir;
    Run run(dir, quick(100ms));
    // A directory where the state file goes: the writer's rename fails.
    std::filesystem::create_directory(dir.path / "cache.json");
    run.learn("echo.k8s.intra.", "203.0.113.2");
    run.store->flush();
    const uint64_t bytes = run.store->journal_bytes();
    REQUIRE(bytes > 0);
    REQUIRE(run.run_until([&] { return run.store->write_errors() >= 1; }, 10s));
    CHECK(run.store->journal_bytes() == bytes);
    CHECK(dir.journals() == 2); // the one before the failed snapshot stays
    // Without another change, it is tried again once the cause is gone.
    std::filesystem::remove(dir.path / "cache.json");
    CHECK(run.run_until([&] { return std::filesystem::is_regular_file(dir.path / "cache.json"); }, 10s));
    CHECK(run.run_until([&] { return dir.journals() == 1; }, 10s));
    Run second(dir);
    CHECK(second.cache.addresses() == 1);
}

TEST_CASE("the next snapshot waits ten times as long as the last one took")
{
    Dir dir;
    Run run(dir, quick(1ms)); // the 2 s floor would hide a short write
    CHECK(run.store->write_interval() == 1ms);
    for (int i = 0; i < 20000; ++i) {
        const std::string name = "n" + std::to_string(i) + ".k8s.intra.";
        run.learn(name.c_str(), "203.0.113.2");
    }
    run.store->flush();
    run.run_until([&] { return run.store->last_write_took() > 0us; }, 20s);
    const auto took = run.store->last_write_took();
    REQUIRE(took > 0us);
    CHECK(run.store->write_interval() == std::clamp<std::chrono::microseconds>(10 * took, 1ms, 30s));
    CHECK(std::filesystem::exists(dir.path / "cache.json"));
    // A change right after: not written before ten times the write's
    // length has passed since it began.
    const auto written = std::filesystem::last_write_time(dir.path / "cache.json");
    // When the write began, give or take the 10 ms the loop waits.
    const auto began = std::chrono::steady_clock::now() - took;
    run.learn("late.k8s.intra.", "203.0.113.3");
    run.store->flush();
    run.run_until([&] { return std::filesystem::last_write_time(dir.path / "cache.json") != written; }, 60s);
    CHECK(std::chrono::steady_clock::now() - began >= std::min<std::chrono::microseconds>(10 * took, 30s) - 50ms);
    CHECK(10 * took > 100ms); // else the check above says little
}

TEST_CASE("an unwritable state directory is counted, never fatal")
{
    Dir dir;
    Run run(dir);
    std::filesystem::remove_all(dir.path);
    // A file where the directory was: nothing can be created below it.
    std::ofstream(dir.path) << "x";
    run.learn("echo.k8s.intra.", "203.0.113.2");
    run.store->flush();
    run.store->save_now();
    CHECK(run.store->write_errors() >= 1);
    std::filesystem::remove(dir.path);
    std::filesystem::create_directory(dir.path);
}
