// The verbs that ask the daemon, over org.fqdnd1.
#include "verbs.hpp"

#include "bus/names.hpp"
#include "cache/format.hpp"
#include "cache/persist.hpp"
#include "client.hpp"
#include "metrics.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <iostream>
#include <string>
#include <unistd.h>
#include <vector>

namespace fqdnctl {

namespace sig = fqdnd::bus::signature;

namespace {

using Row = std::vector<std::string>;

void print_table(const std::vector<Row>& rows)
{
    std::cout << fqdnd::cache::format_columns(rows);
}

std::vector<std::string> read_strings(sd_bus_message* m)
{
    std::vector<std::string> out;
    sd_bus_message_enter_container(m, 'a', "s");
    const char* s = nullptr;
    while (sd_bus_message_read(m, "s", &s) > 0)
        out.emplace_back(s);
    sd_bus_message_exit_container(m);
    return out;
}

} // namespace

int status(bool json)
{
    auto reply = ask("Status", "");
    if (!reply)
        return 1;
    const char *version, *table, *mode;
    uint32_t policies;
    uint64_t names, addresses, connections, flows, selectors, queue_full, queue_undelivered;
    if (sd_bus_message_read(reply.get(), sig::status, &version, &table, &mode, &policies, &names, &addresses,
                            &connections, &flows, &selectors, &queue_full, &queue_undelivered) < 0)
        return 1;
    if (json) {
        std::cout << nlohmann::json{{"version", version}, {"table", table}, {"queue-mode", mode},
                                    {"policies", policies}, {"fqdn-selectors", selectors}, {"names", names},
                                    {"addresses", addresses}, {"connection-addresses", connections},
                                    {"live-flows", flows}, {"queue-dropped-full", queue_full},
                                    {"queue-dropped-undelivered", queue_undelivered}}
                         .dump(2)
                  << '\n';
        return 0;
    }
    std::printf("       Version: %s\n         Table: inet %s\n       NFQUEUE: %s\n      Policies: %u\n"
                "FQDN selectors: %lu\n         Names: %lu\n     Addresses: %lu (%lu connection-sourced)\n"
                "    Live flows: %lu\n"
                " Queue dropped: %lu full, %lu undelivered (by the kernel; none passes uninspected)\n",
                version, table, std::string(mode) == "native" ? "native nft queue" : "xtables NFQUEUE target (nft compat)",
                policies, static_cast<unsigned long>(selectors), static_cast<unsigned long>(names),
                static_cast<unsigned long>(addresses), static_cast<unsigned long>(connections),
                static_cast<unsigned long>(flows), static_cast<unsigned long>(queue_full),
                static_cast<unsigned long>(queue_undelivered));
    return 0;
}

int cache_list(const std::string& pattern, const std::string& endpoint, const std::string& source, bool json)
{
    auto reply = ask("ListCache", "sss", pattern.c_str(), endpoint.c_str(), source.c_str());
    if (!reply)
        return 1;
    // Back into cache entries, so that the table and the JSON are the very
    // ones fqdnd prints and pre-cache reads.
    std::vector<fqdnd::cache::Cache::Entry> entries;
    sd_bus_message_enter_container(reply.get(), 'a', sig::cache_entry);
    while (sd_bus_message_enter_container(reply.get(), 'r', sig::cache_entry_fields) > 0) {
        const char *ep, *src, *name;
        uint32_t ttl;
        uint64_t lookup, expires;
        sd_bus_message_read(reply.get(), sig::cache_entry_head, &ep, &src, &name, &ttl, &lookup, &expires);
        for (const auto& ip : read_strings(reply.get())) {
            fqdnd::cache::Mapping m;
            m.address = fqdnd::Address::parse(ip).value_or(fqdnd::Address{});
            m.lookup = fqdnd::cache::Time(std::chrono::milliseconds(lookup));
            m.expires = fqdnd::cache::Time(std::chrono::milliseconds(expires));
            m.ttl = ttl;
            m.source = std::string(src) == "connection" ? fqdnd::cache::Source::connection : fqdnd::cache::Source::lookup;
            if (entries.empty() || entries.back().endpoint != ep || entries.back().name != name)
                entries.push_back({ep, name, {}});
            entries.back().mappings.push_back(m);
        }
        sd_bus_message_exit_container(reply.get());
    }
    sd_bus_message_exit_container(reply.get());
    std::cout << (json ? fqdnd::cache::to_json(entries) : fqdnd::cache::format_table(entries));
    return 0;
}

int cache_clean(const std::string& pattern, bool force)
{
    if (!force) {
        if (!isatty(STDIN_FILENO)) {
            std::fprintf(stderr, "fqdnctl: cache clean removes allowed addresses; confirm with -f\n");
            return 1;
        }
        std::printf("Remove %s from the cache and the sets? [y/N] ",
                    pattern.empty() ? "every name" : ("the names matching " + pattern).c_str());
        std::fflush(stdout);
        std::string answer;
        std::getline(std::cin, answer);
        if (answer != "y" && answer != "Y" && answer != "yes")
            return 1;
    }
    auto reply = ask("CleanCache", "s", pattern.c_str());
    if (!reply)
        return 1;
    uint32_t removed = 0;
    sd_bus_message_read(reply.get(), "u", &removed);
    std::printf("removed %u addresses\n", removed);
    return 0;
}

int selectors(bool json)
{
    auto reply = ask("ListSelectors", "");
    if (!reply)
        return 1;
    nlohmann::json out = nlohmann::json::array();
    std::vector<Row> rows{{"Selector", "Sets", "Names", "IPs"}};
    sd_bus_message_enter_container(reply.get(), 'a', sig::selector);
    while (sd_bus_message_enter_container(reply.get(), 'r', sig::selector_fields) > 0) {
        const char *sel, *set4, *set6;
        sd_bus_message_read(reply.get(), sig::selector_head, &sel, &set4, &set6);
        const auto names = read_strings(reply.get());
        const auto ips = read_strings(reply.get());
        sd_bus_message_exit_container(reply.get());
        out.push_back({{"selector", sel}, {"sets", {set4, set6}}, {"names", names}, {"ips", ips}});
        auto join = [](const std::vector<std::string>& v) {
            std::string s;
            for (const auto& x : v)
                s += (s.empty() ? "" : ",") + x;
            return s.empty() ? std::string("-") : s;
        };
        rows.push_back({sel, std::string(set4) + "," + set6, join(names), join(ips)});
    }
    sd_bus_message_exit_container(reply.get());
    if (json)
        std::cout << out.dump(2) << '\n';
    else
        print_table(rows);
    return 0;
}

int policy_list(bool json)
{
    auto reply = ask("ListPolicies", "");
    if (!reply)
        return 1;
    nlohmann::json out = nlohmann::json::array();
    std::vector<Row> rows{{"Name", "Mode", "Rules", "File"}};
    sd_bus_message_enter_container(reply.get(), 'a', sig::policy);
    const char *name, *where;
    int audit;
    uint32_t rules;
    while (sd_bus_message_read(reply.get(), sig::policy, &name, &audit, &where, &rules) > 0) {
        out.push_back({{"name", name}, {"audit", audit != 0}, {"rules", rules}, {"file", where}});
        rows.push_back({name, audit ? "audit" : "enforce", std::to_string(rules), where});
    }
    if (json)
        std::cout << out.dump(2) << '\n';
    else
        print_table(rows);
    return 0;
}

// A method that takes (policy, format) and answers with text to print.
static int print_policy_text(const char* method, const std::string& policy, const char* format)
{
    auto reply = ask(method, "ss", policy.c_str(), format);
    if (!reply)
        return 1;
    const char* text = nullptr;
    if (int r = sd_bus_message_read(reply.get(), "s", &text); r < 0) {
        std::fprintf(stderr, "fqdnctl: cannot read the reply of %s: %s\n", method, std::strerror(-r));
        return 1;
    }
    std::fputs(text, stdout);
    return 0;
}

int policy_suggest(const std::string& policy, bool json)
{
    return print_policy_text("SuggestPolicy", policy, json ? "json" : "toml");
}

int policy_diff(const std::string& policy, bool json)
{
    return print_policy_text("DiffPolicy", policy, json ? "json" : "text");
}

int policy_forget(const std::string& policy)
{
    auto reply = ask("ForgetRecording", "s", policy.c_str());
    if (!reply)
        return 1;
    uint32_t removed = 0;
    if (sd_bus_message_read(reply.get(), "u", &removed) < 0)
        return 1;
    std::printf("forgot %u recorded names and flows\n", removed);
    return 0;
}

int reload()
{
    auto reply = ask("Reload", "");
    if (!reply)
        return 1;
    const auto errors = read_strings(reply.get());
    for (const auto& e : errors)
        std::fprintf(stderr, "%s\n", e.c_str());
    if (!errors.empty()) {
        std::fprintf(stderr, "fqdnctl: reload refused: %zu %s; the running configuration stays\n", errors.size(),
                     errors.size() == 1 ? "error" : "errors");
        return 1;
    }
    std::printf("reloaded\n");
    return 0;
}

int metrics()
{
    auto reply = ask("Metrics", "");
    if (!reply)
        return 1;
    std::vector<fqdnd::metrics::Sample> samples;
    sd_bus_message_enter_container(reply.get(), 'a', sig::metric);
    const char *name, *labels;
    double value;
    while (sd_bus_message_read(reply.get(), sig::metric, &name, &labels, &value) > 0)
        samples.push_back({name, labels, value});
    std::cout << fqdnd::metrics::format_prometheus(samples);
    return 0;
}

int explain(const std::string& what, bool json)
{
    auto reply = ask("Explain", "s", what.c_str());
    if (!reply)
        return 1;
    int is_address = 0, allowed = 0;
    const char* subject = nullptr;
    sd_bus_message_read(reply.get(), sig::explanation_head, &is_address, &subject, &allowed);
    nlohmann::json holders = nlohmann::json::array();
    std::vector<Row> rows{{"Name", "Endpoint", "Source", "Until", "Selector", "Set", "Policies"}};
    sd_bus_message_enter_container(reply.get(), 'a', sig::explained_mapping);
    while (sd_bus_message_enter_container(reply.get(), 'r', sig::explained_mapping_fields) > 0) {
        const char *name, *endpoint, *source, *selector, *set;
        uint64_t until;
        sd_bus_message_read(reply.get(), sig::explained_mapping_head, &name, &endpoint, &source, &selector, &set, &until);
        const auto policies = read_strings(reply.get());
        sd_bus_message_exit_container(reply.get());
        const std::string when = fqdnd::cache::rfc3339(fqdnd::cache::Time(std::chrono::milliseconds(until)));
        std::string pol;
        for (const auto& p : policies)
            pol += (pol.empty() ? "" : ",") + p;
        holders.push_back({{"name", name}, {"endpoint", endpoint}, {"source", source}, {"until", when},
                           {"selector", selector}, {"set", set}, {"policies", policies}});
        rows.push_back({name, endpoint, source, when, selector, set, pol.empty() ? "-" : pol});
    }
    sd_bus_message_exit_container(reply.get());
    const auto cidrs = read_strings(reply.get());
    const auto uses = read_strings(reply.get());
    const auto dns = read_strings(reply.get());
    if (json) {
        nlohmann::json out{{"subject", subject}, {"kind", is_address ? "address" : "name"}, {"holders", holders}};
        if (is_address) {
            out["allowed"] = allowed != 0;
            out["cidr-rules"] = cidrs;
        } else {
            out["selectors"] = uses;
            out["dns-rules"] = dns;
        }
        std::cout << out.dump(2) << '\n';
        return 0;
    }
    if (is_address) {
        if (allowed)
            std::printf("%s is ALLOWED, to the endpoints of the policies below.\n", subject);
        else
            std::printf("%s is NOT ALLOWED: no FQDN set holds it and no to-cidrs covers it.\n", subject);
        if (rows.size() > 1) {
            std::printf("\nIn the sets of these FQDN selectors, learned from DNS:\n");
            print_table(rows);
        }
        if (!cidrs.empty()) {
            std::printf("\nCovered by to-cidrs:\n");
            for (const auto& c : cidrs)
                std::printf("  %s\n", c.c_str());
        }
        return 0;
    }
    std::printf("%s\n", subject);
    std::printf("\nAsking about it is allowed by:%s\n", dns.empty() ? " no DNS rule (queries are refused)" : "");
    for (const auto& d : dns)
        std::printf("  %s\n", d.c_str());
    std::printf("\nIts addresses are opened by:%s\n", uses.empty() ? " no FQDN selector (its addresses stay closed)" : "");
    for (const auto& u : uses)
        std::printf("  %s\n", u.c_str());
    if (rows.size() > 1) {
        std::printf("\nWhat fqdnd knows of it now:\n");
        print_table(rows);
    } else {
        std::printf("\nNo endpoint resolved it yet (or its addresses expired).\n");
    }
    return 0;
}

} // namespace fqdnctl

namespace fqdnctl {

namespace {

volatile sig_atomic_t interrupted = 0;

struct MonitorState {
    std::string type;
    bool json = false;
    bool daemon_gone = false;
};

std::string when(uint64_t ms)
{
    return fqdnd::cache::rfc3339(fqdnd::cache::Time(std::chrono::milliseconds(ms)));
}

std::string joined(const std::vector<std::string>& items, const char* separator)
{
    std::string out;
    for (const auto& x : items)
        out += (out.empty() ? "" : separator) + x;
    return out;
}

std::string type_name(uint16_t type)
{
    switch (type) {
    case 1: return "A";
    case 5: return "CNAME";
    case 28: return "AAAA";
    case 65: return "HTTPS";
    case 33: return "SRV";
    case 16: return "TXT";
    case 12: return "PTR";
    case 15: return "MX";
    default: return "TYPE" + std::to_string(type);
    }
}

std::string rcode_name(uint8_t rcode)
{
    static const char* const names[] = {"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"};
    return rcode < 6 ? names[rcode] : "RCODE" + std::to_string(rcode);
}

int on_dns_event(sd_bus_message* m, void* userdata, sd_bus_error*)
{
    auto& st = *static_cast<MonitorState*>(userdata);
    if (!st.type.empty() && st.type != "dns")
        return 0;
    uint64_t time = 0, hold = 0;
    const char *kind, *endpoint, *server, *name;
    uint16_t type = 0;
    uint8_t rcode = 0;
    uint32_t ttl = 0;
    if (sd_bus_message_read(m, "tssssqy", &time, &kind, &endpoint, &server, &name, &type, &rcode) < 0)
        return 0;
    const auto chain = read_strings(m);
    const auto addresses = read_strings(m);
    sd_bus_message_read(m, "u", &ttl);
    const auto selectors = read_strings(m);
    sd_bus_message_read(m, "t", &hold);
    const std::string k = kind;
    if (st.json) {
        nlohmann::json j{{"time", when(time)}, {"event", "dns"},   {"kind", k},
                         {"endpoint", endpoint}, {"server", server}, {"name", name}, {"type", type_name(type)}};
        if (k == "answer") {
            j["rcode"] = rcode_name(rcode);
            j["chain"] = chain;
            j["ips"] = addresses;
            j["ttl"] = ttl;
            j["selectors"] = selectors;
            j["hold-usec"] = hold;
        }
        std::cout << j.dump() << std::endl;
        return 0;
    }
    std::string line = when(time) + " dns  " + endpoint;
    if (k == "answer") {
        line += " <- " + std::string(server) + " answer " + name + " " + type_name(type) + " " + rcode_name(rcode);
        if (chain.size() > 1)
            line += " via " + joined(std::vector(chain.begin() + 1, chain.end()), " -> ");
        if (!addresses.empty())
            line += " = " + joined(addresses, ", ") + " ttl " + std::to_string(ttl);
        if (!selectors.empty())
            line += "; learned by " + joined(selectors, ", ") + " (held " + std::to_string(hold) + " us)";
    } else {
        line += " -> " + std::string(server) + " query " + name + " " + type_name(type)
            + (k == "query-allowed" ? " allowed" : " REFUSED");
    }
    std::cout << line << std::endl;
    return 0;
}

int on_drop(sd_bus_message* m, void* userdata, sd_bus_error*)
{
    auto& st = *static_cast<MonitorState*>(userdata);
    if (!st.type.empty() && st.type != "drop")
        return 0;
    uint64_t time = 0;
    const char *kind, *policy, *endpoint, *source, *destination, *protocol, *interface;
    uint16_t port = 0;
    if (sd_bus_message_read(m, "tssssssqs", &time, &kind, &policy, &endpoint, &source, &destination, &protocol, &port,
                            &interface)
        < 0)
        return 0;
    const auto names = read_strings(m);
    const std::string k = kind;
    if (st.json) {
        nlohmann::json j{{"time", when(time)},     {"event", "drop"},          {"kind", k},
                         {"policy", policy},       {"endpoint", endpoint},     {"source", source},
                         {"destination", destination}, {"protocol", protocol}, {"port", port},
                         {"interface", interface}, {"names", names}};
        std::cout << j.dump() << std::endl;
        return 0;
    }
    const std::string v6 = std::string(destination).find(':') != std::string::npos ? "[" : "";
    std::string line = when(time) + " drop " + endpoint + " -> " + v6 + destination + (v6.empty() ? "" : "]")
        + (port ? ":" + std::to_string(port) : "") + " " + protocol;
    if (!names.empty())
        line += " (" + joined(names, ", ") + ")";
    line += " policy " + std::string(policy) + ": "
        + (k == "audit" ? "would drop (audit)" : k == "dns-server" ? "DNS to a server no rule lists" : "not allowed");
    if (*interface)
        line += " [in " + std::string(interface) + "]";
    std::cout << line << std::endl;
    return 0;
}

int on_owner_changed(sd_bus_message* m, void* userdata, sd_bus_error*)
{
    const char *name, *old_owner, *new_owner;
    if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) >= 0 && std::string(name) == fqdnd::bus::service
        && *old_owner)
        static_cast<MonitorState*>(userdata)->daemon_gone = true;
    return 0;
}

} // namespace

int monitor(const std::string& type, bool json)
{
    Client c;
    if (c.connect())
        return 1;
    MonitorState st{type, json, false};
    sd_bus* bus = c.bus();
    if (sd_bus_match_signal(bus, nullptr, fqdnd::bus::service, fqdnd::bus::object_path, fqdnd::bus::manager_interface, "DnsEvent", on_dns_event,
                            &st)
            < 0
        || sd_bus_match_signal(bus, nullptr, fqdnd::bus::service, fqdnd::bus::object_path, fqdnd::bus::manager_interface, "Drop", on_drop, &st)
            < 0
        || sd_bus_add_match(bus, nullptr,
                            "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
                            "member='NameOwnerChanged',arg0='org.fqdnd1'",
                            on_owner_changed, &st)
            < 0) {
        std::fprintf(stderr, "fqdnctl: cannot listen for fqdnd's events\n");
        return 1;
    }
    if (!c.call("Subscribe", ""))
        return 1;
    struct sigaction sa {};
    sa.sa_handler = [](int) { interrupted = 1; };
    sigaction(SIGINT, &sa, nullptr); // no SA_RESTART: the wait below returns
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGPIPE, &sa, nullptr);
    if (!json)
        std::fprintf(stderr, "Listening for DNS events and drops%s%s; Ctrl-C ends.\n", type.empty() ? "" : " (",
                     type.empty() ? "" : (type + " only)").c_str());
    while (!interrupted && !st.daemon_gone) {
        const int r = sd_bus_process(bus, nullptr);
        if (r < 0) {
            std::fprintf(stderr, "fqdnctl: lost the bus: %s\n", std::strerror(-r));
            return 1;
        }
        if (r > 0)
            continue;
        if (int w = sd_bus_wait(bus, UINT64_MAX); w < 0 && w != -EINTR) {
            std::fprintf(stderr, "fqdnctl: lost the bus: %s\n", std::strerror(-w));
            return 1;
        }
    }
    if (st.daemon_gone) {
        std::fprintf(stderr, "fqdnctl: fqdnd went away\n");
        return 1;
    }
    return 0;
}

} // namespace fqdnctl
