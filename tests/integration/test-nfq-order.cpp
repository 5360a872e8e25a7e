// fqdnd's NFQUEUE code against the real kernel, in a network namespace of
// its own (unshare at start, gone when the process ends): a verdict for one
// packet never releases another that still waits. The kernel's batch
// verdict accepts every packet of the queue up to an id, so an answer whose
// addresses are still on their way to the sets must not be covered by the
// batch of a later answer that waits for nothing.
#define DOCTEST_CONFIG_IMPLEMENT
#include "nfq/queue.hpp"
#include "nft/table.hpp"

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace fqdnd;

namespace {

constexpr uint16_t queue_number = 7;
constexpr uint16_t port = 9;

int bring_up_loopback()
{
    const int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    ifreq ifr{};
    std::snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
    return r < 0 ? -errno : 0;
}

// The test's table: UDP to 127.0.0.1:9 from this host goes to the queue.
void queue_rule()
{
    nft::Netlink nl;
    REQUIRE(nl.open() == 0);
    nft::Table table(nl);
    std::string problem;
    nft::QueueMode mode{};
    REQUIRE_MESSAGE(table.probe_queue("nfqtest", mode, &problem) == 0, problem);
    ruleset::Ruleset rs;
    rs.table = "nfqtest";
    rs.chains.push_back(ruleset::Chain{
        "output", ruleset::Hook::output,
        {ruleset::Rule{{ruleset::L4Ports{{ruleset::L4::udp}, {port}}, ruleset::Queue{queue_number, 1, false}}, "queued"}}});
    REQUIRE_MESSAGE(table.apply(rs, mode, {}, &problem) == 0, problem);
}

struct Udp {
    int fd = -1;
    explicit Udp(uint16_t bind_port)
    {
        fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(bind_port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    }
    ~Udp() { close(fd); }
    void send(char c) const
    {
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(sendto(fd, &c, 1, 0, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 1);
    }
    // What arrives within `ms`, one byte per datagram.
    std::string arrived(int ms) const
    {
        std::string got;
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
        for (int i = 0; i < 100 && std::chrono::steady_clock::now() < until; ++i) {
            pollfd p{fd, POLLIN, 0};
            if (poll(&p, 1, 20) <= 0)
                continue;
            char c = 0;
            while (recv(fd, &c, 1, MSG_DONTWAIT) == 1)
                got += c;
        }
        return got;
    }
};

// Packets the kernel holds in the test's queue (queue_total).
long kernel_waiting()
{
    std::ifstream in("/proc/net/netfilter/nfnetlink_queue");
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream s(line);
        long q = -1, portid = 0, total = 0;
        if (s >> q >> portid >> total && q == queue_number)
            return total;
    }
    return 0;
}

// Reads `n` queued packets (bounded: 2 s), returns them in order.
std::vector<nfq::Packet> read_queued(nfq::Queues& q, size_t n)
{
    std::vector<nfq::Packet> got;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (got.size() < n && std::chrono::steady_clock::now() < until) {
        pollfd p{q.fd(), POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        q.receive([&](const nfq::Packet& pkt) {
            nfq::Packet copy = pkt;
            copy.payload = {};
            got.push_back(copy);
        });
    }
    return got;
}

} // namespace

TEST_CASE("an accept releases that packet alone while an earlier one waits")
{
    queue_rule();
    nfq::Queues q;
    REQUIRE(q.open(queue_number, 1, 64) == 0);
    const Udp server(port), client(port + 1);

    for (char c : {'a', 'b', 'c', 'd'})
        client.send(c);
    const auto p = read_queued(q, 4);
    REQUIRE(p.size() == 4);

    // 'a' waits (its addresses are on their way to the sets); 'b' and 'd'
    // wait for nothing and go; 'c' is dropped.
    q.verdict(p[1].queue, p[1].id, true);
    q.verdict(p[2].queue, p[2].id, false);
    q.verdict(p[3].queue, p[3].id, true);
    q.flush();
    CHECK(server.arrived(300) == "bd");

    q.verdict(p[0].queue, p[0].id, true);
    q.flush();
    CHECK(server.arrived(300) == "a");
    q.close();
}

TEST_CASE("accepts in the order packets came still go as one batch")
{
    queue_rule();
    nfq::Queues q;
    REQUIRE(q.open(queue_number, 1, 64) == 0);
    const Udp server(port), client(port + 1);

    for (char c : {'a', 'b', 'c', 'd', 'e'})
        client.send(c);
    const auto p = read_queued(q, 5);
    REQUIRE(p.size() == 5);
    const uint64_t before = q.stats().verdict_messages;
    for (const auto& pkt : p)
        q.verdict(pkt.queue, pkt.id, true);
    q.flush();
    CHECK(q.stats().verdict_messages - before == 1);
    CHECK(server.arrived(300) == "abcde");

    // After one that waits, the rest go one by one, the waiting one last.
    for (char c : {'f', 'g', 'h'})
        client.send(c);
    const auto r = read_queued(q, 3);
    REQUIRE(r.size() == 3);
    q.verdict(r[1].queue, r[1].id, true);
    q.verdict(r[2].queue, r[2].id, true);
    q.flush();
    CHECK(server.arrived(300) == "gh");
    q.verdict(r[0].queue, r[0].id, true);
    q.flush();
    CHECK(server.arrived(300) == "f");
    q.close();
}

TEST_CASE("after packets lost to a full socket, nothing is batched over them until they are surely gone")
{
    queue_rule();
    nfq::Queues q;
    REQUIRE(q.open(queue_number, 1, 4096) == 0);
    const Udp server(port), client(port + 1);
    // A socket with room for a few packets: a burst loses some (ENOBUFS),
    // whose ids are then skipped.
    const int small = 4096;
    REQUIRE(setsockopt(q.fd(), SOL_SOCKET, SO_RCVBUFFORCE, &small, sizeof(small)) == 0);
    for (int i = 0; i < 200; ++i)
        client.send('x');
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const int large = 8 << 20;
    REQUIRE(setsockopt(q.fd(), SOL_SOCKET, SO_RCVBUFFORCE, &large, sizeof(large)) == 0);
    const auto p = read_queued(q, 200);
    REQUIRE(!p.empty());
    REQUIRE(p.size() < 200);
    CHECK(q.stats().enobufs > 0);
    for (const auto& pkt : p)
        q.verdict(pkt.queue, pkt.id, true);
    q.flush();
    CHECK(server.arrived(300).size() == p.size());

    // The next packet's id jumps over the lost ones: those go alone, then
    // one batch drop of whatever the kernel might hold up to the last id
    // read (nothing here: a lost packet was never queued).
    auto round = [&](const std::string& letters) {
        for (char c : letters)
            client.send(c);
        const auto r = read_queued(q, letters.size());
        REQUIRE(r.size() == letters.size());
        const uint64_t before = q.stats().verdict_messages;
        for (const auto& pkt : r)
            q.verdict(pkt.queue, pkt.id, true);
        q.flush();
        CHECK(server.arrived(300) == letters);
        return q.stats().verdict_messages - before;
    };
    CHECK(round("abc") == 4);
    CHECK(q.stats().unseen_drops == 1);
    CHECK(kernel_waiting() == 0);
    // Then batches again.
    CHECK(round("def") == 1);
    q.close();
}

// Found by a hostile review: binding read one datagram per request as its
// ack, so a packet queued among the acks was taken for one and never seen
// (or the next request read a stale ack and binding failed). The kernel
// held a packet fqdnd had no verdict for, older than any it knew: the batch
// of the oldest id it had read released that one too.
TEST_CASE("packets queued while the queues are being bound are never released unseen")
{
    queue_rule();
    Udp server(port);
    std::atomic<bool> flooding{false}, stop{false};
    std::atomic<int> idle{0};
    std::atomic<uint32_t> counter{0};
    // Datagrams carrying a counter, while `flooding`.
    // No doctest checks in this thread: plain system calls.
    std::thread sender([&] {
        const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_in to{};
        to.sin_family = AF_INET;
        to.sin_port = htons(port);
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        while (!stop && fd >= 0) {
            if (!flooding) {
                idle = 1;
                std::this_thread::sleep_for(std::chrono::microseconds(200));
                continue;
            }
            idle = 0;
            const char c = static_cast<char>('A' + counter++ % 26);
            sendto(fd, &c, 1, 0, reinterpret_cast<const sockaddr*>(&to), sizeof(to));
        }
        if (fd >= 0)
            close(fd);
    });
    auto quiet = [&] {
        flooding = false;
        idle = 0;
        for (int i = 0; i < 100000 && !idle; ++i)
            std::this_thread::sleep_for(std::chrono::microseconds(50));
    };

    int opens = 0, failures = 0, last_error = 0, released_unseen = 0, held_unseen = 0;
    uint64_t dropped_while_binding = 0;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (; opens < 3000 && std::chrono::steady_clock::now() < until && !released_unseen && !held_unseen; ++opens) {
        nfq::Queues q;
        flooding = true;
        std::this_thread::sleep_for(std::chrono::microseconds(300));
        // Four queues, as fqdnd binds with `queues = 2`: more requests, more
        // acks for a packet to come among.
        const int r = q.open(queue_number, 4, 64);
        quiet();
        if (r < 0) {
            ++failures;
            last_error = r;
            continue;
        }
        dropped_while_binding += q.stats().dropped_while_binding;
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        server.arrived(0); // what came before (none should: the rule queues all)
        std::vector<nfq::Packet> got;
        q.receive([&](const nfq::Packet& p) {
            nfq::Packet c = p;
            c.payload = {};
            got.push_back(c);
        });
        // Accept the oldest read alone: as a batch it must release only it.
        if (!got.empty()) {
            q.verdict(got[0].queue, got[0].id, true);
            for (size_t k = 1; k < got.size(); ++k)
                q.verdict(got[k].queue, got[k].id, false);
            q.flush();
            const std::string arrived = server.arrived(20);
            if (arrived.size() > 1)
                released_unseen = static_cast<int>(arrived.size()) - 1;
        }
        const long left = kernel_waiting();
        if (left > 0)
            held_unseen = static_cast<int>(left);
        q.close();
    }
    stop = true;
    sender.join();
    MESSAGE("opens " << opens << ", failed " << failures << " (last " << last_error << "), packets dropped while binding "
                     << dropped_while_binding);
    CHECK(failures == 0);
    CHECK(released_unseen == 0);
    CHECK(held_unseen == 0);
}

int main(int argc, char** argv)
{
    if (geteuid() != 0) {
        std::puts("SKIP: needs root (a network namespace of its own)");
        return 77;
    }
    if (unshare(CLONE_NEWNET) != 0) {
        std::perror("unshare");
        return 1;
    }
    if (int r = bring_up_loopback(); r < 0) {
        std::fprintf(stderr, "cannot bring up lo: %d\n", r);
        return 1;
    }
    doctest::Context ctx(argc, argv);
    return ctx.run();
}
