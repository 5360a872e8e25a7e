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

// Everything the configuration asks of the kernel, in one table.
Ruleset compile(const config::Config& config);

} // namespace fqdnd::ruleset
