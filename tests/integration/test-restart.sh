#!/bin/bash
# A restart loses nothing: kill -9 under traffic, the kernel keeps enforcing
# and DNS keeps flowing (fail-open) while fqdnd is down, and the cache comes
# back from the state file. A corrupt state file is reported and ignored; a
# pre-cache file is loaded at start.
. "$(dirname "$0")/lib.sh"

seed_two_names || exit 1
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1

cache_rows() { # the cache as node1's fqdnd prints it, without the header
    local before
    before=$(wc -l < "$WORK/fqdnd-node1.log")
    kill -USR1 "$FQDND_PID_node1"; sleep 0.3
    tail -n +"$((before + 1))" "$WORK/fqdnd-node1.log" | sed -n '/cache:/,/^$/p' | sed '1,2d;/^$/d'
}

check "echo.k8s.intra resolves" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2
check "other.k8s.intra resolves" test "$(resolve p1b other.k8s.intra)" = 203.0.113.3
cache_rows > "$WORK/before"
check "the cache holds both" test "$(wc -l < "$WORK/before")" = 2
sleep 2.5 # the state file is written at most every 2 s
check "the state file holds both names" grep -c '"fqdn"' "$WORK/node1/state/cache.json"

in_ns p1a python3 "$TESTS_DIR/tcp_stream.py" 6 203.0.113.2:80 203.0.113.3:80 > "$WORK/stream" &
stream=$!
sleep 1
kill -9 "$FQDND_PID_node1"; wait "$FQDND_PID_node1" 2>/dev/null
# What a state writer killed halfway leaves (it dies with fqdnd).
echo '[{"endpoint": "192.0.2.2", "fqdn": "half' > "$WORK/node1/state/cache.json.tmp.99999"
check "fqdnd down: DNS still flows (fail-open)" test "$(resolve p1b echo.k8s.intra)" = 203.0.113.2
check_not "fqdnd down: an unknown address is still denied" connects p1a 203.0.113.99 80
sleep 1
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1
wait "$stream"
read -r attempts failures failed < "$WORK/stream"
echo "     stream across kill -9 and restart: $attempts connections, $failures failed $failed"
check "no allowed connection failed while fqdnd was down or after" test "$attempts" -gt 20 -a "$failures" = 0
cache_rows > "$WORK/after"
check "the cache came back the same from the state file" diff "$WORK/before" "$WORK/after"
check "after restart, allowed addresses stay allowed" connects p1b 203.0.113.3 80
check "a half-written temporary state file is removed at start" test ! -e "$WORK/node1/state/cache.json.tmp.99999"
check "the state is written by a child of fqdnd, which it reaps: no zombie" \
    bash -c "sleep 2.5; ! ps -o stat= --ppid $FQDND_PID_node1 | grep -q Z"

# A corrupt state file: reported, ignored, never fatal.
stop_fqdnd
printf '[{"fqdn": "x", "ips": [' > "$WORK/node1/state/cache.json"
start_fqdnd node1 "$WORK/node1/fqdnd.toml"
check "a corrupt state file does not stop fqdnd" kill -0 "$FQDND_PID_node1"
check "it is reported" grep -q "state file .* is unreadable (not valid JSON); ignored" "$WORK/fqdnd-node1.log"
check_not "enforcement goes on" connects p1a 203.0.113.99 80

# A pre-cache file, in the format of `cilium fqdn cache list -o json`.
stop_fqdnd
rm -f "$WORK/node1/state/cache.json"
in_ns node1 nft flush set inet fqdnd fqdn4
expires=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%S.000Z)
cat > "$WORK/node1/pre.json" <<JSON
[{"endpoint": "192.0.2.2", "fqdn": "preloaded.k8s.intra.", "ips": ["203.0.113.5"],
  "lookup-time": "$(date -u +%Y-%m-%dT%H:%M:%S.000Z)", "expiration-time": "$expires", "ttl": 3600, "source": "lookup"}]
JSON
printf '[fqdn]\npre-cache = "%s/node1/pre.json"\n' "$WORK" >> "$WORK/node1/fqdnd.toml"
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1
check "pre-cache: its address is allowed at start, without any DNS" connects p1a 203.0.113.5 80
check "pre-cache: the cache shows it" bash -c "grep -q 'loaded 1 addresses from the pre-cache' $WORK/fqdnd-node1.log"
check_not "pre-cache: nothing else was opened" connects p1a 203.0.113.2 80

finish
