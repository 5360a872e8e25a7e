#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fqdnd {

enum class Family : uint8_t { ipv4 = 4, ipv6 = 6 };

// An IPv4 or IPv6 address in network byte order; IPv4 uses the first 4 bytes.
struct Address {
    Family family = Family::ipv4;
    std::array<uint8_t, 16> bytes{};

    static std::optional<Address> parse(std::string_view text) noexcept;
    static Address v4(const uint8_t* network_order) noexcept;
    static Address v6(const uint8_t* network_order) noexcept;

    size_t size() const noexcept { return family == Family::ipv4 ? 4 : 16; }
    std::string to_string() const;

    auto operator<=>(const Address&) const = default;
};

struct Cidr {
    Address address;
    uint8_t prefix = 0;

    // "192.0.2.0/29", "2001:db8::/32", or a bare address (a host prefix).
    // Host bits set ("192.0.2.1/29") are refused: such a typo widens or
    // narrows a firewall rule silently.
    static std::optional<Cidr> parse(std::string_view text, std::string* error = nullptr);

    unsigned max_prefix() const noexcept { return address.family == Family::ipv4 ? 32 : 128; }
    bool is_host() const noexcept { return prefix == max_prefix(); }
    bool contains(const Address& a) const noexcept;
    std::string to_string() const;

    auto operator<=>(const Cidr&) const = default;
};

} // namespace fqdnd
