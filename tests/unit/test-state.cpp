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
    explicit Run(const Dir& dir, std::chrono::microseconds min_interval = 2s)
    {
        sd_event* e = nullptr;
        REQUIRE(sd_event_new(&e) >= 0);
        event.reset(e);
        cache.set_selectors({*FqdnSelector::parse_pattern("*.k8s.intra", nullptr)}, now, ops);
        store = std::make_unique<state::Store>(event.get(), dir.path, cache, min_interval);
        store->load(cache, now, ops);
        store->begin();
    }
    void learn(const char* name, const char* address)
    {
        cache.learn("192.0.2.2", {name}, {ip(address)}, 300, now, ops);
        store->learned(now, "192.0.2.2", {name}, {ip(address)}, 300);
    }
};

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
    Run run(dir);
    run.learn("echo.k8s.intra.", "203.0.113.2");
    run.store->flush(); // changed(): a snapshot within 2 s
    CHECK(dir.journals() == 1);
    // SIGCHLD must be blocked for sd-event to watch the writer.
    sigset_t mask, old;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    REQUIRE(sigprocmask(SIG_BLOCK, &mask, &old) == 0);
    for (int i = 0; i < 50 && !std::filesystem::exists(dir.path / "cache.json"); ++i)
        sd_event_run(run.event.get(), 200'000);
    for (int i = 0; i < 10 && dir.journals() > 1; ++i)
        sd_event_run(run.event.get(), 200'000);
    sigprocmask(SIG_SETMASK, &old, nullptr);
    CHECK(std::filesystem::exists(dir.path / "cache.json"));
    CHECK(dir.journals() == 1); // the one after the snapshot
    CHECK(run.store->write_errors() == 0);
}

TEST_CASE("the next snapshot waits ten times as long as the last one took")
{
    Dir dir;
    Run run(dir, 1ms); // the 2 s floor would hide a short write
    CHECK(run.store->write_interval() == 1ms);
    for (int i = 0; i < 20000; ++i) {
        const std::string name = "n" + std::to_string(i) + ".k8s.intra.";
        run.learn(name.c_str(), "203.0.113.2");
    }
    run.store->flush();
    sigset_t mask, old;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    REQUIRE(sigprocmask(SIG_BLOCK, &mask, &old) == 0);
    for (int i = 0; i < 2000 && run.store->last_write_took() == 0us; ++i)
        sd_event_run(run.event.get(), 10'000);
    sigprocmask(SIG_SETMASK, &old, nullptr);
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
    REQUIRE(sigprocmask(SIG_BLOCK, &mask, &old) == 0);
    while (std::filesystem::last_write_time(dir.path / "cache.json") == written
           && std::chrono::steady_clock::now() - began < 60s)
        sd_event_run(run.event.get(), 10'000);
    sigprocmask(SIG_SETMASK, &old, nullptr);
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
