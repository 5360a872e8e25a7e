#pragma once

#include <string>
#include <vector>

namespace fqdnd {

// Where something was written: "policy.d/web.toml:12:5".
struct SourceLocation {
    std::string file;
    unsigned line = 0;
    unsigned column = 0;

    std::string to_string() const
    {
        if (line == 0)
            return file;
        return file + ":" + std::to_string(line) + ":" + std::to_string(column);
    }
};

// One configuration error, printed as "file:line:column: what is wrong".
struct Diagnostic {
    SourceLocation where;
    std::string message;

    std::string to_string() const { return where.to_string() + ": " + message; }
};

using Diagnostics = std::vector<Diagnostic>;

} // namespace fqdnd
