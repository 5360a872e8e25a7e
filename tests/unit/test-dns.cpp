// DNS inspection without a kernel: queries checked, answers matched to
// queries, hostile answers ignored, replies built, TCP reassembled.
#include "config/loader.hpp"
#include "dns/engine.hpp"
#include "dns-builder.hpp"
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

    // From the client (conntrack's original direction), or from the server.
    dns::Outcome packet(const std::vector<uint8_t>& p, dns::Direction d = dns::Direction::original)
    {
        dns::PacketMeta meta;
        meta.hook = dns::Hook::forward;
        meta.direction = d;
        meta.now = now;
        return engine.handle(p, meta);
    }
    dns::Outcome reply(const std::vector<uint8_t>& p) { return packet(p, dns::Direction::reply); }
    dns::Outcome query(const std::string& name, uint16_t id = 4242, uint16_t sport = 40000)
    {
        Message m;
        m.id = id;
        m.questions = {{name, 1}};
        return packet(udp("192.0.2.2", sport, "203.0.113.53", 53, m.wire()));
    }
    dns::Outcome answer(const Message& m, uint16_t dport = 40000, const std::string& client = "192.0.2.2")
    {
        return reply(udp("203.0.113.53", 53, client, dport, m.wire()));
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

TEST_CASE("an answer over UDP to no query fqdnd saw is dropped")
{
    // Handed to the client it would name addresses that are not open, for
    // as long as the client caches it; dropped, the client asks again.
    Fixture f;
    f.query("echo.k8s.intra");
    CHECK_FALSE(f.answer(Fixture::echo_answer(999)).accept); // another id
    Message wrong = Fixture::echo_answer();
    wrong.questions = {{"evil.k8s.intra", 1}};
    wrong.answers = {a("evil.k8s.intra", "203.0.113.66")};
    CHECK_FALSE(f.answer(wrong).accept);                     // another question
    CHECK(f.engine.stats().answers_wrong_question == 1);
    const auto real = f.answer(Fixture::echo_answer());
    CHECK(real.accept);                                       // still the real one's
    CHECK(real.ops.size() == 1);
    CHECK_FALSE(f.answer(Fixture::echo_answer()).accept);    // again: its query is answered
}

TEST_CASE("questions under one client port and id are bounded, the oldest going first")
{
    // A client may ask many names with one id from one port: each look at
    // the key must stay short.
    Fixture f;
    for (int i = 0; i < 1000; ++i) {
        f.now += 1ms;
        f.query("n" + std::to_string(i) + ".k8s.intra", 7);
    }
    CHECK(f.engine.pending_queries() == dns::Engine::max_questions_per_key);
    CHECK(f.engine.stats().queries_evicted == 1000U - dns::Engine::max_questions_per_key);
    Message newest;
    newest.id = 7;
    newest.answer = true;
    newest.questions = {{"n999.k8s.intra", 1}};
    newest.answers = {a("n999.k8s.intra", "203.0.113.9")};
    CHECK(f.answer(newest).ops.size() == 1);
    Message oldest = newest;
    oldest.questions = {{"n0.k8s.intra", 1}};
    oldest.answers = {a("n0.k8s.intra", "203.0.113.10")};
    CHECK_FALSE(f.answer(oldest).accept);
}

TEST_CASE("A and AAAA asked at once from one socket with one id: both answers count")
{
    // Older musl sends both with the same id; neither may hide the other.
    Fixture f;
    CHECK(f.query("echo.k8s.intra", 7).accept);
    Message aaaa;
    aaaa.id = 7;
    aaaa.questions = {{"echo.k8s.intra", 28}};
    CHECK(f.packet(udp("192.0.2.2", 40000, "203.0.113.53", 53, aaaa.wire())).accept);
    Message a_answer = Fixture::echo_answer(7);
    const auto first = f.answer(a_answer);
    CHECK(first.accept);
    CHECK(first.ops.size() == 1);
    aaaa.answer = true;
    aaaa.answers = {a("echo.k8s.intra", "2001:db8:4::2")};
    const auto second = f.answer(aaaa);
    CHECK(second.accept);
    CHECK(second.ops.size() == 1);
    CHECK(f.engine.stats().answers_wrong_question == 0);
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

namespace {

std::vector<uint8_t> framed(const std::vector<uint8_t>& m)
{
    std::vector<uint8_t> v{static_cast<uint8_t>(m.size() >> 8), static_cast<uint8_t>(m.size())};
    v.insert(v.end(), m.begin(), m.end());
    return v;
}

std::vector<uint8_t> query_wire(const std::string& name, uint16_t id = 4242)
{
    Message m;
    m.id = id;
    m.questions = {{name, 1}};
    return m.wire();
}

// One TCP connection from 192.0.2.2 to the DNS server, through the engine:
// the handshake done, each side's next sequence number kept.
struct Tcp {
    Fixture& f;
    uint16_t port;
    Address client = *Address::parse("192.0.2.2"), server = *Address::parse("203.0.113.53");
    uint32_t cseq = 1000, sseq = 5000;

    explicit Tcp(Fixture& fx, uint16_t p = 40000, bool handshake = true) : f(fx), port(p)
    {
        if (!handshake)
            return;
        CHECK(f.packet(from_client(cseq, dns::tcp_syn, {})).accept);
        CHECK(f.reply(from_server(sseq, cseq + 1, dns::tcp_syn | dns::tcp_ack, {})).accept);
        ++cseq;
        ++sseq;
    }
    std::vector<uint8_t> from_client(uint32_t seq, uint8_t flags, const std::vector<uint8_t>& data) const
    {
        return dns::build_tcp(client, port, server, 53, seq, sseq, flags, data);
    }
    std::vector<uint8_t> from_server(uint32_t seq, uint32_t ack, uint8_t flags, const std::vector<uint8_t>& data) const
    {
        return dns::build_tcp(server, 53, client, port, seq, ack, flags, data);
    }
    // Client data at seq (the next byte by default).
    dns::Outcome send(const std::vector<uint8_t>& data, std::optional<uint32_t> seq = std::nullopt)
    {
        const uint32_t at = seq.value_or(cseq);
        auto out = f.packet(from_client(at, dns::tcp_ack | dns::tcp_psh, data));
        if (out.accept && static_cast<int32_t>(at + static_cast<uint32_t>(data.size()) - cseq) > 0)
            cseq = at + static_cast<uint32_t>(data.size());
        return out;
    }
    dns::Outcome server_ack(uint32_t ack) { return f.reply(from_server(sseq, ack, dns::tcp_ack, {})); }
    dns::Outcome answer(const std::vector<uint8_t>& data)
    {
        auto out = f.reply(from_server(sseq, cseq, dns::tcp_ack | dns::tcp_psh, data));
        sseq += static_cast<uint32_t>(data.size());
        return out;
    }
};

} // namespace

TEST_CASE("DNS over TCP: an answer split over segments is learned when complete")
{
    Fixture f;
    Tcp t(f);
    CHECK(t.send(framed(query_wire("echo.k8s.intra"))).accept);
    const auto aw = framed(Fixture::echo_answer().wire());
    auto first = t.answer({aw.begin(), aw.begin() + 10});
    CHECK(first.accept);
    CHECK(first.ops.empty());
    auto second = t.answer({aw.begin() + 10, aw.end()});
    CHECK(second.accept);
    REQUIRE(second.ops.size() == 1);
    CHECK(second.ops[0].address == *Address::parse("203.0.113.2"));

    // A refused query over TCP is answered in the stream, at the server's
    // next sequence number, and the client's later data is dropped.
    auto refused = t.send(framed(query_wire("other.example")));
    CHECK_FALSE(refused.accept);
    REQUIRE(refused.replies.size() == 1);
    const auto r = dns::decode(refused.replies[0]);
    REQUIRE(r);
    CHECK(r->seq == t.sseq);
    CHECK(dns::parse_answer(r->payload.subspan(2), nullptr)->rcode == dns::rcode_refused);
    CHECK_FALSE(t.send(framed(query_wire("echo.k8s.intra"))).accept);
}

TEST_CASE("the flow's direction says query or answer, not the QR bit the client writes")
{
    Fixture f;
    // An answer-shaped message from the client toward the server (UDP).
    Message forged = Fixture::echo_answer();
    forged.questions = {{"secret.example", 1}};
    auto out = f.packet(udp("192.0.2.2", 40000, "203.0.113.53", 53, forged.wire()));
    CHECK_FALSE(out.accept);
    CHECK(f.engine.stats().malformed[static_cast<size_t>(dns::Malformed::not_a_query)] == 1);
    // Without conntrack's direction, the listed server's address and port
    // tell it: the client's answer-shaped message is still a query...
    out = f.packet(udp("192.0.2.2", 53, "203.0.113.53", 53, forged.wire()), dns::Direction::unknown);
    CHECK_FALSE(out.accept);
    // ...and where both sides fit, it is judged as a query.
    out = f.packet(udp("203.0.113.53", 53, "203.0.113.53", 53, Fixture::echo_answer().wire()), dns::Direction::unknown);
    CHECK_FALSE(out.accept);
    CHECK(out.ops.empty());
    CHECK(f.engine.stats().packets_no_direction == 1);
    f.query("echo.k8s.intra", 9);
    CHECK(f.packet(udp("203.0.113.53", 53, "192.0.2.2", 40000, Fixture::echo_answer(9).wire()), dns::Direction::unknown)
              .ops.size() == 1);
    // The same over TCP.
    Tcp t(f);
    CHECK_FALSE(t.send(framed(forged.wire())).accept);
    CHECK(f.engine.stats().malformed[static_cast<size_t>(dns::Malformed::not_a_query)] == 4);
    // The real answer, from the reply direction, still counts.
    f.query("echo.k8s.intra");
    f.answer(Fixture::echo_answer());
    CHECK(f.engine.stats().answers_learned == 2);
}

TEST_CASE("TCP: a segment after a gap is dropped and the stream kept in step")
{
    Fixture f;
    Tcp t(f);
    const auto q = framed(query_wire("other.example"));
    const std::vector<uint8_t> head(q.begin(), q.begin() + 6), tail(q.begin() + 6, q.end());
    // The rest of a refused query, sent past a gap, is not passed...
    CHECK_FALSE(t.send(tail, t.cseq + 6).accept);
    CHECK(f.engine.stats().tcp_gap == 1);
    // ...nor is the query once whole.
    CHECK(t.send(head).accept);
    CHECK_FALSE(t.send(tail).accept);
    CHECK(f.engine.stats().queries_refused == 1);

    Fixture g;
    Tcp u(g);
    const auto ok = framed(query_wire("echo.k8s.intra"));
    CHECK_FALSE(u.send({ok.begin() + 4, ok.end()}, u.cseq + 4).accept);
    CHECK(u.send({ok.begin(), ok.begin() + 4}).accept);
    CHECK(u.send({ok.begin() + 4, ok.end()}).accept);
    CHECK(g.engine.stats().queries_allowed == 1);
}

TEST_CASE("TCP: data on a stream fqdnd has not followed from its start is dropped and the client reset")
{
    Fixture f;
    Tcp t(f, 40000, false);
    auto out = t.send(framed(query_wire("echo.k8s.intra")));
    CHECK_FALSE(out.accept);
    REQUIRE(out.replies.size() == 1);
    const auto rst = dns::decode(out.replies[0]);
    REQUIRE(rst);
    CHECK((rst->tcp_flags & dns::tcp_rst));
    CHECK(rst->seq == t.sseq); // the client's acknowledgement: Linux takes it
    CHECK(rst->src == t.server);
    // An answer on a stream fqdnd does not know: dropped.
    CHECK_FALSE(t.answer(framed(Fixture::echo_answer().wire())).accept);
    CHECK(f.engine.stats().tcp_unknown_stream == 2);

    // After an RST the server takes (at the next byte), the same.
    Tcp u(f, 40001);
    CHECK(u.send(framed(query_wire("echo.k8s.intra", 1))).accept);
    CHECK(f.packet(u.from_client(u.cseq, dns::tcp_rst, {})).accept);
    CHECK_FALSE(u.send(framed(query_wire("echo.k8s.intra", 2))).accept);
    CHECK(f.engine.stats().tcp_unknown_stream == 3);
}

TEST_CASE("TCP: an RST its receiver would not take leaves the stream followed")
{
    Fixture f;
    Tcp t(f);
    const auto q = framed(query_wire("echo.k8s.intra", 1));
    CHECK(t.send(q).accept);
    // Forged blind in the client's name: in the window, past what was
    // sent, or below what the server acknowledged. The server ignores
    // them (RFC 5961), and so does fqdnd; they are passed for it to judge.
    CHECK(f.packet(t.from_client(t.cseq + 100, dns::tcp_rst, {})).accept);
    CHECK(f.packet(t.from_client(t.cseq - 1000, dns::tcp_rst, {})).accept);
    CHECK(t.server_ack(t.cseq).accept);
    CHECK(f.packet(t.from_client(t.cseq - 1, dns::tcp_rst | dns::tcp_ack, {})).accept);
    // In the server's name: ahead of what it sent, behind what the client
    // acknowledged, and before the handshake one that acknowledges no SYN.
    CHECK(t.answer(framed(Fixture::echo_answer(1).wire())).ops.size() == 1);
    CHECK(f.packet(t.from_client(t.cseq, dns::tcp_ack, {})).accept); // the client has it all
    CHECK(f.reply(t.from_server(t.sseq + 70000, t.cseq, dns::tcp_rst, {})).accept);
    CHECK(f.reply(t.from_server(t.sseq - 5, t.cseq, dns::tcp_rst, {})).accept);
    CHECK(f.engine.stats().tcp_resets_ignored == 5);
    // The client's next query on it is judged as usual.
    CHECK(t.send(framed(query_wire("echo.k8s.intra", 2))).accept);
    CHECK(f.engine.stats().tcp_unknown_stream == 0);
    CHECK(t.answer(framed(Fixture::echo_answer(2).wire())).accept);

    // The server's RST at the next byte it would send: taken.
    CHECK(f.reply(t.from_server(t.sseq, t.cseq, dns::tcp_rst, {})).accept);
    CHECK_FALSE(t.send(framed(query_wire("echo.k8s.intra", 3))).accept);
    CHECK(f.engine.stats().tcp_unknown_stream == 1);

    // After the client's FIN, its RST one past its last byte: taken.
    Tcp u(f, 40001);
    CHECK(f.packet(u.from_client(u.cseq, dns::tcp_fin | dns::tcp_ack, {})).accept);
    CHECK(f.packet(u.from_client(u.cseq + 2, dns::tcp_rst, {})).accept);
    CHECK(f.engine.stats().tcp_resets_ignored == 6);
    CHECK(f.packet(u.from_client(u.cseq + 1, dns::tcp_rst, {})).accept);
    CHECK_FALSE(u.send(framed(query_wire("echo.k8s.intra", 4))).accept);
    CHECK(f.engine.stats().tcp_unknown_stream == 2);

    // A closed port: the server's RST acknowledges the SYN, or it is not
    // the answer to it.
    Tcp v(f, 40002, false);
    CHECK(f.packet(v.from_client(v.cseq, dns::tcp_syn, {})).accept);
    CHECK(f.reply(v.from_server(0, v.cseq + 7, dns::tcp_rst | dns::tcp_ack, {})).accept);
    CHECK(f.engine.stats().tcp_resets_ignored == 7);
    CHECK(f.reply(v.from_server(0, v.cseq + 1, dns::tcp_rst | dns::tcp_ack, {})).accept);
    // Forgotten: a SYN with another number begins a new stream (kept, it
    // would be a second SYN).
    CHECK(f.packet(v.from_client(v.cseq + 9, dns::tcp_syn, {})).accept);
    CHECK(f.engine.stats().tcp_second_syn == 0);

    // The SYN-ACK seen by fqdnd but lost on the way, the SYN resent, the
    // port closed meanwhile: the client (in SYN_SENT) takes the RST that
    // acknowledges its SYN, whatever its number; so does fqdnd.
    Tcp w(f, 40003);
    CHECK(f.packet(w.from_client(w.cseq - 1, dns::tcp_syn, {})).accept);
    CHECK(f.reply(w.from_server(0, w.cseq, dns::tcp_rst | dns::tcp_ack, {})).accept);
    CHECK(f.engine.stats().tcp_resets_ignored == 7);
    CHECK(f.packet(w.from_client(w.cseq + 50, dns::tcp_syn, {})).accept);
    CHECK(f.engine.stats().tcp_second_syn == 0);
}

TEST_CASE("TCP: an RST within the window ends a stream whose server closed, or whose handshake is not done")
{
    // Linux takes any RST in its window in FIN_WAIT2 (orphaned) and in
    // SYN_RECV: so does fqdnd, or it would follow a connection gone.
    Fixture f;
    Tcp t(f);
    CHECK(t.send(framed(query_wire("echo.k8s.intra", 1))).accept);
    CHECK(f.reply(t.from_server(t.sseq, t.cseq, dns::tcp_fin | dns::tcp_ack, {})).accept);
    CHECK(f.packet(t.from_client(t.cseq + 1000, dns::tcp_rst, {})).accept);
    CHECK(f.engine.stats().tcp_resets_ignored == 0);
    CHECK_FALSE(t.send(framed(query_wire("echo.k8s.intra", 2))).accept);
    CHECK(f.engine.stats().tcp_unknown_stream == 1);

    Tcp u(f, 40001); // the SYN-ACK seen, not yet acknowledged
    CHECK(f.packet(u.from_client(u.cseq + 1000, dns::tcp_rst, {})).accept);
    CHECK(f.engine.stats().tcp_resets_ignored == 0);
    CHECK_FALSE(u.send(framed(query_wire("echo.k8s.intra", 3))).accept);
    CHECK(f.engine.stats().tcp_unknown_stream == 2);
}

TEST_CASE("TCP: the same SYN once the handshake is done, or a SYN-ACK of another connection, is dropped")
{
    Fixture f;
    Tcp t(f);
    const uint32_t isn = t.cseq - 1;
    CHECK(t.send(framed(query_wire("echo.k8s.intra", 1))).accept);
    // The client acknowledged the SYN-ACK: it resends no SYN. The same one
    // is a new connection at a server that let the old one go.
    CHECK_FALSE(f.packet(t.from_client(isn, dns::tcp_syn, {})).accept);
    CHECK(f.engine.stats().tcp_second_syn == 1);
    CHECK(t.answer(framed(Fixture::echo_answer(1).wire())).accept); // still followed

    // Before the handshake is done the same SYN passes (its SYN-ACK was
    // lost); a SYN-ACK with another sequence number is another connection:
    // dropped and forgotten, and the SYN again begins it anew.
    Tcp u(f, 40001);
    const uint32_t uisn = u.cseq - 1;
    CHECK(f.packet(u.from_client(uisn, dns::tcp_syn, {})).accept);
    CHECK_FALSE(f.reply(u.from_server(9000, uisn + 1, dns::tcp_syn | dns::tcp_ack, {})).accept);
    CHECK(f.engine.stats().tcp_second_syn == 2);
    CHECK_FALSE(u.send(framed(query_wire("echo.k8s.intra", 2))).accept);
    CHECK(f.engine.stats().tcp_unknown_stream == 1);
    CHECK(f.packet(u.from_client(uisn, dns::tcp_syn, {})).accept);
    CHECK(f.reply(u.from_server(9000, uisn + 1, dns::tcp_syn | dns::tcp_ack, {})).accept);
    u.sseq = 9001;
    CHECK(u.send(framed(query_wire("echo.k8s.intra", 3))).accept);
    CHECK(u.answer(framed(Fixture::echo_answer(3).wire())).accept);
    CHECK(f.engine.stats().answers_inspected == 2);
    CHECK(f.engine.stats().answers_unmatched == 0);
}

TEST_CASE("TCP: a second SYN with another sequence number is dropped and changes nothing")
{
    // The server ignores it on a connection it has (its challenge ACK
    // aside); fqdnd starting the stream over from it would read the
    // server's stream out of step. (An attack that got a refused query to
    // the server that way, before.)
    Fixture f;
    Tcp v(f, 40002);
    CHECK_FALSE(f.packet(v.from_client(v.cseq - 3, dns::tcp_syn, {0x10, 0x00})).accept);
    CHECK(f.engine.stats().tcp_second_syn == 1);
    CHECK(v.server_ack(v.cseq).accept); // the server's challenge ACK
    CHECK(v.send(framed(query_wire("echo.k8s.intra", 3))).accept);
    CHECK_FALSE(v.send(framed(query_wire("other.example", 4))).accept);
    // The same SYN again (a retransmission) is harmless.
    Tcp w(f, 40003, false);
    CHECK(f.packet(w.from_client(w.cseq, dns::tcp_syn, {})).accept);
    CHECK(f.packet(w.from_client(w.cseq, dns::tcp_syn, {})).accept);
    CHECK(f.engine.stats().tcp_second_syn == 1);
    // Once both sides closed, the port may open a new connection.
    Tcp x(f, 40004);
    CHECK(f.packet(x.from_client(x.cseq, dns::tcp_fin | dns::tcp_ack, {})).accept);
    CHECK(f.reply(x.from_server(x.sseq, x.cseq + 1, dns::tcp_fin | dns::tcp_ack, {})).accept);
    CHECK(f.packet(x.from_client(x.cseq + 100000, dns::tcp_syn, {})).accept);
    CHECK(f.engine.stats().tcp_second_syn == 1);
}

TEST_CASE("TCP: a message to no query fqdnd saw passes, unlearned")
{
    // Dropping its segment would stall the stream.
    Fixture f;
    Tcp t(f, 40500);
    CHECK(t.send(framed(query_wire("echo.k8s.intra", 1))).accept);
    auto out = t.answer(framed(Fixture::echo_answer(2).wire()));
    CHECK(out.accept);
    CHECK(out.ops.empty());
    CHECK(f.engine.stats().answers_unmatched == 1);
}

TEST_CASE("TCP: urgent data is dropped, whatever it holds")
{
    // The server's stack takes the urgent byte out of the stream: it would
    // read other bytes than fqdnd (an attack that got a refused query
    // through, before).
    Fixture f;
    Tcp t(f);
    std::vector<uint8_t> data{0x01};
    const auto q = framed(query_wire("other.example"));
    data.insert(data.end(), q.begin(), q.end());
    CHECK_FALSE(f.packet(t.from_client(t.cseq, dns::tcp_ack | dns::tcp_psh | dns::tcp_urg, data)).accept);
    CHECK(f.engine.stats().tcp_urgent == 1);
    CHECK(t.send(framed(query_wire("echo.k8s.intra"))).accept);
}

TEST_CASE("TCP: retransmissions pass only as the bytes inspected")
{
    Fixture f;
    Tcp t(f);
    const auto ok = framed(query_wire("echo.k8s.intra", 1));
    const uint32_t start = t.cseq;
    CHECK(t.send(ok).accept);
    // Not acknowledged yet: the same bytes again pass, other bytes do not.
    CHECK(t.send(ok, start).accept);
    auto other = framed(query_wire("evil.example", 1));
    other.resize(ok.size());
    CHECK_FALSE(t.send(other, start).accept);
    CHECK(f.engine.stats().tcp_retransmit_changed == 1);
    // Overlapping into new data: the new part is inspected.
    auto more = ok;
    const auto refused = framed(query_wire("other.example", 2));
    more.insert(more.end(), refused.begin(), refused.end());
    CHECK_FALSE(t.send(more, start).accept);
    CHECK(f.engine.stats().queries_refused == 1);

    // Once the server acknowledged them, old bytes go nowhere: a server
    // that lost the connection (a SYN cookie opens one from an ACK alone)
    // would read them, unread by fqdnd, and at another message boundary.
    Fixture g;
    Tcp u(g);
    const uint32_t begin = u.cseq;
    CHECK(u.send(ok).accept);
    CHECK(u.server_ack(u.cseq).accept);
    CHECK_FALSE(u.send(ok, begin).accept);
    CHECK_FALSE(u.send(other, begin).accept);
    CHECK_FALSE(u.send(other, begin - 100000).accept); // a cookie's shifted ISN
    CHECK(g.engine.stats().tcp_resent_acknowledged == 3);
    // Overlapping the acknowledgement: the same.
    CHECK_FALSE(u.send(more, u.cseq - 4).accept);
    CHECK(g.engine.stats().tcp_resent_acknowledged == 4);
    CHECK(u.send(framed(query_wire("echo.k8s.intra", 3))).accept); // new bytes still pass
    CHECK(g.engine.stats().tcp_retransmit_changed == 0);

    // Before any data the same: below the SYN's sequence number.
    Tcp v(g, 40001);
    CHECK_FALSE(v.send(framed(query_wire("evil.example", 4)), v.cseq - 100000).accept);
    CHECK(g.engine.stats().tcp_resent_acknowledged == 5);
}

TEST_CASE("TCP: client data must acknowledge what the server sent, no more, no less than before")
{
    Fixture f;
    Tcp t(f);
    const auto q = framed(query_wire("echo.k8s.intra", 1));
    auto with_ack = [&](uint32_t ack, uint8_t flags) {
        return f.packet(dns::build_tcp(t.client, t.port, t.server, 53, t.cseq, ack, flags, q));
    };
    // Beyond what the server sent (under SYN cookies, the ACK of another
    // connection at a shifted point), or no ACK at all: dropped.
    CHECK_FALSE(with_ack(t.sseq + 45, dns::tcp_ack | dns::tcp_psh).accept);
    CHECK_FALSE(with_ack(t.sseq, dns::tcp_psh).accept);
    CHECK(f.engine.stats().tcp_bad_ack == 2);
    CHECK(t.send(q).accept);
    CHECK(t.answer(framed(Fixture::echo_answer(1).wire())).accept);
    CHECK(t.send(framed(query_wire("echo.k8s.intra", 2))).accept); // acknowledges the answer
    // Less than the client acknowledged before.
    CHECK_FALSE(f.packet(dns::build_tcp(t.client, t.port, t.server, 53, t.cseq, t.sseq - 1, dns::tcp_ack,
                                        framed(query_wire("echo.k8s.intra", 3))))
                    .accept);
    CHECK(f.engine.stats().tcp_bad_ack == 3);
}

TEST_CASE("TCP: bytes resent after the server acknowledged them get the server's ACK again, not the server")
{
    // The two-byte length written alone (Nagle holds the message until it
    // is acknowledged), the server's ACK lost after fqdnd: the client
    // sends the two bytes again, and must learn they arrived.
    Fixture f;
    Tcp t(f);
    const auto q = framed(query_wire("echo.k8s.intra", 1));
    CHECK(t.send({q.begin(), q.begin() + 2}).accept);
    CHECK(t.server_ack(t.cseq).accept);
    auto out = t.send({q.begin(), q.begin() + 2}, t.cseq - 2);
    CHECK_FALSE(out.accept);
    REQUIRE(out.replies.size() == 1);
    const auto ack = dns::decode(out.replies[0]);
    REQUIRE(ack);
    CHECK(ack->tcp_flags == dns::tcp_ack);
    CHECK(ack->src == t.server);
    CHECK(ack->seq == t.sseq); // the client's own next expected byte
    CHECK(ack->ack == t.cseq); // all it sent
    CHECK(t.send({q.begin() + 2, q.end()}).accept);
    CHECK(f.engine.stats().queries_allowed == 1);

    // After the server's FIN, the same: bytes it acknowledged are ACKed,
    // not reset (Linux resets only for new data).
    CHECK(t.answer(framed(Fixture::echo_answer(1).wire())).accept);
    CHECK(t.server_ack(t.cseq).accept);
    CHECK(f.reply(t.from_server(t.sseq, t.cseq, dns::tcp_fin | dns::tcp_ack, {})).accept);
    out = t.send(q, t.cseq - static_cast<uint32_t>(q.size()));
    CHECK_FALSE(out.accept);
    REQUIRE(out.replies.size() == 1);
    CHECK(dns::decode(out.replies[0])->tcp_flags == dns::tcp_ack);
    CHECK(f.engine.stats().tcp_after_server_close == 0);
}

TEST_CASE("TCP: the stall clock counts what the server reads, and runs on a zero window")
{
    // A pure ACK at an old sequence number the server discards unread
    // (its ACK too): it does not count as the answer acknowledged.
    Fixture f;
    auto for_40s = [&](const std::vector<uint8_t>& packet) {
        for (int i = 0; i < 4; ++i) {
            f.now += 10s;
            f.packet(packet);
        }
    };
    Tcp t(f);
    CHECK(t.send(framed(query_wire("echo.k8s.intra", 1))).accept);
    CHECK(t.answer(framed(Fixture::echo_answer(1).wire())).accept);
    for_40s(dns::build_tcp(t.client, t.port, t.server, 53, t.cseq - 1, t.sseq, dns::tcp_ack, {}));
    CHECK(f.engine.stats().tcp_streams_stalled == 1);

    // Everything acknowledged, but the window closed: the server's next
    // bytes wait unsent, and its probes may time out without a word.
    Tcp u(f, 40001);
    CHECK(u.send(framed(query_wire("echo.k8s.intra", 2))).accept);
    CHECK(u.answer(framed(Fixture::echo_answer(2).wire())).accept);
    auto zero = dns::build_tcp(u.client, u.port, u.server, 53, u.cseq, u.sseq, dns::tcp_ack, {});
    zero[zero.size() - 20 + 14] = 0; // the window, in the TCP header (no options)
    zero[zero.size() - 20 + 15] = 0;
    CHECK(f.packet(zero).accept);
    for_40s(zero);
    CHECK(f.engine.stats().tcp_streams_stalled == 2);

    // A refusal in the server's name starts the clock then, not at the
    // last acknowledgement long ago.
    Tcp v(f, 40002);
    CHECK(v.send(framed(query_wire("echo.k8s.intra", 3))).accept);
    f.now += 40s;
    CHECK(f.packet(v.from_client(v.cseq, dns::tcp_ack, {})).accept); // keeps it fresh; nothing to acknowledge
    f.now += 15s;
    CHECK_FALSE(v.send(framed(query_wire("secret.example", 4))).accept);
    f.now += 2s;
    f.packet(v.from_client(v.cseq, dns::tcp_ack, {}));
    CHECK(f.engine.stats().tcp_streams_stalled == 2);
}

TEST_CASE("TCP: data whose ACK would be a SYN cookie's inside a message resets the client")
{
    // An allowed query and the start of another; the server's answer is
    // longer than what the client sent, and left unacknowledged. Were the
    // server's connection gone (its retransmissions timed out), an ACK at
    // the split point, shifted as the cookie's, would open another that
    // reads from the middle of the second query.
    Fixture f;
    Tcp t(f);
    const auto q1 = framed(query_wire("echo.k8s.intra", 1));
    const auto q2 = framed(query_wire("echo.k8s.intra", 2));
    auto first = q1;
    first.insert(first.end(), q2.begin(), q2.begin() + 10);
    CHECK(t.send(first).accept);
    const uint32_t client_start = 1001, server_start = 5001; // each side's first byte
    CHECK(t.answer(framed(Fixture::echo_answer(1).wire())).accept);
    const uint32_t k = t.cseq - client_start; // bytes the client sent
    REQUIRE(t.sseq - server_start > k);
    auto out = f.packet(dns::build_tcp(t.client, t.port, t.server, 53, t.cseq, server_start + k,
                                       dns::tcp_ack | dns::tcp_psh, {q2.begin() + 10, q2.end()}));
    CHECK_FALSE(out.accept);
    CHECK(f.engine.stats().tcp_cookie_shaped == 1);
    REQUIRE(out.replies.size() == 1);
    CHECK((dns::decode(out.replies[0])->tcp_flags & dns::tcp_rst));

    // The same shape at a boundary of both streams (a query and an answer
    // of the same length, all acknowledged): the client goes on.
    Fixture g;
    Tcp u(g);
    CHECK(u.send(q1).accept);
    Message empty;
    empty.id = 1;
    empty.answer = true;
    empty.questions = {{"echo.k8s.intra", 1}};
    const auto a1 = framed(empty.wire());
    REQUIRE(a1.size() == q1.size());
    CHECK(u.answer(a1).accept);
    CHECK(u.send(q2).accept); // ACK and sequence both 34 past the start
    CHECK(g.engine.stats().tcp_cookie_shaped == 0);
}

TEST_CASE("TCP: nothing from the client once the server closed; no FIN past what was passed")
{
    Fixture f;
    Tcp t(f);
    CHECK(t.send(framed(query_wire("echo.k8s.intra", 1))).accept);
    CHECK(t.answer(framed(Fixture::echo_answer(1).wire())).accept);
    CHECK(f.reply(t.from_server(t.sseq, t.cseq, dns::tcp_fin | dns::tcp_ack, {})).accept);
    auto out = t.send(framed(query_wire("echo.k8s.intra", 2)));
    CHECK_FALSE(out.accept);
    REQUIRE(out.replies.size() == 1); // reset, as the closed server would
    CHECK((dns::decode(out.replies[0])->tcp_flags & dns::tcp_rst));
    CHECK(f.engine.stats().tcp_after_server_close == 1);
    CHECK(f.packet(t.from_client(t.cseq, dns::tcp_fin | dns::tcp_ack, {})).accept); // its own FIN: fine

    // A FIN with no data past the next byte: the server would keep it out
    // of order and take an RST at its end, which fqdnd would not.
    Tcp u(f, 40001);
    CHECK(u.send(framed(query_wire("echo.k8s.intra", 3))).accept);
    CHECK_FALSE(f.packet(u.from_client(u.cseq + 500, dns::tcp_fin | dns::tcp_ack, {})).accept);
    CHECK(f.engine.stats().tcp_gap == 1);
}

TEST_CASE("TCP: server bytes the client leaves unacknowledged for 30 s end the stream")
{
    Fixture f;
    Tcp t(f);
    CHECK(t.send(framed(query_wire("echo.k8s.intra", 1))).accept);
    const uint32_t before = t.sseq;
    CHECK(t.answer(framed(Fixture::echo_answer(1).wire())).accept);
    // The client keeps the stream busy but never acknowledges the answer.
    for (int i = 0; i < 4; ++i) {
        f.now += 10s;
        CHECK(f.packet(dns::build_tcp(t.client, t.port, t.server, 53, t.cseq, before, dns::tcp_ack, {})).accept);
    }
    CHECK(f.engine.stats().tcp_streams_stalled == 1);
    CHECK_FALSE(t.send(framed(query_wire("echo.k8s.intra", 2))).accept);
    CHECK(f.engine.stats().tcp_unknown_stream == 1);

    // A client that acknowledges what it gets keeps its stream.
    Tcp u(f, 40001);
    for (int i = 0; i < 4; ++i) {
        CHECK(u.send(framed(query_wire("echo.k8s.intra", static_cast<uint16_t>(10 + i)))).accept);
        CHECK(u.answer(framed(Fixture::echo_answer(static_cast<uint16_t>(10 + i)).wire())).accept);
        f.now += 20s;
        CHECK(f.packet(u.from_client(u.cseq, dns::tcp_ack, {})).accept);
    }
    CHECK(f.engine.stats().tcp_streams_stalled == 1);
}

TEST_CASE("TCP Fast Open: a query in the SYN is inspected")
{
    Fixture f;
    Tcp t(f, 40000, false);
    auto out = f.packet(t.from_client(t.cseq, dns::tcp_syn, framed(query_wire("other.example"))));
    CHECK_FALSE(out.accept);
    REQUIRE(out.replies.size() == 1);
    const auto rst = dns::decode(out.replies[0]);
    REQUIRE(rst);
    CHECK((rst->tcp_flags & (dns::tcp_rst | dns::tcp_ack)) == (dns::tcp_rst | dns::tcp_ack));
    CHECK(f.engine.stats().queries_refused == 1);

    Tcp u(f, 40001, false);
    const auto q = framed(query_wire("echo.k8s.intra"));
    CHECK(f.packet(u.from_client(u.cseq, dns::tcp_syn, q)).accept);
    CHECK(f.engine.stats().queries_allowed == 1);
    // The server took the data with the SYN; its answer is learned.
    const uint32_t after = u.cseq + 1 + static_cast<uint32_t>(q.size());
    CHECK(f.reply(u.from_server(u.sseq, after, dns::tcp_syn | dns::tcp_ack, {})).accept);
    u.cseq = after;
    ++u.sseq;
    CHECK(u.answer(framed(Fixture::echo_answer().wire())).ops.size() == 1);
}

TEST_CASE("TCP streams are bounded, expire when idle and are freed after FIN")
{
    Fixture f;
    for (size_t p = 0; p < dns::Engine::max_tcp_streams + 10; ++p) {
        Tcp t(f, static_cast<uint16_t>(20000 + p), false);
        f.packet(t.from_client(1, dns::tcp_syn, {}));
    }
    CHECK(f.engine.stats().tcp_streams_evicted == 10);
    f.now += dns::Engine::tcp_idle_timeout + 1s;
    Tcp t(f, 50000);
    CHECK(f.engine.stats().tcp_streams_expired == dns::Engine::max_tcp_streams);
    // Closed both ways: freed after the linger.
    CHECK(f.packet(t.from_client(t.cseq, dns::tcp_fin | dns::tcp_ack, {})).accept);
    CHECK(f.reply(t.from_server(t.sseq, t.cseq + 1, dns::tcp_fin | dns::tcp_ack, {})).accept);
    f.now += dns::Engine::tcp_fin_linger + 1s;
    Tcp other(f, 50001);
    CHECK(f.engine.stats().tcp_streams_expired == dns::Engine::max_tcp_streams + 1);
}

namespace {
// A connection of `client`'s, its handshake done; `complete`: the client
// acknowledged the server's SYN-ACK.
Tcp opened(Fixture& f, const char* client, uint16_t port, bool complete)
{
    Tcp t(f, port, false);
    t.client = *Address::parse(client);
    if (t.client.family == Family::ipv6)
        t.server = *Address::parse("2001:db8:4::53");
    CHECK(f.packet(t.from_client(t.cseq, dns::tcp_syn, {})).accept);
    CHECK(f.reply(t.from_server(t.sseq, t.cseq + 1, dns::tcp_syn | dns::tcp_ack, {})).accept);
    ++t.cseq;
    ++t.sseq;
    if (complete)
        CHECK(f.packet(t.from_client(t.cseq, dns::tcp_ack, {})).accept);
    return t;
}

// SYNs from `client`, never completed, on `count` ports from `first`.
void syn_flood(Fixture& f, const char* client, uint16_t first, size_t count)
{
    for (size_t p = 0; p < count; ++p) {
        Tcp t(f, static_cast<uint16_t>(first + p), false);
        t.client = *Address::parse(client);
        f.packet(t.from_client(1, dns::tcp_syn, {}));
    }
}

// An established connection of 192.0.2.3's, then SYNs from `flooder`,
// never completed, past the table's size: the connection is still followed.
void flood_leaves_connection(const char* flooder)
{
    Fixture f;
    Tcp victim = opened(f, "192.0.2.3", 40000, true);
    f.now += 1s;
    syn_flood(f, flooder, 20000, dns::Engine::max_tcp_streams + 100);
    CHECK(f.engine.stats().tcp_streams_evicted == 101);
    CHECK(victim.send(framed(query_wire("echo.k8s.intra"))).accept);
    CHECK(f.engine.stats().tcp_unknown_stream == 0);
    CHECK(victim.answer(framed(Fixture::echo_answer().wire())).ops.size() == 1);
}
} // namespace

TEST_CASE("TCP: a full table frees what a SYN flood left, not another client's connection")
{
    // The stalest stream of all is another client's: a flood of SYNs that
    // fills the table must free its own.
    flood_leaves_connection("192.0.2.2");
    // From as many addresses as SYNs, each holding one: a client with two
    // connections (a NAT gateway, a forwarding resolver) keeps them.
    Fixture g;
    Tcp first = opened(g, "192.0.2.3", 40000, true);
    Tcp second = opened(g, "192.0.2.3", 40001, true);
    g.now += 1s;
    for (size_t i = 0; i < dns::Engine::max_tcp_streams + 10; ++i) {
        const std::string from = "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1);
        syn_flood(g, from.c_str(), 20000, 1);
    }
    CHECK(g.engine.stats().tcp_streams_evicted == 12);
    CHECK(first.send(framed(query_wire("echo.k8s.intra"))).accept);
    CHECK(second.send(framed(query_wire("echo.k8s.intra", 8))).accept);
    CHECK(g.engine.stats().tcp_unknown_stream == 0);
}

TEST_CASE("TCP: a full table of connections frees those of the client that holds the most")
{
    // Connections completed (the flooder sees the SYN-ACKs of its own
    // addresses): then the endpoint with the most loses its stalest.
    Fixture f;
    Tcp victim = opened(f, "192.0.2.3", 40000, true);
    Tcp second = opened(f, "192.0.2.3", 40001, true);
    f.now += 1s;
    for (uint16_t p = 0; p < dns::Engine::max_tcp_streams + 10; ++p)
        opened(f, "192.0.2.2", static_cast<uint16_t>(20000 + p), true);
    CHECK(f.engine.stats().tcp_streams_evicted == 12);
    CHECK(victim.send(framed(query_wire("echo.k8s.intra"))).accept);
    CHECK(second.send(framed(query_wire("echo.k8s.intra", 8))).accept);
    CHECK(f.engine.stats().tcp_unknown_stream == 0);
    // An IPv6 client counts by its /64, whose addresses it may all take:
    // one connection from each of many still makes it the one with most.
    Fixture g;
    Tcp v6 = opened(g, "2001:db8:2::5", 40000, true);
    Tcp v6b = opened(g, "2001:db8:2::5", 40001, true);
    g.now += 1s;
    for (uint16_t p = 0; p < dns::Engine::max_tcp_streams + 10; ++p) {
        const std::string from = "2001:db8:1::" + std::to_string(p + 100);
        opened(g, from.c_str(), 20000, true);
    }
    CHECK(g.engine.stats().tcp_streams_evicted == 12);
    // Still followed: read and judged (refused: no policy selects them).
    v6.send(framed(query_wire("echo.k8s.intra")));
    v6b.send(framed(query_wire("echo.k8s.intra", 8)));
    CHECK(g.engine.stats().tcp_unknown_stream == 0);
    CHECK(g.engine.stats().queries_refused == 2);
}

TEST_CASE("TCP: one client holding most of the table cannot cut another's handshake")
{
    // It holds every stream but one, established (it completed the
    // handshakes from its own address), then sends SYNs while another
    // client's handshake is under way: its own streams go.
    Fixture f;
    for (size_t p = 0; p + 1 < dns::Engine::max_tcp_streams; ++p)
        opened(f, "192.0.2.2", static_cast<uint16_t>(20000 + p), true);
    f.now += 1s;
    Tcp victim(f, 40000, false);
    victim.client = *Address::parse("192.0.2.3");
    CHECK(f.packet(victim.from_client(victim.cseq, dns::tcp_syn, {})).accept); // its SYN
    syn_flood(f, "192.0.2.2", 30000, 50);                                      // in its round trip
    CHECK(f.reply(victim.from_server(victim.sseq, victim.cseq + 1, dns::tcp_syn | dns::tcp_ack, {})).accept);
    ++victim.cseq;
    ++victim.sseq;
    CHECK(f.engine.stats().tcp_streams_evicted == 50);
    CHECK(victim.send(framed(query_wire("echo.k8s.intra"))).accept);
    CHECK(f.engine.stats().tcp_unknown_stream == 0);
}

TEST_CASE("TCP: a flood in another client's name frees its half-open streams first")
{
    // SYNs with the victim's source address (a client on its segment can
    // send them): the victim's endpoint holds the most, but its own
    // connection is established, and the flood's are not.
    flood_leaves_connection("192.0.2.3");
}

TEST_CASE("TCP: in one segment, allowed queries pass and refused ones are blanked")
{
    Fixture f;
    Tcp t(f);
    auto data = framed(query_wire("echo.k8s.intra", 1));
    const auto bad = framed(query_wire("secret.example", 2));
    data.insert(data.end(), bad.begin(), bad.end());
    const auto packet = t.from_client(t.cseq, dns::tcp_ack | dns::tcp_psh, data);
    auto out = f.packet(packet);
    CHECK(out.accept);
    CHECK(out.replies.empty());
    REQUIRE(out.replacement.size() == packet.size());
    const auto pkt = dns::decode(out.replacement);
    REQUIRE(pkt);
    const std::string text(pkt->payload.begin(), pkt->payload.end());
    CHECK(text.find("secret") == std::string::npos);
    CHECK(text.find("echo") != std::string::npos);
    // The refused message keeps its id and length; no question is left.
    const size_t at = data.size() - bad.size();
    CHECK(pkt->payload[at + 2] == 0);
    CHECK(pkt->payload[at + 3] == 2);
    dns::Malformed why;
    CHECK_FALSE(dns::parse_query(pkt->payload.subspan(at + 2), &why));
    // Checksums as build_tcp makes them.
    CHECK(dns::replace_tcp_payload(packet, *dns::decode(packet), data) == packet);
    CHECK(dns::replace_tcp_payload(out.replacement, *pkt, data) == packet);
    CHECK(f.engine.stats().tcp_queries_blanked == 1);
    CHECK(f.engine.stats().queries_refused == 1);
    CHECK(f.engine.stats().queries_allowed == 1);
    // Sent again as the client has it, before the server acknowledged it:
    // the refused query would reach the server unblanked. Dropped; the
    // blanked bytes, which the server got, still pass.
    CHECK_FALSE(f.packet(packet).accept);
    CHECK(f.engine.stats().tcp_retransmit_changed == 1);
    CHECK(f.packet(out.replacement).accept);
}

TEST_CASE("IPv6: more extension headers than walked is undecodable, and dropped")
{
    Fixture f;
    auto with_options = [](int headers) {
        auto p = dns::build_udp(*Address::parse("2001:db8:1::2"), 40000, *Address::parse("2001:db8:4::53"), 53,
                                query_wire("echo.k8s.intra"));
        const uint8_t transport = p[6];
        std::vector<uint8_t> ext;
        for (int i = 0; i < headers; ++i) // destination options, padded to 8 bytes
            ext.insert(ext.end(), {static_cast<uint8_t>(i + 1 < headers ? 60 : transport), 0, 1, 4, 0, 0, 0, 0});
        p[6] = headers ? 60 : transport;
        p.insert(p.begin() + 40, ext.begin(), ext.end());
        const size_t len = p.size() - 40;
        p[4] = static_cast<uint8_t>(len >> 8);
        p[5] = static_cast<uint8_t>(len);
        return p;
    };
    CHECK(dns::decode(with_options(dns::max_ipv6_extension_headers)));
    CHECK_FALSE(dns::decode(with_options(dns::max_ipv6_extension_headers + 1)));
    const auto h = dns::decode_headers(with_options(dns::max_ipv6_extension_headers + 1));
    REQUIRE(h);
    CHECK(h->protocol == 60);
    CHECK(h->dport == 0);
    CHECK(dns::decode_headers(with_options(dns::max_ipv6_extension_headers))->dport == 53);
    CHECK_FALSE(f.packet(with_options(dns::max_ipv6_extension_headers + 1)).accept);
    CHECK(f.engine.stats().packets_undecodable == 1);
}

TEST_CASE("packets that are not IP/UDP/TCP, or truncated, are not trusted")
{
    Fixture f;
    auto p = udp("192.0.2.2", 40000, "203.0.113.53", 53, Message{}.wire());
    CHECK_FALSE(dns::decode(std::vector<uint8_t>(p.begin(), p.begin() + 25)));
    p[9] = 1; // ICMP
    CHECK_FALSE(dns::decode(p));
    CHECK_FALSE(f.packet(std::vector<uint8_t>{0x45, 0, 0}).accept); // undecodable on a DNS flow: dropped, counted
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
    CHECK(f.reply(udp("203.0.113.53", 53, "192.0.2.2", 40000, loop)).ops.empty());
    CHECK(malformed(Malformed::unparsable) == 1);

    // Truncated in the middle of its answer record.
    f.query("echo.k8s.intra", 4);
    auto cut = Fixture::echo_answer(4).wire();
    cut.resize(cut.size() - 3);
    CHECK(f.reply(udp("203.0.113.53", 53, "192.0.2.2", 40000, cut)).ops.empty());
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
