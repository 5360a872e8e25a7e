#pragma once

#include "config/address.hpp"
#include "config/duration.hpp"
#include "fqdn/matcher.hpp"

#include <chrono>
#include <functional>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

// What DNS answers taught, and what connections keep alive: per endpoint and
// name, the addresses with their source (lookup, or connection once the DNS
// data expired while flows were still open), lookup time and expiry; and,
// per FQDN selector, which addresses its sets must hold and until when.
// Plain data with an injected clock: every change comes back as the set
// element operations that make the kernel agree. Driven by events (answers,
// flows opening and closing) and by one deadline per address, never by a
// scan of everything.
namespace fqdnd::cache {

using Time = std::chrono::sys_time<std::chrono::milliseconds>;

struct ElementOp {
    enum class Kind : uint8_t { add, remove } kind;
    uint64_t tag; // the selector's (ruleset::selector_tag)
    Family family;
    Address address;
    Duration timeout{};  // add: the element's new timeout
    bool exists = false; // add: already in the set (a renewal)
};

// The operations of several answers as one batch: per element only the
// net change, with `exists` saying whether it was in the set before the
// first of them. An element added and removed again is left out.
void coalesce(std::vector<ElementOp>& ops);

enum class Source : uint8_t { lookup, connection };

struct Mapping {
    Address address;
    Time lookup;
    Time expires;     // when the DNS data expires (or expired, for connection)
    uint32_t ttl = 0; // as the answer said (before min-ttl)
    Source source = Source::lookup;
    bool used = false; // a flow opened to it while it was connection-sourced
    Time last_used{};
};

struct Limits {
    Duration min_ttl = std::chrono::hours(1);
    size_t max_ip_per_hostname = 50;
    Duration idle_grace = Duration::zero();
    size_t max_connection = 10000;
    // The global bound: names (per endpoint) and addresses (per endpoint and
    // name) of source lookup. Over either, the lookups that expire soonest
    // go as if they expired now; connection-sourced ones are bounded by
    // max_connection alone.
    size_t max_names = 100'000;
    size_t max_addresses = 1'000'000;
};

// A connection-sourced element's kernel timeout: renewed every half of it
// while fqdnd lives, so that if fqdnd dies the kernel still drops it within
// this long.
inline constexpr std::chrono::minutes connection_margin{10};

// Kernel timeouts are renewed lazily: an answer that extends a mapping
// writes the kernel only when less than half of the element's last grant
// is left (or less than this); otherwise the renewal waits for a deadline
// at half the grant, so a name answered every 30 s with min-ttl 3600 is
// written about twice an hour. While fqdnd runs the kernel's timeout never
// ends before the mapping's; after a crash it may end early by at most
// half a grant (the restore writes it again).
inline constexpr std::chrono::seconds eager_renewal{10};

class Cache {
public:
    explicit Cache(Limits limits = {}) : limits_(limits) {}

    // The FQDN selectors of the running policies; on a change, the sets of
    // new selectors are filled from what is already known.
    void set_selectors(const std::vector<FqdnSelector>& selectors, Time now, std::vector<ElementOp>& ops);
    // Lower bounds evict at the next call that has a clock: set_selectors
    // (which start and reload call right after this), learn or expire.
    // The tables are sized for the bounds here (up to 2,000,000): grown on
    // the way, a table rehashes all it holds at once, and the answer that
    // makes it grow waits (70 ms at 700,000 addresses).
    void set_limits(Limits limits);
    const Limits& limits() const noexcept { return limits_; }

    // One answer: `names` is the chain from the question, `ttl` its lowest
    // TTL. Every name is remembered with the addresses; the addresses go to
    // the sets of every selector any name matches.
    void learn(const std::string& endpoint, const std::vector<std::string>& names,
               const std::vector<Address>& addresses, uint32_t ttl, Time now, std::vector<ElementOp>& ops);

    // Mappings of one name as the state file or a pre-cache gives them back
    // (expired lookups are dropped; connection ones wait for the flow
    // counts).
    void restore(const std::string& endpoint, const std::string& name, const std::vector<Mapping>& mappings,
                 Time now, std::vector<ElementOp>& ops);

    // Room for this many more names and addresses, before a restore.
    void reserve(size_t names, size_t addresses);

    // Flows of selected endpoints, from conntrack events, by conntrack id:
    // the same flow seen open (or closed) twice counts once.
    void flow_opened(uint32_t id, const Address& src, const Address& dst, Time now);
    void flow_closed(uint32_t id, Time now);
    struct Flow {
        uint32_t id;
        Address src, dst;
    };
    // After a dump (at start, after lost events): the flows alive now.
    void flows_reset(const std::vector<Flow>& flows, Time now);

    // Every element the sets must hold, for a table that was put back.
    void resync(Time now, std::vector<ElementOp>& ops) const;
    // The element the sets must hold for a selector's tag and an address,
    // as resync gives it, or nothing when the cache holds no such element.
    std::optional<ElementOp> element(uint64_t tag, const Address& a, Time now) const;

    // Handles every deadline that passed by `now`: lookups expiring (to
    // connection while flows live), connections idle past the grace period,
    // kernel timeouts of connection elements to renew.
    void expire(Time now, std::vector<ElementOp>& ops);
    std::optional<Time> next_deadline() const;

    // Removes the mappings of names matching `pattern` (all when null).
    size_t clean(const FqdnMatcher* pattern, Time now, std::vector<ElementOp>& ops);

    struct Entry {
        std::string endpoint;
        std::string name;
        std::vector<Mapping> mappings;
    };
    std::vector<Entry> entries() const;
    // Every name without copying the cache: `f(endpoint, name, selectors,
    // mappings)`, the selectors as indexes into selectors() (those whose
    // sets its addresses fill), the mappings valid for the call only.
    // Unordered.
    using Visitor = std::function<void(std::string_view endpoint, std::string_view name,
                                       std::span<const FqdnMatcher::SelectorId> selectors,
                                       std::span<const Mapping> mappings)>;
    void visit(const Visitor& f) const;
    const std::vector<FqdnSelector>& selectors() const noexcept { return selectors_; }

    size_t names() const noexcept { return entries_.size(); }
    size_t addresses() const noexcept { return lookups_.size() + connection_deadlines_.size(); }
    size_t connection_addresses() const noexcept { return connections_.size(); }
    uint64_t gc_deletions() const noexcept { return gc_deletions_; }
    // Names with at least one lookup address, and lookup addresses: what
    // max_names and max_addresses bound.
    size_t lookup_names() const noexcept { return lookup_names_; }
    size_t lookup_addresses() const noexcept { return lookups_.size(); }
    // Kernel renewals written, and those an answer did not need to wait
    // for (deferred while more than half of the last grant was left).
    uint64_t renewals_written() const noexcept { return renewals_written_; }
    uint64_t renewals_deferred() const noexcept { return renewals_deferred_; }
    // Lookups evicted by the global bound (removed, or kept as connection).
    uint64_t evictions() const noexcept { return evictions_; }
    size_t live_flows() const noexcept { return flows_total_; }
    // The sets that hold `a`.
    std::vector<std::string> sets_holding(const Address& a) const;
    // The selectors (as text) that any of `names` matches: those whose sets
    // an answer with that chain fills. Uses the matcher the cache keeps.
    std::vector<std::string> selectors_matching(const std::vector<std::string>& names) const;
    // Names (at most `max`, sorted) that any endpoint learned `a` for: a
    // walk over every entry, for the rate-limited drop log only.
    std::vector<std::string> names_of(const Address& a, size_t max = 8) const;

private:
    // One address of a name: 48 bytes, in its name's vector. Always in the
    // deadline heap of its source, at `deadline`.
    struct Slot {
        Time lookup;
        Time expires;
        Address address;
        Source source = Source::lookup;
        uint32_t ttl = 0;
        uint32_t deadline = 0;
    };
    struct NameEntry {
        const std::string* key = nullptr; // endpoint '\0' name: its key in entries_
        std::optional<Address> endpoint_address; // forwarded clients
        uint32_t lookups = 0; // slots of source lookup
        std::vector<FqdnMatcher::SelectorId> selectors;
        std::vector<Slot> slots; // unordered; at most max-ip-per-hostname
        std::string_view endpoint() const;
        std::string_view name() const;
        // The index of `a` in slots, or npos.
        size_t find(const Address& a) const noexcept;
    };
    static constexpr size_t npos = static_cast<size_t>(-1);
    // A binary min-heap of slots' next deadlines; one per source.
    struct Deadline {
        Time when;
        NameEntry* entry;
        uint32_t slot;
    };
    // What only a connection-sourced slot needs (at most
    // max-deferred-connection-deletes of them).
    struct Connection {
        NameEntry* entry;
        Time refresh_at; // the next renewal of the kernel element
        Time last_used;
        std::optional<Time> idle_since; // since when no flow is alive
        bool used = false;              // a flow opened to it since it became connection
    };
    // Per selector and address: how many slots put it in the selector's set,
    // and the latest timeout given to the kernel, in whole seconds since the
    // epoch (the kernel gets timeouts rounded up to a second).
    struct HoldKey {
        Address address;
        FqdnMatcher::SelectorId selector;
        bool operator==(const HoldKey&) const = default;
    };
    struct Holding {
        uint32_t holders = 0;
        uint32_t kernel_expiry = 0;
        // The timeout of the last write, in seconds: a renewal waits while
        // more than half of it is left.
        uint32_t granted = 0;
        // The expiry the holders want, beyond kernel_expiry: written when
        // renew_due comes (0: nothing waits).
        uint32_t wanted = 0;
        uint32_t renew_due = 0;
    };
    // A deferred renewal, due at `due` (whole seconds); stale once the
    // holding's renew_due differs (written early, or the holding gone).
    struct Renewal {
        uint32_t due;
        HoldKey key;
    };
    struct RenewalLater {
        bool operator()(const Renewal& a, const Renewal& b) const noexcept { return a.due > b.due; }
    };
    struct HoldKeyHash {
        size_t operator()(const HoldKey& k) const noexcept;
    };
    struct AddressHash {
        size_t operator()(const Address& a) const noexcept;
    };
    struct PairHash {
        size_t operator()(const std::pair<Address, Address>& p) const noexcept;
    };

    NameEntry& entry(const std::string& endpoint, const std::string& name);
    void erase_entry(NameEntry& e);
    void hold(const NameEntry& e, const Address& a, Time until, Time now, std::vector<ElementOp>& ops);
    // Extends the kernel's timeout to `until` where it is shorter: now, or
    // when `lazy`, once half the last grant is left (renewals_).
    void renew(const NameEntry& e, const Address& a, Time until, Time now, std::vector<ElementOp>& ops,
               bool lazy = true);
    void renew(FqdnMatcher::SelectorId id, Holding& h, const Address& a, uint32_t expiry, Time now,
               std::vector<ElementOp>& ops, bool lazy = true);
    // Writes the kernel's timeout to `expiry` now.
    void write(FqdnMatcher::SelectorId id, Holding& h, const Address& a, uint32_t expiry, Time now,
               std::vector<ElementOp>& ops);
    void release(const NameEntry& e, const Address& a, Time now, std::vector<ElementOp>& ops);
    // Adds a slot (and its deadline); the caller holds it.
    uint32_t add_slot(NameEntry& e, const Slot& s, Time when);
    void erase_slot(NameEntry& e, size_t index, Time now, std::vector<ElementOp>& ops);
    void reschedule(NameEntry& e, size_t index, Time when);
    // Takes a slot out of its heap / puts it into the heap of its source.
    void unschedule(NameEntry& e, size_t index);
    // Moves a slot to the heap of its new source, due at `when`.
    void set_source(NameEntry& e, size_t index, Source source, Time when);
    void schedule(NameEntry& e, size_t index, Time when);
    std::vector<Deadline>& heap_of(const Slot& s) noexcept;
    static void move_deadline(std::vector<Deadline>& heap, size_t from, size_t to);
    static void resift(std::vector<Deadline>& heap, size_t pos);
    static void sift_up(std::vector<Deadline>& heap, size_t pos);
    static void sift_down(std::vector<Deadline>& heap, size_t pos);
    static void placed(std::vector<Deadline>& heap, size_t pos);
    Connection* connection_of(const NameEntry& e, const Address& a);
    const Connection* connection_of(const NameEntry& e, const Address& a) const;
    void drop_connection(const NameEntry& e, const Address& a);
    void schedule_connection(NameEntry& e, size_t index, const Connection& c);
    bool flows_live(const NameEntry& e, const Address& dst) const;
    void to_connection(NameEntry& e, size_t index, Time now, std::vector<ElementOp>& ops);
    void enforce_connection_limit(Time now, std::vector<ElementOp>& ops);
    // Evicts down to max_names and max_addresses; the names in `keep` (those
    // an answer is teaching) are never evicted.
    void enforce_bounds(Time now, std::vector<ElementOp>& ops, std::span<NameEntry* const> keep = {});
    // The heap position of the lookup that expires soonest outside `keep`, or npos.
    size_t eviction_victim(std::span<NameEntry* const> keep) const;
    // A lookup's early expiry: kept as connection while flows live, else gone.
    void evict(NameEntry& e, size_t index, Time now, std::vector<ElementOp>& ops);
    void touch_connections(const Address& dst, Time now);

    Limits limits_;
    std::vector<FqdnSelector> selectors_;
    std::vector<uint64_t> tags_; // [selector id]
    FqdnMatcher matcher_;
    std::unordered_map<std::string, NameEntry> entries_; // key: endpoint + '\0' + name
    // Lookup slots by expiry, and connection slots by their next renewal or
    // end of grace: apart, so that the soonest lookup to expire is a top.
    std::vector<Deadline> lookups_;
    std::vector<Deadline> connection_deadlines_;
    std::unordered_map<HoldKey, Holding, HoldKeyHash> holdings_;
    // Deferred kernel renewals, soonest first (a min-heap by due).
    std::vector<Renewal> renewals_;
    // Writes the deferred renewals due by `now`.
    void renew_due(Time now, std::vector<ElementOp>& ops);
    // Live flows: per destination, and per (source, destination).
    std::unordered_map<Address, uint32_t, AddressHash> flows_to_;
    std::unordered_map<std::pair<Address, Address>, uint32_t, PairHash> flows_;
    size_t flows_total_ = 0;
    std::unordered_map<uint32_t, std::pair<Address, Address>> flow_ids_;
    // Connection-sourced slots by destination, to find them on flow events.
    std::unordered_multimap<Address, Connection, AddressHash> connections_;
    uint64_t gc_deletions_ = 0;
    size_t lookup_names_ = 0;
    uint64_t evictions_ = 0;
    uint64_t renewals_written_ = 0, renewals_deferred_ = 0;
};

} // namespace fqdnd::cache
