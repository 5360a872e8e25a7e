#!/bin/bash
# Faults from the host: kill -9 at random moments under traffic, 20 times in
# a row; a storm of SIGHUP; a state directory that is full or cannot be
# made. After each, the ruleset, the sets and the cache agree, no allowed
# flow was denied and nothing else was allowed.
. "$(dirname "$0")/lib.sh"

full="$WORK/full"
trap 'umount "$full" 2>/dev/null; cleanup' EXIT

seed_two_names || exit 1
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1

check "echo.k8s.intra resolves" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2
check "other.k8s.intra resolves" test "$(resolve p1b other.k8s.intra)" = 203.0.113.3

# The selector's addresses, sorted, as the kernel holds them.
k8s_addresses() { set_addresses node1 "match-pattern: *.k8s.intra." 4; }
k8s_addresses > "$WORK/set-before"
check "the set holds both addresses" test "$(wc -l < "$WORK/set-before")" = 2

# kill -9 at random moments, under connections and DNS, 20 times.
in_ns p1a python3 "$TESTS_DIR/tcp_stream.py" 30 203.0.113.2:80 203.0.113.3:80 > "$WORK/stream" &
stream=$!
in_ns p1b bash -c 'for i in $(seq 1 300); do dig +short +time=1 +tries=1 @203.0.113.53 echo.k8s.intra >/dev/null; sleep 0.05; done' &
digs=$!
_pids+=("$stream" "$digs")
inconsistent=0 leaked=0 restarts=0
for round in $(seq 1 20); do
    sleep "0.$((RANDOM % 5))$((RANDOM % 10))"
    kill -9 "$FQDND_PID_node1"; wait "$FQDND_PID_node1" 2>/dev/null
    sleep "0.$((RANDOM % 3))"
    start_fqdnd node1 "$WORK/node1/fqdnd.toml" > /dev/null || break
    restarts=$((restarts + 1))
    k8s_addresses > "$WORK/set-now"
    diff -q "$WORK/set-before" "$WORK/set-now" > /dev/null || { inconsistent=$((inconsistent + 1)); diff "$WORK/set-before" "$WORK/set-now"; }
    connects p1a 203.0.113.99 80 && leaked=$((leaked + 1))
done
wait "$stream"
read -r attempts failures failed < "$WORK/stream"
echo "     $restarts kill -9 and restarts; stream: $attempts connections, $failures failed $failed"
check "fqdnd came back after each of 20 kill -9" test "$restarts" = 20
check "after each start the set held the same two addresses (none lost, none extra)" test "$inconsistent" = 0
check "no allowed connection failed across the 20 kills" test "$attempts" -gt 100 -a "$failures" = 0
check "nothing else was allowed after any start" test "$leaked" = 0
check "the ruleset is the one fqdnd builds (one table, its chains)" \
    bash -c "in_ns() { ip netns exec '$(ns node1)' \"\$@\"; }; [ \$(in_ns nft list tables | grep -c 'inet fqdnd') = 1 ] && in_ns nft list chain inet fqdnd forward >/dev/null 2>&1"
# The state file and the journals after it: what the next start reads.
check "the state directory still knows both names" \
    bash -c "cd '$WORK/node1/state' && cat cache.json cache.journal.* 2>/dev/null | grep -q echo.k8s.intra && cat cache.json cache.journal.* 2>/dev/null | grep -q other.k8s.intra"

# A storm of SIGHUP: every one handled, none fatal, traffic unharmed.
in_ns p1a python3 "$TESTS_DIR/tcp_stream.py" 3 203.0.113.2:80 > "$WORK/stream" &
stream=$!
for i in $(seq 1 300); do kill -HUP "$FQDND_PID_node1"; done
wait "$stream"
read -r attempts failures failed < "$WORK/stream"
check "fqdnd survives 300 SIGHUP in a row" kill -0 "$FQDND_PID_node1"
check "and kept allowing during the storm" test "$attempts" -gt 10 -a "$failures" = 0
check "each reload found nothing changed" grep -q 'reload: nothing changed' "$WORK/fqdnd-node1.log"
check_not "and denying" connects p1a 203.0.113.99 80

# The state directory full: logged, counted, enforcement goes on.
stop_fqdnd
mkdir -p "$full"
mount -t tmpfs -o size=64k tmpfs "$full"
dd if=/dev/zero of="$full/filler" bs=4k count=64 2>/dev/null
sed -i "s|^state-directory = .*|state-directory = \"$full\"|" "$WORK/node1/fqdnd.toml"
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1
check "a full state directory does not stop fqdnd" kill -0 "$FQDND_PID_node1"
check "a name still resolves and opens its address" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2
sleep 2.5
check "the failed write is logged" grep -q "cannot write the state file $full/cache.json" "$WORK/fqdnd-node1.log"
check "and counted" bash -c "kill -USR1 $FQDND_PID_node1; sleep 0.3; grep -q 'state write errors [1-9]' '$WORK/fqdnd-node1.log'"
check "enforcement goes on: allowed" connects p1a 203.0.113.2 80
check_not "enforcement goes on: denied" connects p1a 203.0.113.99 80

# A state directory that cannot be made (its parent is a file).
stop_fqdnd
umount "$full"
touch "$WORK/not-a-directory"
sed -i "s|^state-directory = .*|state-directory = \"$WORK/not-a-directory/state\"|" "$WORK/node1/fqdnd.toml"
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1
check "an unmakeable state directory does not stop fqdnd" kill -0 "$FQDND_PID_node1"
check "it resolves and allows" bash -c "[ \"\$(ip netns exec '$(ns p1a)' dig +short +time=2 +tries=1 @203.0.113.53 other.k8s.intra)\" = 203.0.113.3 ]"
check "and allows the answer's address" connects p1a 203.0.113.3 80

finish
