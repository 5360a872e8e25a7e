#pragma once

#include "cache/cache.hpp"

#include <filesystem>
#include <optional>
#include <string>
#include <vector>
#include <sys/types.h>

// The cache as JSON: the format of `fqdnctl cache list -o json` (that of
// `cilium fqdn cache list -o json`): an array of objects with fqdn, ips,
// lookup-time, expiration-time, ttl, source and endpoint. The state file
// and a pre-cache file are both in it.
namespace fqdnd::cache {

// One object of the array: a name's addresses that share source and times.
struct Record {
    std::string endpoint;
    std::string name;
    std::vector<Mapping> mappings;
};

std::string to_json(const std::vector<Cache::Entry>& entries);

// Every object, or nothing and `error` saying where the text is wrong.
std::optional<std::vector<Record>> from_json(const std::string& text, std::string& error);

// Restores every record into `cache`, room made first.
void restore_all(Cache& cache, const std::vector<Record>& records, Time now, std::vector<ElementOp>& ops);

std::optional<Time> parse_rfc3339(const std::string& s);

// Writes `text` to `path` atomically: a temporary file beside it (`path`
// .tmp.PID), fsync, rename, fsync of the directory. Returns 0 or a negative
// errno.
int write_atomically(const std::filesystem::path& path, const std::string& text);

// Forks a child that writes `cache` to `path` (write_atomically) and exits
// with 0 or the errno: the copy-on-write image is the snapshot, so the
// caller pays for the fork, not for the JSON. The child runs at a lower
// priority and dies with its parent. Returns its pid or a negative errno;
// the caller reaps it.
pid_t spawn_writer(const std::filesystem::path& path, const Cache& cache);

// Whether that child can lower its priority (setpriority), or the errno
// that stops it (EPERM under a seccomp filter without it).
int can_lower_priority();

} // namespace fqdnd::cache
