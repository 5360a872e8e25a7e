#pragma once

#include "cache/cache.hpp"

#include <string>
#include <vector>

namespace fqdnd::cache {

// "2026-04-19T16:21:57.997Z"
std::string rfc3339(Time t);

std::string_view to_string(Source s) noexcept;

// Rows as aligned columns (three spaces between), one line each.
std::string format_columns(const std::vector<std::vector<std::string>>& rows);

// The cache as `cilium fqdn cache list` prints it: aligned columns
// Endpoint Source FQDN TTL ExpirationTime IPs, one row per endpoint, name,
// source and expiry, its addresses joined by commas.
std::string format_table(const std::vector<Cache::Entry>& entries);

} // namespace fqdnd::cache
