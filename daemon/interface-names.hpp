#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

// The names of network interfaces by index, as packets from NFQUEUE and
// NFLOG carry them: asked of the kernel on first sight, then remembered.
namespace fqdnd {

class InterfaceNames {
public:
    // "" when the kernel has no interface of that index (any more).
    std::string name(uint32_t index);
    // Interfaces may have been renamed: ask again.
    void clear() noexcept { names_.clear(); }

    // Bounded: interfaces come and go; a full table starts over.
    static constexpr size_t max_names = 4096;

private:
    std::unordered_map<uint32_t, std::string> names_;
};

} // namespace fqdnd
