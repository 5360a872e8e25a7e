#!/bin/bash
# The write-up's scenario end to end, with assertions: two nodes with fqdnd,
# pods behind them, dnsmasq as the cluster DNS, echo servers beyond.
. "$(dirname "$0")/lib.sh"

seed_topology
cat > "$WORK/hosts" <<'HOSTS'
203.0.113.2 echo.k8s.intra
203.0.113.4 a.b.k8s.intra
203.0.113.5 cdn.k8s.intra
203.0.113.6 tcp.k8s.intra
203.0.113.7 other.example
2001:db8:4::2 v6.k8s.intra
2001:db8:4::3 v6b.k8s.intra
HOSTS
dns_server "$WORK/hosts" --cname=web.example,cdn.k8s.intra || exit 1

# The seed's policy on each node, for its own pods; node1's DNS rule lets
# pods ask only about k8s.intra names and web.example, so that a refusal
# can be seen.
for node in node1:192.0.2.0/29 node2:192.0.2.8/29; do
    n=${node%%:*}; src=${node#*:}
    mkdir -p "$WORK/$n/policy.d"
    printf '[daemon]\nstate-directory = "%s/%s/state"\n' "$WORK" "$n" > "$WORK/$n/fqdnd.toml"
    cat > "$WORK/$n/policy.d/echo.toml" <<TOML
[[policy]]
name = "echo"
[policy.selector]
sources = ["$src", "2001:db8:1::/64"]
[[policy.egress]]
to-fqdns = [{ match-pattern = "*.k8s.intra" }]
[[policy.egress]]
to-dns-servers = ["203.0.113.53", "203.0.113.54", "2001:db8:4::53"]
ports = [{ port = 53, protocol = "any" }]
dns = [{ match-pattern = "**.k8s.intra" }, { match-name = "web.example" }]
TOML
done
# On node1, local processes of user nobody are governed too.
cat > "$WORK/node1/policy.d/local.toml" <<'TOML'
[[policy]]
name = "nobody"
[policy.selector]
users = ["nobody"]
[[policy.egress]]
to-fqdns = [{ match-name = "echo.k8s.intra" }]
[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
dns = [{ match-pattern = "*.k8s.intra" }]
TOML
start_fqdnd node1 "$WORK/node1/fqdnd.toml" --log-dns || exit 1
start_fqdnd node2 "$WORK/node2/fqdnd.toml" --log-dns || exit 1

echo "-- phase 1: echo.k8s.intra is 203.0.113.2"
check_not "p1a is denied echo's address before any DNS answer (curl --resolve)" connects p1a 203.0.113.2 80
check "p1a resolves echo.k8s.intra through fqdnd" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2
check "p1a then reaches 203.0.113.2" connects p1a 203.0.113.2 80
check "p1b on the same node reaches it without resolving" connects p1b 203.0.113.2 80
check_not "p2a on the other node is denied it" connects p2a 203.0.113.2 80
check "node1's cache holds the mapping as lookup" bash -c "kill -USR1 $FQDND_PID_node1; sleep 0.3; grep -A3 'cache:' $WORK/fqdnd-node1.log | grep -q '192.0.2.2 .*lookup .*echo.k8s.intra\. .*3600 .*203.0.113.2'"

echo "-- phase 2: the record changes to 203.0.113.3"
sed -i 's/^203.0.113.2 echo/203.0.113.3 echo/' "$WORK/hosts"
kill -HUP "$DNSMASQ_PID"; sleep 0.3
check "p1a now resolves echo.k8s.intra to 203.0.113.3" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.3
check "node1: the old address is still allowed" connects p1a 203.0.113.2 80
check "node1: the new address is allowed" connects p1a 203.0.113.3 80
check "node1: p1b may use both without resolving (old)" connects p1b 203.0.113.2 80
check "node1: p1b may use both without resolving (new)" connects p1b 203.0.113.3 80
check "p2a resolves echo.k8s.intra on node2" test "$(resolve p2a echo.k8s.intra)" = 203.0.113.3
check "node2: the new address is allowed" connects p2a 203.0.113.3 80
check_not "node2: the old address is not" connects p2a 203.0.113.2 80

echo "-- refused queries"
check "a name no DNS rule allows gets REFUSED" test "$(dns_status p1a other.example)" = REFUSED
check "the refused query never reached the server" bash -c "! grep -q 'other.example' $WORK/dnsmasq.log"
check_not "and its address is not opened" connects p1a 203.0.113.7 80
printf '[fqdn]\nreject-response-code = "name-error"\n' >> "$WORK/node1/fqdnd.toml"
kill -HUP "$FQDND_PID_node1"; sleep 0.5
check "with reject-response-code = name-error it gets NXDOMAIN" test "$(dns_status p1a other.example)" = NXDOMAIN

as_nobody() { in_ns node1 setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
check "a local process: a refused query is answered by fqdnd too (NXDOMAIN now)" \
    bash -c "ip netns exec $(ns node1) setpriv --reuid=nobody --regid=nogroup --clear-groups dig +time=2 +tries=1 @203.0.113.53 local-other.example | grep -q 'status: NXDOMAIN'"
check "a local process: the refused query never reached the server" bash -c "! grep -q 'local-other.example' $WORK/dnsmasq.log"
check_not "a local process: denied echo's address before resolving" as_nobody /usr/bin/python3 "$TESTS_DIR/tcp_client.py" 203.0.113.5 80
check "a local process: resolves an allowed name" \
    bash -c "ip netns exec $(ns node1) setpriv --reuid=nobody --regid=nogroup --clear-groups dig +short +time=2 +tries=1 @203.0.113.53 echo.k8s.intra | grep -q 203.0.113.3"
check "a local process: then reaches its address" as_nobody /usr/bin/python3 "$TESTS_DIR/tcp_client.py" 203.0.113.3 80
check "the cache names the local endpoint by its uid" bash -c "kill -USR1 $FQDND_PID_node1; sleep 0.3; grep -q 'uid:65534 .*echo.k8s.intra' $WORK/fqdnd-node1.log"

echo "-- patterns, CNAMEs, TCP, IPv6"
check "a.b.k8s.intra resolves (the DNS rule has **.k8s.intra)" test "$(resolve p1a a.b.k8s.intra)" = 203.0.113.4
check_not "but *.k8s.intra does not open a.b.k8s.intra's address" connects p1a 203.0.113.4 80
sed -i 's/to-fqdns = \[{ match-pattern = "\*.k8s.intra" }\]/to-fqdns = [{ match-pattern = "*.k8s.intra" }, { match-pattern = "**.k8s.intra" }]/' "$WORK/node1/policy.d/echo.toml"
kill -HUP "$FQDND_PID_node1"; sleep 0.5
check "adding **.k8s.intra opens it, from what the cache already knew" connects p1a 203.0.113.4 80
check "web.example is a CNAME to cdn.k8s.intra" bash -c "ip netns exec $(ns p1a) dig +short @203.0.113.53 web.example | grep -q 203.0.113.5"
check "the CNAME's target matched *.k8s.intra: its address is open" connects p1a 203.0.113.5 80
check "an answer over TCP" test "$(resolve p1a tcp.k8s.intra +tcp)" = 203.0.113.6
check "opens its address too" connects p1a 203.0.113.6 80
check "a refused query over TCP is answered by fqdnd in the stream" test "$(dns_status p1a tcp-other.example +tcp)" = NXDOMAIN
check "and never reached the server" bash -c "! grep -q 'tcp-other.example' $WORK/dnsmasq.log"
check "an AAAA answer" test "$(resolve p1a v6.k8s.intra AAAA)" = 2001:db8:4::2
check "opens the IPv6 address" connects p1a 2001:db8:4::2 80
check_not "other IPv6 addresses stay closed" connects p1a 2001:db8:4::3 80
check "DNS over IPv6: a query to 2001:db8:4::53 is inspected and its answer opens the address" \
    bash -c "ip netns exec $(ns p1a) dig +short +time=2 +tries=1 @2001:db8:4::53 echo.k8s.intra AAAA >/dev/null; \
             ip netns exec $(ns p1a) dig +short +time=2 +tries=1 @2001:db8:4::53 v6b.k8s.intra AAAA | grep -q 2001:db8:4::3"
check "the address learned over IPv6 DNS is open" connects p1a 2001:db8:4::3 80
check "DNS over IPv6: a refused query is answered by fqdnd from the server's IPv6 address" \
    bash -c "ip netns exec $(ns p1a) dig +time=2 +tries=1 @2001:db8:4::53 v6-other.example | grep -q 'status: NXDOMAIN'"
check "and never reached the server" bash -c "! grep -q 'v6-other.example' $WORK/dnsmasq.log"

echo "-- forged answers"
check_forged_answers p1a
in_ns svc python3 "$TESTS_DIR/dns_forge.py" answer 203.0.113.54 192.0.2.2 41000 4242 forged.k8s.intra 203.0.113.4
check_not "a second answer to the same query changes nothing" bash -c "kill -USR1 $FQDND_PID_node2; sleep 0.2; grep -q 'forged.k8s.intra.*203.0.113.4' $WORK/fqdnd-node1.log"

finish
