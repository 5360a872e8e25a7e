// The journal: what the cache learned since the state file, replayed after
// it so that a crash loses nothing.
#include "cache/journal.hpp"
#include "cache/persist.hpp"
#include "ruleset/compile.hpp"

#include "address-literal.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

using namespace fqdnd;
using namespace fqdnd::cache;
using namespace std::chrono_literals;

namespace {

struct Fixture {
    Time now{std::chrono::sys_days{std::chrono::year{2026} / 12 / 1}};
    std::vector<ElementOp> ops;
    static Cache make(Time now)
    {
        Cache c{Limits{std::chrono::seconds(60), 50}};
        std::vector<ElementOp> ignored;
        c.set_selectors({*FqdnSelector::parse_pattern("*.k8s.intra", nullptr)}, now, ignored);
        return c;
    }
    Cache live = make(now), restored = make(now);
};

std::string read_file(const std::filesystem::path& p)
{
    std::ifstream in(p);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// Every mapping of a cache as text, to compare two caches.
std::string dump(const Cache& c)
{
    return to_json(c.entries());
}

} // namespace

TEST_CASE("replaying the journal over the last snapshot gives back the cache as it was")
{
    Fixture f;
    std::string journal;
    f.live.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 30, f.now, f.ops);
    const std::string snapshot = to_json(f.live.entries());
    // After the snapshot: a renewal, a new name with a CNAME chain, a name
    // learned and cleaned again.
    auto learn = [&](Time t, std::vector<std::string> names, std::vector<Address> addrs, uint32_t ttl) {
        f.live.learn("192.0.2.2", names, addrs, ttl, t, f.ops);
        journal += journal_learn(t, "192.0.2.2", names, addrs, ttl);
    };
    learn(f.now + 10s, {"echo.k8s.intra."}, {ip("203.0.113.2")}, 300);
    learn(f.now + 11s, {"www.k8s.intra.", "cdn.example."}, {ip("203.0.113.7"), ip("2001:db8::7")}, 30);
    learn(f.now + 12s, {"gone.k8s.intra."}, {ip("203.0.113.9")}, 30);
    const auto sel = FqdnSelector::parse_pattern("gone.k8s.intra", nullptr);
    const FqdnMatcher gone(std::vector<FqdnSelector>{*sel});
    f.live.clean(&gone, f.now + 13s, f.ops);
    journal += journal_clean(f.now + 13s, std::string("gone.k8s.intra"));

    const Time restart = f.now + 20s;
    std::string error;
    const auto records = from_json(snapshot, error);
    REQUIRE(records);
    std::vector<ElementOp> ops;
    restore_all(f.restored, *records, restart, ops);
    const ReplayResult r = replay_journal(journal, f.restored, restart, ops);
    CHECK(r.answers == 3);
    CHECK(r.cleans == 1);
    CHECK(r.bad_lines == 0);
    CHECK(dump(f.restored) == dump(f.live));
    // The kernel is told the renewed expiry: 300 s from the renewal.
    bool renewed = false;
    for (const auto& op : ops)
        if (op.address == ip("203.0.113.2") && op.kind == ElementOp::Kind::add)
            renewed = op.timeout == 290s;
    CHECK(renewed);
}

TEST_CASE("replaying a journal the snapshot already holds changes nothing")
{
    Fixture f;
    std::string journal = journal_learn(f.now, "192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 300);
    f.live.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 300, f.now, f.ops);
    // A later answer, already in the snapshot, with the later expiry.
    f.live.learn("192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 600, f.now + 5s, f.ops);
    std::string error;
    std::vector<ElementOp> ops;
    restore_all(f.restored, *from_json(to_json(f.live.entries()), error), f.now + 6s, ops);
    const std::string before = dump(f.restored);
    ops.clear();
    replay_journal(journal, f.restored, f.now + 6s, ops);
    CHECK(dump(f.restored) == before);
    CHECK(ops.empty());
}

TEST_CASE("what expired while fqdnd was down stays out")
{
    Fixture f;
    const std::string journal = journal_learn(f.now, "192.0.2.2", {"echo.k8s.intra."}, {ip("203.0.113.2")}, 30);
    // min-ttl is 60 s.
    std::vector<ElementOp> ops;
    CHECK(replay_journal(journal, f.restored, f.now + 59s, ops).answers == 1);
    CHECK(f.restored.addresses() == 1);
    Cache late = Fixture::make(f.now);
    CHECK(replay_journal(journal, late, f.now + 61s, ops).answers == 1);
    CHECK(late.addresses() == 0);
}

TEST_CASE("a line cut short or damaged is skipped; the rest is replayed")
{
    Fixture f;
    std::string journal = journal_learn(f.now, "192.0.2.2", {"a.k8s.intra."}, {ip("203.0.113.2")}, 300);
    journal += "{\"t\": 1, \"endpoint\": \"x\", \"names\": [\"b.k8s.intra.\"], \"ips\": [\"not an address\"], \"ttl\": 1}\n";
    journal += "{\"t\": 1, \"clean\": \"a..b\"}\n";
    journal += "[1, 2]\n";
    journal += "{\"t\": \"soon\", \"clean\": null}\n";
    journal += journal_learn(f.now, "192.0.2.2", {"c.k8s.intra."}, {ip("203.0.113.3")}, 300);
    const std::string last = journal_learn(f.now, "192.0.2.2", {"d.k8s.intra."}, {ip("203.0.113.4")}, 300);
    journal += last.substr(0, last.size() - 1); // no newline: the write never ended
    std::vector<ElementOp> ops;
    const ReplayResult r = replay_journal(journal, f.restored, f.now, ops);
    CHECK(r.answers == 2);
    CHECK(r.bad_lines == 5);
    CHECK(f.restored.names() == 2);
}

TEST_CASE("names that are not UTF-8 are written as valid JSON")
{
    Fixture f;
    const std::string line = journal_learn(f.now, "192.0.2.2", {std::string("a\xff\"\n.k8s.intra.")}, {ip("203.0.113.2")}, 1);
    CHECK(line.back() == '\n');
    CHECK(line.find('\n') == line.size() - 1);
    std::vector<ElementOp> ops;
    CHECK(replay_journal(line, f.restored, f.now, ops).bad_lines == 0);
}

TEST_CASE("journals are numbered; a snapshot lets the older ones go")
{
    char tmpl[] = "/tmp/fqdnd-journal-test.XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    const std::filesystem::path dir = tmpl;
    {
        Journal j(dir);
        CHECK(j.on_disk().empty());
        REQUIRE(j.start(7) == 0);
        CHECK(j.append("one\n") == 0);
        CHECK(j.next() == 8);
        CHECK(j.append("two\n") == 0);
        CHECK(j.next() == 9);
        const auto files = j.on_disk();
        REQUIRE(files.size() == 3);
        CHECK(files[0].first == 7);
        CHECK(read_file(files[0].second) == "one\n");
        CHECK(read_file(files[1].second) == "two\n");
        j.drop_before(9);
        REQUIRE(j.on_disk().size() == 1);
        CHECK(j.on_disk()[0].first == 9);
        // Not a journal: left alone.
        std::ofstream(dir / "cache.journal.x") << "";
        CHECK(j.on_disk().size() == 1);
    }
    std::filesystem::remove_all(dir);
}
