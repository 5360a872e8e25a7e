#!/bin/bash
# Queries under a DNS rule allowing every name pass unheld, copied to fqdnd
# through NFLOG (issue #15): they resolve and open addresses as queued ones
# did; answers still count only if they answer a query fqdnd saw; nothing
# else may hold the copy group.
. "$(dirname "$0")/lib.sh"

seed_topology
printf '203.0.113.2 echo.k8s.intra\n2001:db8:4::2 v6.k8s.intra\n203.0.113.3 big.k8s.intra\n' > "$WORK/hosts"
dns_server "$WORK/hosts" || exit 1
echo_config node1 192.0.2.0/29
sed -i 's|^sources = .*|sources = ["192.0.2.0/29", "2001:db8:1::/64"]|;
        s|^to-dns-servers = .*|to-dns-servers = ["203.0.113.53", "203.0.113.54", "2001:db8:4::53"]|' \
    "$WORK/node1/policy.d/echo.toml"

# Another program holds the group after log-group: fqdnd says so and does
# not start (queries would pass with nobody to remember them).
background node1 python3 "$TESTS_DIR/nflog_bind.py" 5301 30 > "$WORK/holder.out"
holder=$LAST_PID
for i in $(seq 1 30); do grep -q bound "$WORK/holder.out" && break; sleep 0.1; done
check_not "with the copy group held by another program, fqdnd refuses to start" \
    start_fqdnd node1 "$WORK/node1/fqdnd.toml"
check "and says which group and why" grep -q 'cannot read NFLOG group 5301 (Operation not permitted, another program reads it' \
    "$WORK/fqdnd-node1.log"
kill "$holder"; wait "$holder" 2>/dev/null
in_ns node1 nft delete table inet fqdnd 2>/dev/null

start_fqdnd node1 "$WORK/node1/fqdnd.toml" --log-dns || exit 1
rule_packets() { # the packets counted by the forward rules whose comment starts with $1
    in_ns node1 nft -j list chain inet fqdnd forward | python3 -c '
import json, sys
print(sum(e["counter"]["packets"] for o in json.load(sys.stdin)["nftables"] if "rule" in o
          and o["rule"].get("comment", "").startswith(sys.argv[1]) for e in o["rule"]["expr"] if "counter" in e))' "$1"
}

check "an allowed name resolves" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2
check "and its address opens" connects p1a 203.0.113.2 80
check "over IPv6 too" bash -c "ip netns exec $(ns p1a) dig +short +time=2 +tries=1 @2001:db8:4::53 v6.k8s.intra AAAA | grep -qx 2001:db8:4::2"
check "and its address opens" connects p1a 2001:db8:4::2 80
check "the queries passed the copy rules" test "$(rule_packets 'policy echo: DNS that may ask every name')" -ge 2
check "and were never queued" test "$(rule_packets 'DNS flows: queries are checked')" -eq 0
check "fqdnd saw them (--log-dns)" grep -q 'query-allowed: echo.k8s.intra' "$WORK/fqdnd-node1.log"
check "over TCP, queries are still queued and the answer opens" test "$(resolve p1a echo.k8s.intra +tcp)" = 203.0.113.2
check "the TCP query went through the queue" test "$(rule_packets 'DNS flows: queries are checked')" -gt 0
# A copy cut short could not be read, and the answer would be dropped as
# answering no query fqdnd saw: a query of 468 bytes (EDNS padding).
check "a large query (468 bytes) is copied whole: it resolves" test "$(resolve p1a big.k8s.intra +padding=468)" = 203.0.113.3
check "and its address opens" connects p1a 203.0.113.3 80
check "the copy rules cut no query short" bash -c "! ip netns exec $(ns node1) nft list chain inet fqdnd forward | grep 'fqdnd query' | grep -q snaplen"

echo "-- forged answers to a copied query"
check_forged_answers p1a
check "an answer to a query never sent is sent" in_ns svc python3 "$TESTS_DIR/dns_forge.py" answer 203.0.113.54 192.0.2.2 41002 4244 forged2.k8s.intra 203.0.113.6
sleep 0.3
check_not "and opens nothing" connects p1a 203.0.113.6 80

echo "-- what changes: malformed queries reach the server"
: > "$WORK/svc.frames"
background svc python3 "$TESTS_DIR/dns_attack.py" sniff 30 "$WORK/svc.frames"
sleep 0.3
in_ns p1a python3 "$TESTS_DIR/dns_attack.py" udp-answer 203.0.113.53 qr-udp.k8s.intra
sleep 0.3
check "a QR=1 message under \"*\" reaches the server (documented)" grep -aq qr-udp "$WORK/svc.frames"
check "and fqdnd remembered nothing of it" bash -c "kill -USR1 $FQDND_PID; sleep 0.3; ! grep -q 'qr-udp' $WORK/fqdnd-node1.log"

echo "-- a reload to a narrow rule queues queries again"
sed -i 's|^dns = .*|dns = [{ match-pattern = "*.k8s.intra" }]|' "$WORK/node1/policy.d/echo.toml"
kill -HUP "$FQDND_PID"; sleep 0.5
check "reloaded" grep -q 'reloaded:' "$WORK/fqdnd-node1.log"
check "no copy rule is left" bash -c "! ip netns exec $(ns node1) nft list table inet fqdnd | grep -q 'fqdnd query'"
check "a name outside the rule is refused" test "$(dns_status p1a blocked.example)" = REFUSED
check "an allowed name resolves, queued" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2
finish
