#include "config/policy-reader.hpp"

#include <algorithm>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

namespace fqdnd::config {

namespace {

template <typename T>
void sort_unique(std::vector<T>& v)
{
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
}

bool valid_policy_name(std::string_view s) noexcept
{
    if (s.empty() || s.size() > 63)
        return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'
            || c == '.';
    });
}

// nftables matches iifname with a trailing '*' as a prefix.
std::optional<std::string> interface_error(std::string_view s)
{
    if (s.empty())
        return "is empty";
    if (s.size() > 15)
        return "is longer than 15 characters";
    for (size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (c == '/' || c == ':' || c <= ' ' || c == '"' || c == '\\' || c == 127)
            return "has a character interface names cannot have";
        if (c == '*' && i + 1 != s.size())
            return "has a '*' before its end (only a trailing '*', as in \"veth*\", is a wildcard)";
    }
    if (s == "*")
        return "matches every interface; select with local = true or sources instead";
    return std::nullopt;
}

std::optional<std::string> unit_error(std::string_view s)
{
    if (s.empty() || s.size() > 255)
        return "is not a unit name";
    for (char c : s) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':'
            || c == '-' || c == '_' || c == '.' || c == '\\' || c == '@';
        if (!ok)
            return "has a character unit names cannot have";
    }
    for (std::string_view suffix : {".service", ".scope", ".slice"})
        if (s.size() > suffix.size() && s.ends_with(suffix))
            return std::nullopt;
    return "is not a .service, .scope or .slice unit (only those hold processes)";
}

std::optional<uint32_t> lookup_account(const std::string& name, bool group)
{
    std::vector<char> buf(16384);
    if (group) {
        struct group g, *result = nullptr;
        if (getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &result) == 0 && result)
            return result->gr_gid;
    } else {
        struct passwd p, *result = nullptr;
        if (getpwnam_r(name.c_str(), &p, buf.data(), buf.size(), &result) == 0 && result)
            return result->pw_uid;
    }
    return std::nullopt;
}

class PolicyReader {
public:
    explicit PolicyReader(TomlReader& r) : r_(r) {}

    std::optional<Policy> policy(const toml::table& t);

private:
    bool selector(const toml::table& t, Selector& out);
    bool egress(const toml::table& t, EgressRule& out);
    bool fqdn_list(const toml::node& node, std::string_view key, std::vector<FqdnSelector>& out);
    bool cidr_list(const toml::node& node, std::string_view key, std::vector<Cidr>& out);
    bool string_list(const toml::node& node, std::string_view key,
                     std::optional<std::string> (*check)(std::string_view), std::vector<std::string>& out);
    bool account_list(const toml::node& node, std::string_view key, bool group, std::vector<Account>& out);
    bool port_list(const toml::node& node, std::string_view key, std::vector<PortRule>& out);
    const toml::array* nonempty_array(const toml::node& node, std::string_view key);

    TomlReader& r_;
};

const toml::array* PolicyReader::nonempty_array(const toml::node& node, std::string_view key)
{
    const toml::array* a = r_.array(node, key);
    if (a && a->empty()) {
        r_.error(node, std::string(key) + ": is empty; leave the key out instead");
        return nullptr;
    }
    return a;
}

bool PolicyReader::fqdn_list(const toml::node& node, std::string_view key, std::vector<FqdnSelector>& out)
{
    const toml::array* a = nonempty_array(node, key);
    if (!a)
        return false;
    bool ok = true;
    for (const toml::node& item : *a) {
        const toml::table* t = item.as_table();
        if (!t) {
            r_.error(item, std::string(key) + ": expected { match-name = \"...\" } or { match-pattern = \"...\" }, got "
                + std::string(type_name(item.type())));
            ok = false;
            continue;
        }
        const auto typos = r_.check_keys(*t, std::string(key) + " entry", {"match-name", "match-pattern"});
        const toml::node* name = t->get("match-name");
        const toml::node* pattern = t->get("match-pattern");
        if (name && pattern) {
            r_.error(*pattern, std::string(key) + ": an entry has match-name or match-pattern, not both");
            ok = false;
            continue;
        }
        if (!name && !pattern) {
            if (typos.empty())
                r_.error(item, std::string(key) + ": an entry needs match-name or match-pattern");
            ok = false;
            continue;
        }
        const toml::node& value = name ? *name : *pattern;
        const auto text = r_.string(value, name ? "match-name" : "match-pattern");
        if (!text) {
            ok = false;
            continue;
        }
        std::string error;
        auto selector = name ? FqdnSelector::parse_name(*text, &error) : FqdnSelector::parse_pattern(*text, &error);
        if (!selector) {
            r_.error(value, error);
            ok = false;
            continue;
        }
        out.push_back(std::move(*selector));
    }
    return ok;
}

bool PolicyReader::cidr_list(const toml::node& node, std::string_view key, std::vector<Cidr>& out)
{
    const toml::array* a = nonempty_array(node, key);
    if (!a)
        return false;
    bool ok = true;
    for (const toml::node& item : *a) {
        const auto text = r_.string(item, key);
        if (!text) {
            ok = false;
            continue;
        }
        std::string error;
        if (auto c = Cidr::parse(*text, &error))
            out.push_back(*c);
        else {
            r_.error(item, std::string(key) + ": " + error);
            ok = false;
        }
    }
    return ok;
}

bool PolicyReader::string_list(const toml::node& node, std::string_view key,
                               std::optional<std::string> (*check)(std::string_view), std::vector<std::string>& out)
{
    const toml::array* a = nonempty_array(node, key);
    if (!a)
        return false;
    bool ok = true;
    for (const toml::node& item : *a) {
        auto text = r_.string(item, key);
        if (!text) {
            ok = false;
            continue;
        }
        if (auto problem = check(*text)) {
            r_.error(item, std::string(key) + ": \"" + *text + "\" " + *problem);
            ok = false;
            continue;
        }
        out.push_back(std::move(*text));
    }
    return ok;
}

bool PolicyReader::account_list(const toml::node& node, std::string_view key, bool group, std::vector<Account>& out)
{
    const toml::array* a = nonempty_array(node, key);
    if (!a)
        return false;
    bool ok = true;
    for (const toml::node& item : *a) {
        if (item.is_integer()) {
            const int64_t id = item.as_integer()->get();
            if (id < 0 || id > 0xfffffffe) {
                r_.error(item, std::string(key) + ": " + std::to_string(id) + " is not a valid id");
                ok = false;
                continue;
            }
            out.push_back(Account{std::to_string(id), static_cast<uint32_t>(id)});
            continue;
        }
        auto name = r_.string(item, key);
        if (!name) {
            ok = false;
            continue;
        }
        if (auto id = lookup_account(*name, group))
            out.push_back(Account{*name, *id});
        else {
            r_.error(item, std::string(key) + ": no such " + (group ? "group" : "user") + " \"" + *name + "\"");
            ok = false;
        }
    }
    return ok;
}

bool PolicyReader::port_list(const toml::node& node, std::string_view key, std::vector<PortRule>& out)
{
    const toml::array* a = nonempty_array(node, key);
    if (!a)
        return false;
    bool ok = true;
    for (const toml::node& item : *a) {
        const toml::table* t = item.as_table();
        if (!t) {
            r_.error(item, std::string(key) + ": expected { port = 443, protocol = \"tcp\" }, got "
                + std::string(type_name(item.type())));
            ok = false;
            continue;
        }
        r_.check_keys(*t, "ports entry", {"port", "protocol"});
        PortRule rule;
        const toml::node* port = t->get("port");
        if (!port) {
            r_.error(item, "ports: an entry needs a port");
            ok = false;
            continue;
        }
        const auto number = r_.integer(*port, "port");
        if (!number || *number < 1 || *number > 65535) {
            if (number)
                r_.error(*port, "port: " + std::to_string(*number) + " is out of range (1 to 65535)");
            ok = false;
            continue;
        }
        rule.port = static_cast<uint16_t>(*number);
        if (const toml::node* proto = t->get("protocol")) {
            auto text = r_.string(*proto, "protocol");
            if (!text) {
                ok = false;
                continue;
            }
            std::transform(text->begin(), text->end(), text->begin(), [](char c) { return c | 0x20; });
            if (*text == "tcp")
                rule.protocol = Protocol::tcp;
            else if (*text == "udp")
                rule.protocol = Protocol::udp;
            else if (*text == "any")
                rule.protocol = Protocol::any;
            else {
                r_.error(*proto, "protocol: \"" + proto->as_string()->get() + "\" is not one of \"tcp\", \"udp\", \"any\"");
                ok = false;
                continue;
            }
        }
        out.push_back(rule);
    }
    return ok;
}

bool PolicyReader::selector(const toml::table& t, Selector& out)
{
    r_.check_keys(t, "[policy.selector]", {"sources", "interfaces", "local", "users", "groups", "units"});
    bool ok = true;
    for (auto&& [key, value] : t) {
        const std::string_view k = key.str();
        if (k == "sources")
            ok &= cidr_list(value, k, out.sources);
        else if (k == "interfaces")
            ok &= string_list(value, k, interface_error, out.interfaces);
        else if (k == "local") {
            auto v = r_.boolean(value, k);
            ok &= v.has_value();
            out.local = v.value_or(false);
        } else if (k == "users")
            ok &= account_list(value, k, false, out.users);
        else if (k == "groups")
            ok &= account_list(value, k, true, out.groups);
        else if (k == "units")
            ok &= string_list(value, k, unit_error, out.units);
    }
    return ok;
}

bool PolicyReader::egress(const toml::table& t, EgressRule& out)
{
    r_.check_keys(t, "[[policy.egress]]", {"to-fqdns", "to-cidrs", "to-dns-servers", "dns", "ports"});
    bool ok = true;
    for (auto&& [key, value] : t) {
        const std::string_view k = key.str();
        if (k == "to-fqdns")
            ok &= fqdn_list(value, k, out.to_fqdns);
        else if (k == "to-cidrs")
            ok &= cidr_list(value, k, out.to_cidrs);
        else if (k == "to-dns-servers")
            ok &= cidr_list(value, k, out.to_dns_servers);
        else if (k == "dns")
            ok &= fqdn_list(value, k, out.dns);
        else if (k == "ports")
            ok &= port_list(value, k, out.ports);
    }
    if (!ok)
        return false;

    const toml::node* dns = t.get("dns");
    const toml::node* servers = t.get("to-dns-servers");
    if (dns && !servers) {
        r_.error(*dns, "dns: DNS rules apply to to-dns-servers, and this rule has none");
        return false;
    }
    if (servers && (t.get("to-fqdns") || t.get("to-cidrs"))) {
        r_.error(*servers, "to-dns-servers: a DNS server rule cannot also have to-fqdns or to-cidrs; "
                           "write them as separate [[policy.egress]] rules");
        return false;
    }
    if (servers && !dns) {
        r_.error(*servers, "to-dns-servers: no dns rules say which names clients may ask about "
                           "(dns = [{ match-pattern = \"*\" }] allows every name)");
        return false;
    }
    if (out.to_fqdns.empty() && out.to_cidrs.empty() && out.to_dns_servers.empty()) {
        r_.error(t, "this egress rule allows nothing: give to-fqdns, to-cidrs or to-dns-servers");
        return false;
    }
    if (servers && out.ports.empty())
        out.ports.push_back(PortRule{53, Protocol::any});
    return true;
}

std::optional<Policy> PolicyReader::policy(const toml::table& t)
{
    const auto typos = r_.check_keys(t, "[[policy]]", {"name", "audit", "selector", "egress"});
    const auto typo_of = [&](std::string_view key) {
        return std::find(typos.begin(), typos.end(), key) != typos.end();
    };
    Policy p;
    p.where = r_.where(t);
    bool ok = true;

    const toml::node* name = t.get("name");
    if (!name) {
        if (!typo_of("name"))
            r_.error(t, "policy has no name");
        ok = false;
    } else if (auto v = r_.string(*name, "name")) {
        if (valid_policy_name(*v))
            p.name = *v;
        else {
            r_.error(*name, "name: \"" + *v + "\" is not a policy name (letters, digits, '_', '-', '.'; 63 at most)");
            ok = false;
        }
    } else
        ok = false;

    if (const toml::node* audit = t.get("audit")) {
        auto v = r_.boolean(*audit, "audit");
        ok &= v.has_value();
        p.audit = v.value_or(false);
    }

    const std::string who = p.name.empty() ? "policy" : "policy \"" + p.name + "\"";
    const toml::node* sel = t.get("selector");
    if (!sel) {
        if (!typo_of("selector"))
            r_.error(t, who + " has no [policy.selector]: it would select nothing");
        ok = false;
    } else if (const toml::table* st = r_.table(*sel, "selector")) {
        if (selector(*st, p.selector) && p.selector.empty()) {
            r_.error(*sel, who + ": the selector selects nothing; give sources, interfaces, local = true, users, "
                               "groups or units");
            ok = false;
        }
    } else
        ok = false;

    // No egress rules is legal: the selected endpoints may reach nothing.
    if (const toml::node* egress_node = t.get("egress")) {
        if (const toml::array* rules = r_.array(*egress_node, "egress")) {
            for (const toml::node& item : *rules) {
                const toml::table* rt = r_.table(item, "[[policy.egress]]");
                if (!rt) {
                    ok = false;
                    continue;
                }
                EgressRule rule;
                rule.where = r_.where(*rt);
                if (egress(*rt, rule))
                    p.egress.push_back(std::move(rule));
                else
                    ok = false;
            }
        } else
            ok = false;
    }
    if (!ok)
        return std::nullopt;
    canonicalize(p);
    return p;
}

void canonicalize_ports(std::vector<PortRule>& ports)
{
    sort_unique(ports);
    std::vector<PortRule> merged;
    for (const PortRule& p : ports) {
        const auto has = [&](Protocol proto) {
            return std::binary_search(ports.begin(), ports.end(), PortRule{p.port, proto});
        };
        if (p.protocol != Protocol::any && (has(Protocol::any)))
            continue;
        if (p.protocol == Protocol::tcp && has(Protocol::udp)) {
            merged.push_back(PortRule{p.port, Protocol::any});
            continue;
        }
        if (p.protocol == Protocol::udp && has(Protocol::tcp))
            continue;
        merged.push_back(p);
    }
    sort_unique(merged);
    ports = std::move(merged);
}

} // namespace

void canonicalize(Policy& p)
{
    sort_unique(p.selector.sources);
    sort_unique(p.selector.interfaces);
    sort_unique(p.selector.users);
    sort_unique(p.selector.groups);
    sort_unique(p.selector.units);
    for (EgressRule& r : p.egress) {
        sort_unique(r.to_fqdns);
        sort_unique(r.to_cidrs);
        sort_unique(r.to_dns_servers);
        sort_unique(r.dns);
        canonicalize_ports(r.ports);
    }
    std::sort(p.egress.begin(), p.egress.end());
    p.egress.erase(std::unique(p.egress.begin(), p.egress.end()), p.egress.end());
}

void read_policies(const toml::table& root, TomlReader& reader, std::vector<Policy>& out)
{
    reader.check_keys(root, "a policy file (it holds [[policy]] tables)", {"policy"});
    const toml::node* node = root.get("policy");
    if (!node)
        return;
    const toml::array* policies = node->as_array();
    if (!policies || !policies->is_array_of_tables()) {
        reader.error(*node, "policy: expected [[policy]] tables, got " + std::string(type_name(node->type())));
        return;
    }
    PolicyReader pr(reader);
    for (const toml::node& item : *policies)
        if (auto p = pr.policy(*item.as_table()))
            out.push_back(std::move(*p));
}

} // namespace fqdnd::config
