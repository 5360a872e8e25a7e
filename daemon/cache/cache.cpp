#include "cache/cache.hpp"

#include "fqdn/name.hpp"
#include "ruleset/compile.hpp"

#include <algorithm>
#include <set>
#include <unordered_set>

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

size_t hash_bytes(size_t h, const Address& a) noexcept
{
    for (size_t i = 0; i < a.size(); ++i)
        h = (h ^ a.bytes[i]) * 1099511628211ULL;
    return h;
}

constexpr auto half_margin = std::chrono::duration_cast<std::chrono::milliseconds>(connection_margin) / 2;

} // namespace

size_t Cache::HoldKeyHash::operator()(const HoldKey& k) const noexcept
{
    return hash_bytes(k.selector * 0x9e3779b97f4a7c15ULL, k.address);
}

size_t Cache::AddressHash::operator()(const Address& a) const noexcept
{
    return hash_bytes(1469598103934665603ULL, a);
}

size_t Cache::PairHash::operator()(const std::pair<Address, Address>& p) const noexcept
{
    return hash_bytes(hash_bytes(1469598103934665603ULL, p.first), p.second);
}

Cache::NameEntry& Cache::entry(const std::string& endpoint, const std::string& name)
{
    auto [it, inserted] = entries_.try_emplace(key_of(endpoint, name));
    NameEntry& e = it->second;
    if (inserted) {
        e.endpoint = endpoint;
        e.endpoint_address = Address::parse(endpoint);
        e.name = name;
        e.selectors = matcher_.match(name);
    }
    return e;
}

void Cache::renew(const NameEntry& e, const Mapping& m, Time until, Time now, std::vector<ElementOp>& ops)
{
    for (auto id : e.selectors) {
        Holding& h = holdings_[HoldKey{id, m.address}];
        if (until > h.kernel_expiry) {
            ops.push_back(ElementOp{ElementOp::Kind::add, tags_[id], m.address.family, m.address,
                                    remaining(until, now), h.kernel_expiry > now});
            h.kernel_expiry = until;
        }
    }
}

void Cache::hold(const NameEntry& e, const Mapping& m, Time now, std::vector<ElementOp>& ops)
{
    for (auto id : e.selectors)
        ++holdings_[HoldKey{id, m.address}].holders;
    // The kernel's timeout is the latest of every holder's: renew only where
    // this one outlives it.
    renew(e, m, m.source == Source::lookup ? m.expires : now + connection_margin, now, ops);
}

void Cache::release(const NameEntry& e, const Mapping& m, Time now, std::vector<ElementOp>& ops)
{
    for (auto id : e.selectors) {
        auto it = holdings_.find(HoldKey{id, m.address});
        if (it == holdings_.end() || --it->second.holders > 0)
            continue;
        // The last holder is gone. If the kernel would keep the element
        // longer (an eviction, or a connection gone idle), take it out;
        // otherwise the kernel's own timeout removes it at the same moment.
        if (it->second.kernel_expiry > now + std::chrono::seconds(1))
            ops.push_back(ElementOp{ElementOp::Kind::remove, tags_[id], m.address.family,
                                    m.address, {}, true});
        holdings_.erase(it);
    }
}

void Cache::set_deadline(NameEntry& e, MappingNode& node, Time when)
{
    if (node.scheduled)
        deadlines_.erase(node.it);
    node.it = deadlines_.emplace(when, std::make_pair(&e, node.mapping.address));
    node.scheduled = true;
}

void Cache::schedule_connection(NameEntry& e, MappingNode& node)
{
    Time when = node.refresh_at;
    if (node.idle_since)
        when = std::min(when, *node.idle_since + std::chrono::duration_cast<std::chrono::milliseconds>(limits_.idle_grace));
    set_deadline(e, node, when);
}

void Cache::erase_mapping(NameEntry& e, std::map<Address, MappingNode>::iterator it, Time now,
                          std::vector<ElementOp>& ops)
{
    release(e, it->second.mapping, now, ops);
    if (it->second.mapping.source == Source::connection) {
        auto [first, last] = connection_index_.equal_range(it->first);
        for (auto c = first; c != last; ++c)
            if (c->second == &e) {
                connection_index_.erase(c);
                break;
            }
        --connections_;
    }
    deadlines_.erase(it->second.it);
    e.mappings.erase(it);
}

bool Cache::flows_live(const NameEntry& e, const Address& dst) const
{
    if (e.endpoint_address) {
        auto it = flows_.find({*e.endpoint_address, dst});
        return it != flows_.end() && it->second > 0;
    }
    // Local processes: conntrack does not say which user opened a flow.
    auto it = flows_to_.find(dst);
    return it != flows_to_.end() && it->second > 0;
}

void Cache::to_connection(NameEntry& e, MappingNode& node, Time now, std::vector<ElementOp>& ops)
{
    node.mapping.source = Source::connection;
    node.mapping.used = false;
    node.mapping.last_used = now;
    node.idle_since.reset();
    node.refresh_at = now + half_margin;
    renew(e, node.mapping, now + connection_margin, now, ops);
    connection_index_.emplace(node.mapping.address, &e);
    ++connections_;
    schedule_connection(e, node);
}

void Cache::enforce_connection_limit(Time now, std::vector<ElementOp>& ops)
{
    while (connections_ > limits_.max_connection && !connection_index_.empty()) {
        // Never used since it became connection-sourced first, then the
        // least recently used.
        auto victim = connection_index_.end();
        const MappingNode* worst = nullptr;
        for (auto c = connection_index_.begin(); c != connection_index_.end(); ++c) {
            const MappingNode& n = c->second->mappings.at(c->first);
            if (!worst || std::make_pair(n.mapping.used, n.mapping.last_used)
                              < std::make_pair(worst->mapping.used, worst->mapping.last_used)) {
                worst = &n;
                victim = c;
            }
        }
        NameEntry* e = victim->second;
        erase_mapping(*e, e->mappings.find(victim->first), now, ops);
        ++gc_deletions_;
        if (e->mappings.empty())
            entries_.erase(key_of(e->endpoint, e->name));
    }
}

void Cache::set_selectors(const std::vector<FqdnSelector>& selectors, Time now, std::vector<ElementOp>& ops)
{
    if (selectors == selectors_ && !tags_.empty())
        return;
    // Selectors that stay keep their elements (the sets stay): remember
    // what the kernel already has so as not to re-add it. The elements of
    // selectors that are gone no longer match any rule; they are taken out
    // so that the sets hold only what the cache says.
    std::map<std::pair<uint64_t, Address>, Time> kept;
    for (const auto& [k, h] : holdings_)
        kept[{tags_[k.selector], k.address}] = h.kernel_expiry;

    selectors_ = selectors;
    tags_.clear();
    for (const auto& s : selectors_)
        tags_.push_back(ruleset::selector_tag(s));
    const std::unordered_set<uint64_t> current(tags_.begin(), tags_.end());
    for (const auto& [key, expiry] : kept)
        if (expiry > now && !current.count(key.first))
            ops.push_back(ElementOp{ElementOp::Kind::remove, key.first, key.second.family, key.second, {}, true});
    matcher_ = FqdnMatcher(selectors_);
    holdings_.clear();
    for (auto& [key, e] : entries_) {
        e.selectors = matcher_.match(e.name);
        for (const auto& [addr, node] : e.mappings) {
            for (auto id : e.selectors) {
                Holding& h = holdings_[HoldKey{id, addr}];
                if (h.holders++ == 0) {
                    auto k = kept.find({tags_[id], addr});
                    if (k != kept.end())
                        h.kernel_expiry = k->second;
                }
            }
            renew(e, node.mapping, node.mapping.source == Source::lookup ? node.mapping.expires : now + connection_margin,
                  now, ops);
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
        NameEntry& e = entry(endpoint, *name);
        for (const Address& a : addresses) {
            auto m = e.mappings.find(a);
            if (m != e.mappings.end()) {
                // A new answer renews; a connection-sourced address is a
                // lookup again.
                MappingNode& node = m->second;
                if (node.mapping.source == Source::connection) {
                    auto [first, last] = connection_index_.equal_range(a);
                    for (auto c = first; c != last; ++c)
                        if (c->second == &e) {
                            connection_index_.erase(c);
                            break;
                        }
                    --connections_;
                    node.mapping.source = Source::lookup;
                    node.idle_since.reset();
                }
                node.mapping.lookup = now;
                node.mapping.expires = std::max(node.mapping.expires, expires);
                node.mapping.ttl = ttl;
                set_deadline(e, node, node.mapping.expires);
                renew(e, node.mapping, node.mapping.expires, now, ops);
                continue;
            }
            MappingNode& node = e.mappings.emplace(a, MappingNode{Mapping{a, now, expires, ttl, Source::lookup, false, {}}, {}, false, {}, std::nullopt})
                                    .first->second;
            set_deadline(e, node, expires);
            hold(e, node.mapping, now, ops);
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

void Cache::restore(const std::string& endpoint, const std::string& raw_name, const Mapping& m, Time now,
                    std::vector<ElementOp>& ops)
{
    const auto name = normalize_name(raw_name);
    if (!name || (m.source == Source::lookup && m.expires <= now))
        return;
    NameEntry& e = entry(endpoint, *name);
    if (e.mappings.count(m.address) || e.mappings.size() >= limits_.max_ip_per_hostname)
        return;
    MappingNode& node = e.mappings.emplace(m.address, MappingNode{m, {}, false, {}, std::nullopt}).first->second;
    hold(e, node.mapping, now, ops);
    if (m.source == Source::lookup) {
        set_deadline(e, node, m.expires);
        return;
    }
    // A connection-sourced address comes back idle until the flow counts
    // (a conntrack dump) say otherwise.
    node.refresh_at = now + half_margin;
    node.idle_since = now;
    connection_index_.emplace(m.address, &e);
    ++connections_;
    schedule_connection(e, node);
}

void Cache::touch_connections(const Address& dst, Time now)
{
    auto [first, last] = connection_index_.equal_range(dst);
    for (auto c = first; c != last; ++c) {
        NameEntry& e = *c->second;
        MappingNode& node = e.mappings.at(dst);
        const bool live = flows_live(e, dst);
        if (live && node.idle_since) {
            node.idle_since.reset();
        } else if (!live && !node.idle_since) {
            node.idle_since = now;
        } else {
            continue;
        }
        schedule_connection(e, node);
    }
}

void Cache::flow_opened(uint32_t id, const Address& src, const Address& dst, Time now)
{
    if (!flow_ids_.emplace(id, std::make_pair(src, dst)).second)
        return; // an update of a flow already counted
    ++flows_to_[dst];
    ++flows_[{src, dst}];
    ++flows_total_;
    // A new flow to a connection-sourced address keeps it alive: used.
    auto [first, last] = connection_index_.equal_range(dst);
    for (auto c = first; c != last; ++c) {
        MappingNode& node = c->second->mappings.at(dst);
        if (flows_live(*c->second, dst)) {
            node.mapping.used = true;
            node.mapping.last_used = now;
        }
    }
    touch_connections(dst, now);
}

void Cache::flow_closed(uint32_t id, Time now)
{
    auto it = flow_ids_.find(id);
    if (it == flow_ids_.end())
        return;
    const auto [src, dst] = it->second;
    flow_ids_.erase(it);
    auto to = flows_to_.find(dst);
    if (to != flows_to_.end() && --to->second == 0)
        flows_to_.erase(to);
    auto pair = flows_.find({src, dst});
    if (pair != flows_.end() && --pair->second == 0)
        flows_.erase(pair);
    --flows_total_;
    touch_connections(dst, now);
}

void Cache::flows_reset(const std::vector<Flow>& flows, Time now)
{
    flows_to_.clear();
    flows_.clear();
    flow_ids_.clear();
    flows_total_ = 0;
    for (const Flow& f : flows) {
        if (!flow_ids_.emplace(f.id, std::make_pair(f.src, f.dst)).second)
            continue;
        ++flows_to_[f.dst];
        ++flows_[{f.src, f.dst}];
        ++flows_total_;
    }
    std::vector<Address> connection_addresses;
    for (const auto& [dst, e] : connection_index_)
        connection_addresses.push_back(dst);
    for (const Address& dst : connection_addresses)
        touch_connections(dst, now);
}

void Cache::resync(Time now, std::vector<ElementOp>& ops) const
{
    for (const auto& [k, h] : holdings_)
        if (h.kernel_expiry > now)
            ops.push_back(ElementOp{ElementOp::Kind::add, tags_[k.selector], k.address.family,
                                    k.address, remaining(h.kernel_expiry, now), false});
}

void Cache::expire(Time now, std::vector<ElementOp>& ops)
{
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
        auto [e, address] = deadlines_.begin()->second;
        auto it = e->mappings.find(address);
        MappingNode& node = it->second;
        bool remove = false;
        if (node.mapping.source == Source::lookup) {
            // The DNS data expired: flows still open keep the address, as
            // connection-sourced.
            if (flows_live(*e, address))
                to_connection(*e, node, now, ops);
            else
                remove = true;
        } else {
            if (node.refresh_at <= now) {
                renew(*e, node.mapping, now + connection_margin, now, ops);
                node.refresh_at = now + half_margin;
            }
            if (flows_live(*e, address))
                node.idle_since.reset();
            else if (!node.idle_since)
                node.idle_since = now;
            remove = node.idle_since
                && *node.idle_since + std::chrono::duration_cast<std::chrono::milliseconds>(limits_.idle_grace) <= now;
            if (!remove)
                schedule_connection(*e, node);
        }
        if (!remove)
            continue; // rescheduled past now above

        erase_mapping(*e, it, now, ops);
        ++gc_deletions_;
        if (e->mappings.empty())
            entries_.erase(key_of(e->endpoint, e->name));
    }
    enforce_connection_limit(now, ops);
}

std::optional<Time> Cache::next_deadline() const
{
    if (deadlines_.empty())
        return std::nullopt;
    return deadlines_.begin()->first;
}

size_t Cache::clean(const FqdnMatcher* pattern, Time now, std::vector<ElementOp>& ops)
{
    size_t removed = 0;
    for (auto it = entries_.begin(); it != entries_.end();) {
        NameEntry& e = it->second;
        if (pattern && pattern->match(e.name).empty()) {
            ++it;
            continue;
        }
        while (!e.mappings.empty()) {
            erase_mapping(e, e.mappings.begin(), now, ops);
            ++removed;
        }
        it = entries_.erase(it);
    }
    return removed;
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

std::vector<std::string> Cache::sets_holding(const Address& a) const
{
    std::vector<std::string> out;
    for (const auto& [k, h] : holdings_)
        if (k.address == a)
            out.push_back(ruleset::set_key(selectors_[k.selector], a.family));
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::string> Cache::selectors_matching(const std::vector<std::string>& names) const
{
    std::set<FqdnMatcher::SelectorId> ids;
    for (const auto& n : names)
        for (auto id : matcher_.match(n))
            ids.insert(id);
    std::vector<std::string> out;
    for (auto id : ids)
        out.push_back(selectors_[id].to_string());
    return out;
}

std::vector<std::string> Cache::names_of(const Address& a, size_t max) const
{
    std::set<std::string> names;
    for (const auto& [key, e] : entries_)
        if (e.mappings.count(a)) {
            names.insert(e.name);
            if (names.size() >= max)
                break;
        }
    return {names.begin(), names.end()};
}

} // namespace fqdnd::cache
