#pragma once

#include "config/address.hpp"
#include "config/diagnostic.hpp"
#include "config/duration.hpp"
#include "fqdn/selector.hpp"

#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

// The configuration as fqdnd runs it: immutable once loaded, canonical (lists
// sorted and deduplicated, names lower-cased, "any" merged), so that two
// models that mean the same thing compare equal and a reload can tell what
// changed. Source locations are kept for messages but are not part of the
// meaning.
namespace fqdnd::config {

enum class RejectCode : uint8_t { refused, name_error };
enum class Protocol : uint8_t { tcp, udp, any };
// The reverse-path check on traffic entering the host: strict (the route
// back to the source goes out the interface the packet came in on), loose
// (some route back exists), or off.
enum class ReversePath : uint8_t { strict, loose, off };

std::string_view to_string(RejectCode c) noexcept;
std::string_view to_string(Protocol p) noexcept;
std::string_view to_string(ReversePath r) noexcept;

// [daemon] and [fqdn] of fqdnd.toml; see settings.cpp for the keys.
struct Settings {
    std::string table;
    int64_t queue = 0;
    int64_t queues = 0;
    bool fail_open = false;
    ReversePath reverse_path_filter = ReversePath::strict;
    int64_t log_group = 0;
    int64_t log_rate = 0;   // dropped packets logged per second; 0: none
    std::string policy_directory; // absolute once loaded
    std::string state_directory;
    std::string metrics_file; // "" for none
    Duration min_ttl{};
    int64_t max_ip_per_hostname = 0;
    Duration idle_connection_grace_period{};
    int64_t max_deferred_connection_deletes = 0;
    int64_t max_names = 0;     // lookup names, per endpoint
    int64_t max_addresses = 0; // lookup addresses, per endpoint and name
    Duration response_max_delay{};
    RejectCode reject_response_code = RejectCode::refused;
    std::string pre_cache;

    bool operator==(const Settings&) const = default;
};

struct PortRule {
    uint16_t port = 0;
    Protocol protocol = Protocol::any;

    auto operator<=>(const PortRule&) const = default;
};

// A user or group: the name as written and the id it resolved to.
struct Account {
    std::string name;
    uint32_t id = 0;

    bool operator==(const Account& o) const noexcept { return id == o.id; }
    auto operator<=>(const Account& o) const noexcept { return id <=> o.id; }
};

// The endpointSelector: the traffic a policy governs.
struct Selector {
    std::vector<Cidr> sources;           // forwarded clients by address
    std::vector<std::string> interfaces; // forwarded clients by input interface
    bool local = false;                  // every local process
    std::vector<Account> users;          // local processes by socket uid
    std::vector<Account> groups;         // local processes by socket gid
    std::vector<std::string> units;      // local processes by systemd unit

    bool selects_forwarded() const noexcept { return !sources.empty() || !interfaces.empty(); }
    bool selects_local() const noexcept { return local || !users.empty() || !groups.empty() || !units.empty(); }
    bool empty() const noexcept { return !selects_forwarded() && !selects_local(); }

    auto meaning() const { return std::tie(sources, interfaces, local, users, groups, units); }
    bool operator==(const Selector& o) const { return meaning() == o.meaning(); }
};

// One [[policy.egress]]: destinations (FQDN selectors, CIDRs, or DNS servers
// with the names they may be asked about), optionally limited to ports.
struct EgressRule {
    std::vector<FqdnSelector> to_fqdns;
    std::vector<Cidr> to_cidrs;
    std::vector<Cidr> to_dns_servers;
    std::vector<FqdnSelector> dns; // with to_dns_servers only
    std::vector<PortRule> ports;   // empty: every port and protocol
    SourceLocation where;

    bool is_dns() const noexcept { return !to_dns_servers.empty(); }

    auto meaning() const { return std::tie(to_fqdns, to_cidrs, to_dns_servers, dns, ports); }
    bool operator==(const EgressRule& o) const { return meaning() == o.meaning(); }
    bool operator<(const EgressRule& o) const { return meaning() < o.meaning(); }
};

struct Policy {
    std::string name;
    bool audit = false;
    Selector selector;
    std::vector<EgressRule> egress;
    SourceLocation where;

    auto meaning() const { return std::tie(name, audit, selector, egress); }
    bool operator==(const Policy& o) const { return meaning() == o.meaning(); }
};

struct Config {
    Settings settings;
    std::vector<Policy> policies; // sorted by name
    std::vector<std::string> files; // every file read, for messages

    // Every distinct FQDN selector of every to-fqdns, sorted: one pair of
    // nftables sets each.
    std::vector<FqdnSelector> fqdn_selectors() const;
    // Every systemd unit a policy selects, sorted and distinct.
    std::vector<std::string> units() const;

    bool operator==(const Config& o) const { return settings == o.settings && policies == o.policies; }
};

} // namespace fqdnd::config
