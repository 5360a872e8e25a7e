// The price of NFQUEUE alone, for the dnsperf benchmark: binds fqdnd's
// queues with fqdnd's own queue code and accepts every packet unread, as
// fqdnd does (batch verdicts, flushed when the queue runs dry). With
// fqdnd's ruleset in place and fqdnd stopped, the throughput through this
// reader is the most any reader of those queues could give.
// Usage: queue-accept FIRST COUNT SECONDS
#include "nfq/queue.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <poll.h>
#include <string>

int main(int argc, char** argv)
{
    if (argc != 4) {
        std::fprintf(stderr, "usage: queue-accept FIRST COUNT SECONDS\n");
        return 2;
    }
    const auto first = static_cast<uint16_t>(std::stoul(argv[1]));
    const auto count = static_cast<uint16_t>(std::stoul(argv[2]));
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(std::stoul(argv[3]));
    fqdnd::nfq::Queues queues;
    if (int r = queues.open(first, count, 4096); r < 0) {
        std::fprintf(stderr, "queue-accept: cannot bind queues %u+%u: error %d\n", first, count, -r);
        return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    while (std::chrono::steady_clock::now() < until) {
        pollfd p{queues.fd(), POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        queues.receive([&](const fqdnd::nfq::Packet& pkt) { queues.verdict(pkt.queue, pkt.id, true); });
        queues.flush();
    }
    queues.close();
    std::printf("packets %llu\n", static_cast<unsigned long long>(queues.stats().packets));
    return 0;
}
