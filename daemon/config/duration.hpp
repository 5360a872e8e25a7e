#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace fqdnd {

using Duration = std::chrono::microseconds;

// Parses Go-style durations as Cilium's options take them: "100ms", "0s",
// "1h30m", "2.5s". Units ns (rounded down to us), us, ms, s, m, h. No sign.
std::optional<Duration> parse_duration(std::string_view text) noexcept;

// The shortest text parse_duration reads back to the same value ("1h30m").
std::string format_duration(Duration d);

} // namespace fqdnd
