#!/bin/bash
# A router that runs its own resolver (dnsmasq on its LAN address, as most
# home and edge routers do) in front of the pods. Queries to it arrive at
# the router's input hook and its answers leave through output, not
# forward: fqdnd must gate and learn them there too. Unlisted, it is a
# server no rule lists; listed, it is gated and its answers are learned.
. "$(dirname "$0")/lib.sh"

seed_topology
printf "203.0.113.2 echo.k8s.intra\n203.0.113.7 blocked.example\n203.0.113.3 tcp1.k8s.intra\n" > "$WORK/hosts"
dns_server "$WORK/hosts" || exit 1
background node1 dnsmasq --keep-in-foreground --no-resolv --no-hosts --server=203.0.113.53 \
    --listen-address=192.0.2.1 --bind-interfaces --user=root --pid-file= \
    --log-queries --log-facility="$WORK/router-dns.log"
for i in $(seq 1 30); do in_ns node1 dig +time=1 +tries=1 @192.0.2.1 ready.invalid >/dev/null 2>&1 && break; sleep 0.1; done
echo_config node1 192.0.2.0/29
sed -i 's|^dns = .*|dns = [{ match-pattern = "*.k8s.intra" }]|' "$WORK/node1/policy.d/echo.toml"
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1
asked_router() { grep -q "$1" "$WORK/router-dns.log"; }
ask() { in_ns p1a dig +short +time=1 +tries=1 @192.0.2.1 "$@"; }

echo "-- the router's resolver, not listed"
check_not "a pod gets no answer from it, not even for an allowed name" test "$(ask echo.k8s.intra)" = 203.0.113.2
check_not "and it never saw the query" asked_router echo.k8s.intra
check_not "nor over TCP" test "$(ask tcp1.k8s.intra +tcp)" = 203.0.113.3
check_not "and it never saw that either" asked_router tcp1.k8s.intra
check "control: the router itself still uses its resolver" test "$(in_ns node1 dig +short +time=1 +tries=1 @192.0.2.1 echo.k8s.intra)" = 203.0.113.2

echo "-- the router's resolver, listed"
sed -i 's|^to-dns-servers = .*|to-dns-servers = ["192.0.2.1"]|' "$WORK/node1/policy.d/echo.toml"
kill -HUP "$FQDND_PID"; sleep 0.5
check_not "control: before any answer, the address is closed" connects p1a 203.0.113.2 80
check "a name no rule allows is refused by fqdnd" test "$(in_ns p1a dig +time=1 +tries=1 @192.0.2.1 blocked.example | sed -n 's/.*status: \([A-Z]*\).*/\1/p')" = REFUSED
check_not "and never reaches the resolver" asked_router blocked.example
check "an allowed name is answered" test "$(ask echo.k8s.intra)" = 203.0.113.2
check "and its answer opens the address" connects p1a 203.0.113.2 80
check "over TCP too: refused" test "$(in_ns p1a dig +tcp +time=1 +tries=1 @192.0.2.1 blocked.example | sed -n 's/.*status: \([A-Z]*\).*/\1/p')" = REFUSED
check "control: the router itself still uses its resolver" test "$(in_ns node1 dig +short +time=1 +tries=1 @192.0.2.1 echo.k8s.intra)" = 203.0.113.2

echo "-- queries and answers have queues of their own, bound at start"
sed -i 's|^\[daemon\]|[daemon]\nqueues = 2|' "$WORK/node1/fqdnd.toml"
kill -HUP "$FQDND_PID"; sleep 0.5
check "a reload that moves the queues is refused" grep -q "queue and queues change only at a restart" "$WORK/fqdnd-node1.log"
check "and the running queues keep gating" test "$(in_ns p1a dig +time=1 +tries=1 @192.0.2.1 blocked.example | sed -n 's/.*status: \([A-Z]*\).*/\1/p')" = REFUSED
finish
