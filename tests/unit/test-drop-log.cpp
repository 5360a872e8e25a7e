// The drop log's attribution (nflog::DropLog): each drop of one of
// fqdnd's rules reaches the handler with the names the cache gives its
// destination, looked up at most once a second per destination. No kernel:
// the test hands over what the NFLOG reader would.
#include "nflog/drop-log.hpp"

#include "address-literal.hpp"
#include "dns/packet.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

using namespace fqdnd;

TEST_CASE("the drop log attributes each drop, and walks the cache once a second for a flood to one address")
{
    cache::Time clock{std::chrono::seconds(1'000'000)};
    size_t walks = 0;
    struct Seen {
        nflog::Drop drop;
        std::vector<std::string> names;
    };
    std::vector<Seen> seen;
    nflog::DropLog log(
        "fqdnd ",
        [&](const Address& a) {
            ++walks;
            return std::vector<std::string>{"name-of-" + a.to_string()};
        },
        [&] { return clock; }, [&](const nflog::Drop& d, const std::vector<std::string>& names, cache::Time) {
            seen.push_back({d, names});
        });
    const auto to99 = dns::build_tcp(ip("192.0.2.2"), 40000, ip("203.0.113.99"), 443, 1, 0, 0x02, {});
    const auto to98 = dns::build_tcp(ip("192.0.2.2"), 40001, ip("203.0.113.98"), 80, 1, 0, 0x02, {});
    auto logged = [](std::string_view prefix, const std::vector<uint8_t>& packet) {
        return nflog::Logged{prefix, packet, 3, 0, std::nullopt, std::nullopt, std::nullopt};
    };

    log.on_logged(logged("fqdnd drop echo", to99));
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].drop.policy == "echo");
    CHECK(seen[0].drop.port == 443);
    CHECK(seen[0].names == std::vector<std::string>{"name-of-203.0.113.99"});
    CHECK(walks == 1);

    for (int i = 0; i < 100; ++i)
        log.on_logged(logged("fqdnd drop echo", to99));
    CHECK(seen.size() == 101);
    CHECK(walks == 1); // a flood to one address: one walk
    CHECK(seen.back().names == std::vector<std::string>{"name-of-203.0.113.99"});

    log.on_logged(logged("fqdnd audit echo", to98));
    CHECK(walks == 2); // another address
    CHECK(seen.back().drop.kind == "audit");
    CHECK(seen.back().names == std::vector<std::string>{"name-of-203.0.113.98"});

    clock += std::chrono::milliseconds(999);
    log.on_logged(logged("fqdnd drop echo", to98));
    CHECK(walks == 2);
    clock += std::chrono::milliseconds(1);
    log.on_logged(logged("fqdnd drop echo", to98));
    CHECK(walks == 3); // a second later the cache may know more

    log.on_logged(logged("ulogd other", to98));
    log.on_logged(logged("fqdnd drop echo", std::vector<uint8_t>(to98.begin(), to98.begin() + 10)));
    CHECK(seen.size() == 104); // another's line and a packet that does not decode are not drops
    CHECK(log.packets() == 0); // nothing bound: the reader counted nothing
}
