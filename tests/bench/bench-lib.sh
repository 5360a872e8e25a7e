# What the DNS benchmarks share; sourced after tests/integration/lib.sh.

# A client (192.0.2.2) behind a router (192.0.2.1, 198.51.100.1) in front
# of a DNS server at 203.0.113.53, each in its own namespace.
bench_topology() {
    add_ns client; add_ns router; add_ns dns
    link router client 192.0.2.1/29 192.0.2.2/29
    link router dns 198.51.100.1/30 198.51.100.2/30
    in_ns client ip route add default via 192.0.2.1
    in_ns dns ip addr add 203.0.113.53/32 dev lo
    in_ns dns ip route add 192.0.2.0/29 via 198.51.100.1
    in_ns router ip route add 203.0.113.53/32 via 198.51.100.2
    in_ns router sysctl -qw net.ipv4.ip_forward=1
}

# bench_names TOTAL FILE:FIRST:COUNT...: $WORK/hosts, where n<i>.k8s.intra
# is 2001:db8::<i> for every i below TOTAL, and each $WORK/FILE asking
# COUNT of those names from FIRST on, as dnsperf reads them.
bench_names() {
    python3 - "$WORK" "$@" <<'PY'
import sys
work, total = sys.argv[1], int(sys.argv[2])
with open(f"{work}/hosts", "w") as h:
    h.write("203.0.113.2 echo.k8s.intra\n")
    for i in range(total):
        h.write(f"2001:db8::{i >> 16:x}:{i & 0xffff:x} n{i}.k8s.intra\n")
for spec in sys.argv[3:]:
    name, first, count = spec.split(":")
    with open(f"{work}/{name}", "w") as q:
        for i in range(int(first), int(first) + int(count)):
            q.write(f"n{i}.k8s.intra AAAA\n")
PY
}

# dnsmasq answering from $WORK/hosts, without a cache (DNSMASQ_PID), every
# name asked once from $WORK/$1 first: a name it never looked up is
# answered several times slower, which no run should pay for.
bench_dns() {
    background dns dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$WORK/hosts" \
        --listen-address=203.0.113.53 --bind-interfaces --local-ttl=30 --user=root --cache-size=0 --pid-file=
    DNSMASQ_PID=$LAST_PID
    sleep 2
    in_ns client dnsperf -s 203.0.113.53 -d "$WORK/$1" -c 4 -q 200 -n 1 >/dev/null 2>&1
}
