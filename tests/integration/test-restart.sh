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
# Each answer is in the journal before its client has it; the snapshot
# waits until the journal has grown as large as the last one, or a minute.
check "the journal holds both names" \
    bash -c "grep -q echo.k8s.intra $WORK/node1/state/cache.journal.* && grep -q other.k8s.intra $WORK/node1/state/cache.journal.*"
sleep 2.5
check "the state file does not yet: two answers do not pay for a snapshot" test ! -e "$WORK/node1/state/cache.json"

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
check "the cache came back the same from the journal" diff "$WORK/before" "$WORK/after"
check "the journals replayed are soon in a state file" \
    bash -c "sleep 2.5; grep -q echo.k8s.intra $WORK/node1/state/cache.json && grep -q other.k8s.intra $WORK/node1/state/cache.json"
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

# A crash right after an answer loses nothing: each answer is in the
# journal before the client gets it, and the state file is still seconds
# away.
check "a name answered just before kill -9" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2
kill -9 "$FQDND_PID_node1"; wait "$FQDND_PID_node1" 2>/dev/null
check "the state file did not have it yet" bash -c "! grep -q echo.k8s.intra $WORK/node1/state/cache.json 2>/dev/null"
logged_before=$(wc -l < "$WORK/fqdnd-node1.log")
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1
check "after restart the cache has it, from the journal" bash -c "grep -q 'replayed the journal .*: 1 answers' $WORK/fqdnd-node1.log"
cache_rows > "$WORK/after-crash"
check "the cache lists it" grep -q 'echo.k8s.intra' "$WORK/after-crash"
check "and allows it" connects p1a 203.0.113.2 80
check "the kernel's element is explained: nothing removed at start" \
    bash -c "! tail -n +$((logged_before + 1)) $WORK/fqdnd-node1.log | grep 'the state does not explain it'"
check "the journals replayed are gone once a state file holds them" \
    bash -c "sleep 3; test \$(ls $WORK/node1/state | grep -c '^cache.journal.') = 1 && grep -q echo.k8s.intra $WORK/node1/state/cache.json"

# An element of fqdnd's sets that nothing fqdnd knows explains (put there
# while it was down) is removed at start, and said so.
stop_fqdnd
in_ns node1 nft add element inet fqdnd fqdn4 "{ $(tag_of 'match-pattern: *.k8s.intra.') . 203.0.113.77 timeout 1h }"
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1
check "an unexplained element is logged with what is known of it" \
    grep -q 'removing 203.0.113.77 from set fqdn4 (selector match-pattern: \*.k8s.intra., [0-9]* s left in the kernel, no name in the cache): the state does not explain it' "$WORK/fqdnd-node1.log"
in_set() { set_addresses node1 'match-pattern: *.k8s.intra.' 4 | grep -qx "$1"; }
check_not "and removed from the set" in_set 203.0.113.77
check "what the state explains stays" in_set 203.0.113.2

# The journal is open in the state directory: moving it waits for a restart.
sed -i "s|^state-directory = .*|state-directory = \"$WORK/node1/state2\"|" "$WORK/node1/fqdnd.toml"
kill -HUP "$FQDND_PID_node1"; sleep 0.5
check "a reload that moves the state directory is refused" grep -q "state-directory changes only at a restart" "$WORK/fqdnd-node1.log"
check "and the answers go on to the running journal" test "$(resolve p1b other.k8s.intra)" = 203.0.113.3
check "in the state directory fqdnd started with" bash -c "grep -q other.k8s.intra $WORK/node1/state/cache.journal.* $WORK/node1/state/cache.json"

finish
