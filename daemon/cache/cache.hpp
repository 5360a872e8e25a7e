#pragma once

#include "config/address.hpp"
#include "config/duration.hpp"
#include "fqdn/matcher.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

// What DNS answers taught: per endpoint and name, the addresses with their
// lookup time and expiry; and, per FQDN selector, which addresses its sets
// must hold and until when. Plain data with an injected clock: every change
// is returned as the set element operations that make the kernel agree.
namespace fqdnd::cache {

using Time = std::chrono::sys_time<std::chrono::milliseconds>;

struct ElementOp {
    enum class Kind : uint8_t { add, remove } kind;
    std::string set;
    Family family;
    Address address;
    Duration timeout{};  // add: the element's new timeout
    bool exists = false; // add: already in the set (a renewal)
};

enum class Source : uint8_t { lookup };

struct Mapping {
    Address address;
    Time lookup;
    Time expires;
    uint32_t ttl = 0; // as the answer said (before min-ttl)
    Source source = Source::lookup;
};

struct Limits {
    Duration min_ttl = std::chrono::hours(1);
    size_t max_ip_per_hostname = 50;
};

class Cache {
public:
    explicit Cache(Limits limits = {}) : limits_(limits) {}

    // The FQDN selectors of the running policies; on a change, the sets of
    // new selectors are filled from what is already known.
    void set_selectors(const std::vector<FqdnSelector>& selectors, Time now, std::vector<ElementOp>& ops);
    void set_limits(Limits limits) { limits_ = limits; }

    // One answer: `names` is the chain from the question, `ttl` its lowest
    // TTL. Every name is remembered with the addresses; the addresses go to
    // the sets of every selector any name matches.
    void learn(const std::string& endpoint, const std::vector<std::string>& names,
               const std::vector<Address>& addresses, uint32_t ttl, Time now, std::vector<ElementOp>& ops);

    // Every element the sets must hold, for a table that was put back.
    void resync(Time now, std::vector<ElementOp>& ops) const;

    // Drops what expired by `now`.
    void expire(Time now, std::vector<ElementOp>& ops);
    std::optional<Time> next_expiry() const;

    struct Entry {
        std::string endpoint;
        std::string name;
        std::vector<Mapping> mappings;
    };
    std::vector<Entry> entries() const;

    size_t names() const noexcept { return entries_.size(); }
    size_t addresses() const noexcept;
    // The selectors (ids into the selector list) whose sets hold `a`.
    std::vector<std::string> sets_holding(const Address& a) const;

private:
    struct NameEntry;
    struct MappingNode {
        Mapping mapping;
        std::multimap<Time, std::pair<NameEntry*, Address>>::iterator expiry;
    };
    struct NameEntry {
        std::string endpoint;
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

    void hold(const NameEntry& e, const Mapping& m, Time now, std::vector<ElementOp>& ops);
    void renew(const NameEntry& e, const Mapping& m, Time now, std::vector<ElementOp>& ops);
    void release(const NameEntry& e, const Mapping& m, Time now, std::vector<ElementOp>& ops);
    void erase_mapping(NameEntry& e, std::map<Address, MappingNode>::iterator it, Time now, std::vector<ElementOp>& ops);
    std::string set_of(FqdnMatcher::SelectorId id, Family f) const;

    Limits limits_;
    std::vector<FqdnSelector> selectors_;
    std::vector<std::string> set_names_; // [id * 2 + (v6 ? 1 : 0)]
    FqdnMatcher matcher_;
    std::unordered_map<std::string, NameEntry> entries_; // key: endpoint + '\0' + name
    std::multimap<Time, std::pair<NameEntry*, Address>> expiries_;
    std::unordered_map<HoldKey, Holding, HoldKeyHash> holdings_;
};

} // namespace fqdnd::cache
