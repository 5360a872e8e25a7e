// The audit recording's store (audit::Store): what it records, what it
// ignores, what it writes to audit.json and reads back, and forgetting.
// No root: the state directory is a temporary one.
#include "audit/store.hpp"

#include "address-literal.hpp"
#include "config-text.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

using namespace fqdnd;

namespace {

struct Dir {
    std::filesystem::path path;
    Dir()
    {
        char tmpl[] = "/tmp/fqdnd-audit.XXXXXX";
        REQUIRE(mkdtemp(tmpl));
        path = tmpl;
    }
    ~Dir() { std::filesystem::remove_all(path); }
    std::filesystem::path file() const { return path / "audit.json"; }
};

const char* policies = R"([[policy]]
name = "web"
audit = true
[policy.selector]
sources = ["192.0.2.0/29"]
[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
ports = [{ port = 53, protocol = "any" }]
dns = [{ match-pattern = "*" }]

[[policy]]
name = "db"
[policy.selector]
sources = ["192.0.2.8/29"]
[[policy.egress]]
to-cidrs = ["203.0.113.0/24"]
)";

dns::Event allowed(const char* endpoint, const char* name)
{
    dns::Event e;
    e.kind = dns::Event::Kind::query_allowed;
    e.endpoint = endpoint;
    e.server = ip("203.0.113.53");
    e.question.name = name;
    return e;
}

nflog::Drop drop(const char* policy, const char* destination, uint16_t port)
{
    nflog::Drop d;
    d.kind = "drop";
    d.policy = policy;
    d.source = ip("192.0.2.2");
    d.destination = ip(destination);
    d.protocol = "tcp";
    d.port = port;
    return d;
}

} // namespace

TEST_CASE("the audit store records audit policies' queries and running policies' flows, and keeps them across a restart")
{
    Dir dir;
    const config::Config config = config_of(policies);
    const cache::Time t{std::chrono::seconds(1'800'000'000)};
    {
        audit::Store store([&] { return dir.file(); });
        store.load(); // no file yet: nothing, no complaint
        CHECK(store.recorder().entries() == 0);
        CHECK(audit::records_queries(config));
        store.record_query(config, allowed("192.0.2.2", "a.svc.intra"), t);
        store.record_query(config, allowed("192.0.2.9", "b.svc.intra"), t); // db is not in audit mode
        auto refused = allowed("192.0.2.2", "made-up.example");
        refused.kind = dns::Event::Kind::query_refused;
        store.record_query(config, refused, t);
        store.record_flow(config, drop("web", "203.0.113.7", 443), {"a.svc.intra"}, t);
        store.record_flow(config, drop("gone", "203.0.113.8", 443), {}, t); // no such policy runs
        const auto records = store.recorder().records();
        REQUIRE(records.size() == 1);
        CHECK(records[0].policy == "web");
        REQUIRE(records[0].lookups.size() == 1);
        CHECK(records[0].lookups[0].name == "a.svc.intra.");
        CHECK(records[0].flows.size() == 1);
        CHECK_FALSE(std::filesystem::exists(dir.file())); // written a minute later, or at exit
        store.save();
        CHECK(std::filesystem::exists(dir.file()));
    }
    audit::Store again([&] { return dir.file(); });
    again.load();
    const auto records = again.recorder().records();
    REQUIRE(records.size() == 1);
    CHECK(records[0].lookups.size() == 1);
    CHECK(records[0].flows.size() == 1);

    CHECK(again.forget(std::string("web")) == 2);
    CHECK(again.recorder().entries() == 0);
    audit::Store after([&] { return dir.file(); });
    after.load();
    CHECK(after.recorder().entries() == 0); // forgetting writes at once
}

TEST_CASE("the audit store leaves a file that does not read for the next save to replace")
{
    Dir dir;
    std::ofstream(dir.file()) << "{ not json";
    audit::Store store([&] { return dir.file(); });
    store.load();
    CHECK(store.recorder().entries() == 0);
    const config::Config config = config_of(policies);
    store.record_query(config, allowed("192.0.2.2", "a.svc.intra"), cache::Time{std::chrono::seconds(1'800'000'000)});
    store.save();
    audit::Store again([&] { return dir.file(); });
    again.load();
    CHECK(again.recorder().entries() == 1);
}
