#pragma once

#include "config/address.hpp"

#include <cstdint>
#include <string_view>

// FNV-1a, the one hash fqdnd writes itself: stable across builds (selector
// tags in the kernel are made with it) and cheap for the short keys of its
// tables (addresses, ports).
namespace fqdnd::fnv {

inline constexpr uint64_t offset = 1469598103934665603ULL;
inline constexpr uint64_t prime = 1099511628211ULL;

constexpr uint64_t hash(std::string_view s, uint64_t h = offset) noexcept
{
    for (const char c : s)
        h = (h ^ static_cast<unsigned char>(c)) * prime;
    return h;
}

// The bytes of the address (4 or 16), continuing from `h`.
inline uint64_t hash(const Address& a, uint64_t h = offset) noexcept
{
    for (size_t i = 0; i < a.size(); ++i)
        h = (h ^ a.bytes[i]) * prime;
    return h;
}

// For unordered containers keyed by address.
struct AddressHash {
    size_t operator()(const Address& a) const noexcept { return hash(a); }
};

} // namespace fqdnd::fnv
