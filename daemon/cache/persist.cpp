#include "cache/persist.hpp"

#include "cache/format.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <map>
#include <tuple>
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <string>
#include <sys/prctl.h>

namespace fqdnd::cache {

using nlohmann::json;

std::string to_json(const std::vector<Cache::Entry>& entries)
{
    json out = json::array();
    for (const auto& e : entries) {
        // Addresses that share source and times share an object, as cilium does.
        std::map<std::tuple<Source, Time, Time, uint32_t>, std::vector<std::string>> groups;
        for (const Mapping& m : e.mappings)
            groups[{m.source, m.lookup, m.expires, m.ttl}].push_back(m.address.to_string());
        for (const auto& [k, ips] : groups) {
            const auto& [source, lookup, expires, ttl] = k;
            out.push_back({{"endpoint", e.endpoint},
                           {"fqdn", e.name},
                           {"ips", ips},
                           {"lookup-time", rfc3339(lookup)},
                           {"expiration-time", rfc3339(expires)},
                           {"ttl", ttl},
                           {"source", std::string(to_string(source))}});
        }
    }
    return out.dump(2) + "\n";
}

std::optional<Time> parse_rfc3339(const std::string& s)
{
    int y, mo, d, h, mi, sec, ms = 0, n = 0;
    if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
        return std::nullopt;
    size_t i = static_cast<size_t>(n);
    if (i < s.size() && s[i] == '.') {
        int digits = 0;
        for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, ++digits)
            if (digits < 3)
                ms = ms * 10 + (s[i] - '0');
        for (; digits > 0 && digits < 3; ++digits)
            ms *= 10;
    }
    if (i + 1 != s.size() || s[i] != 'Z' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return std::nullopt;
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    const time_t t = timegm(&tm);
    return Time(std::chrono::milliseconds(static_cast<int64_t>(t) * 1000 + ms));
}

std::optional<std::vector<Record>> from_json(const std::string& text, std::string& error)
{
    json doc = json::parse(text, nullptr, false);
    if (doc.is_discarded()) {
        error = "not valid JSON";
        return std::nullopt;
    }
    if (!doc.is_array()) {
        error = "not a JSON array of cache entries";
        return std::nullopt;
    }
    std::vector<Record> out;
    for (size_t i = 0; i < doc.size(); ++i) {
        const json& o = doc[i];
        const std::string where = "entry " + std::to_string(i + 1) + ": ";
        auto str = [&](const char* key) -> std::optional<std::string> {
            if (!o.is_object() || !o.contains(key) || !o[key].is_string())
                return std::nullopt;
            return o[key].get<std::string>();
        };
        const auto fqdn = str("fqdn"), lookup = str("lookup-time"), expires = str("expiration-time");
        const auto source = str("source").value_or("lookup");
        std::string endpoint = str("endpoint").value_or("");
        if (o.is_object() && o.contains("endpoint") && o["endpoint"].is_number_integer())
            endpoint = std::to_string(o["endpoint"].get<int64_t>()); // cilium's endpoint ids
        if (!fqdn || !expires || !o.contains("ips") || !o["ips"].is_array()) {
            error = where + "needs fqdn, ips and expiration-time";
            return std::nullopt;
        }
        const auto exp_time = parse_rfc3339(*expires);
        const auto lookup_time = lookup ? parse_rfc3339(*lookup) : exp_time;
        if (!exp_time || !lookup_time) {
            error = where + "times must be RFC 3339 in UTC, as 2026-04-19T16:21:57.997Z";
            return std::nullopt;
        }
        if (source != "lookup" && source != "connection") {
            error = where + "source \"" + source + "\" is not lookup or connection";
            return std::nullopt;
        }
        uint32_t ttl = 0;
        if (o.contains("ttl") && o["ttl"].is_number_unsigned())
            ttl = o["ttl"].get<uint32_t>();
        for (const json& ip : o["ips"]) {
            const auto a = ip.is_string() ? Address::parse(ip.get<std::string>()) : std::nullopt;
            if (!a) {
                error = where + "ips holds something that is not an address";
                return std::nullopt;
            }
            Mapping m{*a, *lookup_time, *exp_time, ttl,
                      source == "connection" ? Source::connection : Source::lookup, false, *lookup_time};
            out.push_back(Record{endpoint, *fqdn, m});
        }
    }
    return out;
}

int write_atomically(const std::filesystem::path& path, const std::string& text)
{
    // Named by the writer, so that two writers (a state writer fqdnd forked
    // and one that outlived a crash) never share a temporary file.
    const std::filesystem::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    size_t done = 0;
    while (done < text.size()) {
        const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
        if (n < 0) {
            const int e = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            return -e;
        }
        done += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        return -e;
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        return -e;
    }
    const int dir = ::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        ::fsync(dir);
        ::close(dir);
    }
    return 0;
}

pid_t spawn_writer(const std::filesystem::path& path, const Cache& cache)
{
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0)
        return -errno;
    if (pid > 0)
        return pid;
    // The child: it touches none of the parent's sockets, destructors or
    // exit handlers, and no writer outlives fqdnd.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
        ::_exit(EINTR);
    [[maybe_unused]] const int niced = ::nice(10);
    const int r = write_atomically(path, to_json(cache.entries()));
    ::_exit(r < 0 ? std::min(-r, 255) : 0);
}

} // namespace fqdnd::cache
