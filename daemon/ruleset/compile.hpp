#pragma once

#include "config/model.hpp"
#include "ruleset/model.hpp"

#include <string>
#include <vector>

namespace fqdnd::ruleset {

// An FQDN selector's tag, the first part of its elements in the FQDN sets:
// a hash of the selector's text, the same in every build, so that set
// contents survive reloads and restarts.
uint64_t selector_tag(const FqdnSelector& selector);

// Where a selector's addresses are, as people read it: the set and the
// tag as `nft list set` prints an element's first two fields, e.g.
// "fqdn4:0x5e03d114.0xf7c0a218".
std::string set_key(const FqdnSelector& selector, Family family);

// The NFLOG group that queries under a DNS rule allowing every name are
// copied to: the one after log-group.
inline uint16_t query_log_group(const config::Settings& s)
{
    return static_cast<uint16_t>(s.log_group + 1);
}

// Whether the ruleset copies queries to query_log_group: a policy has a
// DNS rule over UDP that allows every name.
bool copies_queries(const config::Config& config);

// Everything the configuration asks of the kernel, in one table.
Ruleset compile(const config::Config& config);

} // namespace fqdnd::ruleset
