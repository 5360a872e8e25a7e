#include "config/duration.hpp"

#include <cstdint>
#include <limits>

namespace fqdnd {

namespace {

struct Unit {
    std::string_view suffix;
    int64_t nanoseconds;
};

// Longest suffixes first so that "ms" is not read as "m" followed by "s".
constexpr Unit units[] = {
    {"ns", 1},
    {"us", 1'000},
    {"ms", 1'000'000},
    {"h", 3'600'000'000'000},
    {"m", 60'000'000'000},
    {"s", 1'000'000'000},
};

} // namespace

std::optional<Duration> parse_duration(std::string_view text) noexcept
{
    if (text.empty())
        return std::nullopt;
    if (text == "0")
        return Duration::zero();

    // Sums in nanoseconds; 2^63 ns is 292 years, far beyond any sane setting.
    constexpr int64_t limit = std::numeric_limits<int64_t>::max() / 10;
    int64_t total_ns = 0;
    size_t i = 0;
    while (i < text.size()) {
        int64_t whole = 0;
        size_t digits = 0;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
            if (whole > limit)
                return std::nullopt;
            whole = whole * 10 + (text[i] - '0');
            ++i;
            ++digits;
        }
        int64_t frac = 0, frac_scale = 1;
        if (i < text.size() && text[i] == '.') {
            ++i;
            while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
                if (frac_scale < 1'000'000'000) {
                    frac = frac * 10 + (text[i] - '0');
                    frac_scale *= 10;
                }
                ++i;
                ++digits;
            }
        }
        if (digits == 0)
            return std::nullopt;

        const Unit* unit = nullptr;
        for (const Unit& u : units) {
            if (text.substr(i, u.suffix.size()) == u.suffix) {
                unit = &u;
                break;
            }
        }
        if (!unit)
            return std::nullopt;
        i += unit->suffix.size();

        if (whole > std::numeric_limits<int64_t>::max() / unit->nanoseconds)
            return std::nullopt;
        int64_t part = whole * unit->nanoseconds;
        // frac < frac_scale <= 1e9 and ns-per-unit <= 3.6e12: use the
        // division first to stay inside 64 bits.
        part += (unit->nanoseconds / frac_scale) * frac
            + (unit->nanoseconds % frac_scale) * frac / frac_scale;
        if (part > std::numeric_limits<int64_t>::max() - total_ns)
            return std::nullopt;
        total_ns += part;
    }
    return std::chrono::duration_cast<Duration>(std::chrono::nanoseconds(total_ns));
}

std::string format_duration(Duration d)
{
    int64_t us = d.count();
    if (us == 0)
        return "0s";
    std::string out;
    auto emit = [&](int64_t per, std::string_view suffix) {
        if (us >= per) {
            out += std::to_string(us / per);
            out += suffix;
            us %= per;
        }
    };
    emit(3'600'000'000, "h");
    emit(60'000'000, "m");
    emit(1'000'000, "s");
    emit(1'000, "ms");
    emit(1, "us");
    return out;
}

} // namespace fqdnd
