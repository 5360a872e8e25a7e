#pragma once

#include <cstring>
#include <string>
#include <string_view>

// Logging to stderr, which journald reads: under systemd each line carries a
// syslog level prefix ("<3>"), otherwise a word.
namespace fqdnd::log {

enum class Level { error = 3, warning = 4, notice = 5, info = 6, debug = 7 };

void write(Level level, std::string_view message) noexcept;

inline void error(std::string_view m) noexcept { write(Level::error, m); }
inline void warning(std::string_view m) noexcept { write(Level::warning, m); }
inline void notice(std::string_view m) noexcept { write(Level::notice, m); }
inline void info(std::string_view m) noexcept { write(Level::info, m); }

} // namespace fqdnd::log

namespace fqdnd {

// The text of an errno, given as -errno (what sd-* and fqdnd's calls return)
// or as errno.
inline std::string errno_text(int e)
{
    return std::strerror(e < 0 ? -e : e);
}

} // namespace fqdnd
