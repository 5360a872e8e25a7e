#pragma once

#include "config/address.hpp"

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

// DNS messages parsed with ldns: the one question of a query, and what an
// answer says about it. Untrusted bytes: anything odd yields nothing and a
// reason, never a crash.
namespace fqdnd::dns {

struct Question {
    std::string name; // lower case, fully qualified, as ldns prints it
    uint16_t type = 0;
    uint16_t klass = 0;
    bool operator==(const Question&) const = default;
};

struct Query {
    uint16_t id = 0;
    bool recursion_desired = false;
    Question question;
};

// Why a message was not taken; each is counted.
enum class Malformed : uint8_t {
    none,
    unparsable,        // ldns refused the bytes
    not_a_query,       // QR set, or an opcode other than QUERY
    not_an_answer,     // QR clear
    question_count,    // not exactly one question
    cname_chain,       // CNAMEs out of order, looping, or too long
    too_long,          // over 65535 bytes
    edns,              // more than one OPT record (RFC 6891: FORMERR)
    count,             // the number of reasons, not one
};
std::string_view to_string(Malformed m) noexcept;

std::optional<Query> parse_query(std::span<const uint8_t> wire, Malformed* why) noexcept;

struct Answer {
    uint16_t id = 0;
    uint8_t rcode = 0;
    Question question;
    std::vector<std::string> names; // the question's name, then each CNAME target in order
    std::vector<Address> addresses; // A and AAAA of the chain's last name
    uint32_t ttl = 0;               // the lowest along the chain and the addresses
};

// CNAME chains longer than this are not followed.
inline constexpr size_t max_cname_chain = 16;

std::optional<Answer> parse_answer(std::span<const uint8_t> wire, Malformed* why) noexcept;

// An answer to `query` with only its question and `rcode` (REFUSED: 5,
// NXDOMAIN: 3), as fqdnd sends in the server's name.
std::vector<uint8_t> build_reject(const Query& query, uint8_t rcode);

inline constexpr uint8_t rcode_noerror = 0, rcode_nxdomain = 3, rcode_refused = 5;
inline constexpr uint16_t type_a = 1, type_cname = 5, type_aaaa = 28, class_in = 1;

} // namespace fqdnd::dns
