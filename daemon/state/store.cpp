#include "state/store.hpp"

#include "cache/persist.hpp"
#include "log.hpp"

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <sstream>
#include <csignal>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>

namespace fqdnd::state {

namespace {

// The whole file, or nothing when it cannot be read (`error` then says why;
// 0 for a file that is not there).
std::optional<std::string> read_all(const std::filesystem::path& path, int& error)
{
    std::ifstream in(path);
    if (!in) {
        error = errno;
        return std::nullopt;
    }
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

} // namespace

void Store::load(cache::Cache& cache, cache::Time now, std::vector<cache::ElementOp>& ops)
{
    // What writers killed halfway left behind (they die with fqdnd).
    std::error_code ec;
    const std::string tmp_prefix = state_file().filename().string() + ".tmp.";
    for (std::filesystem::directory_iterator it(directory_, ec), end; !ec && it != end; it.increment(ec))
        if (it->path().filename().string().rfind(tmp_prefix, 0) == 0) {
            std::error_code ignored;
            std::filesystem::remove(it->path(), ignored);
        }
    load_file(state_file(), "state file", cache, now, ops);
    snapshot_bytes_ = std::filesystem::file_size(state_file(), ec);
    if (ec)
        snapshot_bytes_ = 0;
    // Then what was learned after it, up to the moment fqdnd stopped.
    const auto journals = journal_.on_disk();
    for (const auto& [generation, path] : journals)
        replay(path, cache, now, ops);
    replayed_ = !journals.empty();
    first_generation_ = journals.empty() ? 1 : journals.back().first + 1;
    if (int r = cache::can_lower_priority(); r < 0)
        log::warning("the state writer cannot lower its priority (setpriority: " + errno_text(r)
                     + "); it writes at fqdnd's own");
}

void Store::load_file(const std::filesystem::path& path, const char* what, cache::Cache& cache, cache::Time now,
                      std::vector<cache::ElementOp>& ops)
{
    int error = 0;
    const auto text = read_all(path, error);
    if (!text) {
        if (error != ENOENT)
            log::warning(std::string("cannot read the ") + what + " " + path.string() + ": " + errno_text(error));
        return;
    }
    std::string why;
    const auto records = cache::from_json(*text, why);
    if (!records) {
        // A corrupt file costs what it held, never the start.
        log::warning(std::string("the ") + what + " " + path.string() + " is unreadable (" + why + "); ignored");
        return;
    }
    const size_t before = cache.addresses();
    cache::restore_all(cache, *records, now, ops);
    log::info(std::string("loaded ") + std::to_string(cache.addresses() - before) + " addresses from the " + what
              + " " + path.string() + " (" + std::to_string(records->size()) + " records)");
}

void Store::replay(const std::filesystem::path& path, cache::Cache& cache, cache::Time now,
                   std::vector<cache::ElementOp>& ops)
{
    int error = 0;
    const auto text = read_all(path, error);
    if (!text) {
        log::warning("cannot read the journal " + path.string() + ": " + errno_text(error));
        return;
    }
    const size_t before = cache.addresses();
    const cache::ReplayResult r = cache::replay_journal(*text, cache, now, ops);
    const size_t after = cache.addresses();
    log::info("replayed the journal " + path.string() + ": " + std::to_string(r.answers) + " answers, "
              + std::to_string(r.cleans) + " cleans (" + std::to_string(after - std::min(before, after))
              + " addresses more)"
              + (r.bad_lines ? "; " + std::to_string(r.bad_lines) + " unreadable lines skipped" : ""));
}

void Store::begin()
{
    std::error_code ec;
    std::filesystem::create_directories(directory_, ec);
    if (int r = journal_.start(first_generation_); r < 0)
        count_write_error(Target::journal, r);
    if (replayed_) {
        urgent_ = true; // a snapshot soon, then the journals replayed go
        changed();
    }
}

void Store::learned(cache::Time t, const std::string& endpoint, const std::vector<std::string>& names,
                    const std::vector<Address>& addresses, uint32_t ttl)
{
    lines_ += cache::journal_learn(t, endpoint, names, addresses, ttl);
}

void Store::flush()
{
    if (lines_.empty())
        return;
    if (int r = journal_.append(lines_); r < 0) {
        count_write_error(Target::journal, r);
        urgent_ = true; // the snapshot is all that will hold it
    } else {
        journal_bytes_ += lines_.size();
    }
    lines_.clear();
    arm_writeback();
    changed();
}

void Store::cleaned(cache::Time t, const std::optional<std::string>& pattern)
{
    const std::string line = cache::journal_clean(t, pattern);
    if (int r = journal_.append(line); r < 0) {
        count_write_error(Target::journal, r);
        urgent_ = true;
    } else {
        journal_bytes_ += line.size();
    }
    arm_writeback();
    changed();
}

void Store::changed()
{
    if (!dirty_) {
        dirty_ = true;
        dirty_since_ = std::chrono::steady_clock::now();
        arm_snapshot();
    } else if (writer_ < 0 && !grown_armed_ && (grown() || urgent_)) {
        arm_snapshot(); // sooner than max_age (after a writer, writer_done() sees to it)
    }
}

std::chrono::microseconds Store::snapshot_due() const
{
    // A snapshot costs the loop a fork (it copies the page tables) and the
    // writer the whole cache: taken when the journals since the last one
    // are as large, each costs about as much as the appends it saves at
    // start. Never sooner than min_interval after the change, nor than
    // ten times the last write's length after it began.
    const auto now = std::chrono::steady_clock::now();
    const auto wait = grown() || urgent_ ? timing_.min_interval : timing_.max_age;
    const auto due = std::max(dirty_since_ + wait, writer_started_ + interval_);
    return std::max(std::chrono::duration_cast<std::chrono::microseconds>(due - now), std::chrono::microseconds(0));
}

void Store::arm_snapshot()
{
    grown_armed_ = grown() || urgent_;
    if (int r = event_reset_time_relative(event_, timer_, CLOCK_MONOTONIC, static_cast<uint64_t>(snapshot_due().count()),
                                          100'000, on_timer, this);
        r < 0) {
        log::error("cannot arm the state writer's timer; writing now: " + errno_text(r));
        save();
    }
}

void Store::arm_writeback()
{
    // What the journal holds is synced every min_interval, so that a
    // machine losing power loses seconds; the loop never waits for the
    // disk.
    if (writeback_armed_)
        return;
    if (int r = event_reset_time_relative(event_, writeback_timer_, CLOCK_MONOTONIC,
                                          static_cast<uint64_t>(timing_.min_interval.count()), 250'000, on_writeback,
                                          this);
        r < 0) {
        log::warning("cannot arm the journal's sync timer: " + errno_text(r));
        return;
    }
    writeback_armed_ = true;
}

int Store::on_writeback(sd_event_source*, uint64_t, void* self)
{
    auto* s = static_cast<Store*>(self);
    s->writeback_armed_ = false;
    if (int e = s->syncer_.take_error())
        s->count_write_error(Target::journal, -e);
    const int fd = s->journal_.dup_fd();
    if (fd < 0) {
        if (fd != -EBADF)
            s->count_write_error(Target::journal, fd);
        return 0;
    }
    int error = 0;
    if (!s->syncer_.submit(fd, error)) {
        ::close(fd);
        if (error) {
            log::warning("cannot start the journal's sync thread: " + errno_text(-error));
            return 0;
        }
        s->arm_writeback(); // the last sync is still going: later
    }
    return 0;
}

int Store::on_timer(sd_event_source*, uint64_t, void* self)
{
    auto* s = static_cast<Store*>(self);
    // The loop's time is that of its iteration's start: early by what the
    // iteration did.
    if (s->snapshot_due() > std::chrono::milliseconds(1))
        s->arm_snapshot();
    else
        s->save();
    return 0;
}

void Store::count_write_error(Target target, int error)
{
    // Enforcement goes on; only what a restart would remember is at stake.
    // The first failure of each file is logged, then every hundredth.
    ++write_errors_;
    bool& logged = target == Target::journal ? journal_failed_ : state_file_failed_;
    if (!logged || write_errors_ % 100 == 0)
        log::warning(std::string("cannot write the ")
                     + (target == Target::journal ? "journal in " + directory_.string()
                                                  : "state file " + state_file().string())
                     + ": " + errno_text(error));
    logged = true;
}

void Store::save()
{
    grown_armed_ = false;
    if (writer_ > 0)
        return; // dirty_ and dirty_since_ stay: writer_done() arms the next
    dirty_ = false;
    std::error_code ec;
    std::filesystem::create_directories(directory_, ec);
    // The snapshot holds every journal before the one started now.
    const int64_t g = journal_.next();
    if (g < 0)
        count_write_error(Target::journal, static_cast<int>(g));
    snapshot_generation_ = g < 0 ? 0 : static_cast<uint64_t>(g);
    taken_ = {journal_bytes_, urgent_, dirty_since_};
    journal_bytes_ = 0;
    urgent_ = false;
    const pid_t pid = cache::spawn_writer(state_file(), cache_);
    if (pid < 0) {
        log::warning("cannot fork the state writer (" + errno_text(pid) + "); writing in the loop");
        if (!write_here()) {
            give_back();
            arm_snapshot();
        }
        taken_ = {};
        return;
    }
    writer_ = pid;
    writer_started_ = std::chrono::steady_clock::now();
    sd_event_source* src = nullptr;
    if (int r = sd_event_add_child(event_, &src, pid, WEXITED, on_writer_exit, this); r < 0) {
        // Cannot be told when it ends: wait for it here.
        log::warning("cannot watch the state writer: " + errno_text(r));
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        writer_done(WIFEXITED(status) ? -WEXITSTATUS(status) : -EINTR);
        return;
    }
    writer_source_.reset(src);
}

int Store::on_writer_exit(sd_event_source*, const siginfo_t* si, void* self)
{
    auto* s = static_cast<Store*>(self);
    s->writer_source_.reset();
    s->writer_done(si->si_code != CLD_EXITED ? -EINTR /* killed by a signal */ : -si->si_status);
    return 0;
}

void Store::writer_done(int error)
{
    writer_ = -1;
    const auto took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now()
                                                                            - writer_started_);
    last_took_ = took;
    const auto floor = timing_.min_interval;
    interval_ = std::clamp(10 * took, floor, std::max(floor, max_interval));
    if (error < 0) {
        count_write_error(Target::state_file, error);
        give_back();
    } else {
        journal_.drop_before(snapshot_generation_);
        std::error_code ec;
        if (const auto size = std::filesystem::file_size(state_file(), ec); !ec)
            snapshot_bytes_ = size;
    }
    taken_ = {};
    // Changed while it wrote, or failed: written when the rules allow.
    if (dirty_)
        arm_snapshot();
}

void Store::give_back()
{
    // What the snapshot took over is still only in the journals (or, after
    // a failed append, nowhere): due again as it was.
    journal_bytes_ += taken_.journal_bytes;
    urgent_ = urgent_ || taken_.urgent;
    if (!dirty_ || taken_.since < dirty_since_)
        dirty_since_ = taken_.since;
    dirty_ = true;
}

void Store::save_now()
{
    if (writer_ > 0) {
        int status = 0;
        while (waitpid(writer_, &status, 0) < 0 && errno == EINTR) {
        }
        writer_ = -1;
        writer_source_.reset();
    }
    flush();
    dirty_ = false;
    std::error_code ec;
    std::filesystem::create_directories(directory_, ec);
    // Everything is in this snapshot: the open journal too.
    snapshot_generation_ = journal_.generation() + 1;
    write_here();
}

bool Store::write_here()
{
    const std::string text = cache::to_json(cache_.entries());
    if (int r = cache::write_atomically(state_file(), text); r < 0) {
        count_write_error(Target::state_file, r);
        return false;
    }
    journal_.drop_before(snapshot_generation_);
    snapshot_bytes_ = text.size();
    return true;
}

Syncer::~Syncer()
{
    if (!thread_.joinable())
        return;
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    wake_.notify_one();
    thread_.join();
    if (fd_ >= 0)
        ::close(fd_);
}

bool Syncer::submit(int fd, int& error)
{
    error = 0;
    {
        std::lock_guard lock(mutex_);
        if (busy_ || fd_ >= 0)
            return false;
        if (!thread_.joinable()) {
            try {
                thread_ = std::thread([this] { run(); });
            } catch (const std::system_error& e) {
                error = -e.code().value();
                return false;
            }
        }
        fd_ = fd;
    }
    wake_.notify_one();
    return true;
}

void Syncer::run()
{
    // Signals are the loop's (signalfd): blocked here too.
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, nullptr);
    pthread_setname_np(pthread_self(), "fqdnd-sync"); // in ps -L and perf
    std::unique_lock lock(mutex_);
    for (;;) {
        wake_.wait(lock, [this] { return stop_ || fd_ >= 0; });
        if (stop_)
            return;
        const int fd = std::exchange(fd_, -1);
        busy_ = true;
        lock.unlock();
        if (::fdatasync(fd) < 0)
            error_.store(errno);
        else
            synced_.fetch_add(1);
        ::close(fd);
        lock.lock();
        busy_ = false;
    }
}

} // namespace fqdnd::state
