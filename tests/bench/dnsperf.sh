#!/bin/bash
# dnsperf from a client namespace through a router namespace to dnsmasq.
# The runs, all in one script so that the ratios compare like with like:
#  1. no fqdnd;
#  2. dnsmasq on the router forwarding with --nftset (what fqdnd is measured
#     against), no fqdnd;
#  3. a DNS rule allowing every name ("*", the seed's): fqdnd's rules with a
#     reader that accepts every queued packet unread (the queue alone:
#     answers only, queries pass with a copy), then fqdnd with every answer
#     a new address, then the same names again (renewals);
#  4. a narrow DNS rule ("*.k8s.intra", so queries are queued too): the
#     queue alone, then fqdnd with every answer a new address, then the
#     same names again (what judging queries costs, without set updates),
#     and a reader that does nothing but write each answer's addresses to
#     the sets (the floor of learning new addresses);
#  5. the latency a client sees at a fixed 1,000 qps (one query at a time):
#     without fqdnd, with the "*" queue alone (the floor), with fqdnd and
#     new names, with fqdnd and the same names again; p50 and p99 of the
#     round trip.
# Prints qps, latency and where the CPU went for each run, fqdnd's own hold
# times, and the ratios. Root; makes and removes its own namespaces. Never
# fails on a timing. Usage: [REVERSE_PATH_FILTER=off] [PERF_RUN=star_new|star_renew|narrow_new|narrow_renew
# [PERF_OUT=FILE] [PERF_OFFCPU=1]] tests/bench/dnsperf.sh [SECONDS]
. "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/bench-lib.sh"
seconds=${1:-10}
command -v dnsperf >/dev/null || { echo "dnsperf is missing: apt-get install dnsperf" >&2; exit 1; }
QUEUE_ACCEPT=${QUEUE_ACCEPT:-$TESTS_DIR/../../build/tests/bench/queue-accept}
LATENCY=$TESTS_DIR/../bench/dns_latency.py
names=${NAMES:-400000}
latency_qps=1000

bench_topology
# Names in slices, each used by one run only where a run needs new names:
# "*" runs (new, then again), the narrow runs, no fqdnd and dnsmasq
# --nftset, 1,000 qps (new for fqdnd, then again), and every name once.
half=$((names / 2))
bench_names $((names + 40000)) star-names:0:$half narrow-names:$half:$half base-names:0:$half \
    latency-names:$names:20000 warm-names:0:$((names + 20000))
bench_dns warm-names

ticks() { # CPU time of a process (user + system), in clock ticks
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || { echo 0; return; }
    sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
softirq() { awk '/^cpu /{print $8}' /proc/stat; } # every CPU's, in ticks
idle() { awk '/^cpu /{print $5}' /proc/stat; }
# Queries the server's socket had no room for (UDP RcvbufErrors, its namespace).
overflows() { in_ns dns awk '/^Udp:/ { if (h) print $6; h = 1 }' /proc/net/snmp; }
hz=$(getconf CLK_TCK)
# fqdnd as its unit runs it (systemd/fqdnd.service.in): malloc's memory in
# huge pages, so that forking the state writer stalls the loop less.
printf '#!/bin/sh\nGLIBC_TUNABLES=glibc.malloc.hugetlb=1 exec "%s" "$@"\n' "$FQDND" > "$WORK/fqdnd"
chmod +x "$WORK/fqdnd"
FQDND=$WORK/fqdnd

echo_config router 192.0.2.0/29 "max-names = 1000000"
echo_config narrow 192.0.2.0/29 "max-names = 1000000"
sed -i 's|match-pattern = "\*" }|match-pattern = "*.k8s.intra" }|' "$WORK/narrow/policy.d/echo.toml"
# REVERSE_PATH_FILTER=off|loose|strict: to see what the check costs.
[ -n "${REVERSE_PATH_FILTER:-}" ] && \
    sed -i "s|^\[daemon\]|[daemon]\nreverse-path-filter = \"$REVERSE_PATH_FILTER\"|" \
        "$WORK/router/fqdnd.toml" "$WORK/narrow/fqdnd.toml"

perf() { # perf NAME QUERYFILE KEY [SERVER]: one dnsperf run, each name once at most
    local out f0 d0 s0 f1 d1 s1 o0 o1 i0 i1
    f0=$(ticks "$READER_PID"); d0=$(ticks "$DNSMASQ_PID"); s0=$(softirq); o0=$(overflows); i0=$(idle)
    # PERF_RUN=KEY: a profile of every CPU over that run, to PERF_OUT.
    local profiler=
    if [ "${PERF_RUN:-}" = "$3" ] && [ -n "$READER_PID" ]; then
        # PERF_OFFCPU=1: where each task went to sleep instead (sched_switch).
        command perf record -q -a -g ${PERF_OFFCPU:+-e sched:sched_switch} -o "${PERF_OUT:-/tmp/fqdnd-perf.data}" 2>/dev/null &
        profiler=$!
    fi
    out=$(in_ns client dnsperf -s "${4:-203.0.113.53}" -d "$2" -l "$seconds" -c 4 -q 200 -n 1 2>&1)
    f1=$(ticks "$READER_PID"); d1=$(ticks "$DNSMASQ_PID"); s1=$(softirq); o1=$(overflows); i1=$(idle)
    [ -n "$profiler" ] && { kill -INT "$profiler"; wait "$profiler"; }
    local qps lat lost
    qps=$(sed -n 's/ *Queries per second: *\([0-9.]*\).*/\1/p' <<<"$out")
    lat=$(sed -n 's/ *Average Latency (s): *\([0-9.]*\).*/\1/p' <<<"$out")
    lost=$(sed -n 's/ *Queries lost: *\([0-9]*\).*/\1/p' <<<"$out")
    printf '%-52s %10s qps   avg latency %8.3f ms   lost %s\n' "$1" "$qps" "$(echo "${lat:-0} * 1000" | bc -l)" "$lost"
    # Where the two cores went: share of one core over the run.
    printf '     CPU: reader %.0f%%, dnsmasq %.0f%%, softirq (all CPUs) %.0f%%, idle (all CPUs) %.0f%%; queries the server had no room for: %s\n' \
        "$(echo "($f1 - $f0) * 100 / $hz / $seconds" | bc -l)" "$(echo "($d1 - $d0) * 100 / $hz / $seconds" | bc -l)" \
        "$(echo "($s1 - $s0) * 100 / $hz / $seconds" | bc -l)" "$(echo "($i1 - $i0) * 100 / $hz / $seconds" | bc -l)" "$((o1 - o0))"
    eval "QPS_$3=${qps:-0}"
}
latency() { # latency NAME QUERYFILE KEY: p50 and p99 at latency_qps
    local out
    out=$(in_ns client python3 "$LATENCY" 203.0.113.53 "$2" "$latency_qps" "$seconds")
    printf '%-52s %s\n' "$1" "$out"
    eval "P50_$3=$(sed -n 's/.* p50 \([0-9]*\) .*/\1/p' <<<"$out")"
    eval "P99_$3=$(sed -n 's/.* p99 \([0-9]*\) .*/\1/p' <<<"$out")"
}
queue_alone() { # queue_alone NAME CONFIG KEY QUERYFILE [TABLE]: fqdnd's rules, a reader accepting
    # unread (with TABLE: writing each answer's addresses to its sets first)
    start_fqdnd router "$2" >/dev/null || exit 1
    kill -9 "$FQDND_PID"; wait "$FQDND_PID" 2>/dev/null
    background router "$QUEUE_ACCEPT" 5300 2 $((2 * seconds + 10)) ${5:-} # queries and answers, both runs
    READER_PID=$LAST_PID
    sleep 0.5
    perf "$1" "$4" "$3"
    # The latency floor: what the queue alone adds at 1,000 qps.
    [ "$3" = star_queue ] && latency "   1,000 qps, \"*\" queue alone" "$WORK/latency-names" star_queue
    kill "$READER_PID"; wait "$READER_PID" 2>/dev/null
    [ -n "${5:-}" ] && echo "     elements the reader wrote: $(in_ns router nft list set inet fqdnd fqdn6 | grep -o '2001:db8[0-9a-f:]*' | wc -l)"
    in_ns router nft delete table inet fqdnd
}
stats() { # fqdnd's own counters and hold times (SIGUSR1 also logs the cache: a moment)
    kill -USR1 "$FQDND_PID"; sleep 3
    grep 'stats:' "$WORK/fqdnd-router.log" | tail -1 | sed 's/^/     /'
}

echo "dnsperf, $seconds s per run, 4 clients, 200 queries in flight, each name once"
READER_PID=
perf "1. no fqdnd" "$WORK/base-names" base
latency "   1,000 qps, no fqdnd" "$WORK/latency-names" base

# dnsmasq on the router, forwarding, adding each answer's addresses to a
# set of its own (nftables' "inet dm fqdn6", timeouts as fqdnd's).
in_ns router nft -f - <<'NFT'
table inet dm {
    set fqdn6 { type ipv6_addr; flags timeout; timeout 1h; }
}
NFT
background router dnsmasq --keep-in-foreground --no-resolv --no-hosts --server=203.0.113.53 \
    --listen-address=192.0.2.1 --bind-interfaces --user=root --cache-size=0 --pid-file= \
    --nftset=/k8s.intra/6#inet#dm#fqdn6
READER_PID=$LAST_PID
sleep 1
perf "2. dnsmasq --nftset on the router" "$WORK/base-names" nftset 192.0.2.1
kill "$READER_PID"; wait "$READER_PID" 2>/dev/null
echo "     elements dnsmasq added: $(in_ns router nft -j list set inet dm fqdn6 | python3 -c '
import json, sys
print(sum(len(o["set"].get("elem", [])) for o in json.load(sys.stdin)["nftables"] if "set" in o))')"
in_ns router nft delete table inet dm

queue_alone "3a. \"*\": fqdnd's rules, a reader accepting unread" "$WORK/router/fqdnd.toml" star_queue "$WORK/base-names"
start_fqdnd router "$WORK/router/fqdnd.toml" >/dev/null || exit 1
READER_PID=$FQDND_PID
perf "3b. \"*\": fqdnd, every answer a new address" "$WORK/star-names" star_new
perf "3c. \"*\": fqdnd, the same names again (renewals)" "$WORK/star-names" star_renew
stats
latency "   1,000 qps, fqdnd \"*\", new names" "$WORK/latency-names" star_new
latency "   1,000 qps, fqdnd \"*\", the same names again" "$WORK/latency-names" star_renew
stats
stop_fqdnd
in_ns router nft delete table inet fqdnd

queue_alone "4a. narrow: fqdnd's rules, a reader accepting unread" "$WORK/narrow/fqdnd.toml" narrow_queue "$WORK/base-names"
# The floor of learning: the reader also writes each answer's addresses to
# the sets, one transaction a batch, before its verdicts (new addresses).
queue_alone "4d. narrow: a reader that only writes the sets" "$WORK/narrow/fqdnd.toml" narrow_learn "$WORK/narrow-names" fqdnd
start_fqdnd router "$WORK/narrow/fqdnd.toml" >/dev/null || exit 1
READER_PID=$FQDND_PID
perf "4b. narrow: fqdnd, every answer a new address" "$WORK/narrow-names" narrow_new
perf "4c. narrow: fqdnd, the same names again (renewals)" "$WORK/narrow-names" narrow_renew
stats

ratio() { echo "scale=2; $1 / $2" | bc -l; }
echo "ratios to no fqdnd: \"*\" new addresses $(ratio "$QPS_star_new" "$QPS_base"), renewals $(ratio "$QPS_star_renew" "$QPS_base"), \"*\" queue alone $(ratio "$QPS_star_queue" "$QPS_base"); renewals to new addresses $(ratio "$QPS_star_renew" "$QPS_star_new")"
echo "narrow rule to its queue-alone floor: new addresses $(ratio "$QPS_narrow_new" "$QPS_narrow_queue"), renewals $(ratio "$QPS_narrow_renew" "$QPS_narrow_queue") (floor $(ratio "$QPS_narrow_queue" "$QPS_base") of no fqdnd)"
echo "narrow rule, new addresses, to the reader that only writes the sets: $(ratio "$QPS_narrow_new" "$QPS_narrow_learn") (that reader $(ratio "$QPS_narrow_learn" "$QPS_narrow_queue") of the queue-alone floor)"
echo "fqdnd \"*\" new addresses to dnsmasq --nftset: $(ratio "$QPS_star_new" "$QPS_nftset")"
echo "added latency at $latency_qps qps, \"*\" queue alone (the floor): p50 $((P50_star_queue - P50_base)) us, p99 $((P99_star_queue - P99_base)) us"
echo "added latency at $latency_qps qps, new names: p50 $((P50_star_new - P50_base)) us, p99 $((P99_star_new - P99_base)) us; the same names again: p50 $((P50_star_renew - P50_base)) us, p99 $((P99_star_renew - P99_base)) us"
