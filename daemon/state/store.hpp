#pragma once

#include "cache/cache.hpp"
#include "cache/journal.hpp"
#include "sd-util.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <sys/types.h>
#include <vector>

// What fqdnd remembers across restarts and crashes, in the state directory:
// the journal of what was learned (cache/journal), appended before
// verdicts and synced every two seconds off the loop, and the cache
// snapshot (cache.json, cache/persist) written by a forked child, which
// lets the journals before it go. A snapshot costs the loop a fork and
// the writer the whole cache, so it comes when the journals since the last
// one have grown as large as it (at least 1 MiB), or a minute after the
// first change it does not hold, never sooner than ten times the last
// write's length after its start (the writer works at most a tenth of the
// time). One per fqdnd; it reads the cache it snapshots and never changes
// it, except when loading at start.
namespace fqdnd::state {

// fdatasync off the loop: a thread, started at the first call, syncs the
// descriptors it is handed (duplicates, which it closes), one at a time.
class Syncer {
public:
    Syncer() = default;
    ~Syncer();
    Syncer(const Syncer&) = delete;
    Syncer& operator=(const Syncer&) = delete;
    // Takes `fd`; false, and `fd` not taken, while the last one is still
    // being synced or when no thread can be started (`error` then says why).
    bool submit(int fd, int& error);
    // The errno of the last failed sync since the last call, or 0.
    int take_error() noexcept { return error_.exchange(0); }
    uint64_t synced() const noexcept { return synced_.load(); }

private:
    void run();
    std::mutex mutex_;
    std::condition_variable wake_;
    int fd_ = -1;
    bool busy_ = false, stop_ = false;
    std::atomic<int> error_{0};
    std::atomic<uint64_t> synced_{0};
    std::thread thread_;
};

// When snapshots are taken (tests shorten them).
struct Timing {
    // The shortest time from a change to its snapshot, and how often the
    // journal is synced (fdatasync, off the loop).
    std::chrono::microseconds min_interval{std::chrono::seconds(2)};
    // The longest time a change waits for a snapshot.
    std::chrono::microseconds max_age{std::chrono::seconds(60)};
    // The journals written since the last snapshot that make the next one
    // due at once: as many bytes as that snapshot, and at least these.
    uint64_t min_growth = 1 << 20;
};

class Store {
public:
    Store(sd_event* event, std::filesystem::path directory, const cache::Cache& cache, Timing timing = {})
        : event_(event), directory_(std::move(directory)), cache_(cache), journal_(directory_),
          interval_(timing.min_interval), timing_(timing)
    {
    }
    Store(const Store&) = delete;
    Store& operator=(const Store&) = delete;

    // At start: removes what writers killed halfway left, reads the state
    // file and then every journal into `cache` (the one snapshotted), and
    // opens a new journal. Call begin() once the cache is complete.
    void load(cache::Cache& cache, cache::Time now, std::vector<cache::ElementOp>& ops);
    // A file in the state file's format (a pre-cache) into `cache`.
    void load_file(const std::filesystem::path& path, const char* what, cache::Cache& cache, cache::Time now,
                   std::vector<cache::ElementOp>& ops);
    // Opens the next journal; when journals were replayed, a snapshot soon
    // replaces them.
    void begin();

    // An answer the cache learned, for the journal; written by flush().
    void learned(cache::Time t, const std::string& endpoint, const std::vector<std::string>& names,
                 const std::vector<Address>& addresses, uint32_t ttl);
    // Appends what learned() gathered: before the verdicts of its answers.
    void flush();
    // A clean, to the journal at once.
    void cleaned(cache::Time t, const std::optional<std::string>& pattern);
    // How long the last forked writer took, and how long after a writer
    // began the next may (ten times that, 2 s to 30 s).
    std::chrono::microseconds last_write_took() const noexcept { return last_took_; }
    std::chrono::microseconds write_interval() const noexcept { return interval_; }
    // The journals' bytes since the last snapshot began, and that
    // snapshot's size.
    uint64_t journal_bytes() const noexcept { return journal_bytes_; }
    uint64_t snapshot_bytes() const noexcept { return snapshot_bytes_; }
    // How many times the journal was synced.
    uint64_t journal_syncs() const noexcept { return syncer_.synced(); }
    // The cache changed (its lines are in the journal): a snapshot when the
    // journal has grown enough or the change has waited max_age.
    void changed();
    // The last snapshot, in this process (at exit): waits for a writer first.
    void save_now();

    uint64_t write_errors() const noexcept { return write_errors_; }
    const std::filesystem::path& directory() const noexcept { return directory_; }
    std::filesystem::path state_file() const { return directory_ / "cache.json"; }

private:
    void replay(const std::filesystem::path& path, cache::Cache& cache, cache::Time now,
                std::vector<cache::ElementOp>& ops);
    // Forks the writer of a snapshot; one at a time, a change meanwhile
    // writes again when it is done.
    void save();
    // The snapshot in the loop, at exit or when no child can be forked.
    bool write_here();
    void give_back();
    // When the snapshot of what changed is due, from now.
    std::chrono::microseconds snapshot_due() const;
    bool grown() const noexcept
    {
        return journal_bytes_ >= std::max<uint64_t>(snapshot_bytes_, timing_.min_growth);
    }
    void arm_snapshot();
    void arm_writeback();
    enum class Target : uint8_t { state_file, journal };
    void count_write_error(Target target, int error);
    static int on_timer(sd_event_source*, uint64_t, void* self);
    static int on_writer_exit(sd_event_source*, const siginfo_t* si, void* self);
    static int on_writeback(sd_event_source*, uint64_t, void* self);
    // A writer's end, watched or waited for: `error` 0 or a negative errno.
    void writer_done(int error);

    sd_event* event_;
    std::filesystem::path directory_;
    const cache::Cache& cache_;
    cache::Journal journal_;
    uint64_t first_generation_ = 1; // of the journal begin() opens
    bool replayed_ = false;
    std::string lines_;            // of the round, not yet written
    uint64_t snapshot_generation_ = 0; // the journals before it are in the snapshot being written
    bool dirty_ = false;
    // A snapshot soon: journals were replayed at start, or an append
    // failed (the snapshot is then all that would hold it).
    bool urgent_ = false;
    bool writeback_armed_ = false;
    bool grown_armed_ = false;     // the timer is set for a journal grown enough
    // The first change no snapshot begun holds.
    std::chrono::steady_clock::time_point dirty_since_{};
    uint64_t journal_bytes_ = 0, snapshot_bytes_ = 0;
    // What the running writer took over: given back if it fails.
    struct Taken {
        uint64_t journal_bytes = 0;
        bool urgent = false;
        std::chrono::steady_clock::time_point since{};
    } taken_;
    Syncer syncer_;
    pid_t writer_ = -1;
    SdEventSourcePtr timer_, writer_source_, writeback_timer_;
    // When the last writer began, and how long after that the next may.
    std::chrono::steady_clock::time_point writer_started_{};
    std::chrono::microseconds interval_, last_took_{0};
    const Timing timing_;
    static constexpr std::chrono::microseconds max_interval{30'000'000};
    uint64_t write_errors_ = 0;
    bool state_file_failed_ = false, journal_failed_ = false;
};

} // namespace fqdnd::state
