// Every parser of untrusted packet bytes: the bytes as a DNS message (query
// and answer), as an IP packet, and through the whole engine as a packet
// from a selected client and from its DNS server, UDP and TCP.
#include "config/loader.hpp"
#include "dns/engine.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>

namespace {

struct State {
    fqdnd::config::Config config;
    fqdnd::cache::Cache cache;
    std::unique_ptr<fqdnd::dns::Engine> engine;
    State()
        : config(*fqdnd::config::load_config_text(
                      "", "/etc/fqdnd/fqdnd.toml",
                      {{"p.toml", "[[policy]]\nname = \"f\"\n[policy.selector]\nsources = [\"192.0.2.0/24\"]\n"
                                  "[[policy.egress]]\nto-fqdns = [{ match-pattern = \"*\" }]\n"
                                  "[[policy.egress]]\nto-dns-servers = [\"203.0.113.53\"]\n"
                                  "dns = [{ match-pattern = \"*\" }]\n"}})
                      .config),
          engine(std::make_unique<fqdnd::dns::Engine>(config, cache))
    {
        std::vector<fqdnd::cache::ElementOp> ops;
        cache.set_selectors(config.fqdn_selectors(), {}, ops);
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    static State s;
    const std::span<const uint8_t> bytes(data, size);
    fqdnd::dns::Malformed why;
    if (auto q = fqdnd::dns::parse_query(bytes, &why))
        (void)fqdnd::dns::build_reject(*q, fqdnd::dns::rcode_refused);
    (void)fqdnd::dns::parse_answer(bytes, &why);
    (void)fqdnd::dns::decode(bytes);
    (void)fqdnd::dns::decode_headers(bytes); // what the drop log reads

    fqdnd::dns::PacketMeta meta;
    meta.hook = fqdnd::dns::Hook::forward;
    const auto client = *fqdnd::Address::parse("192.0.2.2"), server = *fqdnd::Address::parse("203.0.113.53");
    using fqdnd::dns::tcp_ack, fqdnd::dns::tcp_psh, fqdnd::dns::tcp_syn;
    for (bool tcp : {false, true}) {
        if (tcp) {
            // A stream followed from its SYN: without one, data is dropped
            // unread. Each input has a stream of its own: the last one's
            // was reset (a second SYN on a stream followed is dropped).
            s.engine->handle(fqdnd::dns::build_tcp(client, 40000, server, 53, 0, 0, fqdnd::dns::tcp_rst, {}), meta);
            s.engine->handle(fqdnd::dns::build_tcp(client, 40000, server, 53, 0, 0, tcp_syn, {}), meta);
            s.engine->handle(fqdnd::dns::build_tcp(server, 53, client, 40000, 1000, 1, tcp_syn | tcp_ack, {}), meta);
        }
        // The input as a query, then as the answer to it.
        auto query = tcp ? fqdnd::dns::build_tcp(client, 40000, server, 53, 1, 1001, tcp_psh | tcp_ack, bytes)
                         : fqdnd::dns::build_udp(client, 40000, server, 53, bytes);
        auto answer = tcp ? fqdnd::dns::build_tcp(server, 53, client, 40000, 1001, 1, tcp_psh | tcp_ack, bytes)
                          : fqdnd::dns::build_udp(server, 53, client, 40000, bytes);
        s.engine->handle(query, meta);
        s.engine->handle(answer, meta);
    }
    s.engine->handle(bytes, meta);
    s.engine->take_events();
    return 0;
}
