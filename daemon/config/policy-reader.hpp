#pragma once

#include "config/model.hpp"
#include "config/toml-reader.hpp"

#include <vector>

namespace fqdnd::config {

// Reads the [[policy]] tables of one parsed policy file, reporting every
// problem; policies with errors are not appended.
void read_policies(const toml::table& root, TomlReader& reader, std::vector<Policy>& out);

// Sorts and deduplicates every list and merges tcp+udp into any, so that
// equal meaning gives equal values.
void canonicalize(Policy& policy);

} // namespace fqdnd::config
