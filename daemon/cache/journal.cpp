#include "cache/journal.hpp"

#include "cache/format.hpp"

#include "fqdn/matcher.hpp"
#include "fqdn/selector.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fcntl.h>
#include <unistd.h>

namespace fqdnd::cache {

using nlohmann::json;

namespace {

constexpr std::string_view journal_prefix = "cache.journal.";

int64_t millis(Time t)
{
    return static_cast<int64_t>(t.time_since_epoch().count());
}

// One line's answer, checked whole before anything of it is applied.
bool replay_answer(const json& line, Time t, Cache& cache, Time now, std::vector<ElementOp>& ops)
{
    const auto endpoint = line.find("endpoint");
    const auto names = line.find("names");
    const auto ips = line.find("ips");
    const auto ttl = line.find("ttl");
    if (endpoint == line.end() || !endpoint->is_string() || names == line.end() || !names->is_array()
        || ips == line.end() || !ips->is_array() || ttl == line.end() || !ttl->is_number_unsigned()
        || ttl->get<uint64_t>() > UINT32_MAX)
        return false;
    std::vector<Mapping> mappings;
    const auto ttl_s = static_cast<uint32_t>(ttl->get<uint64_t>());
    // As learn() reckons it, with today's min-ttl.
    const Time expires = t + std::max(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::seconds(ttl_s)),
                                      std::chrono::duration_cast<std::chrono::milliseconds>(cache.limits().min_ttl));
    for (const auto& ip : *ips) {
        const auto a = ip.is_string() ? Address::parse(ip.get_ref<const std::string&>()) : std::nullopt;
        if (!a)
            return false;
        mappings.push_back(Mapping{*a, t, expires, ttl_s, Source::lookup, false, {}});
    }
    for (const auto& n : *names)
        if (!n.is_string())
            return false;
    for (const auto& n : *names)
        cache.restore(endpoint->get_ref<const std::string&>(), n.get_ref<const std::string&>(), mappings, now, ops);
    return true;
}

bool replay_clean(const json& pattern, Cache& cache, Time now, std::vector<ElementOp>& ops)
{
    if (pattern.is_null()) {
        cache.clean(nullptr, now, ops);
        return true;
    }
    if (!pattern.is_string())
        return false;
    const auto selector = FqdnSelector::parse_pattern(pattern.get_ref<const std::string&>(), nullptr);
    if (!selector)
        return false;
    const FqdnMatcher matcher(std::vector<FqdnSelector>{*selector});
    cache.clean(&matcher, now, ops);
    return true;
}

} // namespace

std::string journal_learn(Time t, const std::string& endpoint, const std::vector<std::string>& names,
                          const std::vector<Address>& addresses, uint32_t ttl)
{
    // Written by hand: on the DNS path, a line per answer, several times
    // cheaper than building a json object.
    std::string out;
    out.reserve(64 + 48 * (names.size() + addresses.size()));
    out += "{\"t\":";
    append_number(out, millis(t));
    out += ",\"endpoint\":";
    append_string(out, endpoint);
    out += ",\"names\":[";
    for (size_t i = 0; i < names.size(); ++i) {
        if (i)
            out += ',';
        append_string(out, names[i]);
    }
    out += "],\"ips\":[";
    for (size_t i = 0; i < addresses.size(); ++i) {
        if (i)
            out += ',';
        append_string(out, addresses[i].to_string());
    }
    out += "],\"ttl\":";
    append_number(out, ttl);
    out += "}\n";
    return out;
}

std::string journal_clean(Time t, const std::optional<std::string>& pattern)
{
    const json line{{"t", millis(t)}, {"clean", pattern ? json(*pattern) : json(nullptr)}};
    return line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

ReplayResult replay_journal(std::string_view text, Cache& cache, Time now, std::vector<ElementOp>& ops)
{
    ReplayResult result;
    while (!text.empty()) {
        const size_t end = text.find('\n');
        // A line without its newline was cut short: the write never ended.
        const bool whole = end != std::string_view::npos;
        const std::string_view raw = text.substr(0, end);
        text.remove_prefix(whole ? end + 1 : text.size());
        if (raw.empty())
            continue;
        const json line = whole ? json::parse(raw, nullptr, false) : json(json::value_t::discarded);
        const auto t = line.is_object() ? line.find("t") : line.end();
        if (!line.is_object() || t == line.end() || !t->is_number_integer()) {
            ++result.bad_lines;
            continue;
        }
        const Time when{std::chrono::milliseconds(t->get<int64_t>())};
        if (const auto clean = line.find("clean"); clean != line.end()) {
            if (replay_clean(*clean, cache, now, ops))
                ++result.cleans;
            else
                ++result.bad_lines;
        } else if (replay_answer(line, when, cache, now, ops)) {
            ++result.answers;
        } else {
            ++result.bad_lines;
        }
    }
    return result;
}

Journal::~Journal()
{
    if (fd_ >= 0)
        ::close(fd_);
}

std::filesystem::path Journal::path_of(uint64_t generation) const
{
    return dir_ / (std::string(journal_prefix) + std::to_string(generation));
}

std::vector<std::pair<uint64_t, std::filesystem::path>> Journal::on_disk() const
{
    std::vector<std::pair<uint64_t, std::filesystem::path>> out;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.rfind(journal_prefix, 0) != 0)
            continue;
        const std::string_view digits = std::string_view(name).substr(journal_prefix.size());
        uint64_t g = 0;
        const auto [p, e] = std::from_chars(digits.data(), digits.data() + digits.size(), g);
        if (e == std::errc() && p == digits.data() + digits.size() && !digits.empty())
            out.emplace_back(g, it->path());
    }
    std::sort(out.begin(), out.end());
    return out;
}

int Journal::start(uint64_t generation)
{
    const int fd = ::open(path_of(generation).c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        return -errno;
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = fd;
    end_ = 0; // truncated: only what append() writes is in it
    generation_ = generation;
    return 0;
}

int Journal::dup_fd() const
{
    if (fd_ < 0)
        return -EBADF;
    const int fd = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
}

int64_t Journal::next()
{
    if (int r = start(generation_ + 1); r < 0)
        return r;
    return static_cast<int64_t>(generation_);
}

int Journal::append(std::string_view lines)
{
    if (fd_ < 0)
        return -EBADF;
    // Where the file ends is kept here, not asked of the kernel on every
    // round of the DNS path.
    const off_t before = end_;
    const size_t total = lines.size();
    while (!lines.empty()) {
        const ssize_t n = ::write(fd_, lines.data(), lines.size());
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            const int e = n < 0 ? errno : ENOSPC;
            // Whole lines only: what a full disk cut off goes.
            [[maybe_unused]] const int ignored = ::ftruncate(fd_, before);
            return -e;
        }
        lines.remove_prefix(static_cast<size_t>(n));
    }
    end_ += static_cast<off_t>(total);
    return 0;
}

void Journal::drop_before(uint64_t generation)
{
    for (const auto& [g, path] : on_disk()) {
        if (g >= generation)
            break;
        std::error_code ignored;
        std::filesystem::remove(path, ignored);
    }
}

} // namespace fqdnd::cache
