#pragma once

#include "metrics.hpp"
#include "sd-util.hpp"

#include <functional>
#include <string>
#include <vector>

// The metrics for node_exporter's textfile collector, on the event loop:
// written at once and then every 15 s, atomically, to the file the
// settings name at that moment (none: nothing is written; a reload may
// set one).
namespace fqdnd::metrics {

class TextFile {
public:
    TextFile(std::function<std::string()> path, std::function<std::vector<Sample>()> samples)
        : path_(std::move(path)), samples_(std::move(samples))
    {
    }
    TextFile(const TextFile&) = delete;
    TextFile& operator=(const TextFile&) = delete;

    void start(sd_event* event);

    static constexpr uint64_t interval_usec = 15'000'000;

private:
    void arm(uint64_t usec);
    static int on_timer(sd_event_source*, uint64_t usec, void* self);

    std::function<std::string()> path_;
    std::function<std::vector<Sample>()> samples_;
    sd_event* event_ = nullptr;
    SdEventSourcePtr timer_;
};

} // namespace fqdnd::metrics
