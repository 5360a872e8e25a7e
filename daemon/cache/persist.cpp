#include "cache/persist.hpp"

#include "cache/format.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <fcntl.h>
#include <tuple>
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <string>
#include <string_view>
#include <utility>
#include <sys/prctl.h>
#include <sys/resource.h>

namespace fqdnd::cache {

using nlohmann::json;

std::string to_json(const std::vector<Cache::Entry>& entries)
{
    // Written by hand, as nlohmann's dump(2) of the same objects would lay
    // it out (keys sorted): the forked writer of a large cache spent most
    // of its time building and freeing a document of every string.
    std::string out;
    out.reserve(16 + 280 * entries.size());
    out += '[';
    bool first = true;
    std::vector<const Mapping*> sorted;
    for (const auto& e : entries) {
        // Addresses that share source and times share an object, as cilium
        // does; the objects ordered by those, the addresses as they came.
        sorted.clear();
        for (const Mapping& m : e.mappings)
            sorted.push_back(&m);
        auto key = [](const Mapping* m) { return std::tie(m->source, m->lookup, m->expires, m->ttl); };
        std::stable_sort(sorted.begin(), sorted.end(),
                         [&](const Mapping* a, const Mapping* b) { return key(a) < key(b); });
        for (size_t i = 0; i < sorted.size();) {
            size_t j = i;
            while (j < sorted.size() && key(sorted[j]) == key(sorted[i]))
                ++j;
            const Mapping& m = *sorted[i];
            out += first ? "\n  {\n    \"endpoint\": " : ",\n  {\n    \"endpoint\": ";
            first = false;
            append_string(out, e.endpoint);
            out += ",\n    \"expiration-time\": ";
            append_string(out, rfc3339(m.expires));
            out += ",\n    \"fqdn\": ";
            append_string(out, e.name);
            out += ",\n    \"ips\": [";
            for (size_t k = i; k < j; ++k) {
                out += k == i ? "\n      " : ",\n      ";
                append_string(out, sorted[k]->address.to_string());
            }
            out += "\n    ],\n    \"lookup-time\": ";
            append_string(out, rfc3339(m.lookup));
            out += ",\n    \"source\": ";
            append_string(out, to_string(m.source));
            out += ",\n    \"ttl\": ";
            append_number(out, m.ttl);
            out += "\n  }";
            i = j;
        }
    }
    out += first ? "]\n" : "\n]\n";
    return out;
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

namespace {

// Reads the array as a stream of events (no document in memory): one record
// per object, checked as it ends. The first error found is kept and the
// rest of the text is still read, so that broken JSON is reported as such
// wherever it breaks.
class Reader final : public nlohmann::json_sax<json> {
public:
    std::vector<Record> records;
    std::string error;
    bool root_is_array = false;

    bool null() override { return scalar(); }
    bool boolean(bool) override { return scalar(); }
    bool number_integer(number_integer_t v) override
    {
        if (in(Role::entry) && key_ == Key::endpoint)
            endpoint_ = std::to_string(v); // cilium's endpoint ids
        return scalar();
    }
    bool number_unsigned(number_unsigned_t v) override
    {
        if (in(Role::entry) && key_ == Key::endpoint)
            endpoint_ = std::to_string(v);
        else if (in(Role::entry) && key_ == Key::ttl)
            ttl_ = static_cast<uint32_t>(v);
        return scalar();
    }
    bool number_float(number_float_t, const string_t&) override { return scalar(); }
    bool binary(binary_t&) override { return scalar(); }
    bool string(string_t& v) override
    {
        if (in(Role::entry)) {
            switch (key_) {
            case Key::fqdn: fqdn_ = std::move(v); break;
            case Key::lookup: lookup_ = std::move(v); break;
            case Key::expires: expires_ = std::move(v); break;
            case Key::source: source_ = std::move(v); break;
            case Key::endpoint: endpoint_ = std::move(v); break;
            default: break;
            }
            return true;
        }
        if (in(Role::ips)) {
            if (const auto a = Address::parse(v))
                ips_.push_back(*a);
            else
                bad_ip_ = true;
            return true;
        }
        return scalar();
    }
    bool key(string_t& k) override
    {
        if (in(Role::entry)) {
            key_ = key_of(k);
            forget(key_); // the last of duplicate keys counts, as in a document
        }
        return true;
    }
    bool start_object(std::size_t) override { return open(false); }
    bool start_array(std::size_t) override { return open(true); }
    bool end_object() override { return close(); }
    bool end_array() override { return close(); }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

private:
    enum class Role : uint8_t { root, entry, ips, other };
    enum class Key : uint8_t { none, fqdn, lookup, expires, source, endpoint, ttl, ips };
    static Key key_of(const std::string& k)
    {
        static constexpr std::pair<std::string_view, Key> keys[] = {
            {"fqdn", Key::fqdn},         {"lookup-time", Key::lookup}, {"expiration-time", Key::expires},
            {"source", Key::source},     {"endpoint", Key::endpoint},  {"ttl", Key::ttl},
            {"ips", Key::ips}};
        for (const auto& [text, key] : keys)
            if (k == text)
                return key;
        return Key::none;
    }
    std::vector<Role> open_;
    size_t index_ = 0; // of the current entry, from 1
    Key key_ = Key::none;
    std::optional<std::string> fqdn_, lookup_, expires_, source_;
    std::string endpoint_;
    uint32_t ttl_ = 0;
    bool has_ips_ = false, bad_ip_ = false;
    std::vector<Address> ips_;

    bool in(Role r) const { return !open_.empty() && open_.back() == r; }

    void fail(const std::string& what)
    {
        if (error.empty())
            error = "entry " + std::to_string(index_) + ": " + what;
    }

    void forget(Key k)
    {
        switch (k) {
        case Key::fqdn: fqdn_.reset(); break;
        case Key::lookup: lookup_.reset(); break;
        case Key::expires: expires_.reset(); break;
        case Key::source: source_.reset(); break;
        case Key::endpoint: endpoint_.clear(); break;
        case Key::ttl: ttl_ = 0; break;
        case Key::ips:
            has_ips_ = bad_ip_ = false;
            ips_.clear();
            break;
        case Key::none: break;
        }
    }

    bool scalar()
    {
        if (in(Role::root)) {
            ++index_;
            fail("needs fqdn, ips and expiration-time");
        } else if (in(Role::ips)) {
            bad_ip_ = true;
        }
        return true;
    }

    bool open(bool array)
    {
        Role role = Role::other;
        if (open_.empty()) {
            root_is_array = array;
            role = array ? Role::root : Role::other;
        } else if (in(Role::root)) {
            ++index_;
            if (array) {
                fail("needs fqdn, ips and expiration-time");
            } else {
                role = Role::entry;
                key_ = Key::none;
                for (Key k : {Key::fqdn, Key::lookup, Key::expires, Key::source, Key::endpoint, Key::ttl, Key::ips})
                    forget(k);
            }
        } else if (in(Role::entry) && array && key_ == Key::ips) {
            role = Role::ips;
            has_ips_ = true;
        } else if (in(Role::ips)) {
            bad_ip_ = true;
        }
        open_.push_back(role);
        return true;
    }

    bool close()
    {
        if (in(Role::entry))
            finish();
        open_.pop_back();
        return true;
    }

    void finish()
    {
        if (!error.empty())
            return; // the text is read to its end only to check it is JSON
        if (!fqdn_ || !expires_ || !has_ips_)
            return fail("needs fqdn, ips and expiration-time");
        const auto exp_time = parse_rfc3339(*expires_);
        const auto lookup_time = lookup_ ? parse_rfc3339(*lookup_) : exp_time;
        if (!exp_time || !lookup_time)
            return fail("times must be RFC 3339 in UTC, as 2026-04-19T16:21:57.997Z");
        const std::string source = source_.value_or("lookup");
        if (source != "lookup" && source != "connection")
            return fail("source \"" + source + "\" is not lookup or connection");
        if (bad_ip_)
            return fail("ips holds something that is not an address");
        Record r{std::move(endpoint_), std::move(*fqdn_), {}};
        r.mappings.reserve(ips_.size());
        for (const Address& a : ips_)
            r.mappings.push_back(Mapping{a, *lookup_time, *exp_time, ttl_,
                                         source == "connection" ? Source::connection : Source::lookup, false,
                                         *lookup_time});
        records.push_back(std::move(r));
    }
};

} // namespace

std::optional<std::vector<Record>> from_json(const std::string& text, std::string& error)
{
    Reader reader;
    if (!json::sax_parse(text, &reader)) {
        error = "not valid JSON";
        return std::nullopt;
    }
    if (!reader.root_is_array) {
        error = "not a JSON array of cache entries";
        return std::nullopt;
    }
    if (!reader.error.empty()) {
        error = reader.error;
        return std::nullopt;
    }
    return std::move(reader.records);
}

void restore_all(Cache& cache, const std::vector<Record>& records, Time now, std::vector<ElementOp>& ops)
{
    size_t mappings = 0;
    for (const Record& r : records)
        mappings += r.mappings.size();
    cache.reserve(records.size(), mappings);
    ops.reserve(ops.size() + mappings);
    for (const Record& r : records)
        cache.restore(r.endpoint, r.name, r.mappings, now, ops);
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

int can_lower_priority()
{
    // Setting the nice value it has is allowed to anyone, so what can fail
    // is the call itself.
    errno = 0;
    const int now = ::getpriority(PRIO_PROCESS, 0);
    if (now == -1 && errno != 0)
        return -errno;
    return ::setpriority(PRIO_PROCESS, 0, now) == 0 ? 0 : -errno;
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
    // Where it is refused (a seccomp filter), the writer runs at fqdnd's
    // own priority: fqdnd said so once at start (can_lower_priority).
    [[maybe_unused]] const int lowered = ::setpriority(PRIO_PROCESS, 0, 10);
    const int r = write_atomically(path, to_json(cache.entries()));
    ::_exit(r < 0 ? std::min(-r, 255) : 0);
}

} // namespace fqdnd::cache
