#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace fqdnd {

// Longest name fqdnd accepts, in text form with the trailing dot; the same
// bound Cilium puts on matchName and matchPattern.
inline constexpr size_t max_name_length = 255;
inline constexpr size_t max_label_length = 63;

inline constexpr bool is_label_char(char c) noexcept
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

inline constexpr char to_lower_ascii(char c) noexcept
{
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Lower-cases a DNS name and makes it fully qualified ("Echo.K8s.intra" ->
// "echo.k8s.intra."). Returns nothing for a name no selector can match:
// empty labels, labels over 63 characters, over 255 characters in all, or a
// character outside [-a-zA-Z0-9_]. The root is ".".
std::optional<std::string> normalize_name(std::string_view name);

} // namespace fqdnd
