#include "audit/record.hpp"

#include "fqdn/name.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <tuple>

namespace fqdnd::audit {

namespace {

bool valid_protocol(std::string_view p) noexcept
{
    // nflog::protocol_name: a word, or the protocol's number.
    if (p.empty() || p.size() > 8)
        return false;
    return std::all_of(p.begin(), p.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); });
}

// A name as suggestions may show it: normalized, and not the root.
std::optional<std::string> recordable_name(std::string_view name)
{
    auto n = normalize_name(name);
    if (!n || *n == ".")
        return std::nullopt;
    return n;
}

std::string flow_key(const Address& a, std::string_view protocol, uint16_t port)
{
    return "f " + a.to_string() + " " + std::string(protocol) + " " + std::to_string(port);
}

void see(Seen& s, Time now)
{
    if (s.count == 0 || now < s.first)
        s.first = now;
    s.last = std::max(s.last, now);
    ++s.count;
}

int64_t ms(Time t)
{
    return t.time_since_epoch().count();
}

Time from_ms(int64_t v)
{
    return Time(std::chrono::milliseconds(v));
}

bool endpoint_may_match(const config::Policy& p, const std::string& endpoint, const std::optional<Address>& address,
                        const Address& server)
{
    const config::Selector& s = p.selector;
    const auto lists_server = [&] {
        return std::any_of(p.egress.begin(), p.egress.end(), [&](const config::EgressRule& r) {
            return std::any_of(r.to_dns_servers.begin(), r.to_dns_servers.end(),
                               [&](const Cidr& c) { return c.contains(server); });
        });
    };
    if (const auto& a = address) {
        if (std::any_of(s.sources.begin(), s.sources.end(), [&](const Cidr& c) { return c.contains(*a); }))
            return true;
        return !s.interfaces.empty() && lists_server();
    }
    if (s.local)
        return true;
    if (endpoint.starts_with("uid:")) {
        const std::string id = endpoint.substr(4);
        if (std::any_of(s.users.begin(), s.users.end(), [&](const config::Account& u) { return std::to_string(u.id) == id; }))
            return true;
    }
    return (!s.groups.empty() || !s.units.empty()) && lists_server();
}

} // namespace

Recorder::Entry* Recorder::touch(const std::string& policy, const std::string& key, bool is_flow, Time now)
{
    auto pit = policies_.find(policy);
    if (pit == policies_.end()) {
        if (policies_.size() >= limits_.policies || limits_.per_policy == 0 || limits_.total == 0)
            return nullptr;
        pit = policies_.emplace(policy, Policy{}).first;
    }
    Policy& p = pit->second;
    dirty_ = true;
    if (auto it = p.by_key.find(key); it != p.by_key.end()) {
        p.order.splice(p.order.end(), p.order, it->second);
        see(it->second->seen(), now);
        return &*it->second;
    }
    if (p.order.size() >= limits_.per_policy)
        evict_one(p);
    if (total_ >= limits_.total)
        evict_oldest();
    p.order.push_back(Entry{key, is_flow, {}, {}});
    p.by_key.emplace(key, std::prev(p.order.end()));
    ++total_;
    Entry& e = p.order.back();
    see(e.seen(), now);
    return &e;
}

void Recorder::evict_one(Policy& p)
{
    if (p.order.empty())
        return;
    p.by_key.erase(p.order.front().key);
    p.order.pop_front();
    --total_;
    ++evictions_;
}

void Recorder::evict_oldest()
{
    // Over every policy: the front of each is its oldest.
    Policy* oldest = nullptr;
    for (auto& [name, p] : policies_)
        if (!p.order.empty() && (!oldest || p.order.front().seen().last < oldest->order.front().seen().last))
            oldest = &p;
    if (oldest)
        evict_one(*oldest);
}

void Recorder::lookup(const std::string& policy, std::string_view name, const Address& server, Time now)
{
    const auto n = recordable_name(name);
    if (!n)
        return;
    Entry* e = touch(policy, "n " + *n, false, now);
    if (!e)
        return;
    e->lookup.name = *n;
    auto& servers = e->lookup.servers;
    const auto at = std::lower_bound(servers.begin(), servers.end(), server);
    if ((at == servers.end() || !(*at == server)) && servers.size() < limits_.servers_per_name)
        servers.insert(at, server);
}

void Recorder::flow(const std::string& policy, const Address& destination, std::string_view protocol, uint16_t port,
                    const std::vector<std::string>& names, Time now)
{
    if (!valid_protocol(protocol))
        return;
    Entry* e = touch(policy, flow_key(destination, protocol, port), true, now);
    if (!e)
        return;
    Flow& f = e->flow;
    f.destination = destination;
    f.protocol = std::string(protocol);
    f.port = port;
    for (const std::string& raw : names) {
        if (f.names.size() >= limits_.names_per_flow)
            break;
        const auto n = recordable_name(raw);
        if (!n)
            continue;
        const auto at = std::lower_bound(f.names.begin(), f.names.end(), *n);
        if (at == f.names.end() || *at != *n)
            f.names.insert(at, *n);
    }
}

size_t Recorder::forget(const std::optional<std::string>& policy)
{
    size_t removed = 0;
    for (auto it = policies_.begin(); it != policies_.end();) {
        if (policy && it->first != *policy) {
            ++it;
            continue;
        }
        removed += it->second.order.size();
        it = policies_.erase(it);
    }
    total_ -= removed;
    dirty_ = true;
    return removed;
}

std::vector<PolicyRecord> Recorder::records(const std::optional<std::string>& policy) const
{
    std::vector<PolicyRecord> out;
    for (const auto& [name, p] : policies_) {
        if (policy && name != *policy)
            continue;
        PolicyRecord r{name, {}, {}};
        for (const Entry& e : p.order) {
            if (e.is_flow)
                r.flows.push_back(e.flow);
            else
                r.lookups.push_back(e.lookup);
        }
        std::sort(r.lookups.begin(), r.lookups.end(),
                  [](const Lookup& a, const Lookup& b) { return a.name < b.name; });
        std::sort(r.flows.begin(), r.flows.end(), [](const Flow& a, const Flow& b) {
            return std::tie(a.destination, a.protocol, a.port) < std::tie(b.destination, b.protocol, b.port);
        });
        out.push_back(std::move(r));
    }
    return out;
}

std::string Recorder::to_json() const
{
    nlohmann::json policies = nlohmann::json::array();
    for (const auto& [name, p] : policies_) {
        nlohmann::json lookups = nlohmann::json::array(), flows = nlohmann::json::array();
        // Least recently seen first, as they are kept: loading keeps the order.
        for (const Entry& e : p.order) {
            const Seen& s = e.seen();
            if (e.is_flow) {
                flows.push_back({{"destination", e.flow.destination.to_string()}, {"protocol", e.flow.protocol},
                                 {"port", e.flow.port}, {"names", e.flow.names}, {"count", s.count},
                                 {"first", ms(s.first)}, {"last", ms(s.last)}});
            } else {
                nlohmann::json servers = nlohmann::json::array();
                for (const Address& a : e.lookup.servers)
                    servers.push_back(a.to_string());
                lookups.push_back({{"name", e.lookup.name}, {"servers", servers}, {"count", s.count},
                                   {"first", ms(s.first)}, {"last", ms(s.last)}});
            }
        }
        policies.push_back({{"policy", name}, {"lookups", lookups}, {"flows", flows}});
    }
    return nlohmann::json{{"version", 1}, {"policies", policies}}.dump() + "\n";
}

bool Recorder::from_json(std::string_view text, std::string* problem)
{
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("policies") || !j["policies"].is_array()) {
        if (problem)
            *problem = "not an audit recording (JSON object with \"policies\")";
        return false;
    }
    const auto seen_of = [](const nlohmann::json& e) -> std::optional<Seen> {
        const auto c = e.find("count"), f = e.find("first"), l = e.find("last");
        if (c == e.end() || f == e.end() || l == e.end() || !c->is_number_unsigned() || !f->is_number_integer()
            || !l->is_number_integer() || c->get<uint64_t>() == 0)
            return std::nullopt;
        return Seen{c->get<uint64_t>(), from_ms(f->get<int64_t>()), from_ms(l->get<int64_t>())};
    };
    const auto string_list = [](const nlohmann::json& e, const char* key) {
        std::vector<std::string> out;
        if (const auto it = e.find(key); it != e.end() && it->is_array())
            for (const auto& s : *it)
                if (s.is_string())
                    out.push_back(s.get<std::string>());
        return out;
    };
    for (const auto& pj : j["policies"]) {
        if (!pj.is_object() || !pj.contains("policy") || !pj["policy"].is_string())
            continue;
        const std::string policy = pj["policy"].get<std::string>();
        if (policy.empty() || policy.size() > 256)
            continue;
        // Entries go in as recorded, then take their counts and times back.
        const auto restore_seen = [&](Entry* e, const Seen& s) {
            if (e)
                e->seen() = s;
        };
        if (const auto it = pj.find("lookups"); it != pj.end() && it->is_array())
            for (const auto& e : *it) {
                const auto s = e.is_object() ? seen_of(e) : std::nullopt;
                if (!s || !e.contains("name") || !e["name"].is_string())
                    continue;
                const auto n = recordable_name(e["name"].get<std::string>());
                if (!n)
                    continue;
                for (const std::string& server : string_list(e, "servers"))
                    if (const auto a = Address::parse(server))
                        lookup(policy, *n, *a, s->last);
                restore_seen(touch(policy, "n " + *n, false, s->last), *s);
            }
        if (const auto it = pj.find("flows"); it != pj.end() && it->is_array())
            for (const auto& e : *it) {
                const auto s = e.is_object() ? seen_of(e) : std::nullopt;
                if (!s || !e.contains("destination") || !e["destination"].is_string() || !e.contains("protocol")
                    || !e["protocol"].is_string() || !e.contains("port") || !e["port"].is_number_unsigned()
                    || e["port"].get<uint64_t>() > 65535)
                    continue;
                const auto a = Address::parse(e["destination"].get<std::string>());
                const std::string protocol = e["protocol"].get<std::string>();
                const auto port = static_cast<uint16_t>(e["port"].get<uint64_t>());
                if (!a || !valid_protocol(protocol))
                    continue;
                flow(policy, *a, protocol, port, string_list(e, "names"), s->last);
                restore_seen(touch(policy, flow_key(*a, protocol, port), true, s->last), *s);
            }
    }
    // A lookup without a server is no lookup.
    for (auto& [name, p] : policies_)
        for (auto it = p.order.begin(); it != p.order.end();) {
            if (!it->is_flow && it->lookup.servers.empty()) {
                p.by_key.erase(it->key);
                it = p.order.erase(it);
                --total_;
            } else {
                ++it;
            }
        }
    dirty_ = false;
    return true;
}

std::vector<std::string> policies_for_query(const config::Config& config, const std::string& endpoint,
                                            const Address& server)
{
    std::vector<std::string> out;
    const std::optional<Address> address = Address::parse(endpoint);
    for (const config::Policy& p : config.policies)
        if (p.audit && endpoint_may_match(p, endpoint, address, server))
            out.push_back(p.name);
    return out;
}

} // namespace fqdnd::audit
