#!/bin/bash
# A selected client tries to get around fqdnd: DNS to a server no rule
# lists (UDP and TCP, IPv4 and IPv6), DNS over TLS and over HTTPS to
# addresses no rule allows, IPv6 to an address it learned only as IPv4.
# Each must fail, and the servers must never see the traffic.
. "$(dirname "$0")/lib.sh"

seed_topology
cat > "$WORK/hosts" <<'HOSTS'
203.0.113.2 echo.k8s.intra
2001:db8:4::2 echo.k8s.intra
HOSTS
# The same dnsmasq answers on 203.0.113.54 and 2001:db8:4::53 too: servers
# that work, but that no rule lists.
dns_server "$WORK/hosts" --listen-address=203.0.113.54 || exit 1
tcp_server svc 853 443
echo_config node1 192.0.2.0/29
# Both families of the pods are selected.
sed -i 's|^sources = .*|sources = ["192.0.2.0/29", "2001:db8:1::/64"]|; s|^dns = .*|dns = [{ match-pattern = "*.k8s.intra" }]|' \
    "$WORK/node1/policy.d/echo.toml"
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1

asked() { grep -q "$1" "$WORK/dnsmasq.log"; }

check "control: the listed server answers" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2
check "control: the unlisted server answers the node itself" \
    bash -c "[ \"\$(ip netns exec '$(ns node1)' dig +short +time=2 +tries=1 @203.0.113.54 echo.k8s.intra)\" = 203.0.113.2 ]"

check_not "DNS to a server no rule lists (UDP) gets no answer" \
    in_ns p1a dig +short +time=1 +tries=1 @203.0.113.54 udp-bypass.k8s.intra
check_not "and never reaches it" asked udp-bypass
check_not "DNS to a server no rule lists (TCP) gets no answer" \
    in_ns p1a dig +short +tcp +time=1 +tries=1 @203.0.113.54 tcp-bypass.k8s.intra
check_not "and never reaches it" asked tcp-bypass
check_not "DNS over IPv6 to a server no rule lists gets no answer" \
    in_ns p1a dig +short +time=1 +tries=1 @2001:db8:4::53 v6-bypass.k8s.intra
check_not "and never reaches it" asked v6-bypass

check_not "DNS over TLS (853) to an address no rule allows" connects p1a 203.0.113.54 853
check_not "DNS over TLS (853) to the listed DNS server (its rule is for port 53)" connects p1a 203.0.113.53 853
check_not "DNS over HTTPS (443) to an address no rule allows" connects p1a 203.0.113.54 443
check_not "DNS over HTTPS (443) to the listed DNS server" connects p1a 203.0.113.53 443

check_not "IPv6 to a name's address learned only as IPv4 (A) stays closed" connects p1a 2001:db8:4::2 80
check "control: the AAAA answer through the listed server opens it" test "$(resolve p1a echo.k8s.intra AAAA)" = 2001:db8:4::2
check "control: then IPv6 to it passes" connects p1a 2001:db8:4::2 80

check "a query over TCP to the listed server is inspected like UDP: refused names are refused" \
    test "$(dns_status p1a blocked.example +tcp)" = REFUSED
check_not "by fqdnd: the server never saw it" asked blocked.example
printf '203.0.113.5 tcp-only.k8s.intra\n' >> "$WORK/hosts"; kill -HUP "$DNSMASQ_PID"; sleep 0.3
check_not "control: before its answer over TCP, the address is closed" connects p1a 203.0.113.5 80
check "an answer over TCP" test "$(resolve p1a tcp-only.k8s.intra +tcp)" = 203.0.113.5
check "opens the address like UDP" connects p1a 203.0.113.5 80

drops=$(in_ns node1 nft -j list chain inet fqdnd forward | python3 -c '
import json, sys
print(sum(e["counter"]["packets"] for o in json.load(sys.stdin)["nftables"] if "rule" in o
          and o["rule"].get("comment", "").endswith("DNS to a server no rule lists")
          for e in o["rule"]["expr"] if "counter" in e))')
check "the bypass DNS was dropped by the rule for unlisted servers (counted)" test "${drops:-0}" -gt 0

finish
