#pragma once

#include "audit/record.hpp"
#include "cache/cache.hpp"
#include "config/model.hpp"
#include "fqdn/matcher.hpp"
#include "inspect.hpp"
#include "metrics.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

// What org.fqdnd1.Manager serves, as the bus sees it: the daemon implements
// it, the bus depends on nothing more of the daemon (and tests may give a
// fake).
namespace fqdnd::bus {

struct Status {
    std::string table, queue_mode;
    uint32_t policies = 0;
    uint64_t names = 0, addresses = 0, connection_addresses = 0, live_flows = 0, selectors = 0;
    // What the kernel dropped from fqdnd's queues: full, or not deliverable.
    uint64_t queue_dropped = 0, queue_user_dropped = 0;
};

class Backend {
public:
    virtual ~Backend() = default;

    virtual Status status() const = 0;
    virtual std::vector<cache::Cache::Entry> cache_entries() const = 0;
    virtual const std::vector<config::Policy>& policies() const = 0;
    virtual std::vector<inspect::SelectorView> selectors() const = 0;
    virtual std::optional<inspect::Explanation> explain(const std::string& what) const = 0;
    virtual std::vector<metrics::Sample> metric_samples() const = 0;
    // The group whose members may read (root alone may change).
    virtual const std::string& read_group() const = 0;

    // Reloads; on any error the running configuration stays and `errors`
    // gets each as file:line:column: what.
    virtual int reload(std::vector<std::string>* errors) = 0;
    // Forgets what the cache knows of names matching `pattern` (all when
    // null, `pattern_text` its text) and takes their addresses out of the
    // sets. Returns how many addresses went.
    virtual size_t clean_cache(const FqdnMatcher* pattern, const std::optional<std::string>& pattern_text) = 0;
    // What audit and drops recorded, of one policy or all.
    virtual std::vector<audit::PolicyRecord> recordings(const std::optional<std::string>& policy) const = 0;
    // Forgets it; returns how many entries went.
    virtual size_t forget_recording(const std::optional<std::string>& policy) = 0;
};

} // namespace fqdnd::bus
