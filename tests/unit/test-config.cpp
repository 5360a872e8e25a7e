// The configuration loader: defaults, every error with its location, and
// canonical models that compare equal when they mean the same thing.
#include "config/loader.hpp"
#include "config/settings.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <map>

using namespace fqdnd;
using namespace fqdnd::config;

namespace {

LoadResult load(std::string_view settings, std::string_view policy = "")
{
    std::vector<std::pair<std::string, std::string>> files;
    if (!policy.empty())
        files.emplace_back("/etc/fqdnd/policy.d/p.toml", std::string(policy));
    return load_config_text(settings, "/etc/fqdnd/fqdnd.toml", files);
}

// The one error of a load, as printed.
std::string only_error(const LoadResult& r)
{
    REQUIRE_FALSE(r.config);
    REQUIRE(r.errors.size() == 1);
    return r.errors.front().to_string();
}

bool contains(const std::string& haystack, std::string_view needle)
{
    return haystack.find(needle) != std::string::npos;
}

const char* echo_policy = R"([[policy]]
name = "echo"

[policy.selector]
sources = ["192.0.2.0/29"]

[[policy.egress]]
to-fqdns = [{ match-pattern = "*.k8s.intra" }]

[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
ports = [{ port = 53, protocol = "any" }]
dns = [{ match-pattern = "*" }]
)";

} // namespace

TEST_CASE("an empty fqdnd.toml gives every default of DESIGN.md")
{
    const LoadResult r = load("");
    REQUIRE(r.config);
    const Settings& s = r.config->settings;
    CHECK(s.table == "fqdnd");
    CHECK(s.queue == 5300);
    CHECK(s.queues == 1);
    CHECK(s.fail_open);
    CHECK(s.policy_directory == "/etc/fqdnd/policy.d");
    CHECK(s.state_directory == "/var/lib/fqdnd");
    CHECK(s.min_ttl == std::chrono::seconds(3600));
    CHECK(s.max_ip_per_hostname == 50);
    CHECK(s.idle_connection_grace_period == Duration::zero());
    CHECK(s.max_deferred_connection_deletes == 10000);
    CHECK(s.max_names == 100000);
    CHECK(s.max_addresses == 1000000);
    CHECK(s.response_max_delay == std::chrono::milliseconds(100));
    CHECK(s.reject_response_code == RejectCode::refused);
    CHECK(s.pre_cache.empty());
    CHECK(r.config->policies.empty());
}

TEST_CASE("a reload may change most settings, but not the queues or the state directory")
{
    const LoadResult r = load("");
    REQUIRE(r.config);
    const Settings running = r.config->settings;
    Settings next = running;
    CHECK(fixed_until_restart(running, next).empty());
    next.table = "other";
    next.min_ttl = std::chrono::seconds(60);
    CHECK(fixed_until_restart(running, next).empty());

    next = running;
    next.queues = 2;
    CHECK(fixed_until_restart(running, next) == "queue and queues change only at a restart (running: queue 5300, queues 1)");
    next = running;
    next.queue = 5400;
    CHECK(fixed_until_restart(running, next) == "queue and queues change only at a restart (running: queue 5300, queues 1)");
    next = running;
    next.state_directory = "/tmp/elsewhere";
    CHECK(fixed_until_restart(running, next) == "state-directory changes only at a restart (running: /var/lib/fqdnd)");
}

TEST_CASE("a reload is refused with every error, does nothing when nothing changed, or takes the new configuration")
{
    const LoadResult running = load("");
    REQUIRE(running.config);

    ReloadCheck c = check_reload(*running.config, load(""));
    CHECK(c.verdict == ReloadCheck::Verdict::unchanged);
    CHECK(c.errors.empty());

    c = check_reload(*running.config, load("[daemon]\ntable = \"fw\"\n"));
    CHECK(c.verdict == ReloadCheck::Verdict::apply);
    REQUIRE(c.config);
    CHECK(c.config->settings.table == "fw");

    c = check_reload(*running.config, load("[daemon]\nqueue = 100\nno-such-key = 1\n[fqdn]\nmin-ttl = \"soon\"\n"));
    CHECK(c.verdict == ReloadCheck::Verdict::refused);
    CHECK_FALSE(c.config);
    REQUIRE(c.errors.size() == 2);
    CHECK(c.errors[0].rfind("/etc/fqdnd/fqdnd.toml:", 0) == 0);
    CHECK(c.summary == ": 2 errors");

    // A configuration that loads, but changes what only a restart may.
    c = check_reload(*running.config, load("[daemon]\nqueue = 100\n"));
    CHECK(c.verdict == ReloadCheck::Verdict::refused);
    CHECK(c.errors == std::vector<std::string>{"queue and queues change only at a restart (running: queue 5300, queues 1)"});
    CHECK(c.summary.empty());
}

TEST_CASE("every setting is read")
{
    const LoadResult r = load(R"(
[daemon]
table = "fw"
queue = 100
queues = 2
fail-open = false
policy-directory = "pol"
state-directory = "/run/x"
[fqdn]
min-ttl = "1h30m"
max-ip-per-hostname = 5
idle-connection-grace-period = "30s"
max-deferred-connection-deletes = 7
max-names = 300
max-addresses = 4000
response-max-delay = "250ms"
reject-response-code = "name-error"
pre-cache = "/etc/fqdnd/pre.json"
)");
    REQUIRE(r.config);
    const Settings& s = r.config->settings;
    CHECK(s.table == "fw");
    CHECK(s.queue == 100);
    CHECK(s.queues == 2);
    CHECK_FALSE(s.fail_open);
    CHECK(s.policy_directory == "/etc/fqdnd/pol");
    CHECK(s.state_directory == "/run/x");
    CHECK(s.min_ttl == std::chrono::minutes(90));
    CHECK(s.max_ip_per_hostname == 5);
    CHECK(s.idle_connection_grace_period == std::chrono::seconds(30));
    CHECK(s.max_deferred_connection_deletes == 7);
    CHECK(s.max_names == 300);
    CHECK(s.max_addresses == 4000);
    CHECK(s.response_max_delay == std::chrono::milliseconds(250));
    CHECK(s.reject_response_code == RejectCode::name_error);
    CHECK(s.pre_cache == "/etc/fqdnd/pre.json");
    CHECK(load("[fqdn]\nmin-ttl = 60\n").config->settings.min_ttl == std::chrono::seconds(60));
}

TEST_CASE("the key table has a default for every key that parses")
{
    for (const SettingKey& k : setting_keys()) {
        CAPTURE(k.name);
        CHECK_FALSE(k.help.empty());
        const LoadResult r = load("[" + std::string(k.section) + "]\n" + std::string(k.name) + " = "
                                  + std::string(k.default_toml) + "\n");
        CHECK(r.errors.empty());
        REQUIRE(r.config);
        CHECK(r.config->settings == load("").config->settings);
    }
}

TEST_CASE("errors carry file:line:column")
{
    CHECK(only_error(load("[daemon]\nqueue = \"x\"\n"))
          == "/etc/fqdnd/fqdnd.toml:2:9: queue: expected an integer, got a string");
    CHECK(only_error(load("[daemon]\nqueue = 70000\n"))
          == "/etc/fqdnd/fqdnd.toml:2:9: queue: 70000 is out of range (0 to 65535)");
    CHECK(only_error(load("[daemon]\nfail-opn = true\n"))
          == "/etc/fqdnd/fqdnd.toml:2:1: unknown key \"fail-opn\" in [daemon]; did you mean \"fail-open\"?");
    CHECK(only_error(load("[daemon]\nmin-ttl = 5\n"))
          == "/etc/fqdnd/fqdnd.toml:2:1: unknown key \"min-ttl\" in [daemon]; it belongs in [fqdn]");
    CHECK(only_error(load("[fqdn]\nresponse-max-delay = \"100 ms\"\n")).starts_with(
        "/etc/fqdnd/fqdnd.toml:2:22: response-max-delay: \"100 ms\" is not a duration"));
    CHECK(only_error(load("[fqdn]\nreject-response-code = \"nxdomain\"\n"))
          == "/etc/fqdnd/fqdnd.toml:2:24: reject-response-code: \"nxdomain\" is not one of \"refused\", \"name-error\"");
    CHECK(only_error(load("[daemon]\nreverse-path-filter = \"yes\"\n"))
          == "/etc/fqdnd/fqdnd.toml:2:23: reverse-path-filter: \"yes\" is not one of \"strict\", \"loose\", \"off\"");
    CHECK(only_error(load("[fqdn]\nmin-ttl = -1\n")).starts_with("/etc/fqdnd/fqdnd.toml:2:11: min-ttl: -1 is out of range"));
    CHECK(only_error(load("[daemon]\ntable = \"a b\"\n")).starts_with("/etc/fqdnd/fqdnd.toml:2:9: table:"));
    CHECK(only_error(load("[daemon]\nqueue = 65535\nqueues = 2\n")).starts_with("/etc/fqdnd/fqdnd.toml:3:10: queues:"));
    CHECK(only_error(load("[fqdn]\nmax-names = \"lots\"\n"))
          == "/etc/fqdnd/fqdnd.toml:2:13: max-names: expected an integer, got a string");
    CHECK(only_error(load("[fqdn]\nmax-names = 0\n"))
          == "/etc/fqdnd/fqdnd.toml:2:13: max-names: 0 is out of range (1 to 100000000)");
    CHECK(only_error(load("[fqdn]\nmax-addresses = 1.5\n"))
          == "/etc/fqdnd/fqdnd.toml:2:17: max-addresses: expected an integer, got a float");
    CHECK(only_error(load("[fqdn]\nmax-addresses = 2000000000\n"))
          == "/etc/fqdnd/fqdnd.toml:2:17: max-addresses: 2000000000 is out of range (1 to 1000000000)");
    CHECK(only_error(load("[daemon]\nmax-names = 5\n"))
          == "/etc/fqdnd/fqdnd.toml:2:1: unknown key \"max-names\" in [daemon]; it belongs in [fqdn]");
    CHECK(only_error(load("[deamon]\n")).starts_with("/etc/fqdnd/fqdnd.toml:1:2: unknown key \"deamon\""));
    CHECK(contains(only_error(load("[deamon]\n")), "did you mean \"daemon\"?"));
}

TEST_CASE("a syntax error is reported where toml++ found it")
{
    const std::string e = only_error(load("[daemon]\nqueue = = 5\n"));
    CHECK(e.starts_with("/etc/fqdnd/fqdnd.toml:2:9: "));
}

TEST_CASE("the seed's echo policy loads")
{
    const LoadResult r = load("", echo_policy);
    for (const auto& e : r.errors)
        MESSAGE(e.to_string());
    REQUIRE(r.config);
    REQUIRE(r.config->policies.size() == 1);
    const Policy& p = r.config->policies[0];
    CHECK(p.name == "echo");
    CHECK_FALSE(p.audit);
    REQUIRE(p.selector.sources.size() == 1);
    CHECK(p.selector.sources[0].to_string() == "192.0.2.0/29");
    REQUIRE(p.egress.size() == 2);
    const auto selectors = r.config->fqdn_selectors();
    REQUIRE(selectors.size() == 1);
    CHECK(selectors[0].text == "*.k8s.intra.");
    const EgressRule& dns = p.egress[0].is_dns() ? p.egress[0] : p.egress[1];
    CHECK(dns.to_dns_servers[0].to_string() == "203.0.113.53/32");
    CHECK(dns.ports == std::vector<PortRule>{{53, Protocol::any}});
    CHECK(dns.dns[0].is_match_all());
    CHECK(summary(*r.config) == "2 files, 1 policy, 2 egress rules, 1 FQDN selector");
}

TEST_CASE("policy errors carry file:line:column")
{
    const std::string head = "[[policy]]\nname = \"p\"\n[policy.selector]\nsources = [\"192.0.2.0/29\"]\n";
    const std::string f = "/etc/fqdnd/policy.d/p.toml:";

    CHECK(only_error(load("", head + "[[policy.egress]]\nto-fqdns = [{ match-pattern = \"a..b\" }]\n"))
          == f + "6:31: match-pattern \"a..b\" has an empty label");
    CHECK(only_error(load("", head + "[[policy.egress]]\nto-fqdns = [{ match-patern = \"a\" }]\n"))
          == f + "6:15: unknown key \"match-patern\" in to-fqdns entry; did you mean \"match-pattern\"?");
    CHECK(only_error(load("", head + "[[policy.egress]]\nto-cidrs = [\"198.51.100.1/24\"]\n"))
          == f + "6:13: to-cidrs: \"198.51.100.1/24\" has host bits set; did you mean 198.51.100.0/24?");
    CHECK(only_error(load("", head + "[[policy.egress]]\nto-cidrs = [\"198.51.100.0/33\"]\n"))
          == f + "6:13: to-cidrs: \"198.51.100.0/33\" has a bad prefix length (0 to 32)");
    CHECK(only_error(load("", head + "[[policy.egress]]\nto-cidrs = [\"example.com\"]\n"))
          == f + "6:13: to-cidrs: \"example.com\" is not an IPv4 or IPv6 address or CIDR");
    CHECK(only_error(load("", head + "[[policy.egress]]\nports = [{ port = 443 }]\n"))
          == f + "5:1: this egress rule allows nothing: give to-fqdns, to-cidrs or to-dns-servers");
    CHECK(only_error(load("", head + "[[policy.egress]]\nto-cidrs = [\"2001:db8::/32\"]\nports = [{ port = 0 }]\n"))
          == f + "7:19: port: 0 is out of range (1 to 65535)");
    CHECK(only_error(load("", head + "[[policy.egress]]\nto-cidrs = [\"2001:db8::/32\"]\nports = [{ port = 1, protocol = \"sctp\" }]\n"))
          == f + "7:33: protocol: \"sctp\" is not one of \"tcp\", \"udp\", \"any\"");
    CHECK(only_error(load("", head + "[[policy.egress]]\nto-dns-servers = [\"203.0.113.53\"]\n"))
          .starts_with(f + "6:18: to-dns-servers: no dns rules"));
    CHECK(only_error(load("", head + "[[policy.egress]]\nto-cidrs = [\"192.0.2.0/24\"]\ndns = [{ match-pattern = \"*\" }]\n"))
          == f + "7:7: dns: DNS rules apply to to-dns-servers, and this rule has none");
    CHECK(only_error(load("", head + "[[policy.egress]]\nto-fqdns = []\n"))
          == f + "6:12: to-fqdns: is empty; leave the key out instead");
    CHECK(only_error(load("", head + "[[policy.egress]]\nto-fqdns = [{ match-name = \"a\", match-pattern = \"b\" }]\n"))
          == f + "6:49: to-fqdns: an entry has match-name or match-pattern, not both");
    CHECK(only_error(load("", "[[policy]]\nname = \"p\"\n"))
          == f + "1:1: policy \"p\" has no [policy.selector]: it would select nothing");
    CHECK(only_error(load("", "[[policy]]\nname = \"p\"\n[policy.selector]\nlocal = false\n"))
          .starts_with(f + "3:1: policy \"p\": the selector selects nothing"));
    CHECK(only_error(load("", "[[policy]]\n[policy.selector]\nlocal = true\n")) == f + "1:1: policy has no name");
    CHECK(only_error(load("", "[[policy]]\nname = \"p\"\n[policy.selector]\nusers = [\"no-such-user-xyz\"]\n"))
          == f + "4:10: users: no such user \"no-such-user-xyz\"");
    CHECK(only_error(load("", "[[policy]]\nname = \"p\"\n[policy.selector]\ninterfaces = [\"v*th\"]\n"))
          .starts_with(f + "4:15: interfaces: \"v*th\" has a '*' before its end"));
    CHECK(only_error(load("", "[[policy]]\nname = \"p\"\n[policy.selector]\nunits = [\"nginx\"]\n"))
          .starts_with(f + "4:10: units: \"nginx\" is not a .service"));
    CHECK(only_error(load("", "[[policy]]\nname = \"p\"\n[policy.selectr]\nlocal = true\n"))
          .starts_with(f + "3:9: unknown key \"selectr\" in [[policy]]; did you mean \"selector\"?"));
}

TEST_CASE("duplicate policy names are refused across files, pointing at both")
{
    const std::string p = "[[policy]]\nname = \"dup\"\n[policy.selector]\nlocal = true\n";
    const LoadResult r = load_config_text("", "/etc/fqdnd/fqdnd.toml", {{"/a.toml", p}, {"/b.toml", p}});
    REQUIRE_FALSE(r.config);
    REQUIRE(r.errors.size() == 1);
    CHECK(r.errors[0].to_string() == "/b.toml:1:1: policy \"dup\" is already defined at /a.toml:1:1");
}

TEST_CASE("every error of every file is reported, and any error refuses the whole set")
{
    const LoadResult r = load_config_text("[daemon]\nqueue = \"x\"\nbogus = 1\n", "/etc/fqdnd/fqdnd.toml",
                                          {{"/a.toml", echo_policy}, {"/b.toml", "[[policy]]\nname = 5\n"}});
    CHECK_FALSE(r.config);
    CHECK(r.errors.size() == 4);
}

TEST_CASE("models that mean the same thing compare equal")
{
    const std::string a = R"([[policy]]
name = "p"
[policy.selector]
sources = ["192.0.2.0/29", "198.51.100.7"]
[[policy.egress]]
to-fqdns = [{ match-pattern = "*.K8S.intra" }, { match-name = "api.github.com" }]
ports = [{ port = 443, protocol = "tcp" }, { port = 443, protocol = "udp" }]
[[policy.egress]]
to-cidrs = ["203.0.113.0/24"]
)";
    const std::string b = R"([[policy]]
name = "p"
[policy.selector]
sources = ["198.51.100.7/32", "192.0.2.0/29", "192.0.2.0/29"]
[[policy.egress]]
to-cidrs = ["203.0.113.0/24"]
[[policy.egress]]
to-fqdns = [{ match-name = "API.github.com." }, { match-pattern = "*.k8s.intra." }]
ports = [{ port = 443 }]
)";
    const LoadResult ra = load("[fqdn]\nmin-ttl = 3600\nresponse-max-delay = \"0.1s\"\n", a);
    const LoadResult rb = load("", b);
    REQUIRE(ra.config);
    REQUIRE(rb.config);
    CHECK(*ra.config == *rb.config);

    const LoadResult rc = load("", std::string(b).replace(b.find("443"), 3, "444"));
    REQUIRE(rc.config);
    CHECK_FALSE(*rc.config == *rb.config);
    const LoadResult rd = load("[fqdn]\nmin-ttl = 3601\n", b);
    REQUIRE(rd.config);
    CHECK_FALSE(*rd.config == *rb.config);
}

TEST_CASE("files on disk: fqdnd.toml optional, policy directory beside it, *.toml only")
{
    namespace fs = std::filesystem;
    const fs::path dir = fs::temp_directory_path() / ("fqdnd-test-config-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir / "policy.d");
    {
        std::ofstream(dir / "policy.d" / "echo.toml") << echo_policy;
        std::ofstream(dir / "policy.d" / "README") << "not toml";
    }
    LoadResult r = load_config(dir / "fqdnd.toml", false);
    REQUIRE(r.config);
    CHECK(r.config->policies.size() == 1);
    CHECK(r.config->settings.policy_directory == (dir / "policy.d").string());

    r = load_config(dir / "fqdnd.toml", true);
    REQUIRE_FALSE(r.config);
    CHECK(r.errors[0].to_string().find("cannot read") != std::string::npos);

    std::ofstream(dir / "policy.d" / "broken.toml") << "[[policy]]\nname = \"x\"\n[policy.selector]\nsources = [\"192.0.2.300\"]\n";
    r = load_config(dir / "fqdnd.toml", false);
    REQUIRE_FALSE(r.config);
    CHECK(r.errors[0].to_string() == (dir / "policy.d" / "broken.toml").string()
          + ":4:12: sources: \"192.0.2.300\" is not an IPv4 or IPv6 address or CIDR");
    fs::remove_all(dir);
}

TEST_CASE("conf/fqdnd.toml shows every key of the table, in its section, at its default")
{
    const char* root = std::getenv("FQDND_SOURCE_ROOT");
    REQUIRE_MESSAGE(root, "FQDND_SOURCE_ROOT is not set (meson test sets it)");
    std::ifstream in(std::filesystem::path(root) / "conf" / "fqdnd.toml");
    REQUIRE(in);
    std::string line, section;
    std::map<std::string, std::string> shown; // "section.key" -> "value"
    while (std::getline(in, line)) {
        if (line.starts_with("["))
            section = line.substr(1, line.find(']') - 1);
        else if (line.starts_with("#") && line.find(" = ") != std::string::npos && line[1] != ' ')
            shown[section + "." + line.substr(1, line.find(" = ") - 1)] = line.substr(line.find(" = ") + 3);
    }
    for (const SettingKey& k : setting_keys()) {
        const std::string key = std::string(k.section) + "." + std::string(k.name);
        CAPTURE(key);
        REQUIRE(shown.count(key) == 1);
        CHECK(shown[key] == k.default_toml);
    }
    CHECK(shown.size() == setting_keys().size());
}
