#pragma once
// Hand-made DNS messages and packets for the unit tests.

#include "config/address.hpp"
#include "dns/packet.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace test_dns {

inline void put16(std::vector<uint8_t>& v, uint16_t x)
{
    v.push_back(static_cast<uint8_t>(x >> 8));
    v.push_back(static_cast<uint8_t>(x));
}

inline void put_name(std::vector<uint8_t>& v, const std::string& name)
{
    if (name == ".") {
        v.push_back(0); // the root
        return;
    }
    size_t start = 0;
    while (start < name.size()) {
        size_t dot = name.find('.', start);
        if (dot == std::string::npos)
            dot = name.size();
        v.push_back(static_cast<uint8_t>(dot - start));
        v.insert(v.end(), name.begin() + static_cast<long>(start), name.begin() + static_cast<long>(dot));
        start = dot + 1;
    }
    v.push_back(0);
}

struct Rr {
    std::string owner;
    uint16_t type;
    uint32_t ttl;
    std::vector<uint8_t> rdata;
};

inline Rr a(const std::string& owner, const std::string& addr, uint32_t ttl = 30)
{
    const auto x = *fqdnd::Address::parse(addr);
    return Rr{owner, static_cast<uint16_t>(x.family == fqdnd::Family::ipv4 ? 1 : 28), ttl,
              std::vector<uint8_t>(x.bytes.begin(), x.bytes.begin() + static_cast<long>(x.size()))};
}

// An EDNS OPT pseudo-record: `ext_rcode` is the upper 8 bits of the RCODE.
inline Rr opt(uint8_t ext_rcode = 0)
{
    return Rr{".", 41, static_cast<uint32_t>(ext_rcode) << 24, {}};
}

inline Rr cname(const std::string& owner, const std::string& target, uint32_t ttl = 30)
{
    Rr r{owner, 5, ttl, {}};
    put_name(r.rdata, target);
    return r;
}

struct Message {
    uint16_t id = 4242;
    bool answer = false;
    uint8_t rcode = 0;
    std::vector<std::pair<std::string, uint16_t>> questions;
    std::vector<Rr> answers, authority, additional;

    std::vector<uint8_t> wire() const
    {
        std::vector<uint8_t> v;
        put16(v, id);
        put16(v, static_cast<uint16_t>((answer ? 0x8180 : 0x0100) | rcode));
        put16(v, static_cast<uint16_t>(questions.size()));
        put16(v, static_cast<uint16_t>(answers.size()));
        put16(v, static_cast<uint16_t>(authority.size()));
        put16(v, static_cast<uint16_t>(additional.size()));
        for (const auto& [name, type] : questions) {
            put_name(v, name);
            put16(v, type);
            put16(v, 1);
        }
        for (const auto* section : {&answers, &authority, &additional})
            for (const Rr& r : *section) {
                put_name(v, r.owner);
                put16(v, r.type);
                put16(v, 1);
                put16(v, static_cast<uint16_t>(r.ttl >> 16));
                put16(v, static_cast<uint16_t>(r.ttl));
                put16(v, static_cast<uint16_t>(r.rdata.size()));
                v.insert(v.end(), r.rdata.begin(), r.rdata.end());
            }
        return v;
    }
};

inline std::vector<uint8_t> udp(const std::string& from, uint16_t sport, const std::string& to, uint16_t dport,
                                const std::vector<uint8_t>& payload)
{
    return fqdnd::dns::build_udp(*fqdnd::Address::parse(from), sport, *fqdnd::Address::parse(to), dport, payload);
}

} // namespace test_dns
