#include "cache/format.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <map>
#include <tuple>

namespace fqdnd::cache {

std::string rfc3339(Time t)
{
    const auto ms = t.time_since_epoch().count();
    const std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[96];
    std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                  tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
    return buf;
}

void append_number(std::string& out, int64_t v)
{
    char buf[24];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, end);
}

namespace {

// The length of the valid UTF-8 sequence at the start of `s` (RFC 3629: no
// overlong forms, no surrogates, nothing above U+10FFFF), or 0.
size_t utf8_sequence(std::string_view s)
{
    const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
    const auto cont = [&](size_t i) { return i < s.size() && (b(i) & 0xc0) == 0x80; };
    const unsigned char c = b(0);
    if (c >= 0xc2 && c <= 0xdf)
        return cont(1) ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (!cont(1) || !cont(2) || (c == 0xe0 && b(1) < 0xa0) || (c == 0xed && b(1) > 0x9f))
            return 0;
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (!cont(1) || !cont(2) || !cont(3) || (c == 0xf0 && b(1) < 0x90) || (c == 0xf4 && b(1) > 0x8f))
            return 0;
        return 4;
    }
    return 0;
}

} // namespace

void append_string(std::string& out, std::string_view s)
{
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    for (size_t i = 0; i < s.size();) {
        const auto u = static_cast<unsigned char>(s[i]);
        if (u >= 0x80) {
            if (const size_t n = utf8_sequence(s.substr(i)); n > 0) {
                out.append(s.substr(i, n)); // read back as it is
                i += n;
                continue;
            }
        }
        if (u < 0x20 || u >= 0x7f || u == '"' || u == '\\') {
            out += "\\u00";
            out += hex[u >> 4];
            out += hex[u & 15];
        } else {
            out += static_cast<char>(u);
        }
        ++i;
    }
    out += '"';
}

std::string_view to_string(Source s) noexcept
{
    switch (s) {
    case Source::lookup: return "lookup";
    case Source::connection: return "connection";
    }
    return "?";
}

std::string format_table(const std::vector<Cache::Entry>& entries)
{
    using Row = std::vector<std::string>;
    std::vector<Row> rows{{"Endpoint", "Source", "FQDN", "TTL", "ExpirationTime", "IPs"}};
    for (const auto& e : entries) {
        // Addresses that share source and expiry share a row.
        std::map<std::tuple<Source, Time, int64_t>, std::string> groups;
        for (const Mapping& m : e.mappings) {
            const int64_t ttl = std::chrono::duration_cast<std::chrono::seconds>(m.expires - m.lookup).count();
            std::string& ips = groups[{m.source, m.expires, ttl}];
            ips += (ips.empty() ? "" : ",") + m.address.to_string();
        }
        for (const auto& [k, ips] : groups)
            rows.push_back({e.endpoint, std::string(to_string(std::get<0>(k))), e.name,
                            std::to_string(std::get<2>(k)), rfc3339(std::get<1>(k)), ips});
    }
    return format_columns(rows);
}

std::string format_columns(const std::vector<std::vector<std::string>>& rows)
{
    if (rows.empty())
        return "";
    std::vector<size_t> width(rows[0].size(), 0);
    for (const auto& r : rows)
        for (size_t i = 0; i < r.size() && i < width.size(); ++i)
            width[i] = std::max(width[i], r[i].size());
    std::string out;
    for (const auto& r : rows) {
        for (size_t i = 0; i < r.size(); ++i) {
            out += r[i];
            if (i + 1 < r.size())
                out += std::string(width[i] - r[i].size() + 3, ' ');
        }
        out += "\n";
    }
    return out;
}

} // namespace fqdnd::cache
