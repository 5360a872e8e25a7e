#include "cache/cache.hpp"

#include "fqdn/name.hpp"
#include "ruleset/compile.hpp"

#include <algorithm>

namespace fqdnd::cache {

namespace {

std::string key_of(const std::string& endpoint, const std::string& name)
{
    std::string k = endpoint;
    k += '\0';
    k += name;
    return k;
}

Duration remaining(Time until, Time now)
{
    return until > now ? std::chrono::duration_cast<Duration>(until - now) : Duration(1000);
}

} // namespace

size_t Cache::HoldKeyHash::operator()(const HoldKey& k) const noexcept
{
    size_t h = k.selector * 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < k.address.size(); ++i)
        h = (h ^ k.address.bytes[i]) * 1099511628211ULL;
    return h;
}

std::string Cache::set_of(FqdnMatcher::SelectorId id, Family f) const
{
    return set_names_[id * 2 + (f == Family::ipv6 ? 1 : 0)];
}

void Cache::hold(const NameEntry& e, const Mapping& m, Time now, std::vector<ElementOp>& ops)
{
    for (auto id : e.selectors)
        ++holdings_[HoldKey{id, m.address}].holders;
    // The kernel's timeout is the latest expiry of every holder: renew
    // only where this one outlives it.
    renew(e, m, now, ops);
}

void Cache::renew(const NameEntry& e, const Mapping& m, Time now, std::vector<ElementOp>& ops)
{
    for (auto id : e.selectors) {
        Holding& h = holdings_[HoldKey{id, m.address}];
        if (m.expires > h.kernel_expiry) {
            ops.push_back(ElementOp{ElementOp::Kind::add, set_of(id, m.address.family), m.address.family, m.address,
                                    remaining(m.expires, now), h.kernel_expiry > now});
            h.kernel_expiry = m.expires;
        }
    }
}

void Cache::release(const NameEntry& e, const Mapping& m, Time now, std::vector<ElementOp>& ops)
{
    for (auto id : e.selectors) {
        auto it = holdings_.find(HoldKey{id, m.address});
        if (it == holdings_.end())
            continue;
        if (--it->second.holders > 0)
            continue;
        // The last holder is gone. If the kernel would keep the element
        // longer (an eviction before expiry), take it out; otherwise the
        // kernel's own timeout removes it at the same moment.
        if (it->second.kernel_expiry > now + std::chrono::seconds(1))
            ops.push_back(ElementOp{ElementOp::Kind::remove, set_of(id, m.address.family), m.address.family,
                                    m.address, {}, true});
        holdings_.erase(it);
    }
}

void Cache::erase_mapping(NameEntry& e, std::map<Address, MappingNode>::iterator it, Time now,
                          std::vector<ElementOp>& ops)
{
    release(e, it->second.mapping, now, ops);
    expiries_.erase(it->second.expiry);
    e.mappings.erase(it);
}

void Cache::set_selectors(const std::vector<FqdnSelector>& selectors, Time now, std::vector<ElementOp>& ops)
{
    if (selectors == selectors_)
        return;
    // Bookkeeping of the old selectors goes with their sets (the ruleset
    // deletes sets of selectors that are gone and keeps the others' elements:
    // a kept set needs no new element for what it already holds).
    std::map<std::string, Time> kept; // set name + address -> kernel expiry
    for (const auto& [k, h] : holdings_)
        kept[set_of(k.selector, k.address.family) + "/" + k.address.to_string()] = h.kernel_expiry;

    selectors_ = selectors;
    set_names_.clear();
    for (const auto& s : selectors_) {
        set_names_.push_back(ruleset::set_name(s, Family::ipv4));
        set_names_.push_back(ruleset::set_name(s, Family::ipv6));
    }
    matcher_ = FqdnMatcher(selectors_);
    holdings_.clear();
    for (auto& [key, e] : entries_) {
        e.selectors = matcher_.match(e.name);
        for (const auto& [addr, node] : e.mappings) {
            for (auto id : e.selectors) {
                Holding& h = holdings_[HoldKey{id, addr}];
                ++h.holders;
                if (h.kernel_expiry == Time{}) {
                    auto k = kept.find(set_of(id, addr.family) + "/" + addr.to_string());
                    if (k != kept.end())
                        h.kernel_expiry = k->second;
                }
                if (node.mapping.expires > h.kernel_expiry) {
                    ops.push_back(ElementOp{ElementOp::Kind::add, set_of(id, addr.family), addr.family, addr,
                                            remaining(node.mapping.expires, now), h.kernel_expiry > now});
                    h.kernel_expiry = node.mapping.expires;
                }
            }
        }
    }
}

void Cache::learn(const std::string& endpoint, const std::vector<std::string>& names,
                  const std::vector<Address>& addresses, uint32_t ttl, Time now, std::vector<ElementOp>& ops)
{
    if (addresses.empty())
        return;
    const Time expires = now + std::max(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::seconds(ttl)),
                                        std::chrono::duration_cast<std::chrono::milliseconds>(limits_.min_ttl));
    for (const std::string& raw : names) {
        const auto name = normalize_name(raw);
        if (!name)
            continue; // no selector can match it; not worth remembering
        auto [it, inserted] = entries_.try_emplace(key_of(endpoint, *name));
        NameEntry& e = it->second;
        if (inserted) {
            e.endpoint = endpoint;
            e.name = *name;
            e.selectors = matcher_.match(*name);
        }
        for (const Address& a : addresses) {
            auto m = e.mappings.find(a);
            if (m != e.mappings.end()) {
                // A new answer renews: lookup time and expiry move on; the
                // holders stay the same, the kernel's timeout may grow.
                expiries_.erase(m->second.expiry);
                m->second.mapping.lookup = now;
                m->second.mapping.expires = std::max(m->second.mapping.expires, expires);
                m->second.mapping.ttl = ttl;
                m->second.expiry = expiries_.emplace(m->second.mapping.expires, std::make_pair(&e, a));
                renew(e, m->second.mapping, now, ops);
                continue;
            }
            m = e.mappings.emplace(a, MappingNode{Mapping{a, now, expires, ttl, Source::lookup}, {}}).first;
            m->second.expiry = expiries_.emplace(m->second.mapping.expires, std::make_pair(&e, a));
            hold(e, m->second.mapping, now, ops);
        }
        // At most max-ip-per-hostname addresses: those that expire first go.
        while (e.mappings.size() > limits_.max_ip_per_hostname) {
            auto first = std::min_element(e.mappings.begin(), e.mappings.end(), [](const auto& x, const auto& y) {
                return x.second.mapping.expires < y.second.mapping.expires;
            });
            erase_mapping(e, first, now, ops);
        }
    }
}

void Cache::resync(Time now, std::vector<ElementOp>& ops) const
{
    for (const auto& [k, h] : holdings_)
        if (h.kernel_expiry > now)
            ops.push_back(ElementOp{ElementOp::Kind::add, set_of(k.selector, k.address.family), k.address.family,
                                    k.address, remaining(h.kernel_expiry, now), false});
}

void Cache::expire(Time now, std::vector<ElementOp>& ops)
{
    while (!expiries_.empty() && expiries_.begin()->first <= now) {
        auto [entry, address] = expiries_.begin()->second;
        auto it = entry->mappings.find(address);
        erase_mapping(*entry, it, now, ops);
        if (entry->mappings.empty())
            entries_.erase(key_of(entry->endpoint, entry->name));
    }
}

std::optional<Time> Cache::next_expiry() const
{
    if (expiries_.empty())
        return std::nullopt;
    return expiries_.begin()->first;
}

std::vector<Cache::Entry> Cache::entries() const
{
    std::vector<Entry> out;
    for (const auto& [k, e] : entries_) {
        Entry x{e.endpoint, e.name, {}};
        for (const auto& [a, node] : e.mappings)
            x.mappings.push_back(node.mapping);
        out.push_back(std::move(x));
    }
    std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) {
        return std::tie(a.endpoint, a.name) < std::tie(b.endpoint, b.name);
    });
    return out;
}

size_t Cache::addresses() const noexcept
{
    return expiries_.size();
}

std::vector<std::string> Cache::sets_holding(const Address& a) const
{
    std::vector<std::string> out;
    for (const auto& [k, h] : holdings_)
        if (k.address == a)
            out.push_back(set_of(k.selector, a.family));
    std::sort(out.begin(), out.end());
    return out;
}

} // namespace fqdnd::cache
