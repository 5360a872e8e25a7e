#include "config/settings.hpp"

#include <algorithm>

namespace fqdnd::config {

namespace {

using T = SettingKey::Type;
using S = Settings;

constexpr SettingKey keys[] = {
    {"daemon", "table", T::name, R"("fqdnd")",
     "Name of the nftables table (family inet) that fqdnd owns. It touches no other table.",
     &S::table},
    {"daemon", "queue", T::integer, "5300",
     "First NFQUEUE number that DNS traffic is queued to: queries to the first `queues` from here, answers to as many after them.",
     &S::queue, 0, 65535},
    {"daemon", "queues", T::integer, "1",
     "Number of queues for queries, numbered from queue on, and as many for answers after them; DNS flows are fanned out over them (one thread serves all). queue and queues change only at a restart.",
     &S::queues, 1, 64},
    {"daemon", "fail-open", T::boolean, "true",
     "DNS still flows while fqdnd is not running (the kernel bypasses the queue); allowed addresses stay in the sets.",
     &S::fail_open},
    {"daemon", "reverse-path-filter", T::reverse_path, R"("strict")",
     "Drops packets entering this host (forwarded or local) whose source address does not route back: \"strict\" through the interface they came in on, \"loose\" through any, \"off\" not checked. Spoofed sources and answers forged from behind the host are dropped this way; relax it only for asymmetric routing. Loopback, DHCP requests and IPv6 neighbour discovery are exempt; with no policy, nothing is checked.",
     &S::reverse_path_filter},
    {"daemon", "policy-directory", T::path, R"("policy.d")",
     "Directory of policy files (*.toml); a relative path is taken from the directory of fqdnd.toml, so the default is /etc/fqdnd/policy.d.",
     &S::policy_directory},
    {"daemon", "state-directory", T::path, R"("/var/lib/fqdnd")",
     "Where the cache snapshot (cache.json) and its journal (cache.journal.N) are kept across restarts and crashes; changes only at a restart.",
     &S::state_directory},
    {"daemon", "log-group", T::integer, "5300",
     "NFLOG group that dropped packets of selected clients are logged to; fqdnd reads it for `fqdnctl monitor`. The next group gets a copy of each query that a DNS rule allowing every name (match-pattern \"*\") lets through unheld; fqdnd reads both, and no other program may bind them.",
     &S::log_group, 0, 65534},
    {"daemon", "log-rate", T::integer, "50",
     "Most dropped packets logged per second, over all policies, limited in the kernel (bursts of as many); 0 logs none.",
     &S::log_rate, 0, 100000},
    {"daemon", "metrics-file", T::optional_path, R"("")",
     "File rewritten every 15 seconds with the metrics in the Prometheus text format, for node_exporter's textfile collector; empty for none.",
     &S::metrics_file},
    {"fqdn", "min-ttl", T::seconds, "3600",
     "Shortest time a DNS answer allows its addresses, in seconds (or a duration such as \"1h\"); the answer's own TTL counts when longer.",
     &S::min_ttl},
    {"fqdn", "max-ip-per-hostname", T::integer, "50",
     "Most addresses kept per name and endpoint; those that expire first are dropped first.",
     &S::max_ip_per_hostname, 1, 1'000'000},
    {"fqdn", "idle-connection-grace-period", T::duration, R"("0s")",
     "How long an address whose DNS data expired stays allowed after its last connection closed.",
     &S::idle_connection_grace_period},
    {"fqdn", "max-deferred-connection-deletes", T::integer, "10000",
     "Most addresses kept alive only by their connections (source connection); never-used, then oldest, go first.",
     &S::max_deferred_connection_deletes, 0, 100'000'000},
    {"fqdn", "max-names", T::integer, "100000",
     "Most names learned from DNS, counted per endpoint; over it, the name whose address expires soonest is evicted whole (as if it expired: addresses with live connections stay, as connection).",
     &S::max_names, 1, 100'000'000},
    {"fqdn", "max-addresses", T::integer, "1000000",
     "Most addresses learned from DNS, counted per endpoint and name; over it, the address that expires soonest is evicted (as if it expired). fqdnd sizes its tables for it (up to 2,000,000) when it starts or reloads, about 9 bytes per address, so that no answer waits while they grow.",
     &S::max_addresses, 1, 1'000'000'000},
    {"fqdn", "response-max-delay", T::duration, R"("100ms")",
     "Longest time a DNS answer is held while its addresses are written to the kernel; it is released then anyway.",
     &S::response_max_delay},
    {"fqdn", "reject-response-code", T::reject_code, R"("refused")",
     "Answer to a query no DNS rule allows: \"refused\" (REFUSED) or \"name-error\" (NXDOMAIN).",
     &S::reject_response_code},
    {"fqdn", "pre-cache", T::optional_path, R"("")",
     "JSON file loaded at start, in the format of `fqdnctl cache list -o json`; empty for none.",
     &S::pre_cache},
};

constexpr std::string_view sections[] = {"daemon", "fqdn"};

bool valid_table_name(std::string_view s) noexcept
{
    if (s.empty() || s.size() > 32 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
    });
}

std::string resolve_path(const std::filesystem::path& base_dir, const std::string& value)
{
    std::filesystem::path p(value);
    if (p.is_relative())
        p = base_dir / p;
    return p.lexically_normal().string();
}

// Stores one value into its field; reports and returns false on a bad value.
bool apply(const SettingKey& key, const toml::node& node, TomlReader& reader,
           const std::filesystem::path& base_dir, Settings& out)
{
    const std::string label = std::string(key.name);
    switch (key.type) {
    case T::name: {
        auto v = reader.string(node, label);
        if (!v)
            return false;
        if (!valid_table_name(*v)) {
            reader.error(node, label + ": \"" + *v
                + "\" is not a table name (a letter, then letters, digits, '_' or '-'; 32 at most)");
            return false;
        }
        out.*std::get<std::string S::*>(key.field) = *v;
        return true;
    }
    case T::path:
    case T::optional_path: {
        auto v = reader.string(node, label);
        if (!v)
            return false;
        if (v->empty() && key.type == T::path) {
            reader.error(node, label + ": must not be empty");
            return false;
        }
        out.*std::get<std::string S::*>(key.field) = v->empty() ? std::string() : resolve_path(base_dir, *v);
        return true;
    }
    case T::boolean: {
        auto v = reader.boolean(node, label);
        if (v)
            out.*std::get<bool S::*>(key.field) = *v;
        return v.has_value();
    }
    case T::integer: {
        auto v = reader.integer(node, label);
        if (!v)
            return false;
        if (*v < key.min || *v > key.max) {
            reader.error(node, label + ": " + std::to_string(*v) + " is out of range (" + std::to_string(key.min)
                + " to " + std::to_string(key.max) + ")");
            return false;
        }
        out.*std::get<int64_t S::*>(key.field) = *v;
        return true;
    }
    case T::seconds:
        if (node.is_integer()) {
            const int64_t v = node.as_integer()->get();
            if (v < 0 || v > 100LL * 365 * 86400) {
                reader.error(node, label + ": " + std::to_string(v) + " is out of range (0 to 100 years in seconds)");
                return false;
            }
            out.*std::get<Duration S::*>(key.field) = std::chrono::seconds(v);
            return true;
        }
        [[fallthrough]];
    case T::duration: {
        if (!node.is_string()) {
            reader.error(node, label + ": expected a duration such as \"100ms\", \"30s\" or \"1h\", got "
                + std::string(type_name(node.type())));
            return false;
        }
        const std::string text = node.as_string()->get();
        const auto d = parse_duration(text);
        if (!d) {
            reader.error(node, label + ": \"" + text
                + "\" is not a duration (a number and a unit: ns, us, ms, s, m, h; such as \"100ms\" or \"1h30m\")");
            return false;
        }
        out.*std::get<Duration S::*>(key.field) = *d;
        return true;
    }
    case T::reject_code: {
        auto v = reader.string(node, label);
        if (!v)
            return false;
        if (*v == "refused")
            out.*std::get<RejectCode S::*>(key.field) = RejectCode::refused;
        else if (*v == "name-error")
            out.*std::get<RejectCode S::*>(key.field) = RejectCode::name_error;
        else {
            reader.error(node, label + ": \"" + *v + "\" is not one of \"refused\", \"name-error\"");
            return false;
        }
        return true;
    }
    case T::reverse_path: {
        auto v = reader.string(node, label);
        if (!v)
            return false;
        for (ReversePath r : {ReversePath::strict, ReversePath::loose, ReversePath::off})
            if (*v == to_string(r)) {
                out.*std::get<ReversePath S::*>(key.field) = r;
                return true;
            }
        reader.error(node, label + ": \"" + *v + "\" is not one of \"strict\", \"loose\", \"off\"");
        return false;
    }
    }
    return false;
}

} // namespace

std::span<const SettingKey> setting_keys() noexcept
{
    return keys;
}

std::string_view type_name(SettingKey::Type type) noexcept
{
    switch (type) {
    case T::name: return "name";
    case T::path: return "path";
    case T::optional_path: return "path";
    case T::boolean: return "boolean";
    case T::integer: return "integer";
    case T::duration: return "duration";
    case T::seconds: return "seconds";
    case T::reject_code: return "string";
    case T::reverse_path: return "string";
    }
    return "?";
}

Settings default_settings(const std::filesystem::path& base_dir)
{
    Settings s;
    Diagnostics errors;
    TomlReader reader("<defaults>", errors);
    for (const SettingKey& key : keys) {
        // The defaults are TOML text so that docs print them as written;
        // they are parsed by the very code that reads the file.
        const toml::table t = toml::parse(std::string("v = ") + std::string(key.default_toml));
        apply(key, *t.get("v"), reader, base_dir, s);
    }
    return s;
}

void read_settings(const toml::table& root, TomlReader& reader, const std::filesystem::path& base_dir,
                   Settings& out)
{
    reader.check_keys(root, "fqdnd.toml (sections: [daemon], [fqdn])", {"daemon", "fqdn"});
    for (std::string_view section : sections) {
        const toml::node* node = root.get(section);
        if (!node)
            continue;
        const toml::table* table = reader.table(*node, "[" + std::string(section) + "]");
        if (!table)
            continue;
        std::vector<std::string_view> known;
        for (const SettingKey& key : keys)
            if (key.section == section)
                known.push_back(key.name);
        for (auto&& [name, value] : *table) {
            // A plain copy: lambdas cannot capture structured bindings before C++20's fix in clang 16.
            const std::string_view key = name.str();
            auto it = std::find_if(std::begin(keys), std::end(keys), [&](const SettingKey& k) {
                return k.section == section && k.name == key;
            });
            if (it == std::end(keys)) {
                std::string message = "unknown key \"" + std::string(name.str()) + "\" in [" + std::string(section) + "]";
                // A key of the other section in the wrong place is a common slip.
                auto elsewhere = std::find_if(std::begin(keys), std::end(keys),
                                              [&](const SettingKey& k) { return k.name == key; });
                if (elsewhere != std::end(keys))
                    message += "; it belongs in [" + std::string(elsewhere->section) + "]";
                else if (auto suggestion = closest(name.str(), known))
                    message += "; did you mean \"" + std::string(*suggestion) + "\"?";
                reader.error(name.source().begin.line ? name.source() : value.source(), std::move(message));
                continue;
            }
            apply(*it, value, reader, base_dir, out);
        }
    }
    if (out.queue + 2 * out.queues - 1 > 65535) {
        const toml::node* q = root.at_path("daemon.queues").node();
        reader.error(q ? q->source() : root.source(), "queues: queue " + std::to_string(out.queue) + " + "
            + std::to_string(out.queues) + " queues for queries and as many for answers go past 65535");
    }
}

} // namespace fqdnd::config
