#include "log.hpp"

#include <cstdio>
#include <cstdlib>
#include <string>

namespace fqdnd::log {

void write(Level level, std::string_view message) noexcept
{
    static const bool journal = std::getenv("JOURNAL_STREAM") != nullptr;
    std::string line;
    if (journal) {
        line = "<" + std::to_string(static_cast<int>(level)) + ">";
    } else {
        switch (level) {
        case Level::error: line = "fqdnd: error: "; break;
        case Level::warning: line = "fqdnd: warning: "; break;
        default: line = "fqdnd: "; break;
        }
    }
    line += message;
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stderr);
}

} // namespace fqdnd::log
