// DNS inspection without a kernel: queries checked, answers matched to
// queries, hostile answers ignored, replies built, TCP reassembled.
#include "config/loader.hpp"
#include "dns/engine.hpp"
#include "dns_builder.hpp"
#include "ruleset/compile.hpp"

#include <doctest/doctest.h>

using namespace fqdnd;
using namespace test_dns;
using namespace std::chrono_literals;

namespace {

const char* policy = R"([[policy]]
name = "echo"
[policy.selector]
sources = ["192.0.2.0/29"]
[[policy.egress]]
to-fqdns = [{ match-pattern = "*.k8s.intra" }]
[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
dns = [{ match-pattern = "**.k8s.intra" }, { match-name = "web.example" }]
)";

struct Fixture {
    config::Config config;
    cache::Cache cache;
    dns::Engine engine;
    cache::Time now{std::chrono::sys_days{std::chrono::year{2026} / 4 / 19} + 16h};

    static config::Config load(const std::string& settings)
    {
        auto r = config::load_config_text(settings, "/etc/fqdnd/fqdnd.toml", {{"p.toml", policy}});
        REQUIRE(r.config);
        return *r.config;
    }
    explicit Fixture(const std::string& settings = "")
        : config(load(settings)), cache({std::chrono::seconds(3600), 50}), engine(config, cache)
    {
        std::vector<cache::ElementOp> ops;
        cache.set_selectors(config.fqdn_selectors(), now, ops);
    }

    dns::Outcome packet(const std::vector<uint8_t>& p)
    {
        dns::PacketMeta meta;
        meta.hook = dns::Hook::forward;
        meta.now = now;
        return engine.handle(p, meta);
    }
    dns::Outcome query(const std::string& name, uint16_t id = 4242, uint16_t sport = 40000)
    {
        Message m;
        m.id = id;
        m.questions = {{name, 1}};
        return packet(udp("192.0.2.2", sport, "203.0.113.53", 53, m.wire()));
    }
    dns::Outcome answer(const Message& m, uint16_t dport = 40000, const std::string& client = "192.0.2.2")
    {
        return packet(udp("203.0.113.53", 53, client, dport, m.wire()));
    }
    static Message echo_answer(uint16_t id = 4242)
    {
        Message m;
        m.id = id;
        m.answer = true;
        m.questions = {{"echo.k8s.intra", 1}};
        m.answers = {a("echo.k8s.intra", "203.0.113.2")};
        return m;
    }
};

const uint64_t k8s_tag = ruleset::selector_tag(*FqdnSelector::parse_pattern("*.k8s.intra", nullptr));

} // namespace

TEST_CASE("an allowed query passes and its answer's addresses go to the matching sets first")
{
    Fixture f;
    auto q = f.query("echo.k8s.intra");
    CHECK(q.accept);
    CHECK(q.replies.empty());
    auto a = f.answer(Fixture::echo_answer());
    CHECK(a.accept);
    REQUIRE(a.ops.size() == 1);
    CHECK(a.ops[0].kind == cache::ElementOp::Kind::add);
    CHECK(a.ops[0].tag == k8s_tag);
    CHECK(a.ops[0].address == *Address::parse("203.0.113.2"));
    CHECK(a.ops[0].timeout == 3600s); // max(TTL 30, min-ttl 3600)
    CHECK(f.engine.stats().answers_learned == 1);
    const auto entries = f.cache.entries();
    REQUIRE(entries.size() == 1);
    CHECK(entries[0].endpoint == "192.0.2.2");
    CHECK(entries[0].name == "echo.k8s.intra.");
}

TEST_CASE("a query no DNS rule allows is dropped and answered REFUSED in the server's name")
{
    Fixture f;
    auto q = f.query("other.example", 77, 41000);
    CHECK_FALSE(q.accept);
    REQUIRE(q.replies.size() == 1);
    const auto pkt = dns::decode(q.replies[0]);
    REQUIRE(pkt);
    CHECK(pkt->src == *Address::parse("203.0.113.53"));
    CHECK(pkt->sport == 53);
    CHECK(pkt->dst == *Address::parse("192.0.2.2"));
    CHECK(pkt->dport == 41000);
    const auto reply = dns::parse_answer(pkt->payload, nullptr);
    REQUIRE(reply);
    CHECK(reply->id == 77);
    CHECK(reply->rcode == dns::rcode_refused);
    CHECK(reply->question.name == "other.example.");
    CHECK(f.engine.stats().queries_refused == 1);

    Fixture nx("[fqdn]\nreject-response-code = \"name-error\"\n");
    const auto r = nx.query("other.example");
    CHECK(dns::parse_answer(dns::decode(r.replies[0])->payload, nullptr)->rcode == dns::rcode_nxdomain);
}

TEST_CASE("multi-level DNS patterns allow deep names; only listed servers and selected clients count")
{
    Fixture f;
    CHECK(f.query("a.b.k8s.intra").accept);
    CHECK_FALSE(f.query("k8s.intra").accept);
    Message m;
    m.questions = {{"echo.k8s.intra", 1}};
    CHECK_FALSE(f.packet(udp("192.0.2.2", 40000, "203.0.113.99", 53, m.wire())).accept); // server not listed
    CHECK_FALSE(f.packet(udp("192.0.2.9", 40000, "203.0.113.53", 53, m.wire())).accept); // client not selected
}

TEST_CASE("hostile answers change nothing")
{
    Fixture f;
    f.query("echo.k8s.intra");
    CHECK(f.answer(Fixture::echo_answer(999)).ops.empty());            // wrong id
    CHECK(f.answer(Fixture::echo_answer(), 40001).ops.empty());         // wrong port
    CHECK(f.answer(Fixture::echo_answer(), 40000, "192.0.2.3").ops.empty()); // wrong client
    Message wrong = Fixture::echo_answer();
    wrong.questions = {{"evil.k8s.intra", 1}};
    wrong.answers = {a("evil.k8s.intra", "203.0.113.66")};
    CHECK(f.answer(wrong).ops.empty());                                 // wrong question
    Message extra = Fixture::echo_answer();
    extra.answers.clear();
    extra.additional = {a("echo.k8s.intra", "203.0.113.66")};
    CHECK(f.answer(extra).ops.empty());                                 // only in additional
    f.query("echo.k8s.intra");
    CHECK(f.answer(Fixture::echo_answer()).ops.size() == 1);             // the real one
    Message second = Fixture::echo_answer();
    second.answers = {a("echo.k8s.intra", "203.0.113.67")};
    CHECK(f.answer(second).ops.empty());                                // a second answer
    CHECK(f.answer(Fixture::echo_answer(31337), 50000).ops.empty());    // an answer to no query
    CHECK(f.engine.stats().answers_unmatched >= 5);

    f.query("echo.k8s.intra", 5);
    f.now += 11s;
    CHECK(f.answer(Fixture::echo_answer(5)).ops.empty());               // after the query timed out
}

TEST_CASE("CNAME chains: in order they count for every name; broken ones for none")
{
    Fixture f;
    f.query("web.example", 1);
    Message m;
    m.id = 1;
    m.answer = true;
    m.questions = {{"web.example", 1}};
    m.answers = {cname("web.example", "cdn.k8s.intra", 300), a("cdn.k8s.intra", "203.0.113.5", 60)};
    auto out = f.answer(m);
    REQUIRE(out.ops.size() == 1);
    CHECK(out.ops[0].tag == k8s_tag);
    CHECK(f.cache.entries().size() == 2); // web.example. and cdn.k8s.intra.

    f.query("web.example", 2);
    m.id = 2;
    m.answers = {a("cdn.k8s.intra", "203.0.113.8"), cname("web.example", "cdn.k8s.intra")};
    CHECK(f.answer(m).ops.empty()); // out of order

    f.query("web.example", 3);
    m.id = 3;
    m.answers = {cname("web.example", "x.k8s.intra"), cname("x.k8s.intra", "web.example"), a("web.example", "203.0.113.9")};
    CHECK(f.answer(m).ops.empty()); // a loop

    std::vector<uint8_t> wire = Message{}.wire();
    dns::Malformed why;
    Message two;
    two.questions = {{"echo.k8s.intra", 1}, {"web.example", 1}};
    CHECK_FALSE(dns::parse_query(two.wire(), &why));
    CHECK(why == dns::Malformed::question_count);
    CHECK_FALSE(f.packet(udp("192.0.2.2", 40000, "203.0.113.53", 53, two.wire())).accept);
    CHECK_FALSE(dns::parse_query(std::vector<uint8_t>(wire.begin(), wire.begin() + 5), &why));
}

TEST_CASE("a chain longer than the bound is not followed")
{
    Fixture f;
    f.query("web.example", 9);
    Message m;
    m.id = 9;
    m.answer = true;
    m.questions = {{"web.example", 1}};
    std::string prev = "web.example";
    for (int i = 0; i < 20; ++i) {
        const std::string next = "c" + std::to_string(i) + ".k8s.intra";
        m.answers.push_back(cname(prev, next));
        prev = next;
    }
    m.answers.push_back(a(prev, "203.0.113.10"));
    CHECK(f.answer(m).ops.empty());
}

TEST_CASE("DNS over TCP: an answer split over segments is learned when complete")
{
    Fixture f;
    const auto client = *Address::parse("192.0.2.2"), server = *Address::parse("203.0.113.53");
    auto seg = [&](bool from_client, uint32_t seq, uint8_t flags, std::vector<uint8_t> data) {
        return from_client ? dns::build_tcp(client, 40000, server, 53, seq, 0, flags, data)
                           : dns::build_tcp(server, 53, client, 40000, seq, 0, flags, data);
    };
    auto framed = [](const std::vector<uint8_t>& m) {
        std::vector<uint8_t> v{static_cast<uint8_t>(m.size() >> 8), static_cast<uint8_t>(m.size())};
        v.insert(v.end(), m.begin(), m.end());
        return v;
    };
    CHECK(f.packet(seg(true, 1000, dns::tcp_syn, {})).accept);
    CHECK(f.packet(seg(false, 5000, dns::tcp_syn | dns::tcp_ack, {})).accept);
    Message q;
    q.questions = {{"echo.k8s.intra", 1}};
    const auto qw = framed(q.wire());
    CHECK(f.packet(seg(true, 1001, dns::tcp_ack | dns::tcp_psh, qw)).accept);
    const auto aw = framed(Fixture::echo_answer().wire());
    const std::vector<uint8_t> part1(aw.begin(), aw.begin() + 10), part2(aw.begin() + 10, aw.end());
    auto first = f.packet(seg(false, 5001, dns::tcp_ack, part1));
    CHECK(first.accept);
    CHECK(first.ops.empty());
    auto second = f.packet(seg(false, 5011, dns::tcp_ack | dns::tcp_psh, part2));
    CHECK(second.accept);
    REQUIRE(second.ops.size() == 1);
    CHECK(second.ops[0].address == *Address::parse("203.0.113.2"));

    // A refused query over TCP is answered in the stream, at the server's
    // next sequence number, and the client's later data is dropped.
    Message bad;
    bad.questions = {{"other.example", 1}};
    auto refused = f.packet(seg(true, 1001 + static_cast<uint32_t>(qw.size()), dns::tcp_ack | dns::tcp_psh, framed(bad.wire())));
    CHECK_FALSE(refused.accept);
    REQUIRE(refused.replies.size() == 1);
    const auto r = dns::decode(refused.replies[0]);
    REQUIRE(r);
    CHECK(r->seq == 5001 + aw.size());
    CHECK(dns::parse_answer(r->payload.subspan(2), nullptr)->rcode == dns::rcode_refused);
}

TEST_CASE("packets that are not IP/UDP/TCP, or truncated, are not trusted")
{
    Fixture f;
    auto p = udp("192.0.2.2", 40000, "203.0.113.53", 53, Message{}.wire());
    CHECK_FALSE(dns::decode(std::vector<uint8_t>(p.begin(), p.begin() + 25)));
    p[9] = 1; // ICMP
    CHECK_FALSE(dns::decode(p));
    CHECK(f.packet(std::vector<uint8_t>{0x45, 0, 0}).accept); // undecodable: let go, counted
    CHECK(f.engine.stats().packets_undecodable == 1);
}

TEST_CASE("the headers of a logged packet: addresses, protocol and port, even when cut short")
{
    using namespace fqdnd::dns;
    const auto a = *Address::parse("192.0.2.2"), b = *Address::parse("203.0.113.4");
    const uint8_t payload[] = {1, 2, 3};
    const auto tcp = build_tcp(a, 40000, b, 8080, 1, 0, tcp_syn, payload);
    auto h = decode_headers(tcp);
    REQUIRE(h);
    CHECK(h->src == a);
    CHECK(h->dst == b);
    CHECK(h->protocol == 6);
    CHECK(h->dport == 8080);
    // NFLOG copies the first bytes only: 24 still hold the port.
    h = decode_headers(std::span(tcp).first(24));
    REQUIRE(h);
    CHECK(h->dport == 8080);
    h = decode_headers(std::span(tcp).first(21));
    REQUIRE(h);
    CHECK(h->dport == 0);
    CHECK_FALSE(decode_headers(std::span(tcp).first(19)));

    const auto a6 = *Address::parse("2001:db8:1::2"), b6 = *Address::parse("2001:db8:4::2");
    const auto udp6 = build_udp(a6, 5000, b6, 443, payload);
    h = decode_headers(udp6);
    REQUIRE(h);
    CHECK(h->dst == b6);
    CHECK(h->protocol == 17);
    CHECK(h->dport == 443);

    // A later fragment carries no port.
    auto frag = tcp;
    frag[6] = 0x00;
    frag[7] = 0x10;
    h = decode_headers(frag);
    REQUIRE(h);
    CHECK(h->dport == 0);
    const uint8_t junk[] = {0x50, 0, 0, 0};
    CHECK_FALSE(decode_headers(junk));
}

TEST_CASE("more hostile answers: each changes nothing and is counted by reason")
{
    using dns::Malformed;
    Fixture f;
    auto malformed = [&](Malformed m) { return f.engine.stats().malformed[static_cast<size_t>(m)]; };

    // Addresses only in the authority section.
    f.query("echo.k8s.intra", 1);
    Message auth = Fixture::echo_answer(1);
    auth.answers.clear();
    auth.authority = {a("echo.k8s.intra", "203.0.113.66")};
    CHECK(f.answer(auth).ops.empty());

    // A broken chain: the CNAME's target has no address, another name has.
    f.query("web.example", 2);
    Message broken;
    broken.id = 2;
    broken.answer = true;
    broken.questions = {{"web.example", 1}};
    broken.answers = {cname("web.example", "cdn.k8s.intra"), a("other.k8s.intra", "203.0.113.67")};
    CHECK(f.answer(broken).ops.empty());

    // A compression pointer that points at itself, in the question.
    f.query("echo.k8s.intra", 3);
    std::vector<uint8_t> loop{0, 3, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
    CHECK(f.packet(udp("203.0.113.53", 53, "192.0.2.2", 40000, loop)).ops.empty());
    CHECK(malformed(Malformed::unparsable) == 1);

    // Truncated in the middle of its answer record.
    f.query("echo.k8s.intra", 4);
    auto cut = Fixture::echo_answer(4).wire();
    cut.resize(cut.size() - 3);
    CHECK(f.packet(udp("203.0.113.53", 53, "192.0.2.2", 40000, cut)).ops.empty());
    CHECK(malformed(Malformed::unparsable) == 2);

    // EDNS: an extended RCODE (BADVERS) makes it no NOERROR answer.
    f.query("echo.k8s.intra", 5);
    Message badvers = Fixture::echo_answer(5);
    badvers.additional = {opt(1)};
    CHECK(f.answer(badvers).ops.empty());
    // Two OPT records: FORMERR, not an answer to learn from.
    f.query("echo.k8s.intra", 6);
    Message two_opt = Fixture::echo_answer(6);
    two_opt.additional = {opt(), opt()};
    CHECK(f.answer(two_opt).ops.empty());
    CHECK(malformed(Malformed::edns) == 1);
    // An OPT record where it has no place (the answer section) is ignored
    // like any other type, and the rest of the answer counts.
    f.query("echo.k8s.intra", 7);
    Message opt_in_answer = Fixture::echo_answer(7);
    opt_in_answer.answers.insert(opt_in_answer.answers.begin(), opt());
    opt_in_answer.additional = {opt()};
    CHECK(f.answer(opt_in_answer).ops.size() == 1);

    // A wrong question is counted apart.
    f.query("echo.k8s.intra", 8);
    Message wrong = Fixture::echo_answer(8);
    wrong.questions = {{"evil.k8s.intra", 1}};
    CHECK(f.answer(wrong).ops.empty());
    CHECK(f.engine.stats().answers_wrong_question == 1);

    // A query with two questions, over UDP.
    Message two;
    two.questions = {{"echo.k8s.intra", 1}, {"web.example", 1}};
    CHECK_FALSE(f.packet(udp("192.0.2.2", 40000, "203.0.113.53", 53, two.wire())).accept);
    CHECK(malformed(Malformed::question_count) == 1);

    // Only the well-formed answer with the OPT record in the wrong section
    // was learned; nothing else reached the cache.
    CHECK(f.engine.stats().answers_learned == 1);
    CHECK(f.cache.addresses() == 1);
}

TEST_CASE("an oversized answer opens at most max-ip-per-hostname addresses")
{
    Fixture f;
    f.query("echo.k8s.intra", 1);
    Message big = Fixture::echo_answer(1);
    big.answers.clear();
    for (int i = 0; i < 250; ++i)
        big.answers.push_back(a("echo.k8s.intra", "198.51.100." + std::to_string(i)));
    f.answer(big);
    CHECK(f.cache.addresses() == 50);
}
