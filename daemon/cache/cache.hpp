#pragma once

#include "config/address.hpp"
#include "config/duration.hpp"
#include "fqdn/matcher.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
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
};

// A connection-sourced element's kernel timeout: renewed every half of it
// while fqdnd lives, so that if fqdnd dies the kernel still drops it within
// this long.
inline constexpr std::chrono::minutes connection_margin{10};

class Cache {
public:
    explicit Cache(Limits limits = {}) : limits_(limits) {}

    // The FQDN selectors of the running policies; on a change, the sets of
    // new selectors are filled from what is already known.
    void set_selectors(const std::vector<FqdnSelector>& selectors, Time now, std::vector<ElementOp>& ops);
    void set_limits(Limits limits) { limits_ = limits; }
    const Limits& limits() const noexcept { return limits_; }

    // One answer: `names` is the chain from the question, `ttl` its lowest
    // TTL. Every name is remembered with the addresses; the addresses go to
    // the sets of every selector any name matches.
    void learn(const std::string& endpoint, const std::vector<std::string>& names,
               const std::vector<Address>& addresses, uint32_t ttl, Time now, std::vector<ElementOp>& ops);

    // A mapping as the state file or a pre-cache gives it back (expired
    // lookups are dropped; connection ones wait for the flow counts).
    void restore(const std::string& endpoint, const std::string& name, const Mapping& m, Time now,
                 std::vector<ElementOp>& ops);

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

    size_t names() const noexcept { return entries_.size(); }
    size_t addresses() const noexcept { return deadlines_.size(); }
    size_t connection_addresses() const noexcept { return connections_; }
    uint64_t gc_deletions() const noexcept { return gc_deletions_; }
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
    struct NameEntry;
    using Deadlines = std::multimap<Time, std::pair<NameEntry*, Address>>;
    struct MappingNode {
        Mapping mapping;
        Deadlines::iterator it{};
        bool scheduled = false;
        // Connection-sourced only: the next renewal of the kernel element,
        // and since when no flow is alive.
        Time refresh_at{};
        std::optional<Time> idle_since;
    };
    struct NameEntry {
        std::string endpoint;
        std::optional<Address> endpoint_address; // forwarded clients
        std::string name;
        std::vector<FqdnMatcher::SelectorId> selectors;
        std::map<Address, MappingNode> mappings;
    };
    struct Holding {
        uint32_t holders = 0;
        Time kernel_expiry{}; // the latest timeout given to the kernel
    };
    struct HoldKey {
        FqdnMatcher::SelectorId selector;
        Address address;
        bool operator==(const HoldKey&) const = default;
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
    void hold(const NameEntry& e, const Mapping& m, Time now, std::vector<ElementOp>& ops);
    void renew(const NameEntry& e, const Mapping& m, Time until, Time now, std::vector<ElementOp>& ops);
    void release(const NameEntry& e, const Mapping& m, Time now, std::vector<ElementOp>& ops);
    void erase_mapping(NameEntry& e, std::map<Address, MappingNode>::iterator it, Time now,
                       std::vector<ElementOp>& ops);
    void set_deadline(NameEntry& e, MappingNode& node, Time when);
    void schedule_connection(NameEntry& e, MappingNode& node);
    bool flows_live(const NameEntry& e, const Address& dst) const;
    void to_connection(NameEntry& e, MappingNode& node, Time now, std::vector<ElementOp>& ops);
    void enforce_connection_limit(Time now, std::vector<ElementOp>& ops);
    void touch_connections(const Address& dst, Time now);

    Limits limits_;
    std::vector<FqdnSelector> selectors_;
    std::vector<uint64_t> tags_; // [selector id]
    FqdnMatcher matcher_;
    std::unordered_map<std::string, NameEntry> entries_; // key: endpoint + '\0' + name
    Deadlines deadlines_;
    std::unordered_map<HoldKey, Holding, HoldKeyHash> holdings_;
    // Live flows: per destination, and per (source, destination).
    std::unordered_map<Address, uint32_t, AddressHash> flows_to_;
    std::unordered_map<std::pair<Address, Address>, uint32_t, PairHash> flows_;
    size_t flows_total_ = 0;
    std::unordered_map<uint32_t, std::pair<Address, Address>> flow_ids_;
    // Connection-sourced mappings by destination, to find them on flow events.
    std::unordered_multimap<Address, NameEntry*, AddressHash> connection_index_;
    size_t connections_ = 0;
    uint64_t gc_deletions_ = 0;
};

} // namespace fqdnd::cache
