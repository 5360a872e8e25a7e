#include "audit/suggest.hpp"

#include "cache/format.hpp"
#include "fqdn/matcher.hpp"
#include "fqdn/name.hpp"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <set>
#include <sstream>

namespace fqdnd::audit {

void Ports::add(std::string_view protocol, uint16_t port)
{
    // What a policy cannot say port by port opens the rule to every port.
    if ((protocol != "tcp" && protocol != "udp") || port == 0)
        every = true;
    if (every) {
        by_port.clear();
        return;
    }
    auto [it, inserted] = by_port.emplace(port, std::string(protocol));
    if (!inserted && it->second != protocol)
        it->second = "any";
}

namespace {

void merge(Item& into, const Item& from)
{
    into.count += from.count;
    into.last = std::max(into.last, from.last);
    into.names.insert(into.names.end(), from.names.begin(), from.names.end());
}

// The names of one rule as a tree of labels, the top-level label at the
// root: a node is a domain, and holds up to three entries: the domain
// itself, "*.domain" and "**.domain".
struct Node {
    std::map<std::string, std::unique_ptr<Node>> children;
    std::string domain; // without the trailing dot
    size_t labels = 0;
    std::optional<Item> name, star, dstar;
};

std::vector<std::string> labels_of(std::string_view name)
{
    if (name.ends_with('.'))
        name.remove_suffix(1);
    std::vector<std::string> out;
    size_t start = 0;
    while (start <= name.size()) {
        const size_t dot = name.find('.', start);
        out.emplace_back(name.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
        if (dot == std::string_view::npos)
            break;
        start = dot + 1;
    }
    return out;
}

void insert(Node& root, const std::string& name, const NameUse& use)
{
    const auto labels = labels_of(name);
    Node* n = &root;
    for (auto it = labels.rbegin(); it != labels.rend(); ++it) {
        auto& child = n->children[*it];
        if (!child) {
            child = std::make_unique<Node>();
            child->labels = n->labels + 1;
            child->domain = n->domain.empty() ? *it : *it + "." + n->domain;
        }
        n = child.get();
    }
    Item item{Item::Kind::name, n->domain, {n->domain}, use.count, use.last};
    if (n->name)
        merge(*n->name, item);
    else
        n->name = std::move(item);
}

// Two or more siblings used under a parent of two labels or more: "*.parent".
void collapse_siblings(Node& p)
{
    for (auto& [label, child] : p.children)
        collapse_siblings(*child);
    if (p.labels < 2)
        return;
    size_t siblings = 0;
    for (auto& [label, child] : p.children)
        siblings += child->name.has_value();
    if (siblings < 2)
        return;
    Item star{Item::Kind::pattern, "*." + p.domain, {}, 0, {}};
    for (auto& [label, child] : p.children)
        if (child->name) {
            merge(star, *child->name);
            child->name.reset();
        }
    p.star = std::move(star);
}

// Every entry strictly below `a`'s domain, with its depth under it
// (SIZE_MAX standing for the deeper depths a "**." covers too).
void gather_below(Node& a, Node& n, bool is_a, std::vector<std::optional<Item>*>& items, std::set<size_t>& depths)
{
    if (!is_a) {
        if (n.name) {
            items.push_back(&n.name);
            depths.insert(n.labels - a.labels);
        }
        if (n.dstar) {
            items.push_back(&n.dstar);
            depths.insert(n.labels + 1 - a.labels);
            depths.insert(SIZE_MAX);
        }
    }
    if (n.star) {
        items.push_back(&n.star);
        depths.insert(n.labels + 1 - a.labels);
    }
    for (auto& [label, child] : n.children)
        gather_below(a, *child, false, items, depths);
}

// Entries below a domain of two labels or more at several depths: "**.domain",
// the deepest such domain first.
void collapse_depths(Node& a)
{
    for (auto& [label, child] : a.children)
        collapse_depths(*child);
    if (a.labels < 2)
        return;
    std::vector<std::optional<Item>*> items;
    std::set<size_t> depths;
    gather_below(a, a, true, items, depths);
    if (items.size() < 2 || depths.size() < 2)
        return;
    Item dstar{Item::Kind::pattern, "**." + a.domain, {}, 0, {}};
    for (auto* item : items) {
        merge(dstar, **item);
        item->reset();
    }
    a.dstar = std::move(dstar);
}

void emit(Node& n, std::vector<Item>& out)
{
    for (auto* item : {&n.name, &n.star, &n.dstar})
        if (*item) {
            std::sort((*item)->names.begin(), (*item)->names.end());
            out.push_back(std::move(**item));
        }
    for (auto& [label, child] : n.children)
        emit(*child, out);
}

bool is_dns_flow(const Flow& f)
{
    return f.port == 53 && (f.protocol == "udp" || f.protocol == "tcp");
}

std::string when(Time t)
{
    return cache::rfc3339(t);
}

// Only printable ASCII in a comment: a newline would end it.
std::string comment_safe(std::string_view text)
{
    std::string out;
    for (char c : text)
        out += (c >= 0x20 && c < 0x7f) ? c : '?';
    return out;
}

std::string usage_comment(const Item& i)
{
    std::string covers;
    if (i.kind == Item::Kind::pattern) {
        const size_t shown = std::min<size_t>(i.names.size(), 4);
        for (size_t k = 0; k < shown; ++k)
            covers += (k ? ", " : "") + i.names[k];
        if (i.names.size() > shown)
            covers += " and " + std::to_string(i.names.size() - shown) + " more";
        covers = "covers " + covers + "; ";
    }
    return comment_safe(covers + std::to_string(i.count) + (i.count == 1 ? " time" : " times") + ", last seen "
                        + when(i.last));
}

std::string ports_toml(const Ports& p)
{
    std::string out = "ports = [";
    bool first = true;
    for (const auto& [port, protocol] : p.by_port) {
        out += std::string(first ? "" : ", ") + "{ port = " + std::to_string(port) + ", protocol = "
            + toml_quote(protocol) + " }";
        first = false;
    }
    return out + "]\n";
}

nlohmann::json ports_json(const Ports& p)
{
    nlohmann::json out = nlohmann::json::array();
    for (const auto& [port, protocol] : p.by_port)
        out.push_back({{"port", port}, {"protocol", protocol}});
    return out;
}

std::string selector_entry(const Item& i)
{
    return std::string("{ ") + (i.kind == Item::Kind::pattern ? "match-pattern" : "match-name") + " = "
        + toml_quote(i.text) + " }";
}

void list_toml(std::ostringstream& out, const char* key, const std::vector<Item>& items)
{
    out << key << " = [\n";
    for (const Item& i : items)
        out << "  " << (i.kind == Item::Kind::cidr ? toml_quote(i.text) : selector_entry(i)) << ", # "
            << usage_comment(i) << "\n";
    out << "]\n";
}

template <typename T, typename F>
std::string quoted_list(const std::vector<T>& v, F text)
{
    std::string out = "[";
    for (size_t i = 0; i < v.size(); ++i)
        out += (i ? ", " : "") + toml_quote(text(v[i]));
    return out + "]";
}

void selector_toml(std::ostringstream& out, const config::Policy* current)
{
    out << "\n[policy.selector]\n";
    if (!current) {
        out << "# the policy is not configured now: say whom it selects, e.g.\n"
               "# sources = [\"192.0.2.0/29\"]\n";
        return;
    }
    const config::Selector& s = current->selector;
    const auto name = [](const config::Account& a) { return a.name; };
    const auto same = [](const std::string& t) { return t; };
    if (!s.sources.empty())
        out << "sources = " << quoted_list(s.sources, [](const Cidr& c) { return c.to_string(); }) << "\n";
    if (!s.interfaces.empty())
        out << "interfaces = " << quoted_list(s.interfaces, same) << "\n";
    if (s.local)
        out << "local = true\n";
    if (!s.users.empty())
        out << "users = " << quoted_list(s.users, name) << "\n";
    if (!s.groups.empty())
        out << "groups = " << quoted_list(s.groups, name) << "\n";
    if (!s.units.empty())
        out << "units = " << quoted_list(s.units, same) << "\n";
}

nlohmann::json items_json(const std::vector<Item>& items)
{
    nlohmann::json out = nlohmann::json::array();
    for (const Item& i : items) {
        nlohmann::json j{{"count", i.count}, {"last-seen", when(i.last)}};
        if (i.kind == Item::Kind::cidr)
            j["cidr"] = i.text;
        else
            j[i.kind == Item::Kind::pattern ? "match-pattern" : "match-name"] = i.text;
        if (i.kind == Item::Kind::pattern)
            j["names"] = i.names;
        out.push_back(std::move(j));
    }
    return out;
}

bool port_allows(const std::vector<config::PortRule>& ports, std::string_view protocol, uint16_t port)
{
    if (ports.empty())
        return true;
    return std::any_of(ports.begin(), ports.end(), [&](const config::PortRule& r) {
        return r.port == port
            && (r.protocol == config::Protocol::any || config::to_string(r.protocol) == protocol);
    });
}

std::string describe_rule(const config::EgressRule& r)
{
    std::string what;
    const auto add = [&](const std::string& s) { what += (what.empty() ? "" : ", ") + s; };
    for (const auto& s : r.to_fqdns)
        add(s.to_string());
    for (const auto& c : r.to_cidrs)
        add("to-cidrs " + c.to_string());
    for (const auto& c : r.to_dns_servers)
        add("to-dns-servers " + c.to_string());
    for (const auto& s : r.dns)
        add("dns " + s.to_string());
    return r.where.to_string() + ": " + what;
}

// The to-cidrs rules: addresses no name explains and, when no name asked
// was seen (the queries were not inspected), the DNS servers on port 53.
std::vector<Rule> cidr_rules(const Suggestion& s)
{
    std::vector<Rule> out;
    if (!s.dns_servers.empty() && s.dns_names.empty()) {
        Rule r;
        r.ports.add("udp", 53);
        r.ports.add("tcp", 53);
        r.items = s.dns_servers;
        out.push_back(std::move(r));
    }
    out.insert(out.end(), s.cidrs.begin(), s.cidrs.end());
    return out;
}

} // namespace

std::string toml_quote(std::string_view text)
{
    std::string out = "\"";
    for (char c : text) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20 || u == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", u);
            out += buf;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

std::vector<Rule> collapse(const std::map<std::string, NameUse>& names)
{
    std::map<Ports, std::map<std::string, NameUse>> by_ports;
    for (const auto& [name, use] : names) {
        // Only what a policy's name syntax takes (recorded names always do).
        const auto n = normalize_name(name);
        if (n && *n != ".")
            by_ports[use.ports].emplace(*n, use);
    }
    std::vector<Rule> out;
    for (const auto& [ports, group] : by_ports) {
        Node root;
        for (const auto& [name, use] : group)
            insert(root, name, use);
        collapse_siblings(root);
        collapse_depths(root);
        Rule rule{{}, ports};
        emit(root, rule.items);
        std::sort(rule.items.begin(), rule.items.end(),
                  [](const Item& a, const Item& b) { return a.text < b.text; });
        out.push_back(std::move(rule));
    }
    return out;
}

Suggestion suggest(const PolicyRecord& record)
{
    Suggestion s;
    s.policy = record.policy;
    bool any = false;
    const auto span = [&](const Seen& seen) {
        s.first = any ? std::min(s.first, seen.first) : seen.first;
        s.last = any ? std::max(s.last, seen.last) : seen.last;
        any = true;
    };
    std::map<std::string, NameUse> flow_names, all_names;
    std::map<Address, Item> servers;
    std::map<Address, NameUse> bare;
    const auto use = [](NameUse& u, const Seen& seen) {
        u.count += seen.count;
        u.last = std::max(u.last, seen.last);
    };
    const auto server_use = [&](const Address& a, const Seen& seen) {
        Item& i = servers[a];
        i.kind = Item::Kind::cidr;
        i.text = a.to_string();
        i.count += seen.count;
        i.last = std::max(i.last, seen.last);
    };
    for (const Lookup& l : record.lookups) {
        span(l.seen);
        use(all_names[l.name], l.seen);
        for (const Address& a : l.servers)
            server_use(a, l.seen);
    }
    for (const Flow& f : record.flows) {
        span(f.seen);
        if (f.names.empty()) {
            if (is_dns_flow(f))
                server_use(f.destination, f.seen);
            else {
                NameUse& u = bare[f.destination];
                u.ports.add(f.protocol, f.port);
                use(u, f.seen);
            }
            continue;
        }
        for (const std::string& n : f.names) {
            NameUse& u = flow_names[n];
            u.ports.add(f.protocol, f.port);
            use(u, f.seen);
            use(all_names[n], f.seen);
        }
    }
    s.fqdns = collapse(flow_names);
    for (const auto& [name, u] : all_names)
        if (!flow_names.contains(name))
            s.looked_up_only.push_back(Item{Item::Kind::name, name.substr(0, name.size() - 1), {name}, u.count, u.last});
    if (!all_names.empty()) {
        std::map<std::string, NameUse> dns_names;
        for (const auto& [name, u] : all_names)
            dns_names[name] = NameUse{Ports{}, u.count, u.last};
        auto rules = collapse(dns_names);
        if (!rules.empty())
            s.dns_names = std::move(rules.front().items);
    }
    for (auto& [a, item] : servers)
        s.dns_servers.push_back(std::move(item));
    std::map<Ports, Rule> cidr_rules;
    for (const auto& [a, u] : bare) {
        Rule& r = cidr_rules[u.ports];
        r.ports = u.ports;
        r.items.push_back(Item{Item::Kind::cidr, a.to_string(), {}, u.count, u.last});
    }
    for (auto& [ports, r] : cidr_rules)
        s.cidrs.push_back(std::move(r));
    return s;
}

std::string to_toml(const Suggestion& s, const config::Policy* current)
{
    std::ostringstream out;
    out << "# Written by `fqdnctl policy suggest` from what policy " << comment_safe(s.policy) << " recorded";
    if (s.last.time_since_epoch().count() != 0)
        out << ",\n# " << when(s.first) << " to " << when(s.last);
    out << ". Review it before use: it allows what was seen, no more.\n";
    out << "[[policy]]\nname = " << toml_quote(s.policy) << "\n";
    const bool audit = current ? current->audit : true;
    out << "audit = " << (audit ? "true" : "false") << (audit ? " # set to false to enforce" : "") << "\n";
    selector_toml(out, current);
    for (const Rule& r : s.fqdns) {
        out << "\n[[policy.egress]]\n";
        list_toml(out, "to-fqdns", r.items);
        if (r.ports.every)
            out << "# a flow without ports (icmp, sctp, ...) was seen: every port and protocol\n";
        else
            out << ports_toml(r.ports);
    }
    const bool dns_rule = !s.dns_servers.empty() && !s.dns_names.empty();
    if (dns_rule) {
        out << "\n[[policy.egress]]\n";
        list_toml(out, "to-dns-servers", s.dns_servers);
        out << "ports = [{ port = 53, protocol = \"any\" }]\n";
        list_toml(out, "dns", s.dns_names);
    }
    if (!s.looked_up_only.empty()) {
        out << "\n# Looked up, but no flow to them was recorded (their flows were allowed, or none was made):\n";
        for (const Item& i : s.looked_up_only)
            out << "#   " << comment_safe(i.text) << ": " << usage_comment(i) << "\n";
    }
    if (!s.dns_servers.empty() && !dns_rule)
        out << "\n# DNS servers used, but no name asked was seen: allowed by address here; a to-dns-servers\n"
               "# rule with the names clients may ask about is better.\n";
    for (const Rule& r : cidr_rules(s)) {
        out << "\n[[policy.egress]]\n# no name explains these addresses: each is allowed by address alone\n";
        list_toml(out, "to-cidrs", r.items);
        if (r.ports.every)
            out << "# a flow without ports (icmp, sctp, ...) was seen: every port and protocol\n";
        else
            out << ports_toml(r.ports);
    }
    return out.str();
}

nlohmann::json to_json(const Suggestion& s, const config::Policy* current)
{
    nlohmann::json egress = nlohmann::json::array();
    for (const Rule& r : s.fqdns) {
        nlohmann::json rule{{"to-fqdns", items_json(r.items)}};
        if (!r.ports.every)
            rule["ports"] = ports_json(r.ports);
        egress.push_back(std::move(rule));
    }
    // As the TOML has it: without a name seen, the servers are to-cidrs.
    if (!s.dns_servers.empty() && !s.dns_names.empty())
        egress.push_back({{"to-dns-servers", items_json(s.dns_servers)},
                          {"ports", nlohmann::json::array({{{"port", 53}, {"protocol", "any"}}})},
                          {"dns", items_json(s.dns_names)}});
    for (const Rule& r : cidr_rules(s)) {
        nlohmann::json rule{{"to-cidrs", items_json(r.items)}};
        if (!r.ports.every)
            rule["ports"] = ports_json(r.ports);
        egress.push_back(std::move(rule));
    }
    nlohmann::json j{{"name", s.policy},
                     {"audit", current ? current->audit : true},
                     {"configured", current != nullptr},
                     {"egress", egress},
                     {"looked-up-only", items_json(s.looked_up_only)}};
    if (s.last.time_since_epoch().count() != 0)
        j["recorded"] = {{"first", when(s.first)}, {"last", when(s.last)}};
    return j;
}

Difference diff(const PolicyRecord& record, const config::Policy& current)
{
    Difference d;
    struct Matched {
        const config::EgressRule* rule;
        FqdnMatcher to_fqdns, dns;
        bool used = false;
    };
    std::vector<Matched> rules;
    for (const auto& r : current.egress)
        rules.push_back(Matched{&r, FqdnMatcher(r.to_fqdns), FqdnMatcher(r.dns), false});
    const auto seen = [](const Seen& s) {
        return std::to_string(s.count) + (s.count == 1 ? " time" : " times") + ", last seen " + when(s.last);
    };
    const auto lists = [](const std::vector<Cidr>& cidrs, const Address& a) {
        return std::any_of(cidrs.begin(), cidrs.end(), [&](const Cidr& c) { return c.contains(a); });
    };

    for (const Lookup& l : record.lookups) {
        for (Matched& m : rules)
            if (!m.to_fqdns.match(l.name).empty())
                m.used = true;
        for (const Address& server : l.servers) {
            bool allowed = false;
            for (Matched& m : rules)
                if (lists(m.rule->to_dns_servers, server) && !m.dns.match(l.name).empty())
                    allowed = m.used = true;
            if (!allowed)
                d.missing.push_back("lookup of " + l.name + " at " + server.to_string() + ": no dns rule allows it ("
                                    + seen(l.seen) + ")");
        }
    }
    for (const Flow& f : record.flows) {
        const std::string flow = f.protocol + "/" + std::to_string(f.port);
        bool allowed = false;
        for (Matched& m : rules) {
            const bool port = port_allows(m.rule->ports, f.protocol, f.port);
            bool hit = lists(m.rule->to_cidrs, f.destination) || (is_dns_flow(f) && lists(m.rule->to_dns_servers, f.destination));
            for (const std::string& n : f.names)
                if (!m.to_fqdns.match(n).empty()) {
                    m.used = true;
                    hit = true;
                }
            if (hit)
                m.used = true;
            if (hit && port)
                allowed = true;
        }
        if (allowed)
            continue;
        std::string names;
        for (const std::string& n : f.names)
            names += (names.empty() ? "" : ", ") + n;
        if (!names.empty())
            d.missing.push_back(names + " " + flow + " (" + f.destination.to_string() + "): no rule allows it ("
                                + seen(f.seen) + ")");
        else
            d.missing.push_back(f.destination.to_string() + " " + flow + ": no name explains it and no rule allows it ("
                                + seen(f.seen) + ")");
    }
    if (!current.audit) {
        // Its allowed lookups and flows were not recorded.
        d.unused.push_back("(an enforcing policy records only what it drops: which of its rules saw use cannot be "
                           "told; audit it to know)");
        return d;
    }
    for (const Matched& m : rules)
        if (!m.used)
            d.unused.push_back(describe_rule(*m.rule)
                               + (m.rule->to_cidrs.empty() ? ": no recorded use"
                                                           : ": no recorded use (flows it allowed are not logged)"));
    return d;
}

nlohmann::json to_json(const Difference& d, const std::string& policy)
{
    return nlohmann::json{{"policy", policy}, {"missing", d.missing}, {"unused", d.unused}};
}

namespace {

const config::Policy* configured(const std::vector<config::Policy>& policies, const std::string& name)
{
    const auto it = std::find_if(policies.begin(), policies.end(), [&](const config::Policy& p) { return p.name == name; });
    return it == policies.end() ? nullptr : &*it;
}

} // namespace

std::string render_suggestions(const std::vector<PolicyRecord>& records, const std::vector<config::Policy>& policies,
                               bool json)
{
    if (json) {
        nlohmann::json out = nlohmann::json::array();
        for (const PolicyRecord& r : records)
            out.push_back(to_json(suggest(r), configured(policies, r.policy)));
        return out.dump(2) + "\n";
    }
    if (records.empty())
        return "# Nothing recorded: no policy in audit mode saw traffic it would drop, and no policy dropped any.\n";
    std::string out, unconfigured;
    for (const PolicyRecord& r : records) {
        const config::Policy* p = configured(policies, r.policy);
        // Asked for alone, it is shown for its rules; among others it would
        // make the whole document fail check-config, for want of a selector.
        if (!p && records.size() > 1) {
            unconfigured += "# Policy " + comment_safe(r.policy) + " is not configured now but has a recording: "
                "fqdnctl policy suggest " + comment_safe(r.policy) + " shows it, fqdnctl policy forget "
                + comment_safe(r.policy) + " drops it.\n";
            continue;
        }
        out += (out.empty() ? "" : "\n") + to_toml(suggest(r), p);
    }
    return out + (unconfigured.empty() || out.empty() ? "" : "\n") + unconfigured;
}

std::string render_diffs(const std::vector<PolicyRecord>& records, const std::vector<config::Policy>& policies,
                         bool json)
{
    nlohmann::json out = nlohmann::json::array();
    std::string text;
    for (const config::Policy& p : policies) {
        const auto it = std::find_if(records.begin(), records.end(), [&](const PolicyRecord& r) { return r.policy == p.name; });
        const Difference d = diff(it == records.end() ? PolicyRecord{p.name, {}, {}} : *it, p);
        if (json) {
            out.push_back(to_json(d, p.name));
            continue;
        }
        text += "policy " + p.name + (p.audit ? " (audit)" : "") + ":\n";
        if (d.missing.empty())
            text += "  needs nothing it lacks\n";
        for (const std::string& m : d.missing)
            text += "  + " + m + "\n";
        for (const std::string& u : d.unused)
            text += "  - " + u + "\n";
    }
    return json ? out.dump(2) + "\n" : text;
}

} // namespace fqdnd::audit
