#!/bin/bash
# A hostile pod behind node1 (CAP_NET_RAW, as containers get by default)
# tries what issue #14 found open: asking a refused name again from the same
# source port, spoofing a source no policy selects, and bouncing an answer
# forged in the DNS server's name off its router. The kernel's own rp_filter
# is off on node1, so what stops them is fqdnd's table.
. "$(dirname "$0")/lib.sh"
SPOOF="$TESTS_DIR/spoof.py"

seed_topology
printf '203.0.113.2 echo.k8s.intra\n2001:db8:4::2 echo.k8s.intra\n203.0.113.9 primed.example\n' > "$WORK/hosts"
# slow.k8s.intra is forwarded to a server that never answers (a sink on
# 203.0.113.6): only a forged answer can come back.
background svc python3 "$SPOOF" sink 203.0.113.6 53 "$WORK/blackhole"
dns_server "$WORK/hosts" --server=/slow.k8s.intra/203.0.113.6 || exit 1
background svc python3 "$SPOOF" sink 203.0.113.4 9999 "$WORK/sink4"
background svc python3 "$SPOOF" sink 2001:db8:4::3 9999 "$WORK/sink6"
echo_config node1 192.0.2.0/29
sed -i 's|^sources = .*|sources = ["192.0.2.0/29", "2001:db8:1::/64"]|; s|^dns = .*|dns = [{ match-pattern = "*.k8s.intra" }]|; s|^to-dns-servers = .*|to-dns-servers = ["203.0.113.53", "2001:db8:4::53"]|' \
    "$WORK/node1/policy.d/echo.toml"
# p1b alone may reach 203.0.113.4, on TCP 8080 only.
cat > "$WORK/node1/policy.d/hold.toml" <<'TOML'
[[policy]]
name = "hold"
[policy.selector]
sources = ["192.0.2.3/32"]
[[policy.egress]]
to-cidrs = ["203.0.113.4/32"]
ports = [{ port = 8080, protocol = "tcp" }]
TOML
in_ns node1 sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
for i in $(in_ns node1 ls /proc/sys/net/ipv4/conf); do in_ns node1 sysctl -qw "net.ipv4.conf.$i.rp_filter=0"; done
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1

asked() { grep -q "$1" "$WORK/dnsmasq.log"; }
all_refused() { # SERVER NAME: three asks from one port, every one REFUSED
    local got
    got=$(in_ns p1a python3 "$SPOOF" ask-again "$1" "$2" 3 | sort -u)
    echo "answers: $got"
    [ "$got" = REFUSED ]
}

echo "-- a refused query, asked again from the same source port"
check "IPv4: refused three times from one port" all_refused 203.0.113.53 again4.example
check_not "and the server never saw it" asked again4.example
check "IPv6: refused three times from one port" all_refused 2001:db8:4::53 again6.example
check_not "and the server never saw it" asked again6.example
untracked=$(in_ns node1 conntrack -L 2>/dev/null | grep -c 'src=203.0.113.53 dst=192.0.2.2 sport=53')
check "fqdnd's refusals left no conntrack entry in the server's name" test "${untracked:-0}" = 0
check "control: an allowed name is still answered" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2

echo "-- sources no policy selects, spoofed by the pod"
in_ns p1a ip addr add 203.0.113.77/32 dev v-node1
in_ns p1a ip addr add 192.0.2.10/32 dev v-node1
in_ns p1a ip addr add 2001:db8:4::77/128 dev v-node1 nodad
in_ns node1 python3 "$SPOOF" send-from 198.51.100.1 203.0.113.4 9999
in_ns node1 python3 "$SPOOF" send-from 2001:db8:2::1 2001:db8:4::3 9999
in_ns p1a python3 "$SPOOF" send-from 203.0.113.77 203.0.113.4 9999
in_ns p1a python3 "$SPOOF" send-from 192.0.2.10 203.0.113.4 9999
in_ns p1a python3 "$SPOOF" send-from 2001:db8:4::77 2001:db8:4::3 9999
sleep 0.5
check "control: the sinks receive what node1 itself sends" \
    bash -c "grep -q 198.51.100.1 '$WORK/sink4' && grep -q 2001:db8:2::1 '$WORK/sink6'"
check_not "a source beyond the router (203.0.113.77), spoofed from the pod, is dropped" grep -q 203.0.113.77 "$WORK/sink4"
check_not "another node's pod address (192.0.2.10), spoofed, is dropped" grep -q 192.0.2.10 "$WORK/sink4"
check_not "IPv6: a source beyond the router (2001:db8:4::77), spoofed, is dropped" grep -q 2001:db8:4::77 "$WORK/sink6"
in_ns p1a ip addr del 203.0.113.77/32 dev v-node1
in_ns p1a ip addr del 192.0.2.10/32 dev v-node1
in_ns p1a ip addr del 2001:db8:4::77/128 dev v-node1

echo "-- an ICMP error tied to another client's connection"
# p1b holds a connection to 203.0.113.4:8080, which p1b's policy allows and
# p1a's does not. An ICMP error from p1a that quotes a segment of that
# connection is RELATED to it in conntrack, whoever sends it: it must not
# carry p1a's bytes to an address p1a's policy does not open.
background p1b python3 "$TESTS_DIR/tcp_hold.py" 203.0.113.4 8080 30
hold_port() { in_ns node1 conntrack -L -p tcp -s 192.0.2.3 -d 203.0.113.4 --dport 8080 2>/dev/null | grep -o 'sport=[0-9]*' | head -1 | cut -d= -f2; }
eventually 3 test -n "$(hold_port)"
port=$(hold_port)
check "control: p1b holds a connection to 203.0.113.4:8080 (port ${port:-none})" test -n "$port"
check_not "control: p1a may not connect to 203.0.113.4:8080" connects p1a 203.0.113.4 8080
: > "$WORK/svc.frames"
background svc python3 "$TESTS_DIR/dns_attack.py" sniff 3 "$WORK/svc.frames"
sniffer=$LAST_PID
sleep 0.3
in_ns p1a python3 "$SPOOF" icmp-related 203.0.113.4 192.0.2.3 "${port:-1}" 8080 FQDND-RELATED-FROM-P1A
wait "$sniffer"
check_not "p1a's ICMP error about p1b's connection does not reach 203.0.113.4" grep -aq FQDND-RELATED-FROM-P1A "$WORK/svc.frames"
# A client's own error about a flow begun outside still goes back: a UDP
# datagram from beyond to a closed port of p1a is refused at once (as the
# last hop of a traceroute is), not left to time out.
udp_refused() { # FROM TO: "refused" when TO's port 9 answers with an ICMP error
    in_ns svc python3 -c '
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0)); s.connect((sys.argv[2], 9)); s.settimeout(2)
s.send(b"x")
try:
    s.recv(16); print("answered")
except ConnectionRefusedError:
    print("refused")
except socket.timeout:
    print("timeout")' "$1" "$2"
}
check "a client's port unreachable for a datagram from beyond goes back (IPv4)" \
    test "$(udp_refused 203.0.113.7 192.0.2.2)" = refused
check "and over IPv6" test "$(udp_refused 2001:db8:4::3 2001:db8:1::2)" = refused
check "and p1b's connection is still established" bash -c "ip netns exec $(ns node1) conntrack -L -p tcp -s 192.0.2.3 --dport 8080 2>/dev/null | grep -q ESTABLISHED"

echo "-- an answer forged in the server's name, bounced off the router"
router_mac=$(in_ns node1 cat /sys/class/net/br0/address)
forged4=$(in_ns p1a python3 "$SPOOF" forge v-node1 "$router_mac" 203.0.113.53 192.0.2.2 slow.k8s.intra 203.0.113.7)
echo "     answers the pod got (IPv4): $forged4"
check "the query went to the server (which never answers)" asked slow.k8s.intra
check "IPv4: the forged answer never came back to the pod" test "$forged4" = none
check_not "fqdnd did not learn the forged address" bash -c "ip netns exec '$(ns node1)' nft list set inet fqdnd fqdn4 | grep -q 203.0.113.7"
check_not "and the pod cannot reach it" connects p1a 203.0.113.7 80
forged6=$(in_ns p1a python3 "$SPOOF" forge v-node1 "$router_mac" 2001:db8:4::53 2001:db8:1::2 slow6.slow.k8s.intra 2001:db8:4::3)
echo "     answers the pod got (IPv6): $forged6"
check "IPv6: the forged answer never came back to the pod" test "$forged6" = none
check_not "fqdnd did not learn the forged IPv6 address" bash -c "ip netns exec '$(ns node1)' nft list set inet fqdnd fqdn6 | grep -q 2001:db8:4::3"
check_not "and the pod cannot reach it" connects p1a 2001:db8:4::3 80

dropped=$(in_ns node1 nft -j list chain inet fqdnd reverse_path | python3 -c '
import json, sys
print(sum(e["counter"]["packets"] for o in json.load(sys.stdin)["nftables"] if "rule" in o
          for e in o["rule"]["expr"] if "counter" in e))')
check "the reverse-path rule counted them" test "${dropped:-0}" -gt 0
check "control: the pod still resolves and reaches an allowed name (IPv4)" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2
check "and connects" connects p1a 203.0.113.2 80
check "control: IPv6 too" test "$(resolve p1a echo.k8s.intra AAAA)" = 2001:db8:4::2
check "and connects" connects p1a 2001:db8:4::2 80

echo "-- reverse-path-filter = \"loose\": a flow primed in the server's name does not carry a query"
stop_fqdnd
sed -i 's|^\[daemon\]|[daemon]\nreverse-path-filter = "loose"|' "$WORK/node1/fqdnd.toml"
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1
primed=$(in_ns p1a python3 "$SPOOF" prime v-node1 "$router_mac" 203.0.113.53 192.0.2.2 primed.example)
echo "     the query from the primed port got: $primed"
check_not "a refused name asked from a port primed by a packet in the server's name is not answered" test "$primed" = NOERROR
check_not "and never reaches the server" asked primed.example
sed -i '/^reverse-path-filter = "loose"/d' "$WORK/node1/fqdnd.toml"

echo "-- reverse-path-filter = \"off\" lets the spoofed source through (what the setting relaxes)"
stop_fqdnd
sed -i 's|^\[daemon\]|[daemon]\nreverse-path-filter = "off"|' "$WORK/node1/fqdnd.toml"
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1
check_not "no reverse_path chain" in_ns node1 nft list chain inet fqdnd reverse_path
in_ns p1a ip addr add 203.0.113.77/32 dev v-node1
in_ns p1a python3 "$SPOOF" send-from 203.0.113.77 203.0.113.4 9999
sleep 0.5
check "the spoofed source reaches the sink" grep -q 203.0.113.77 "$WORK/sink4"

finish
