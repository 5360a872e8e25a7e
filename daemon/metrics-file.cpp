#include "metrics-file.hpp"

#include "cache/persist.hpp"
#include "log.hpp"

namespace fqdnd::metrics {

void TextFile::start(sd_event* event)
{
    event_ = event;
    arm(0);
}

void TextFile::arm(uint64_t usec)
{
    if (int r = event_reset_time_relative(event_, timer_, CLOCK_MONOTONIC, usec, 1'000'000, on_timer, this); r < 0)
        log::error("cannot arm the metrics timer: " + errno_text(r));
}

int TextFile::on_timer(sd_event_source*, uint64_t, void* self)
{
    auto* t = static_cast<TextFile*>(self);
    const std::string file = t->path_();
    if (!file.empty()) {
        if (int r = cache::write_atomically(file, format_prometheus(t->samples_())); r < 0)
            log::warning("cannot write the metrics file " + file + ": " + errno_text(r));
    }
    // Every 15 s, whether or not a file is set now: a reload may set one.
    t->arm(interval_usec);
    return 0;
}

} // namespace fqdnd::metrics
