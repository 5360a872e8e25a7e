#pragma once

#include "cache/cache.hpp"
#include "config/address.hpp"
#include "config/duration.hpp"
#include "fqdn/selector.hpp"

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace fqdnd::nft {
class Table;
}

// At start, once the state directory brought the cache back: the kernel's
// FQDN sets checked against it. Anything else there is something fqdnd
// cannot account for (a journal lost to a full disk, policies changed while
// it was down, someone's `nft add element`), and goes.
namespace fqdnd::state {

// An element of a set, as the kernel lists it.
struct SetElement {
    std::optional<uint64_t> tag; // in a tagged set: the selector's
    Address address;
};

struct Unexplained {
    std::vector<size_t> listed;                      // positions in the listing, in its order
    std::map<uint64_t, std::vector<Address>> by_tag; // what to remove, per tag (0: untagged)
};

// The elements of `listed` that `want` (what the restored cache says the
// sets hold: cache::Cache::resync()) does not explain.
Unexplained unexplained(const std::vector<cache::ElementOp>& want, const std::vector<SetElement>& listed);

// The log line for one unexplained element: its selector (nothing: of no
// running policy), the time it had left in the kernel, and the names the
// cache knows it by.
std::string describe_unexplained(const Address& address, const std::string& set, const std::string* selector,
                                 Duration left, const std::vector<std::string>& names);

// Removes (and logs, the first 20) every element of the FQDN sets of inet
// `table` that `cache` does not explain. Returns how many went; `complete`
// false when a set could not be listed without a transaction meanwhile,
// when not all could be removed, or when any were (a listing taken while
// elements go may miss some): the caller checks again later.
size_t reconcile_sets(nft::Table& kernel, const std::string& table, const std::vector<FqdnSelector>& selectors,
                      const cache::Cache& cache, cache::Time now, bool& complete);

} // namespace fqdnd::state
