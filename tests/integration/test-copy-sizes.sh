#!/bin/bash
# The DNS path (dns-path.cpp, round.cpp) and whole-packet query copies,
# as a hostile client under a DNS rule
# allowing every name ("*": UDP queries pass unheld, copied to fqdnd):
# queries of every size (EDNS padding up to IPv4 fragments and a UDP
# datagram of 64 KiB), over UDP and TCP, IPv4 and IPv6; a server that
# answers at once, racing the copy; hundreds of queries in one burst.
. "$(dirname "$0")/lib.sh"

seed_topology
for a in $(seq 8 30); do in_ns svc ip addr add "203.0.113.$a/32" dev lo; done
background svc python3 "$TESTS_DIR/dns_sizes.py" serve 120 203.0.113.53 2001:db8:4::53 > "$WORK/server.out"
for i in $(seq 1 50); do grep -q serving "$WORK/server.out" && break; sleep 0.1; done
echo_config node1 192.0.2.0/29
sed -i 's|^sources = .*|sources = ["192.0.2.0/29", "2001:db8:1::/64"]|;
        s|^to-dns-servers = .*|to-dns-servers = ["203.0.113.53", "2001:db8:4::53"]|' \
    "$WORK/node1/policy.d/echo.toml"
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1

ask() { in_ns p1a python3 "$TESTS_DIR/dns_sizes.py" ask "$@"; }
in6() { set_addresses node1 'match-pattern: *.k8s.intra.' 6 | grep -qx "$1"; }
in4() { set_addresses node1 'match-pattern: *.k8s.intra.' 4 | grep -qx "$1"; }

echo "-- queries of every size, copied whole"
check_not "203.0.113.8 is closed before any answer" connects p1a 203.0.113.8 80
check "a query of 1400 bytes over UDP resolves" ask 203.0.113.53 h8.k8s.intra A 1400
check "and its address opens" connects p1a 203.0.113.8 80
check "over IPv6, 1400 bytes" ask 2001:db8:4::53 h9.k8s.intra AAAA 1400
check "and its address is in the set" in6 2001:db8:5::9
check "a query of 3000 bytes (IPv4 fragments) resolves" ask 203.0.113.53 h10.k8s.intra A 3000
check "and its address opens" connects p1a 203.0.113.10 80
check "over IPv6, 3000 bytes (fragments)" ask 2001:db8:4::53 h11.k8s.intra AAAA 3000
check "and its address is in the set" in6 2001:db8:5::b
check "a query of 65000 bytes resolves" ask 203.0.113.53 h12.k8s.intra A 65000
check "and its address opens" connects p1a 203.0.113.12 80
# The largest UDP datagram IPv4 carries: 65535 bytes of packet, more than
# a netlink attribute holds (65531). Its copy cannot be read: the answer
# passes and teaches nothing (fails closed).
ask 203.0.113.53 h14.k8s.intra A 65507 >/dev/null
check_not "a query of 65507 bytes (its copy cannot be whole) opens nothing" connects p1a 203.0.113.14 80
check "over TCP, 1400 bytes (queued)" ask 203.0.113.53 h16.k8s.intra A 1400 tcp
check "and its address opens" connects p1a 203.0.113.16 80
check "over TCP, 4000 bytes (three segments)" ask 203.0.113.53 h17.k8s.intra A 4000 tcp
check "and its address opens" connects p1a 203.0.113.17 80
# fqdnd reads TCP queries of 4096 bytes at most (engine.hpp max_tcp_query).
ask 203.0.113.53 h18.k8s.intra A 8000 tcp >/dev/null
check_not "over TCP, 8000 bytes is more than fqdnd reads: opens nothing" connects p1a 203.0.113.18 80

echo "-- hundreds of queries at once, each answered at once"
check "200 AAAA queries from one socket are all answered" \
    test "$(in_ns p1a python3 "$TESTS_DIR/dns_sizes.py" burst 2001:db8:4::53 200 AAAA)" = 200
sleep 0.3
count6() { set_addresses node1 'match-pattern: *.k8s.intra.' 6 | grep -c '^2001:db8:5::'; }
check "and every address (200) is in the set" test "$(count6)" -eq 200
check "200 A queries over IPv4 are all answered" \
    test "$(in_ns p1a python3 "$TESTS_DIR/dns_sizes.py" burst 203.0.113.53 200 A)" = 200
sleep 0.3
count4() { set_addresses node1 'match-pattern: *.k8s.intra.' 4 | grep -Ec '^203\.0\.113\.([1-9]|[1-9][0-9]|1[0-9][0-9]|200)$'; }
check "and every address is in the set" test "$(count4)" -eq 200
check "h30's address opens (from the burst)" connects p1a 203.0.113.30 80
check "1000 AAAA queries at once (200 known, 800 new) are all answered" \
    test "$(in_ns p1a python3 "$TESTS_DIR/dns_sizes.py" burst 2001:db8:4::53 1000 AAAA)" = 1000
sleep 0.5
check "and every address (1000) is in the set" test "$(count6)" -eq 1000

echo "-- reloads that bind and unbind the copy group while queries fly"
toml="$WORK/node1/policy.d/echo.toml"
for round in 1 2 3; do
    in_ns p1a python3 "$TESTS_DIR/dns_sizes.py" burst 2001:db8:4::53 1000 AAAA > /dev/null &
    flier=$!
    for i in 1 2 3 4; do
        if grep -q 'match-pattern = "\*" }' "$toml"; then
            sed -i 's|^dns = .*|dns = [{ match-pattern = "*.k8s.intra" }]|' "$toml"
        else
            sed -i 's|^dns = .*|dns = [{ match-pattern = "*" }]|' "$toml"
        fi
        kill -HUP "$FQDND_PID"
        sleep 0.2
    done
    wait "$flier"
done
sleep 0.5
check "twelve reloads went through" test "$(grep -c 'reloaded:' "$WORK/fqdnd-node1.log")" -eq 12
check "fqdnd survived them" kill -0 "$FQDND_PID"
check "a query after them resolves" ask 203.0.113.53 h20.k8s.intra A 0
check "and its address opens" connects p1a 203.0.113.20 80
check "no set update failed or timed out" bash -c "! grep -Eq 'set update (failed|not acknowledged)' '$WORK/fqdnd-node1.log'"
check "fqdnd is still running" kill -0 "$FQDND_PID"
finish
