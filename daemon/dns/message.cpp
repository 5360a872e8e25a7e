#include "dns/message.hpp"

#include <ldns/ldns.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

namespace fqdnd::dns {

namespace {

struct PktFree {
    void operator()(ldns_pkt* p) const noexcept { ldns_pkt_free(p); }
};
using PktPtr = std::unique_ptr<ldns_pkt, PktFree>;

// A domain name in presentation form, lower-cased, from the uncompressed
// wire form ldns keeps: ldns_rdf2str does the same through printf, which
// was the costliest step of the packet path. Characters outside letters,
// digits, '-' and '_' are escaped as \DDD (such names match no selector).
std::string dname_text(const ldns_rdf* rdf)
{
    if (!rdf || ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_DNAME)
        return "";
    const uint8_t* p = ldns_rdf_data(rdf);
    const size_t size = ldns_rdf_size(rdf);
    std::string out;
    out.reserve(size + 1);
    size_t i = 0;
    while (i < size) {
        const size_t len = p[i++];
        if (len == 0)
            break;
        if (len > 63 || i + len > size)
            return "";
        for (size_t j = 0; j < len; ++j) {
            char c = static_cast<char>(p[i + j]);
            if (c >= 'A' && c <= 'Z')
                c = static_cast<char>(c - 'A' + 'a');
            if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
                out += c;
            } else {
                const unsigned v = static_cast<uint8_t>(c);
                out += '\\';
                out += static_cast<char>('0' + v / 100);
                out += static_cast<char>('0' + v / 10 % 10);
                out += static_cast<char>('0' + v % 10);
            }
        }
        out += '.';
        i += len;
    }
    return out.empty() ? std::string(".") : out;
}

PktPtr parse(std::span<const uint8_t> wire, Malformed* why) noexcept
{
    if (wire.size() > 65535) {
        *why = Malformed::too_long;
        return nullptr;
    }
    ldns_pkt* p = nullptr;
    if (wire.size() < LDNS_HEADER_SIZE || ldns_wire2pkt(&p, wire.data(), wire.size()) != LDNS_STATUS_OK || !p) {
        if (p)
            ldns_pkt_free(p);
        *why = Malformed::unparsable;
        return nullptr;
    }
    return PktPtr(p);
}

std::optional<Question> question_of(const ldns_pkt* p, Malformed* why)
{
    const ldns_rr_list* qs = ldns_pkt_question(p);
    if (ldns_pkt_qdcount(p) != 1 || !qs || ldns_rr_list_rr_count(qs) != 1) {
        *why = Malformed::question_count;
        return std::nullopt;
    }
    const ldns_rr* q = ldns_rr_list_rr(qs, 0);
    return Question{dname_text(ldns_rr_owner(q)), static_cast<uint16_t>(ldns_rr_get_type(q)),
                    static_cast<uint16_t>(ldns_rr_get_class(q))};
}

} // namespace

std::string_view to_string(Malformed m) noexcept
{
    switch (m) {
    case Malformed::none: return "none";
    case Malformed::unparsable: return "unparsable";
    case Malformed::not_a_query: return "not a query";
    case Malformed::not_an_answer: return "not an answer";
    case Malformed::question_count: return "not one question";
    case Malformed::cname_chain: return "bad CNAME chain";
    case Malformed::too_long: return "too long";
    case Malformed::edns: return "bad EDNS";
    case Malformed::count: break;
    }
    return "?";
}

namespace {

// Parses `wire` and hands the packet to `body`; anything odd (including an
// allocation failure inside ldns) yields nothing and the reason in `why`.
template <typename Result, typename Body>
std::optional<Result> with_packet(std::span<const uint8_t> wire, Malformed* why, Body body) noexcept
{
    Malformed ignored;
    if (!why)
        why = &ignored;
    *why = Malformed::none;
    try {
        PktPtr p = parse(wire, why);
        if (!p)
            return std::nullopt;
        return body(p.get(), why);
    } catch (...) {
        *why = Malformed::unparsable;
        return std::nullopt;
    }
}

// ldns takes OPT records out of the additional section (the last one
// wins) and lowers its count by as many: more than one is a FORMERR
// (RFC 6891, 6.1.1), not a message to act on.
bool edns_sound(std::span<const uint8_t> wire, const ldns_pkt* p) noexcept
{
    const unsigned arcount = static_cast<unsigned>(wire[10] << 8 | wire[11]);
    return arcount - ldns_pkt_arcount(p) <= 1;
}

} // namespace

std::optional<Query> parse_query(std::span<const uint8_t> wire, Malformed* why) noexcept
{
    return with_packet<Query>(wire, why, [wire](const ldns_pkt* p, Malformed* why) -> std::optional<Query> {
        if (ldns_pkt_qr(p) || ldns_pkt_get_opcode(p) != LDNS_PACKET_QUERY) {
            *why = Malformed::not_a_query;
            return std::nullopt;
        }
        if (!edns_sound(wire, p)) {
            *why = Malformed::edns;
            return std::nullopt;
        }
        auto q = question_of(p, why);
        if (!q)
            return std::nullopt;
        return Query{ldns_pkt_id(p), ldns_pkt_rd(p), std::move(*q)};
    });
}

std::optional<Answer> parse_answer(std::span<const uint8_t> wire, Malformed* why) noexcept
{
    return with_packet<Answer>(wire, why, [wire](const ldns_pkt* p, Malformed* why) -> std::optional<Answer> {
        if (!ldns_pkt_qr(p)) {
            *why = Malformed::not_an_answer;
            return std::nullopt;
        }
        if (!edns_sound(wire, p)) {
            *why = Malformed::edns;
            return std::nullopt;
        }
        auto q = question_of(p, why);
        if (!q)
            return std::nullopt;
        Answer a;
        a.id = ldns_pkt_id(p);
        // The RCODE is 12 bits with EDNS: an extended one (BADVERS...) is
        // no NOERROR, whatever the header's four bits say.
        const unsigned rcode = static_cast<unsigned>(ldns_pkt_edns_extended_rcode(p)) << 4 | ldns_pkt_get_rcode(p);
        a.rcode = static_cast<uint8_t>(std::min(rcode, 255u));
        a.question = *q;
        a.names.push_back(q->name);
        a.ttl = UINT32_MAX;

        // Walk the chain through the answer section in order: each CNAME
        // must come after the one that led to it; addresses after the last.
        const ldns_rr_list* rrs = ldns_pkt_answer(p);
        const size_t count = rrs ? ldns_rr_list_rr_count(rrs) : 0;
        size_t pos = 0;
        for (size_t i = 0; i < count; ++i) {
            const ldns_rr* rr = ldns_rr_list_rr(rrs, i);
            if (ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN)
                continue;
            const ldns_rr_type type = ldns_rr_get_type(rr);
            if (type != LDNS_RR_TYPE_CNAME && type != LDNS_RR_TYPE_A && type != LDNS_RR_TYPE_AAAA)
                continue;
            const std::string owner = dname_text(ldns_rr_owner(rr));
            if (type == LDNS_RR_TYPE_CNAME) {
                const auto at = std::find(a.names.begin(), a.names.end(), owner);
                if (at == a.names.end())
                    continue; // not on the chain: ignored
                if (owner != a.names.back() || !a.addresses.empty() || i < pos) {
                    *why = Malformed::cname_chain; // out of order, a fork, or after the addresses
                    return std::nullopt;
                }
                const std::string target = dname_text(ldns_rr_rdf(rr, 0));
                if (target.empty() || std::find(a.names.begin(), a.names.end(), target) != a.names.end()
                    || a.names.size() > max_cname_chain) {
                    *why = Malformed::cname_chain; // a loop, or too long
                    return std::nullopt;
                }
                a.names.push_back(target);
                a.ttl = std::min(a.ttl, ldns_rr_ttl(rr));
                pos = i;
                continue;
            }
            if (owner != a.names.back())
                continue; // an address of another name is not the answer's
            const ldns_rdf* rdf = ldns_rr_rdf(rr, 0);
            if (!rdf)
                continue;
            const size_t len = ldns_rdf_size(rdf);
            if (type == LDNS_RR_TYPE_A && len == 4)
                a.addresses.push_back(Address::v4(ldns_rdf_data(rdf)));
            else if (type == LDNS_RR_TYPE_AAAA && len == 16)
                a.addresses.push_back(Address::v6(ldns_rdf_data(rdf)));
            else
                continue;
            a.ttl = std::min(a.ttl, ldns_rr_ttl(rr));
        }
        if (a.ttl == UINT32_MAX)
            a.ttl = 0;
        std::sort(a.addresses.begin(), a.addresses.end());
        a.addresses.erase(std::unique(a.addresses.begin(), a.addresses.end()), a.addresses.end());
        return a;
    });
}

std::vector<uint8_t> build_reject(const Query& query, uint8_t rcode)
{
    PktPtr p(ldns_pkt_new());
    ldns_pkt_set_id(p.get(), query.id);
    ldns_pkt_set_qr(p.get(), true);
    ldns_pkt_set_opcode(p.get(), LDNS_PACKET_QUERY);
    ldns_pkt_set_rd(p.get(), query.recursion_desired);
    ldns_pkt_set_ra(p.get(), true);
    ldns_pkt_set_rcode(p.get(), rcode);
    ldns_rdf* owner = nullptr;
    if (ldns_str2rdf_dname(&owner, query.question.name.c_str()) == LDNS_STATUS_OK) {
        ldns_rr* q = ldns_rr_new();
        ldns_rr_set_owner(q, owner);
        ldns_rr_set_type(q, static_cast<ldns_rr_type>(query.question.type));
        ldns_rr_set_class(q, static_cast<ldns_rr_class>(query.question.klass));
        ldns_rr_set_question(q, true);
        ldns_pkt_push_rr(p.get(), LDNS_SECTION_QUESTION, q);
    }
    uint8_t* wire = nullptr;
    size_t size = 0;
    if (ldns_pkt2wire(&wire, p.get(), &size) != LDNS_STATUS_OK || !wire)
        return {};
    std::vector<uint8_t> out(wire, wire + size);
    std::free(wire);
    return out;
}

} // namespace fqdnd::dns
