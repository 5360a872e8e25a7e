#pragma once

#include "cache/cache.hpp"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <sys/types.h>
#include <string_view>
#include <vector>

// What the cache learned since the last state file, so that a crash loses
// none of it: every answer taught and every `cache clean`, one JSON line
// each, appended (one write per round of answers) before the answers'
// verdicts, without fsync: for a process that dies. For a machine that
// loses power, the store syncs it every two seconds off the loop.
//
// The journals are numbered. Taking a snapshot (the state file) starts the
// next journal; once the snapshot is on disk, the journals before it are
// deleted. At start the state file is read, then every journal left, oldest
// first. Replaying a line the snapshot already holds changes nothing: an
// address comes back with the later of the two expiries.
namespace fqdnd::cache {

// One line: an answer that taught the cache (`names` is the chain from the
// question), or a clean (every name, or those `pattern` matches).
std::string journal_learn(Time t, const std::string& endpoint, const std::vector<std::string>& names,
                          const std::vector<Address>& addresses, uint32_t ttl);
std::string journal_clean(Time t, const std::optional<std::string>& pattern);

struct ReplayResult {
    size_t answers = 0;
    size_t cleans = 0;
    size_t bad_lines = 0; // unreadable, such as a last line cut short by a crash
};

// Applies every line of `text` to `cache` as the running fqdnd did, each at
// its own time (what has expired by `now` stays out).
ReplayResult replay_journal(std::string_view text, Cache& cache, Time now, std::vector<ElementOp>& ops);

class Journal {
public:
    // Journals are `<dir>/cache.journal.<generation>`.
    explicit Journal(std::filesystem::path dir) : dir_(std::move(dir)) {}
    ~Journal();
    Journal(const Journal&) = delete;
    Journal& operator=(const Journal&) = delete;

    // The journals on disk, oldest first.
    std::vector<std::pair<uint64_t, std::filesystem::path>> on_disk() const;

    // Starts the journal of `generation` (an empty file). 0 or a negative errno.
    int start(uint64_t generation);
    // Closes the current journal and starts the next: a snapshot taken now
    // holds everything before the generation returned (or a negative errno:
    // appends go on to the old journal).
    int64_t next();
    uint64_t generation() const noexcept { return generation_; }
    // Appends whole lines; 0 or a negative errno. A short write keeps the
    // file whole up to the last line that fitted.
    int append(std::string_view lines);
    // A duplicate of the open journal's descriptor, for syncing it
    // elsewhere; a negative errno (-EBADF when none is open).
    int dup_fd() const;
    // Deletes the journals before `generation`: a snapshot holds them.
    void drop_before(uint64_t generation);

private:
    std::filesystem::path path_of(uint64_t generation) const;

    std::filesystem::path dir_;
    int fd_ = -1;
    off_t end_ = 0; // the file's length, as this writes it
    uint64_t generation_ = 0;
};

} // namespace fqdnd::cache
