#pragma once

#include "nft/netlink.hpp"
#include "ruleset/model.hpp"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace fqdnd::nft {

enum class QueueMode : uint8_t { native, compat };
std::string_view to_string(QueueMode m) noexcept;

// Adds the messages that create `rule` in `chain` (with the anonymous sets
// it uses) to `batch`. Returns 0 or a negative errno for a rule that cannot
// be expressed on this host (a unit whose cgroup does not exist).
int encode_rule(Batch& batch, const std::string& table, const std::string& chain, const ruleset::Rule& rule,
                QueueMode mode, uint32_t& next_set_id, std::string* problem);

// Where a systemd unit's cgroup is in the cgroup v2 hierarchy: the
// shallowest directory of its name, its depth (the socket expression's
// level) and its id (the inode). Nothing, with `problem` saying why, when
// the unit has no cgroup (not running), two have that name at one depth,
// or the host has no cgroup v2 hierarchy.
struct UnitCgroup {
    std::filesystem::path path;
    uint32_t level = 0;
    uint64_t id = 0;
};
std::optional<UnitCgroup> find_unit_cgroup(const std::string& unit, std::string* problem);

// A named set of addresses with per-element timeouts (flags timeout),
// readable in `nft list` (key byte order and comment in its userdata).
void encode_address_set(Batch& batch, const std::string& table, const ruleset::AddressSet& set, uint32_t set_id);

} // namespace fqdnd::nft
