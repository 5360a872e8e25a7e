#!/bin/bash
# The 1,000-qps run of dnsperf.sh, fqdnd with the "*" rule, under the
# scheduler's trace, to see what the slowest answers waited for: fqdnd
# holds NAMES names first (200,000 by default, as in dnsperf.sh's run), then
# a client asks 10,000 new names one at a time; for each answer slower than
# SLOW_US (1,000), what else ran meanwhile (tail_attribution.py). Prints
# the same run without fqdnd first. Root; makes and removes its own
# namespaces; needs dnsperf and perf. Never fails on a timing.
# Usage: [NAMES=N] [SLOW_US=N] [FQDND=BINARY] tests/bench/latency-tail.sh [SECONDS]
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/bench-lib.sh"
seconds=${1:-10}
names=${NAMES:-200000}
export SLOW_US=${SLOW_US:-1000}
command -v dnsperf >/dev/null || { echo "dnsperf is missing: apt-get install dnsperf" >&2; exit 1; }
command -v perf >/dev/null || { echo "perf is missing: apt-get install linux-perf" >&2; exit 1; }
LATENCY=$TESTS_DIR/../bench/dns_latency.py

bench_topology
# The first NAMES names fill fqdnd, the next 20,000 are the latency run's.
bench_names $((names + 20000)) fill:0:$names latency:$names:20000 warm:0:$((names + 20000))
bench_dns warm

traced() { # traced NAME: the latency run under perf sched, then what the slow answers waited for
    command perf sched record -k CLOCK_MONOTONIC -o "$WORK/sched.data" -- sleep $((seconds + 2)) >/dev/null 2>&1 &
    local recorder=$!
    sleep 1
    in_ns client python3 "$LATENCY" 203.0.113.53 "$WORK/latency" 1000 "$seconds" > "$WORK/latency.out"
    wait "$recorder"
    printf '%-28s %s\n' "$1" "$(head -1 "$WORK/latency.out")"
    command perf script -i "$WORK/sched.data" 2>/dev/null > "$WORK/sched.txt"
    python3 "$TESTS_DIR/../bench/tail_attribution.py" "$WORK/sched.txt" "$WORK/latency.out" ${FQDND_PID:-} |
        sed 's/^/     /'
}

FQDND_PID=
traced "no fqdnd"
# fqdnd as its unit runs it (malloc's memory in huge pages).
printf '#!/bin/sh\nGLIBC_TUNABLES=glibc.malloc.hugetlb=1 exec "%s" "$@"\n' "$FQDND" > "$WORK/fqdnd"
chmod +x "$WORK/fqdnd"
FQDND=$WORK/fqdnd
echo_config router 192.0.2.0/29 "max-names = 1000000"
start_fqdnd router "$WORK/router/fqdnd.toml" >/dev/null || exit 1
[ "$names" -gt 0 ] && in_ns client dnsperf -s 203.0.113.53 -d "$WORK/fill" -c 4 -q 200 -n 1 >/dev/null 2>&1
sleep 3
traced "fqdnd \"*\", new names"
