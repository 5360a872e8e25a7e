#include "config/address.hpp"

#include <arpa/inet.h>
#include <charconv>
#include <cstring>

namespace fqdnd {

std::optional<Address> Address::parse(std::string_view text) noexcept
{
    char buf[INET6_ADDRSTRLEN + 1];
    if (text.empty() || text.size() >= sizeof(buf))
        return std::nullopt;
    std::memcpy(buf, text.data(), text.size());
    buf[text.size()] = '\0';

    Address a;
    if (inet_pton(AF_INET, buf, a.bytes.data()) == 1) {
        a.family = Family::ipv4;
        return a;
    }
    if (inet_pton(AF_INET6, buf, a.bytes.data()) == 1) {
        a.family = Family::ipv6;
        return a;
    }
    return std::nullopt;
}

Address Address::v4(const uint8_t* network_order) noexcept
{
    Address a;
    a.family = Family::ipv4;
    std::memcpy(a.bytes.data(), network_order, 4);
    return a;
}

Address Address::v6(const uint8_t* network_order) noexcept
{
    Address a;
    a.family = Family::ipv6;
    std::memcpy(a.bytes.data(), network_order, 16);
    return a;
}

std::string Address::to_string() const
{
    char buf[INET6_ADDRSTRLEN];
    const int af = family == Family::ipv4 ? AF_INET : AF_INET6;
    if (!inet_ntop(af, bytes.data(), buf, sizeof(buf)))
        return "?";
    return buf;
}

std::optional<Cidr> Cidr::parse(std::string_view text, std::string* error)
{
    auto fail = [&](std::string message) -> std::optional<Cidr> {
        if (error)
            *error = std::move(message);
        return std::nullopt;
    };

    const size_t slash = text.find('/');
    const auto addr = Address::parse(text.substr(0, slash));
    if (!addr)
        return fail("\"" + std::string(text) + "\" is not an IPv4 or IPv6 address or CIDR");

    Cidr c{*addr, 0};
    c.prefix = static_cast<uint8_t>(c.max_prefix());
    if (slash != std::string_view::npos) {
        const std::string_view len = text.substr(slash + 1);
        unsigned value = 0;
        auto [end, ec] = std::from_chars(len.data(), len.data() + len.size(), value);
        if (len.empty() || ec != std::errc() || end != len.data() + len.size() || value > c.max_prefix())
            return fail("\"" + std::string(text) + "\" has a bad prefix length (0 to "
                + std::to_string(c.max_prefix()) + ")");
        c.prefix = static_cast<uint8_t>(value);
    }

    Cidr masked = c;
    for (unsigned bit = c.prefix; bit < c.max_prefix(); ++bit)
        masked.address.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
    if (masked.address != c.address)
        return fail("\"" + std::string(text) + "\" has host bits set; did you mean "
            + masked.to_string() + "?");
    return c;
}

bool Cidr::contains(const Address& a) const noexcept
{
    if (a.family != address.family)
        return false;
    const unsigned full = prefix / 8, rest = prefix % 8;
    if (std::memcmp(a.bytes.data(), address.bytes.data(), full) != 0)
        return false;
    if (rest == 0)
        return true;
    const uint8_t mask = static_cast<uint8_t>(0xff00u >> rest);
    return (a.bytes[full] & mask) == (address.bytes[full] & mask);
}

std::string Cidr::to_string() const
{
    return address.to_string() + "/" + std::to_string(prefix);
}

} // namespace fqdnd
