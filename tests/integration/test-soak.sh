#!/bin/bash
# Soak: SOAK_ANSWERS DNS answers (20,000 here; 1,000,000 for the figures in
# docs/benchmarks.md) whose addresses rotate through 512, for 2,000 names,
# TTL 1 and min-ttl 1, while a stream of connections opens and closes. The
# cache must follow its limits and drain when the answers stop; fqdnd's RSS
# and open descriptors must not grow with the number of answers.
. "$(dirname "$0")/lib.sh"

answers=${SOAK_ANSWERS:-20000}
names=2000
limit=4

seed_topology
background svc python3 "$TESTS_DIR/dns_rotor.py" 203.0.113.53 3600
echo_config node1 192.0.2.0/29 "min-ttl = 1
max-ip-per-hostname = $limit
pre-cache = \"$WORK/pre.json\""
sed -i 's|^to-fqdns = .*|to-fqdns = [{ match-pattern = "*.k8s.intra" }, { match-pattern = "*.soak.k8s.intra" }]|' \
    "$WORK/node1/policy.d/echo.toml"
# The stream's destination, allowed by name for the whole run.
cat > "$WORK/pre.json" <<JSON
[{"endpoint": "192.0.2.2", "fqdn": "echo.k8s.intra.", "ips": ["203.0.113.2"],
  "lookup-time": "$(date -u +%Y-%m-%dT%H:%M:%S.000Z)", "expiration-time": "$(date -u -d '+1 day' +%Y-%m-%dT%H:%M:%S.000Z)",
  "ttl": 86400, "source": "lookup"}]
JSON
# Under AddressSanitizer (CI's second pass) freed memory waits in a
# quarantine of 256 MB before it is reused, so RSS would measure how much
# fqdnd freed, not what it holds: a small quarantine keeps RSS meaningful.
if ldd "$FQDND" 2>/dev/null | grep -q libasan; then
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4"
fi
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1
pid=$FQDND_PID_node1
snapshot() { # RSS in kB and open descriptors of fqdnd
    echo "$(awk '/^VmRSS/ {print $2}' /proc/"$pid"/status) $(ls /proc/"$pid"/fd | wc -l)"
}
stats() { # the SIGUSR1 stats line's cache names and addresses
    local before
    before=$(wc -l < "$WORK/fqdnd-node1.log")
    kill -USR1 "$pid"; sleep 0.3
    tail -n +"$((before + 1))" "$WORK/fqdnd-node1.log" | sed -n 's/.*cache names \([0-9]*\), addresses \([0-9]*\).*/\1 \2/p' | tail -1
}
read -r rss0 fds0 < <(snapshot)

ip netns exec "$(ns p1a)" python3 "$TESTS_DIR/tcp_stream.py" 3600 203.0.113.2:80 > "$WORK/stream" &
stream=$!
_pids+=("$stream")
sleep 0.5
# A snapshot once a tenth of the answers is in (warm: the cache is full).
export ON_PROGRESS="awk '/^VmRSS/ {print \$2}' /proc/$pid/status > '$WORK/rss-early'; ls /proc/$pid/fd | wc -l > '$WORK/fds-early'"
in_ns p1a python3 "$TESTS_DIR/dns_load.py" 203.0.113.53 "$answers" "$names" "$((answers / 10))" > "$WORK/load"
read -r got sent seconds < "$WORK/load"
read -r rss1 fds1 < <(snapshot)
read -r cache_names cache_addresses < <(stats)
kill "$stream"; wait "$stream" 2>/dev/null
read -r attempts failures failed < "$WORK/stream"
sleep 3 # TTL 1: every soak mapping is expired by now
read -r drained_names drained_addresses < <(stats)
rss_early=$(cat "$WORK/rss-early"); fds_early=$(cat "$WORK/fds-early")

echo "     $got answers of $sent queries in $seconds s ($(python3 -c "print(round($got / max($seconds, 0.1)))")/s)"
echo "     fqdnd RSS: start $rss0 kB, after 10% $rss_early kB, end $rss1 kB; descriptors $fds0, $fds_early, $fds1"
echo "     connections to the long-lived destination meanwhile: $attempts, $failures failed"
echo "     cache at the end: $cache_names names, $cache_addresses addresses; 3 s later: $drained_names names, $drained_addresses addresses"
check "at least 95% of the queries were answered" test "$got" -ge $((sent * 95 / 100))
check "the cache kept to its limits ($names names, $limit addresses each)" \
    test "$cache_names" -le $((names + 1)) -a "$cache_addresses" -le $(((names + 1) * limit))
check "it drained when the answers stopped (TTL 1)" test "$drained_addresses" -le 2
check "RSS did not grow with the answers (from 10% to the end: under +50% and +16 MB)" \
    test "$((rss1 - rss_early))" -le "$(( rss_early / 2 > 16384 ? rss_early / 2 : 16384 ))"
check "open descriptors did not grow" test "$fds1" -le "$((fds_early + 2))"
check "the long-lived destination stayed allowed throughout" test "$attempts" -gt 0 -a "$failures" = 0
check "fqdnd is still running" kill -0 "$pid"

finish
