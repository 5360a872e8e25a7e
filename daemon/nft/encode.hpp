#pragma once

#include "cgroup/units.hpp"
#include "nft/netlink.hpp"
#include "ruleset/model.hpp"

#include <cstdint>
#include <string>

namespace fqdnd::nft {

enum class QueueMode : uint8_t { native, compat };
std::string_view to_string(QueueMode m) noexcept;

// Adds the messages that create `rule` in `chain` (with the anonymous sets
// it uses) to `batch`. A rule that selects a unit's processes compares the
// cgroup `units` gives the unit; while the unit has none, an id that no
// cgroup has (0), so the rule matches nothing. Returns 0, or -ENOENT for a
// unit that `units` does not list (never looked up).
int encode_rule(Batch& batch, const std::string& table, const std::string& chain, const ruleset::Rule& rule,
                QueueMode mode, const cgroup::UnitCgroups& units, uint32_t& next_set_id, std::string* problem);

// A named set of addresses with per-element timeouts (flags timeout),
// readable in `nft list` (key byte order and comment in its userdata).
void encode_address_set(Batch& batch, const std::string& table, const ruleset::AddressSet& set, uint32_t set_id);

} // namespace fqdnd::nft
