#pragma once

#include "cache/cache.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fqdnd::cache {

// "2026-04-19T16:21:57.997Z"
std::string rfc3339(Time t);

// JSON written by hand where it is written often (the journal's lines, the
// state file): a number, and a string. Names come from DNS answers in
// presentation form (ldns writes other bytes as \DDD), so strings are ASCII
// in practice; any other byte is written as \u00XX, which keeps the text
// valid JSON whatever the name. Valid UTF-8 (an endpoint read from an
// edited state file) is written as it is, so that it reads back the same.
void append_number(std::string& out, int64_t v);
void append_string(std::string& out, std::string_view s);

std::string_view to_string(Source s) noexcept;

// Rows as aligned columns (three spaces between), one line each.
std::string format_columns(const std::vector<std::vector<std::string>>& rows);

// The cache as `cilium fqdn cache list` prints it: aligned columns
// Endpoint Source FQDN TTL ExpirationTime IPs, one row per endpoint, name,
// source and expiry, its addresses joined by commas.
std::string format_table(const std::vector<Cache::Entry>& entries);

} // namespace fqdnd::cache
