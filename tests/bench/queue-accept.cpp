// The price of NFQUEUE alone, for the dnsperf benchmark: binds fqdnd's
// queues with fqdnd's own queue code and accepts every packet unread, as
// fqdnd does (batch verdicts, flushed when the queue runs dry). With
// fqdnd's ruleset in place and fqdnd stopped, the throughput through this
// reader is the most any reader of those queues could give.
//
// With TABLE, the least a reader that learns must do: each answer (the
// second half of the queues) is decoded and parsed with fqdnd's code, and
// its addresses go to TABLE's sets in one transaction per batch read,
// with fqdnd's set code, before the batch's verdicts. No policy, cache,
// journal or checks of any kind: the floor of learning new addresses.
// Usage: queue-accept FIRST COUNT SECONDS [TABLE]
#include "cache/cache.hpp"
#include "dns/message.hpp"
#include "dns/packet.hpp"
#include "nfq/queue.hpp"
#include "nft/netlink.hpp"
#include "nft/table.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <poll.h>
#include <string>
#include <utility>
#include <vector>

int main(int argc, char** argv)
{
    if (argc != 4 && argc != 5) {
        std::fprintf(stderr, "usage: queue-accept FIRST COUNT SECONDS [TABLE]\n");
        return 2;
    }
    const auto first = static_cast<uint16_t>(std::stoul(argv[1]));
    const auto count = static_cast<uint16_t>(std::stoul(argv[2]));
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(std::stoul(argv[3]));
    const std::string table = argc == 5 ? argv[4] : "";
    fqdnd::nfq::Queues queues;
    if (int r = queues.open(first, count, 4096); r < 0) {
        std::fprintf(stderr, "queue-accept: cannot bind queues %u+%u: error %d\n", first, count, -r);
        return 1;
    }
    fqdnd::nft::Netlink nl;
    fqdnd::nft::Table sets(nl);
    if (!table.empty())
        if (int r = nl.open(); r < 0) {
            std::fprintf(stderr, "queue-accept: cannot open netlink: error %d\n", -r);
            return 1;
        }
    std::printf("ready\n");
    std::fflush(stdout);
    std::vector<std::pair<uint16_t, uint32_t>> held;
    std::vector<fqdnd::cache::ElementOp> ops;
    unsigned long long learned = 0, update_errors = 0;
    const auto accept_unread = [&](const fqdnd::nfq::Packet& p) { queues.verdict(p.queue, p.id, true); };
    const auto learn = [&](const fqdnd::nfq::Packet& p) {
        held.emplace_back(p.queue, p.id);
        if (p.queue < first + count / 2)
            return; // a query
        const auto info = fqdnd::dns::decode(p.payload);
        if (!info)
            return;
        fqdnd::dns::Malformed why{};
        const auto answer = fqdnd::dns::parse_answer(info->payload, &why);
        if (!answer)
            return;
        for (const auto& a : answer->addresses)
            ops.push_back({fqdnd::cache::ElementOp::Kind::add, 1, a.family, a, std::chrono::hours(1), false});
    };
    while (std::chrono::steady_clock::now() < until) {
        pollfd p{queues.fd(), POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        if (table.empty()) {
            queues.receive(accept_unread);
            queues.flush();
            continue;
        }
        queues.receive(learn);
        if (!ops.empty()) {
            std::string problem;
            if (sets.update(table, ops, fqdnd::nft::Refresh::readd, &problem) < 0)
                ++update_errors;
            learned += ops.size();
            ops.clear();
        }
        for (const auto& [queue, id] : held)
            queues.verdict(queue, id, true);
        held.clear();
        queues.flush();
    }
    queues.close();
    std::printf("packets %llu", static_cast<unsigned long long>(queues.stats().packets));
    if (!table.empty())
        std::printf(", addresses written %llu, failed transactions %llu", learned, update_errors);
    std::printf("\n");
    return 0;
}
