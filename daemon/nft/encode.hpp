#pragma once

#include "nft/netlink.hpp"
#include "ruleset/model.hpp"

#include <string>

namespace fqdnd::nft {

enum class QueueMode : uint8_t { native, compat };
std::string_view to_string(QueueMode m) noexcept;

// Adds the messages that create `rule` in `chain` (with the anonymous sets
// it uses) to `batch`. Returns 0 or a negative errno for a rule that cannot
// be expressed on this host (a unit whose cgroup does not exist).
int encode_rule(Batch& batch, const std::string& table, const std::string& chain, const ruleset::Rule& rule,
                QueueMode mode, uint32_t& next_set_id, std::string* problem);

// A named set of addresses with per-element timeouts (flags timeout),
// readable in `nft list` (key byte order and comment in its userdata).
void encode_address_set(Batch& batch, const std::string& table, const ruleset::AddressSet& set, uint32_t set_id);

} // namespace fqdnd::nft
