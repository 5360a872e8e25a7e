#include "inspect.hpp"

#include "cache/format.hpp"
#include "fqdn/matcher.hpp"
#include "fqdn/name.hpp"
#include "ruleset/compile.hpp"

#include <algorithm>
#include <set>
#include <tuple>

namespace fqdnd::inspect {

std::vector<SelectorView> selectors(const cache::Cache& cache)
{
    const auto& all = cache.selectors();
    std::vector<std::set<std::string>> names(all.size()), addresses(all.size());
    cache.visit([&](std::string_view, std::string_view name, std::span<const FqdnMatcher::SelectorId> ids,
                    std::span<const cache::Mapping> mappings) {
        for (const auto id : ids) {
            names[id].emplace(name);
            for (const auto& m : mappings)
                addresses[id].insert(m.address.to_string());
        }
    });
    std::vector<SelectorView> out;
    out.reserve(all.size());
    for (size_t i = 0; i < all.size(); ++i)
        out.push_back(SelectorView{all[i].to_string(), ruleset::set_key(all[i], Family::ipv4),
                                   ruleset::set_key(all[i], Family::ipv6),
                                   {names[i].begin(), names[i].end()},
                                   {addresses[i].begin(), addresses[i].end()}});
    return out;
}

std::optional<Explanation> explain(const config::Config& config, const cache::Cache& cache, const std::string& what)
{
    Explanation x;
    const auto address = Address::parse(what);
    std::optional<std::string> name;
    if (address) {
        x.is_address = true;
        x.subject = address->to_string();
    } else {
        name = normalize_name(what);
        if (!name)
            return std::nullopt;
        x.subject = *name;
    }
    const auto& selectors = cache.selectors();
    // Per selector, the policies that use it: asked once, not per address.
    std::vector<std::vector<std::string>> users(selectors.size());
    for (size_t i = 0; i < selectors.size(); ++i)
        for (const auto& p : config.policies)
            for (const auto& r : p.egress)
                if (std::find(r.to_fqdns.begin(), r.to_fqdns.end(), selectors[i]) != r.to_fqdns.end()) {
                    users[i].push_back(p.name + (p.audit ? " (audit)" : ""));
                    break;
                }
    using Key = std::tuple<std::string, std::string, Address, FqdnMatcher::SelectorId>;
    std::vector<std::pair<Key, Explanation::Holder>> holders;
    cache.visit([&](std::string_view endpoint, std::string_view entry_name,
                    std::span<const FqdnMatcher::SelectorId> ids, std::span<const cache::Mapping> mappings) {
        if (name && entry_name != *name)
            return;
        for (const auto& m : mappings) {
            if (address && m.address != *address)
                continue;
            for (const auto id : ids)
                holders.emplace_back(
                    Key{std::string(endpoint), std::string(entry_name), m.address, id},
                    Explanation::Holder{std::string(entry_name) + (name ? " " + m.address.to_string() : ""),
                                        std::string(endpoint), std::string(cache::to_string(m.source)),
                                        selectors[id].to_string(), ruleset::set_key(selectors[id], m.address.family),
                                        m.expires, users[id]});
        }
    });
    std::sort(holders.begin(), holders.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    for (auto& [key, h] : holders)
        x.holders.push_back(std::move(h));
    x.allowed = !x.holders.empty();
    for (const auto& p : config.policies)
        for (const auto& r : p.egress) {
            if (address)
                for (const auto& c : r.to_cidrs)
                    if (c.contains(*address)) {
                        x.cidr_rules.push_back(p.name + ": to-cidrs " + c.to_string());
                        x.allowed = true;
                    }
            if (name) {
                for (const auto& s : r.to_fqdns)
                    if (!FqdnMatcher(std::span(&s, 1)).match(*name).empty())
                        x.selector_uses.push_back(s.to_string() + " (policy " + p.name + ")");
                if (r.is_dns() && !FqdnMatcher(r.dns).match(*name).empty())
                    x.dns_rules.push_back(p.name + ": may be asked of " + r.to_dns_servers.front().to_string()
                                          + (r.to_dns_servers.size() > 1 ? " and others" : ""));
            }
        }
    return x;
}

} // namespace fqdnd::inspect
