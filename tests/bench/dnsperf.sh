#!/bin/bash
# dnsperf from a client namespace through a router namespace to dnsmasq, in
# four runs: without fqdnd; with fqdnd's ruleset and a reader that accepts
# every queued packet unread (the price of the queue alone); with fqdnd
# inspecting every answer (one name, each answer renews it); with every
# answer bringing a new address (50,000 names, AAAA in 2001:db8::/32). Prints
# qps, latency and where the CPU went for each, and the ratios to the first. Root; makes and removes its own namespaces. Never fails on
# a timing. Usage: [REVERSE_PATH_FILTER=off] tests/bench/dnsperf.sh [SECONDS]
. "$(dirname "$0")/../integration/lib.sh"
seconds=${1:-10}
QUEUE_ACCEPT=${QUEUE_ACCEPT:-$TESTS_DIR/../../build/tests/bench/queue-accept}
names=50000

add_ns client; add_ns router; add_ns dns
link router client 192.0.2.1/29 192.0.2.2/29
link router dns 198.51.100.1/30 198.51.100.2/30
in_ns client ip route add default via 192.0.2.1
in_ns dns ip addr add 203.0.113.53/32 dev lo
in_ns dns ip route add 192.0.2.0/29 via 198.51.100.1
in_ns router ip route add 203.0.113.53/32 via 198.51.100.2
in_ns router sysctl -qw net.ipv4.ip_forward=1

python3 - "$WORK" "$names" <<'PY'
import sys
work, n = sys.argv[1], int(sys.argv[2])
with open(f"{work}/hosts", "w") as h, open(f"{work}/new-names", "w") as q:
    h.write("203.0.113.2 echo.k8s.intra\n")
    for i in range(n):
        h.write(f"2001:db8::{i >> 16:x}:{i & 0xffff:x} n{i}.k8s.intra\n")
        q.write(f"n{i}.k8s.intra AAAA\n")
with open(f"{work}/one-name", "w") as q:
    q.write("echo.k8s.intra A\n")
PY
background dns dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$WORK/hosts" \
    --listen-address=203.0.113.53 --bind-interfaces --local-ttl=30 --user=root --cache-size=0 --pid-file=
DNSMASQ_PID=$LAST_PID
sleep 1

ticks() { # CPU time of a process (user + system), in clock ticks
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || { echo 0; return; }
    sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
softirq() { awk '/^cpu /{print $8}' /proc/stat; } # every CPU's, in ticks
# Queries the server's socket had no room for (UDP RcvbufErrors, its namespace).
overflows() { in_ns dns awk '/^Udp:/ { if (h) print $6; h = 1 }' /proc/net/snmp; }
hz=$(getconf CLK_TCK)

echo_config router 192.0.2.0/29
# REVERSE_PATH_FILTER=off|loose|strict: to see what the check costs.
[ -n "${REVERSE_PATH_FILTER:-}" ] && \
    sed -i "s|^\[daemon\]|[daemon]\nreverse-path-filter = \"$REVERSE_PATH_FILTER\"|" "$WORK/router/fqdnd.toml"

perf() { # perf NAME QUERYFILE [EXTRA]: one dnsperf run
    local out f0 d0 s0 f1 d1 s1 o0 o1
    f0=$(ticks "$READER_PID"); d0=$(ticks "$DNSMASQ_PID"); s0=$(softirq); o0=$(overflows)
    out=$(in_ns client dnsperf -s 203.0.113.53 -d "$2" -l "$seconds" -c 4 -q 200 $3 2>&1)
    f1=$(ticks "$READER_PID"); d1=$(ticks "$DNSMASQ_PID"); s1=$(softirq); o1=$(overflows)
    local qps lat
    qps=$(sed -n 's/ *Queries per second: *\([0-9.]*\).*/\1/p' <<<"$out")
    lat=$(sed -n 's/ *Average Latency (s): *\([0-9.]*\).*/\1/p' <<<"$out")
    local lost
    lost=$(sed -n 's/ *Queries lost: *\([0-9]*\).*/\1/p' <<<"$out")
    printf '%-44s %10s qps   avg latency %8.3f ms   lost %s\n' "$1" "$qps" "$(echo "$lat * 1000" | bc -l)" "$lost"
    # Where the two cores went: share of one core over the run.
    printf '     CPU: queue reader %.0f%%, dnsmasq %.0f%%, softirq (all CPUs) %.0f%%; queries the server had no room for: %s\n' \
        "$(echo "($f1 - $f0) * 100 / $hz / $seconds" | bc -l)" "$(echo "($d1 - $d0) * 100 / $hz / $seconds" | bc -l)" \
        "$(echo "($s1 - $s0) * 100 / $hz / $seconds" | bc -l)" "$((o1 - o0))"
    eval "QPS_$4=$qps"
}

echo "dnsperf, $seconds s per run, 4 clients, 200 queries in flight"
READER_PID=
perf "1. no fqdnd" "$WORK/one-name" "" base
# The price of the queue alone: fqdnd's ruleset stays when fqdnd is killed,
# and a reader that accepts every packet unread (fqdnd's own queue code)
# takes its queue. No reader of the queue can do better than this.
start_fqdnd router "$WORK/router/fqdnd.toml" >/dev/null || exit 1
kill -9 "$FQDND_PID"; wait "$FQDND_PID" 2>/dev/null
background router "$QUEUE_ACCEPT" 5300 2 $((seconds + 10)) # queries and answers
READER_PID=$LAST_PID
sleep 0.5
perf "1b. fqdnd's rules, a reader accepting unread" "$WORK/one-name" "" queue
kill "$READER_PID"; wait "$READER_PID" 2>/dev/null
start_fqdnd router "$WORK/router/fqdnd.toml" >/dev/null || exit 1
READER_PID=$FQDND_PID
perf "2. fqdnd, every answer inspected (renewals)" "$WORK/one-name" "" inspect
kill -USR1 "$FQDND_PID"; sleep 0.5
grep 'stats:' "$WORK/fqdnd-router.log" | tail -1 | sed 's/^/     /'
perf "3. fqdnd, every answer a new address" "$WORK/new-names" "-n 1" new
# SIGUSR1 also logs the whole cache: 50,000 names take a moment.
kill -USR1 "$FQDND_PID"; sleep 3
grep 'stats:' "$WORK/fqdnd-router.log" | tail -1 | sed 's/^/     /'
printf 'ratios to no fqdnd: queue alone %.2f, inspected %.2f, new addresses %.2f\n' \
    "$(echo "$QPS_queue / $QPS_base" | bc -l)" "$(echo "$QPS_inspect / $QPS_base" | bc -l)" \
    "$(echo "$QPS_new / $QPS_base" | bc -l)"
elements=$(in_ns router nft -j list sets inet 2>/dev/null | python3 -c '
import json, sys
print(sum(len(o["set"].get("elem", [])) for o in json.load(sys.stdin)["nftables"] if "set" in o))')
echo "elements in the sets after the runs: $elements"
