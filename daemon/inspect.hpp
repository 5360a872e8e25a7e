#pragma once

#include "cache/cache.hpp"
#include "config/model.hpp"

#include <optional>
#include <string>
#include <vector>

// What `fqdnctl selectors` and `fqdnctl explain` show, from the running
// configuration and the cache: plain functions, one pass over the cache,
// no copy of it.
namespace fqdnd::inspect {

struct SelectorView {
    std::string selector, set4, set6;
    std::vector<std::string> names, addresses; // from the cache, sorted
};
// Every FQDN selector of the cache (those of the running policies), with
// the names and addresses that fill its sets.
std::vector<SelectorView> selectors(const cache::Cache& cache);

// Why an address or a name is allowed, or not.
struct Explanation {
    bool is_address = false;
    std::string subject;  // the address, or the name made fully qualified
    bool allowed = false; // an address: some set holds it or a to-cidrs covers it
    struct Holder {
        std::string name, endpoint, source, selector, set;
        cache::Time expires;
        std::vector<std::string> policies; // that use the selector
    };
    std::vector<Holder> holders;            // by endpoint, name, address, selector
    std::vector<std::string> cidr_rules;    // "policy: to-cidrs cidr" covering the address
    std::vector<std::string> selector_uses; // a name: "selector (policy policy)" that match it
    std::vector<std::string> dns_rules;     // a name: "policy: may be asked of server" that allow asking it
};
// Nothing when `what` is neither an address nor a name.
std::optional<Explanation> explain(const config::Config& config, const cache::Cache& cache, const std::string& what);

} // namespace fqdnd::inspect
