#pragma once

#include "audit/record.hpp"
#include "cache/cache.hpp"
#include "config/model.hpp"
#include "dns/engine.hpp"
#include "nflog/nflog.hpp"
#include "sd-util.hpp"

#include <systemd/sd-event.h>

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace fqdnd::audit {

// The recording of what audit policies' clients asked and what drops
// (and audit accepts) hit, kept in the state directory's audit.json:
// loaded at start, written a minute after a change and at exit.
class Store {
public:
    // `file`: where audit.json is, asked each time (a reload may move it).
    explicit Store(std::function<std::filesystem::path()> file) : file_(std::move(file)) {}

    // Loads the file, if any; a file that does not read is logged and
    // left for the next save to replace.
    void load();
    // Timers on `event` from now on (before: nothing is scheduled).
    void start(sd_event* event) { event_ = event; }
    // Writes the recording, when it changed since the last write.
    void save();

    // An allowed query of a client an audit policy selects.
    void record_query(const config::Config& config, const dns::Event& e, cache::Time t);
    // A flow one of the running policies' rules logged.
    void record_flow(const config::Config& config, const nflog::Drop& d, const std::vector<std::string>& names,
                     cache::Time t);
    // Forgets the recording of `policy` (all when none) and writes at once.
    size_t forget(const std::optional<std::string>& policy);

    const Recorder& recorder() const noexcept { return recorder_; }

private:
    void schedule_save();
    static int on_timer(sd_event_source*, uint64_t usec, void* self);

    std::function<std::filesystem::path()> file_;
    Recorder recorder_;
    sd_event* event_ = nullptr;
    SdEventSourcePtr timer_;
    bool armed_ = false;
};

// Whether any policy of `config` is in audit mode: only then are queries
// recorded.
bool records_queries(const config::Config& config);

} // namespace fqdnd::audit
