#pragma once

#include "audit/record.hpp"
#include "config/model.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

// A policy written from a recording (`fqdnctl policy suggest`), and what a
// recording needed that a policy lacks (`fqdnctl policy diff`). Names come
// only from the recording, which kept only names that normalize
// ([-a-z0-9_.]): nothing in them can leave a TOML string or comment; every
// other text is escaped anyway.
namespace fqdnd::audit {

// The ports of a rule: each port with "tcp", "udp" or "any" (both seen),
// or every port and protocol when a flow without ports (icmp, sctp, ...)
// was seen.
struct Ports {
    bool every = false;
    std::map<uint16_t, std::string> by_port;

    void add(std::string_view protocol, uint16_t port);
    auto operator<=>(const Ports&) const = default;
};

// One entry of to-fqdns, dns or to-cidrs, with what it stands for.
struct Item {
    enum class Kind : uint8_t { name, pattern, cidr } kind = Kind::name;
    std::string text;               // "a.svc.intra", "*.svc.intra", "203.0.113.9"
    std::vector<std::string> names; // the recorded names it covers
    uint64_t count = 0;
    Time last{};
};

struct Rule {
    std::vector<Item> items;
    Ports ports;
};

// How names were used: with which ports, how often, last when.
struct NameUse {
    Ports ports;
    uint64_t count = 0;
    Time last{};
};

// The to-fqdns rules for `names`: one rule per distinct set of ports; in
// each, names under one parent (of two labels at least) collapse to
// "*.parent" when two or more siblings were used, and names (or such
// patterns) below one domain collapse to "**.domain" when they span several
// depths, the deepest domain first. Never a bare "*", never a pattern on a
// single label ("*.com").
std::vector<Rule> collapse(const std::map<std::string, NameUse>& names);

struct Suggestion {
    std::string policy;
    Time first{}, last{};
    std::vector<Rule> fqdns;        // to-fqdns
    std::vector<Item> dns_servers;  // to-dns-servers (Kind::cidr)
    std::vector<Item> dns_names;    // dns: the names suggested and looked up
    std::vector<Rule> cidrs;        // to-cidrs: addresses no name explains
    std::vector<Item> looked_up_only; // names looked up with no flow recorded
};
Suggestion suggest(const PolicyRecord& record);

// TOML for policy.d, ready for `fqdnctl check-config`: the selector and
// audit setting of `current` (the policy as configured; without it the
// selector is left for the reader to write, commented).
std::string to_toml(const Suggestion& s, const config::Policy* current);
nlohmann::json to_json(const Suggestion& s, const config::Policy* current);

// A TOML basic string: quoted, with '"', '\\' and control characters escaped.
std::string toml_quote(std::string_view text);

// What the recording needed that `current` lacks, and the rules of it that
// no recorded use explains.
struct Difference {
    std::vector<std::string> missing; // one line each
    std::vector<std::string> unused;
};
Difference diff(const PolicyRecord& record, const config::Policy& current);
nlohmann::json to_json(const Difference& d, const std::string& policy);

// What `fqdnctl policy suggest` prints: each record's suggestion, with the
// policy of its name as configured: one TOML document, or a JSON array.
std::string render_suggestions(const std::vector<PolicyRecord>& records, const std::vector<config::Policy>& policies,
                               bool json);
// What `fqdnctl policy diff` prints for `policies` (each against its
// record, or none), as text or a JSON array.
std::string render_diffs(const std::vector<PolicyRecord>& records, const std::vector<config::Policy>& policies,
                         bool json);

} // namespace fqdnd::audit
