#!/bin/bash
# The single-range encoding (encode.cpp put(AddrInList)): CIDR lists that
# merge into one range become a mask and a compare (a prefix) or two
# compares (any other range). Each end of every such range is
# checked from both sides with traffic: the first and last address match,
# the addresses just outside do not. Selector sources (IPv4 and IPv6),
# to-cidrs (IPv4 ranges, an IPv4 prefix made of two, IPv6 ranges across a
# byte boundary) and DNS servers (the copy rules under "*" and the queue
# rules of TCP) are covered.
. "$(dirname "$0")/lib.sh"

# A router r, clients a..d on a bridge (192.0.2.2-5, 2001:db8:1::2-5),
# svc beyond it with every address the test connects to.
add_ns r; add_ns svc
ip -n "$(ns r)" link add br0 type bridge
ip -n "$(ns r)" addr add 192.0.2.1/28 dev br0
ip -n "$(ns r)" addr add 2001:db8:1::1/64 dev br0 nodad
ip -n "$(ns r)" link set br0 up
i=2
for c in a b c d; do
    add_ns "$c"
    ip link add v-r netns "$(ns "$c")" type veth peer name "v-$c" netns "$(ns r)"
    ip -n "$(ns r)" link set "v-$c" master br0 up
    ip -n "$(ns "$c")" addr add "192.0.2.$i/28" dev v-r
    ip -n "$(ns "$c")" addr add "2001:db8:1::$i/64" dev v-r nodad
    ip -n "$(ns "$c")" link set v-r up
    ip -n "$(ns "$c")" route add default via 192.0.2.1
    ip -n "$(ns "$c")" -6 route add default via 2001:db8:1::1
    i=$((i + 1))
done
link r svc 198.51.100.1/30 198.51.100.2/30 2001:db8:2::1/64 2001:db8:2::2/64
for a in $(seq 2 21) 52 53 54 55; do in_ns svc ip addr add "203.0.113.$a/32" dev lo; done
for a in 2 3 4 5 fe ff 100 101 52 53 54 55; do in_ns svc ip addr add "2001:db8:4::$a/128" dev lo; done
in_ns svc ip route add 192.0.2.0/28 via 198.51.100.1
in_ns svc ip -6 route add 2001:db8:1::/64 via 2001:db8:2::1
in_ns r ip route add 203.0.113.0/24 via 198.51.100.2
in_ns r ip -6 route add 2001:db8:4::/64 via 2001:db8:2::2
in_ns r sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
tcp_server svc 80

# DNS on .52-.55 and ::52-::55: every server answers, so that only the
# rules decide whether an answer comes back (dig +short prints its errors
# too: only the address counts).
printf '203.0.113.6 open.test.intra\n2001:db8:4::5 open.test.intra\n203.0.113.7 outside.test.intra\n' > "$WORK/hosts"
: > "$WORK/dnsmasq.log"
background svc dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$WORK/hosts" \
    --listen-address=203.0.113.52,203.0.113.53,203.0.113.54,203.0.113.55 \
    --listen-address=2001:db8:4::52,2001:db8:4::53,2001:db8:4::54,2001:db8:4::55 \
    --bind-interfaces --local-ttl=30 --user=root --log-queries --log-facility="$WORK/dnsmasq.log" --pid-file=
for i in $(seq 1 50); do
    in_ns svc dig +short +time=1 +tries=1 @203.0.113.55 localhost.invalid >/dev/null 2>&1 && break
    sleep 0.1
done

mkdir -p "$WORK/r/policy.d"
printf '[daemon]\nstate-directory = "%s/r/state"\n' "$WORK" > "$WORK/r/fqdnd.toml"
cat > "$WORK/r/policy.d/ranges.toml" <<'TOML'
[[policy]]
name = "ranges"
[policy.selector]
# .3-.4 and ::3-::4: neither is a prefix.
sources = ["192.0.2.3", "192.0.2.4", "2001:db8:1::3", "2001:db8:1::4"]
[[policy.egress]]
# .8-.10 (a /31 and the next host) and ::ff-::100 (across a byte).
to-cidrs = ["203.0.113.8/31", "203.0.113.10", "2001:db8:4::ff", "2001:db8:4::100"]
ports = [{ port = 80, protocol = "tcp" }]
[[policy.egress]]
# .12-.15, a /30 made of two /31; ::3-::4.
to-cidrs = ["203.0.113.14/31", "203.0.113.12/31", "2001:db8:4::4", "2001:db8:4::3"]
ports = [{ port = 80, protocol = "tcp" }]
[[policy.egress]]
# .3-.4: two hosts.
to-cidrs = ["203.0.113.3", "203.0.113.4"]
ports = [{ port = 80, protocol = "tcp" }]
[[policy.egress]]
to-fqdns = [{ match-name = "open.test.intra" }]
ports = [{ port = 80, protocol = "tcp" }]
[[policy.egress]]
# .53-.54 and ::53-::54: ranges, in the copy rules and the queue rules.
to-dns-servers = ["203.0.113.53", "203.0.113.54", "2001:db8:4::53", "2001:db8:4::54"]
dns = [{ match-pattern = "*" }]
TOML

start_fqdnd r "$WORK/r/fqdnd.toml" || exit 1
in_ns r nft list table inet fqdnd > "$WORK/table.txt"

echo "-- the encoding"
check "sources are a range" grep -q 'ip saddr 192.0.2.3-192.0.2.4' "$WORK/table.txt"
check "IPv6 sources are a range" grep -q 'ip6 saddr 2001:db8:1::3-2001:db8:1::4' "$WORK/table.txt"
check "to-cidrs .8/31 + .10 are a range" grep -q 'ip daddr 203.0.113.8-203.0.113.10' "$WORK/table.txt"
check "to-cidrs two /31 are one /30" grep -q 'ip daddr 203.0.113.12/30' "$WORK/table.txt"
check "DNS servers are a range" grep -q 'ip daddr 203.0.113.53-203.0.113.54' "$WORK/table.txt"
check "no anonymous set is left for one range" bash -c "! grep -q 'daddr {' '$WORK/table.txt' && ! grep -q 'saddr {' '$WORK/table.txt'"

echo "-- selector sources: .3 and .4 are governed, .2 and .5 are not"
for c in b c; do
    check_not "client $c (selected) cannot reach an unlisted address" connects "$c" 203.0.113.6 80
done
for c in a d; do
    check "client $c (just outside the range) is not governed" connects "$c" 203.0.113.6 80
    check "client $c over IPv6 neither" connects "$c" 2001:db8:4::5 80
done
check_not "client b over IPv6 (selected) cannot reach an unlisted address" connects b 2001:db8:4::5 80
check_not "client c over IPv6 (selected) cannot reach an unlisted address" connects c 2001:db8:4::5 80

echo "-- to-cidrs: each end in, each neighbour out"
for a in 3 4 8 9 10 12 13 14 15; do
    check "203.0.113.$a (listed) opens" connects b "203.0.113.$a" 80
done
for a in 2 5 7 11 16; do
    check_not "203.0.113.$a (just outside a range) stays closed" connects b "203.0.113.$a" 80
done
for a in 3 4 ff 100; do
    check "2001:db8:4::$a (listed) opens" connects b "2001:db8:4::$a" 80
done
for a in 2 5 fe 101; do
    check_not "2001:db8:4::$a (just outside a range) stays closed" connects b "2001:db8:4::$a" 80
done

echo "-- DNS servers: .53 and .54 answer, .52 and .55 are not reached"
for s in 203.0.113.53 203.0.113.54 2001:db8:4::53 2001:db8:4::54; do
    check "server $s (an end of the range) answers over UDP" \
        bash -c "ip netns exec $(ns c) dig +short +time=2 +tries=1 @$s open.test.intra | grep -qx 203.0.113.6"
    check "server $s over TCP" \
        bash -c "ip netns exec $(ns c) dig +tcp +short +time=2 +tries=1 @$s open.test.intra | grep -qx 203.0.113.6"
done
check "and the answer opened the name's address" connects c 203.0.113.6 80
: > "$WORK/dnsmasq.log"
for s in 203.0.113.52 203.0.113.55 2001:db8:4::52 2001:db8:4::55; do
    check_not "server $s (just outside the range) gets no answer through" \
        bash -c "ip netns exec $(ns c) dig +short +time=1 +tries=1 @$s outside.test.intra | grep -qx 203.0.113.7"
    check_not "server $s over TCP neither" \
        bash -c "ip netns exec $(ns c) dig +tcp +short +time=1 +tries=1 @$s outside.test.intra | grep -qx 203.0.113.7"
done
check "no query reached a server outside the range" bash -c "! grep -q 'outside.test.intra' '$WORK/dnsmasq.log'"
check "an unselected client reaches .55 (control)" \
    bash -c "ip netns exec $(ns d) dig +short +time=2 +tries=1 @203.0.113.55 open.test.intra | grep -qx 203.0.113.6"
finish
