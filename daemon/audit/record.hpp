#pragma once

#include "cache/cache.hpp"
#include "config/address.hpp"
#include "config/model.hpp"

#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

// What selected clients did that their policies did not allow, per policy:
// the names they looked up (and at which servers) and the flows a policy
// dropped, or under audit would have dropped. `fqdnctl policy suggest`
// writes a policy from it. Fed by what clients send, so every part is
// bounded: entries per policy and in all, names per flow, servers per name;
// the entry seen longest ago goes first. Plain C++, no clock of its own.
namespace fqdnd::audit {

using Time = cache::Time;

struct Seen {
    uint64_t count = 0;
    Time first{}, last{};
};

// A name asked about, normalized (lower case, trailing dot).
struct Lookup {
    std::string name;
    std::vector<Address> servers; // sorted, at most Limits::servers_per_name
    Seen seen;
};

// A flow not allowed: destination, protocol ("tcp", "udp", "icmp", ... as
// nflog::protocol_name says) and port (0 when the protocol has none), with
// the names the cache knew for the destination when it was seen.
struct Flow {
    Address destination;
    std::string protocol;
    uint16_t port = 0;
    std::vector<std::string> names; // sorted, at most Limits::names_per_flow
    Seen seen;
};

struct PolicyRecord {
    std::string policy;
    std::vector<Lookup> lookups; // by name
    std::vector<Flow> flows;     // by destination, protocol, port
};

struct Limits {
    size_t per_policy = 4096;  // lookups and flows of one policy
    size_t total = 16384;      // of every policy
    size_t policies = 256;     // policies with a recording
    size_t names_per_flow = 4;
    size_t servers_per_name = 8;
    // At most about 20 MB when every entry is a flow with four names of
    // 255 characters; a few MB in practice.
};

class Recorder {
public:
    explicit Recorder(Limits limits = {}) : limits_(limits) {}

    // A name `policy`'s clients asked `server` about. A name that does not
    // normalize (odd characters, too long) is not recorded.
    void lookup(const std::string& policy, std::string_view name, const Address& server, Time now);
    // A flow `policy` did not allow. Names that do not normalize are left
    // out; a protocol other than a short lower-case word is not recorded.
    void flow(const std::string& policy, const Address& destination, std::string_view protocol, uint16_t port,
              const std::vector<std::string>& names, Time now);

    // Forgets one policy's recording, or all; returns the entries removed.
    size_t forget(const std::optional<std::string>& policy);

    // The recording of one policy (nothing when there is none), or of all,
    // sorted by policy name.
    std::vector<PolicyRecord> records(const std::optional<std::string>& policy = std::nullopt) const;

    size_t entries() const noexcept { return total_; }
    uint64_t evictions() const noexcept { return evictions_; }
    const Limits& limits() const noexcept { return limits_; }

    // Changed since the last mark_saved().
    bool dirty() const noexcept { return dirty_; }
    void mark_saved() noexcept { dirty_ = false; }

    // The recording as JSON (the state directory's audit.json), and back:
    // whatever a damaged file holds that does not fit is skipped, within
    // the same bounds. Returns false, with the reason, on a file that is not
    // that JSON at all.
    std::string to_json() const;
    bool from_json(std::string_view text, std::string* problem);

private:
    struct Entry {
        std::string key; // "n NAME" or "f ADDRESS PROTOCOL PORT"
        bool is_flow = false;
        Lookup lookup;
        Flow flow;
        Seen& seen() { return is_flow ? flow.seen : lookup.seen; }
        const Seen& seen() const { return is_flow ? flow.seen : lookup.seen; }
    };
    // Least recently seen first.
    struct Policy {
        std::list<Entry> order;
        std::unordered_map<std::string, std::list<Entry>::iterator> by_key;
    };

    // The entry of `key` moved to the back (seen now), or a new one there
    // after making room; nothing when the policy cannot be recorded.
    Entry* touch(const std::string& policy, const std::string& key, bool is_flow, Time now);
    void evict_one(Policy& p);
    void evict_oldest();

    Limits limits_;
    std::map<std::string, Policy> policies_;
    size_t total_ = 0;
    uint64_t evictions_ = 0;
    bool dirty_ = false;
};

// The policies an allowed DNS query is recorded for, when a client
// `endpoint` (an address, "uid:N" or "local") asked `server` about a name:
// the audit policies that can select the client. Refused queries are not
// recorded: their names are whatever a client made up, and a suggestion
// holds only names fqdnd accepted. Interfaces, groups and units cannot be
// told from the endpoint alone: such a policy takes the query when one of
// its DNS rules lists the server.
std::vector<std::string> policies_for_query(const config::Config& config, const std::string& endpoint,
                                            const Address& server);

} // namespace fqdnd::audit
