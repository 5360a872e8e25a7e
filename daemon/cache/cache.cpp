#include "cache/cache.hpp"

#include "fqdn/name.hpp"
#include "fnv.hpp"
#include "ruleset/compile.hpp"

#include <algorithm>
#include <set>
#include <unordered_set>
#include <utility>
#include <map>
#include <queue>

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

// Kernel timeouts in whole seconds, rounded up: the element may outlive
// its mapping by less than a second, never the other way round.
uint32_t whole_seconds(Time t)
{
    const auto ms = t.time_since_epoch().count();
    if (ms <= 0)
        return 0;
    return static_cast<uint32_t>(std::min<int64_t>((ms + 999) / 1000, UINT32_MAX));
}

Time at(uint32_t seconds)
{
    return Time(std::chrono::seconds(seconds));
}

constexpr auto half_margin = std::chrono::duration_cast<std::chrono::milliseconds>(connection_margin) / 2;

} // namespace

size_t Cache::HoldKeyHash::operator()(const HoldKey& k) const noexcept
{
    return fnv::hash(k.address, (k.selector + 1) * 0x9e3779b97f4a7c15ULL);
}

size_t Cache::AddressHash::operator()(const Address& a) const noexcept
{
    return fnv::hash(a);
}

size_t Cache::PairHash::operator()(const std::pair<Address, Address>& p) const noexcept
{
    return fnv::hash(p.second, fnv::hash(p.first));
}

void coalesce(std::vector<ElementOp>& ops)
{
    if (ops.size() < 2)
        return;
    struct Net {
        size_t last;       // index of the last operation on the element
        bool was_in = false; // in the set before the first
    };
    std::map<std::pair<uint64_t, Address>, Net> nets;
    for (size_t i = 0; i < ops.size(); ++i) {
        const ElementOp& op = ops[i];
        auto [it, first] = nets.try_emplace({op.tag, op.address}, Net{i});
        if (first) // a remove is only ever sent for an element the set holds
            it->second.was_in = op.kind == ElementOp::Kind::remove || op.exists;
        it->second.last = i;
    }
    if (nets.size() == ops.size())
        return;
    // Each element's last operation, in the order they came.
    std::vector<ElementOp> out;
    out.reserve(nets.size());
    for (size_t i = 0; i < ops.size(); ++i) {
        const Net& n = nets.at({ops[i].tag, ops[i].address});
        if (n.last != i || (ops[i].kind == ElementOp::Kind::remove && !n.was_in))
            continue;
        out.push_back(ops[i]);
        out.back().exists = n.was_in;
    }
    ops = std::move(out);
}

std::string_view Cache::NameEntry::endpoint() const
{
    return std::string_view(*key).substr(0, key->find('\0'));
}

std::string_view Cache::NameEntry::name() const
{
    return std::string_view(*key).substr(key->find('\0') + 1);
}

size_t Cache::NameEntry::find(const Address& a) const noexcept
{
    for (size_t i = 0; i < slots.size(); ++i)
        if (slots[i].address == a)
            return i;
    return npos;
}

Cache::NameEntry& Cache::entry(const std::string& endpoint, const std::string& name)
{
    auto [it, inserted] = entries_.try_emplace(key_of(endpoint, name));
    NameEntry& e = it->second;
    if (inserted) {
        e.key = &it->first;
        e.endpoint_address = Address::parse(endpoint);
        e.selectors = matcher_.match(name);
    }
    return e;
}

void Cache::erase_entry(NameEntry& e)
{
    entries_.erase(entries_.find(*e.key));
}

// The deadline heaps. Every move of an element tells its slot where it is.
void Cache::placed(std::vector<Deadline>& heap, size_t pos)
{
    const Deadline& d = heap[pos];
    d.entry->slots[d.slot].deadline = static_cast<uint32_t>(pos);
}

void Cache::move_deadline(std::vector<Deadline>& heap, size_t from, size_t to)
{
    heap[to] = heap[from];
    placed(heap, to);
}

// Up or down, whichever restores the heap at `pos` after its time changed.
void Cache::resift(std::vector<Deadline>& heap, size_t pos)
{
    if (pos > 0 && heap[pos].when < heap[(pos - 1) / 2].when)
        sift_up(heap, pos);
    else
        sift_down(heap, pos);
}

void Cache::sift_up(std::vector<Deadline>& heap, size_t pos)
{
    const Deadline d = heap[pos];
    while (pos > 0) {
        const size_t parent = (pos - 1) / 2;
        if (!(d.when < heap[parent].when))
            break;
        move_deadline(heap, parent, pos);
        pos = parent;
    }
    heap[pos] = d;
    placed(heap, pos);
}

void Cache::sift_down(std::vector<Deadline>& heap, size_t pos)
{
    const Deadline d = heap[pos];
    const size_t n = heap.size();
    for (;;) {
        size_t child = 2 * pos + 1;
        if (child >= n)
            break;
        if (child + 1 < n && heap[child + 1].when < heap[child].when)
            ++child;
        if (!(heap[child].when < d.when))
            break;
        move_deadline(heap, child, pos);
        pos = child;
    }
    heap[pos] = d;
    placed(heap, pos);
}

std::vector<Cache::Deadline>& Cache::heap_of(const Slot& s) noexcept
{
    return s.source == Source::lookup ? lookups_ : connection_deadlines_;
}

void Cache::reschedule(NameEntry& e, size_t index, Time when)
{
    std::vector<Deadline>& heap = heap_of(e.slots[index]);
    const size_t pos = e.slots[index].deadline;
    heap[pos].when = when;
    resift(heap, pos);
}

void Cache::schedule(NameEntry& e, size_t index, Time when)
{
    std::vector<Deadline>& heap = heap_of(e.slots[index]);
    heap.push_back(Deadline{when, &e, static_cast<uint32_t>(index)});
    sift_up(heap, heap.size() - 1);
    if (e.slots[index].source == Source::lookup && e.lookups++ == 0)
        ++lookup_names_;
}

void Cache::set_source(NameEntry& e, size_t index, Source source, Time when)
{
    unschedule(e, index);
    e.slots[index].source = source;
    schedule(e, index, when);
}

void Cache::unschedule(NameEntry& e, size_t index)
{
    std::vector<Deadline>& heap = heap_of(e.slots[index]);
    if (e.slots[index].source == Source::lookup && --e.lookups == 0)
        --lookup_names_;
    // The last element takes its place.
    const size_t pos = e.slots[index].deadline;
    const size_t last = heap.size() - 1;
    if (pos != last) {
        move_deadline(heap, last, pos);
        heap.pop_back();
        resift(heap, pos);
    } else {
        heap.pop_back();
    }
    // A drained cache gives its heap back.
    if (heap.capacity() > 4096 && heap.size() < heap.capacity() / 4)
        heap.shrink_to_fit();
}

uint32_t Cache::add_slot(NameEntry& e, const Slot& s, Time when)
{
    const auto index = static_cast<uint32_t>(e.slots.size());
    e.slots.push_back(s);
    schedule(e, index, when);
    return index;
}

void Cache::erase_slot(NameEntry& e, size_t index, Time now, std::vector<ElementOp>& ops)
{
    Slot& s = e.slots[index];
    release(e, s.address, now, ops);
    if (s.source == Source::connection)
        drop_connection(e, s.address);
    unschedule(e, index);
    // Out of the name: its last slot takes its place.
    if (index + 1 != e.slots.size()) {
        e.slots[index] = e.slots.back();
        heap_of(e.slots[index])[e.slots[index].deadline].slot = static_cast<uint32_t>(index);
    }
    e.slots.pop_back();
}

void Cache::renew(FqdnMatcher::SelectorId id, Holding& h, const Address& a, uint32_t expiry, Time now,
                  std::vector<ElementOp>& ops, bool lazy)
{
    if (expiry <= h.kernel_expiry)
        return;
    const uint32_t today = whole_seconds(now);
    const uint32_t left = h.kernel_expiry > today ? h.kernel_expiry - today : 0;
    const uint32_t margin = std::max(h.granted / 2, static_cast<uint32_t>(eager_renewal.count()));
    if (lazy && left > margin) {
        // The kernel holds it long enough: the answer need not wait for a
        // write. The renewal is due when `margin` is left.
        h.wanted = std::max(h.wanted, expiry);
        ++renewals_deferred_;
        if (h.renew_due == 0) {
            h.renew_due = h.kernel_expiry - margin;
            // Stale entries (written early, holdings gone) are dropped
            // before they could outnumber the live ones.
            if (renewals_.size() > 2 * holdings_.size() + 1024) {
                std::erase_if(renewals_, [&](const Renewal& r) {
                    auto it = holdings_.find(r.key);
                    return it == holdings_.end() || it->second.renew_due != r.due;
                });
                std::make_heap(renewals_.begin(), renewals_.end(), RenewalLater{});
            }
            renewals_.push_back(Renewal{h.renew_due, HoldKey{a, id}});
            std::push_heap(renewals_.begin(), renewals_.end(), RenewalLater{});
        }
        return;
    }
    write(id, h, a, std::max(expiry, h.wanted), now, ops);
}

void Cache::write(FqdnMatcher::SelectorId id, Holding& h, const Address& a, uint32_t expiry, Time now,
                  std::vector<ElementOp>& ops)
{
    const uint32_t today = whole_seconds(now);
    ops.push_back(ElementOp{ElementOp::Kind::add, tags_[id], a.family, a, remaining(at(expiry), now),
                            h.kernel_expiry > today});
    ++renewals_written_;
    h.granted = expiry > today ? expiry - today : 1;
    h.kernel_expiry = expiry;
    h.wanted = 0;
    h.renew_due = 0; // a waiting heap entry is stale now
}

void Cache::renew_due(Time now, std::vector<ElementOp>& ops)
{
    const uint32_t today = whole_seconds(now);
    while (!renewals_.empty() && renewals_.front().due <= today) {
        std::pop_heap(renewals_.begin(), renewals_.end(), RenewalLater{});
        const Renewal r = renewals_.back();
        renewals_.pop_back();
        auto it = holdings_.find(r.key);
        if (it == holdings_.end() || it->second.renew_due != r.due)
            continue;
        Holding& h = it->second;
        if (h.wanted > h.kernel_expiry)
            write(r.key.selector, h, r.key.address, h.wanted, now, ops);
        h.wanted = h.renew_due = 0;
    }
}

void Cache::renew(const NameEntry& e, const Address& a, Time until, Time now, std::vector<ElementOp>& ops, bool lazy)
{
    const uint32_t expiry = whole_seconds(until);
    for (auto id : e.selectors)
        renew(id, holdings_[HoldKey{a, id}], a, expiry, now, ops, lazy);
}

void Cache::hold(const NameEntry& e, const Address& a, Time until, Time now, std::vector<ElementOp>& ops)
{
    // The kernel's timeout is the latest of every holder's: renew only where
    // this one outlives it.
    const uint32_t expiry = whole_seconds(until);
    for (auto id : e.selectors) {
        Holding& h = holdings_[HoldKey{a, id}];
        ++h.holders;
        renew(id, h, a, expiry, now, ops);
    }
}

void Cache::release(const NameEntry& e, const Address& a, Time now, std::vector<ElementOp>& ops)
{
    for (auto id : e.selectors) {
        auto it = holdings_.find(HoldKey{a, id});
        if (it == holdings_.end() || --it->second.holders > 0)
            continue;
        // The last holder is gone. If the kernel would keep the element
        // longer (an eviction, or a connection gone idle), take it out;
        // otherwise the kernel's own timeout removes it at the same moment.
        if (at(it->second.kernel_expiry) > now + std::chrono::seconds(1))
            ops.push_back(ElementOp{ElementOp::Kind::remove, tags_[id], a.family, a, {}, true});
        holdings_.erase(it);
    }
}

Cache::Connection* Cache::connection_of(const NameEntry& e, const Address& a)
{
    return const_cast<Connection*>(std::as_const(*this).connection_of(e, a));
}

const Cache::Connection* Cache::connection_of(const NameEntry& e, const Address& a) const
{
    auto [first, last] = connections_.equal_range(a);
    for (auto c = first; c != last; ++c)
        if (c->second.entry == &e)
            return &c->second;
    return nullptr;
}

void Cache::drop_connection(const NameEntry& e, const Address& a)
{
    auto [first, last] = connections_.equal_range(a);
    for (auto c = first; c != last; ++c)
        if (c->second.entry == &e) {
            connections_.erase(c);
            return;
        }
}

void Cache::schedule_connection(NameEntry& e, size_t index, const Connection& c)
{
    Time when = c.refresh_at;
    if (c.idle_since)
        when = std::min(when, *c.idle_since + std::chrono::duration_cast<std::chrono::milliseconds>(limits_.idle_grace));
    reschedule(e, index, when);
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

void Cache::to_connection(NameEntry& e, size_t index, Time now, std::vector<ElementOp>& ops)
{
    set_source(e, index, Source::connection, now);
    const Address a = e.slots[index].address;
    renew(e, a, now + connection_margin, now, ops);
    const Connection& c = connections_.emplace(a, Connection{&e, now + half_margin, now, std::nullopt, false})->second;
    schedule_connection(e, index, c);
}

void Cache::enforce_connection_limit(Time now, std::vector<ElementOp>& ops)
{
    while (connections_.size() > limits_.max_connection) {
        // Never used since it became connection-sourced first, then the
        // least recently used.
        auto victim = connections_.begin();
        for (auto c = connections_.begin(); c != connections_.end(); ++c)
            if (std::make_pair(c->second.used, c->second.last_used)
                < std::make_pair(victim->second.used, victim->second.last_used))
                victim = c;
        NameEntry& e = *victim->second.entry;
        erase_slot(e, e.find(victim->first), now, ops);
        ++gc_deletions_;
        if (e.slots.empty())
            erase_entry(e);
    }
}

void Cache::evict(NameEntry& e, size_t index, Time now, std::vector<ElementOp>& ops)
{
    ++evictions_;
    if (flows_live(e, e.slots[index].address)) {
        to_connection(e, index, now, ops);
        return;
    }
    erase_slot(e, index, now, ops);
    ++gc_deletions_;
}

size_t Cache::eviction_victim(std::span<NameEntry* const> keep) const
{
    if (lookups_.empty())
        return npos;
    auto kept = [&](size_t pos) { return std::find(keep.begin(), keep.end(), lookups_[pos].entry) != keep.end(); };
    if (!kept(0))
        return 0;
    // Best first from the top, descending only below kept ones: the walk is
    // as long as the kept names' addresses, not the heap.
    auto later = [this](size_t a, size_t b) { return lookups_[b].when < lookups_[a].when; };
    std::priority_queue<size_t, std::vector<size_t>, decltype(later)> frontier(later);
    frontier.push(0);
    while (!frontier.empty()) {
        const size_t pos = frontier.top();
        frontier.pop();
        if (!kept(pos))
            return pos;
        for (size_t child = 2 * pos + 1; child <= 2 * pos + 2 && child < lookups_.size(); ++child)
            frontier.push(child);
    }
    return npos;
}

void Cache::enforce_bounds(Time now, std::vector<ElementOp>& ops, std::span<NameEntry* const> keep)
{
    bool evicted = false;
    for (;;) {
        const bool names_over = lookup_names_ > limits_.max_names;
        if (!names_over && lookups_.size() <= limits_.max_addresses)
            break;
        const size_t pos = eviction_victim(keep);
        if (pos == npos)
            break; // the answer alone is over the bound: it stays, until the next one
        NameEntry& e = *lookups_[pos].entry;
        if (names_over) {
            // The whole name goes: each of its lookups (the last slot takes an
            // erased one's place, so walk backwards).
            for (size_t i = e.slots.size(); i-- > 0;)
                if (e.slots[i].source == Source::lookup)
                    evict(e, i, now, ops);
        } else {
            evict(e, lookups_[pos].slot, now, ops);
        }
        if (e.slots.empty())
            erase_entry(e);
        evicted = true;
    }
    // Evicted lookups with live flows are connection-sourced now.
    if (evicted)
        enforce_connection_limit(now, ops);
}

void Cache::set_selectors(const std::vector<FqdnSelector>& selectors, Time now, std::vector<ElementOp>& ops)
{
    enforce_bounds(now, ops); // bounds a reload lowered
    if (selectors == selectors_ && !tags_.empty())
        return;
    // Selectors that stay keep their elements (the sets stay): remember
    // what the kernel already has so as not to re-add it. The elements of
    // selectors that are gone no longer match any rule; they are taken out
    // so that the sets hold only what the cache says.
    std::map<std::pair<uint64_t, Address>, std::pair<uint32_t, uint32_t>> kept; // kernel expiry, grant
    for (const auto& [k, h] : holdings_)
        kept[{tags_[k.selector], k.address}] = {h.kernel_expiry, h.granted};

    selectors_ = selectors;
    tags_.clear();
    for (const auto& s : selectors_)
        tags_.push_back(ruleset::selector_tag(s));
    const std::unordered_set<uint64_t> current(tags_.begin(), tags_.end());
    for (const auto& [key, expiry] : kept)
        if (at(expiry.first) > now && !current.count(key.first))
            ops.push_back(ElementOp{ElementOp::Kind::remove, key.first, key.second.family, key.second, {}, true});
    matcher_ = FqdnMatcher(selectors_);
    holdings_.clear();
    renewals_.clear(); // by selector id: the renewals still wanted are deferred again below
    for (auto& [key, e] : entries_) {
        e.selectors = matcher_.match(e.name());
        for (const Slot& s : e.slots) {
            for (auto id : e.selectors) {
                Holding& h = holdings_[HoldKey{s.address, id}];
                if (h.holders++ == 0) {
                    auto k = kept.find({tags_[id], s.address});
                    if (k != kept.end())
                        std::tie(h.kernel_expiry, h.granted) = k->second;
                }
            }
            renew(e, s.address, s.source == Source::lookup ? s.expires : now + connection_margin, now, ops);
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
    std::vector<NameEntry*> taught;
    taught.reserve(names.size());
    for (const std::string& raw : names) {
        const auto name = normalize_name(raw);
        if (!name)
            continue; // no selector can match it; not worth remembering
        NameEntry& e = entry(endpoint, *name);
        taught.push_back(&e);
        for (size_t k = 0; k < addresses.size(); ++k) {
            const Address& a = addresses[k];
            const size_t i = e.find(a);
            if (i == npos) {
                // Grown for the rest of this answer at most, not doubled:
                // most names keep the addresses they have.
                if (e.slots.size() == e.slots.capacity())
                    e.slots.reserve(e.slots.size() + addresses.size() - k);
                add_slot(e, Slot{now, expires, a, Source::lookup, ttl, 0}, expires);
                hold(e, a, expires, now, ops);
                continue;
            }
            // A new answer renews; a connection-sourced address is a lookup
            // again.
            if (e.slots[i].source == Source::connection) {
                drop_connection(e, a);
                set_source(e, i, Source::lookup, now);
            }
            Slot& s = e.slots[i];
            s.lookup = now;
            s.expires = std::max(s.expires, expires);
            s.ttl = ttl;
            reschedule(e, i, s.expires);
            renew(e, a, s.expires, now, ops);
        }
        // At most max-ip-per-hostname addresses: those that expire first go.
        while (e.slots.size() > limits_.max_ip_per_hostname) {
            auto first = std::min_element(e.slots.begin(), e.slots.end(),
                                          [](const Slot& x, const Slot& y) { return x.expires < y.expires; });
            erase_slot(e, static_cast<size_t>(first - e.slots.begin()), now, ops);
        }
    }
    enforce_bounds(now, ops, taught);
}

void Cache::set_limits(Limits limits)
{
    limits_ = limits;
    // Buckets are 8 bytes each and written now (about 9 MiB at the default
    // bounds); the deadlines' room is only address space until used. Up to
    // a point: bounds set far beyond what is ever held must not cost their
    // size at start, and tables that do grow past it grow as before.
    constexpr size_t most = 2'000'000;
    entries_.reserve(std::min(limits_.max_names, most));
    holdings_.reserve(std::min(limits_.max_addresses, most));
    lookups_.reserve(std::min(limits_.max_addresses, most));
}

void Cache::reserve(size_t names, size_t addresses)
{
    entries_.reserve(entries_.size() + names);
    lookups_.reserve(lookups_.size() + addresses);
    holdings_.reserve(holdings_.size() + addresses);
}

void Cache::restore(const std::string& endpoint, const std::string& raw_name, const std::vector<Mapping>& mappings,
                    Time now, std::vector<ElementOp>& ops)
{
    const auto name = normalize_name(raw_name);
    if (!name)
        return;
    auto live = [&](const Mapping& m) { return m.source == Source::connection || m.expires > now; };
    const auto fresh = static_cast<size_t>(std::count_if(mappings.begin(), mappings.end(), live));
    if (fresh == 0)
        return;
    NameEntry& e = entry(endpoint, *name);
    e.slots.reserve(std::min(e.slots.size() + fresh, limits_.max_ip_per_hostname));
    for (const Mapping& m : mappings) {
        if (!live(m))
            continue;
        if (const size_t i = e.find(m.address); i != npos) {
            // Known already (a journal replayed over the state file, or a
            // pre-cache): a later lookup renews, as a new answer would.
            Slot& s = e.slots[i];
            if (m.source != Source::lookup || (s.source == Source::lookup && m.expires <= s.expires))
                continue;
            if (s.source == Source::connection) {
                drop_connection(e, m.address);
                set_source(e, i, Source::lookup, now);
            }
            Slot& renewed = e.slots[i];
            renewed.lookup = std::max(renewed.lookup, m.lookup);
            renewed.expires = std::max(renewed.expires, m.expires);
            renewed.ttl = m.ttl;
            reschedule(e, i, renewed.expires);
            // After a crash the kernel may hold less than the snapshot
            // said: what is restored is written as it is, not deferred.
            renew(e, m.address, renewed.expires, now, ops, false);
            continue;
        }
        if (e.slots.size() >= limits_.max_ip_per_hostname)
            continue;
        const Slot s{m.lookup, m.expires, m.address, m.source, m.ttl, 0};
        if (m.source == Source::lookup) {
            add_slot(e, s, m.expires);
            hold(e, m.address, m.expires, now, ops);
            continue;
        }
        // A connection-sourced address comes back idle until the flow
        // counts (a conntrack dump) say otherwise.
        const Connection& c = connections_.emplace(m.address, Connection{&e, now + half_margin, m.last_used, now, m.used})->second;
        const uint32_t index = add_slot(e, s, now);
        schedule_connection(e, index, c);
        hold(e, m.address, now + connection_margin, now, ops);
    }
    // Not kept like an answer: what is restored is ordered by expiry alone.
    enforce_bounds(now, ops);
}

void Cache::touch_connections(const Address& dst, Time now)
{
    auto [first, last] = connections_.equal_range(dst);
    for (auto c = first; c != last; ++c) {
        Connection& conn = c->second;
        const bool live = flows_live(*conn.entry, dst);
        if (live && conn.idle_since) {
            conn.idle_since.reset();
        } else if (!live && !conn.idle_since) {
            conn.idle_since = now;
        } else {
            continue;
        }
        schedule_connection(*conn.entry, conn.entry->find(dst), conn);
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
    auto [first, last] = connections_.equal_range(dst);
    for (auto c = first; c != last; ++c)
        if (flows_live(*c->second.entry, dst)) {
            c->second.used = true;
            c->second.last_used = now;
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
    for (const auto& [dst, c] : connections_)
        connection_addresses.push_back(dst);
    std::sort(connection_addresses.begin(), connection_addresses.end());
    connection_addresses.erase(std::unique(connection_addresses.begin(), connection_addresses.end()),
                               connection_addresses.end());
    for (const Address& dst : connection_addresses)
        touch_connections(dst, now);
}

void Cache::resync(Time now, std::vector<ElementOp>& ops) const
{
    for (const auto& [k, h] : holdings_)
        if (at(h.kernel_expiry) > now)
            ops.push_back(ElementOp{ElementOp::Kind::add, tags_[k.selector], k.address.family, k.address,
                                    remaining(at(h.kernel_expiry), now), false});
}

std::optional<ElementOp> Cache::element(uint64_t tag, const Address& a, Time now) const
{
    // Selectors are few: a scan, by the tag their elements carry.
    for (size_t id = 0; id < tags_.size(); ++id) {
        if (tags_[id] != tag)
            continue;
        const auto it = holdings_.find(HoldKey{a, static_cast<FqdnMatcher::SelectorId>(id)});
        if (it != holdings_.end() && at(it->second.kernel_expiry) > now)
            return ElementOp{ElementOp::Kind::add, tag, a.family, a, remaining(at(it->second.kernel_expiry), now),
                             false};
    }
    return std::nullopt;
}

void Cache::expire(Time now, std::vector<ElementOp>& ops)
{
    renew_due(now, ops);
    for (;;) {
        // The earlier of the two heaps' tops, if it is due.
        const std::vector<Deadline>* heap = &lookups_;
        if (heap->empty() || (!connection_deadlines_.empty() && connection_deadlines_.front().when < heap->front().when))
            heap = &connection_deadlines_;
        if (heap->empty() || heap->front().when > now)
            break;
        NameEntry& e = *heap->front().entry;
        const size_t index = heap->front().slot;
        const Address address = e.slots[index].address;
        bool remove = false;
        if (e.slots[index].source == Source::lookup) {
            // The DNS data expired: flows still open keep the address, as
            // connection-sourced.
            if (flows_live(e, address))
                to_connection(e, index, now, ops);
            else
                remove = true;
        } else {
            Connection& c = *connection_of(e, address);
            if (c.refresh_at <= now) {
                renew(e, address, now + connection_margin, now, ops);
                c.refresh_at = now + half_margin;
            }
            if (flows_live(e, address))
                c.idle_since.reset();
            else if (!c.idle_since)
                c.idle_since = now;
            remove = c.idle_since
                && *c.idle_since + std::chrono::duration_cast<std::chrono::milliseconds>(limits_.idle_grace) <= now;
            if (!remove)
                schedule_connection(e, index, c);
        }
        if (!remove)
            continue; // rescheduled past now above

        erase_slot(e, index, now, ops);
        ++gc_deletions_;
        if (e.slots.empty())
            erase_entry(e);
    }
    enforce_bounds(now, ops);
    enforce_connection_limit(now, ops);
}

std::optional<Time> Cache::next_deadline() const
{
    std::optional<Time> next;
    auto consider = [&](Time t) { next = next ? std::min(*next, t) : t; };
    if (!lookups_.empty())
        consider(lookups_.front().when);
    if (!connection_deadlines_.empty())
        consider(connection_deadlines_.front().when);
    if (!renewals_.empty())
        consider(at(renewals_.front().due));
    return next;
}

size_t Cache::clean(const FqdnMatcher* pattern, Time now, std::vector<ElementOp>& ops)
{
    size_t removed = 0;
    for (auto it = entries_.begin(); it != entries_.end();) {
        NameEntry& e = it->second;
        if (pattern && pattern->match(e.name()).empty()) {
            ++it;
            continue;
        }
        while (!e.slots.empty()) {
            erase_slot(e, e.slots.size() - 1, now, ops);
            ++removed;
        }
        it = entries_.erase(it);
    }
    return removed;
}

void Cache::visit(const Visitor& f) const
{
    std::vector<Mapping> mappings;
    for (const auto& [k, e] : entries_) {
        mappings.clear();
        for (const Slot& s : e.slots)
            mappings.push_back(Mapping{s.address, s.lookup, s.expires, s.ttl, s.source, false, {}});
        f(e.endpoint(), e.name(), e.selectors, mappings);
    }
}

std::vector<Cache::Entry> Cache::entries() const
{
    std::vector<Entry> out;
    for (const auto& [k, e] : entries_) {
        Entry x{std::string(e.endpoint()), std::string(e.name()), {}};
        x.mappings.reserve(e.slots.size());
        for (const Slot& s : e.slots) {
            Mapping m{s.address, s.lookup, s.expires, s.ttl, s.source, false, {}};
            if (const Connection* c = s.source == Source::connection ? connection_of(e, s.address) : nullptr) {
                m.used = c->used;
                m.last_used = c->last_used;
            }
            x.mappings.push_back(m);
        }
        std::sort(x.mappings.begin(), x.mappings.end(),
                  [](const Mapping& a, const Mapping& b) { return a.address < b.address; });
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
        if (e.find(a) != npos) {
            names.insert(std::string(e.name()));
            if (names.size() >= max)
                break;
        }
    return {names.begin(), names.end()};
}

} // namespace fqdnd::cache
