#pragma once

#include "config/model.hpp"
#include "ruleset/model.hpp"

#include <string>
#include <vector>

namespace fqdnd::ruleset {

// The names of the two sets (IPv4, IPv6) of an FQDN selector: stable across
// reloads and restarts, so that set contents survive them.
std::string set_name(const FqdnSelector& selector, Family family);

// Everything the configuration asks of the kernel, in one table.
Ruleset compile(const config::Config& config);

} // namespace fqdnd::ruleset
