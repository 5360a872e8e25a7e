#!/bin/bash
# A reload to 1,000 policies with 10,000 FQDN selectors (20,000 sets), and
# back: how long each takes, with a stream of connections to an allowed
# name running across both; none may fail. Figures go to docs/benchmarks.md.
. "$(dirname "$0")/lib.sh"

policies=${SCALE_POLICIES:-1000}
per=${SCALE_SELECTORS_PER_POLICY:-10}

seed_topology
printf '203.0.113.2 echo.k8s.intra\n' > "$WORK/hosts"
dns_server "$WORK/hosts" || exit 1
echo_config node1 192.0.2.0/29
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1
check "echo.k8s.intra resolves" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2

reload_and_time() { # sends SIGHUP, waits for the reload to be logged; prints ms
    local before start i
    before=$(grep -c 'reloaded:' "$WORK/fqdnd-node1.log")
    start=$(date +%s%N)
    kill -HUP "$FQDND_PID_node1"
    for i in $(seq 1 1200); do
        [ "$(grep -c 'reloaded:' "$WORK/fqdnd-node1.log")" -gt "$before" ] && break
        grep -q 'reload refused\|reload failed' "$WORK/fqdnd-node1.log" && break
        sleep 0.05
    done
    echo $(( ($(date +%s%N) - start) / 1000000 ))
}

python3 - "$WORK/node1/policy.d" "$policies" "$per" <<'PY'
import sys
d, n, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for p in range(n):
    names = ", ".join(f'{{ match-name = "h{p}-{s}.scale.intra" }}' for s in range(per))
    with open(f"{d}/scale-{p:04d}.toml", "w") as f:
        f.write(f'[[policy]]\nname = "scale-{p}"\n[policy.selector]\nsources = ["192.0.2.0/29"]\n'
                f'[[policy.egress]]\nto-fqdns = [{names}]\nports = [{{ port = 443, protocol = "tcp" }}]\n')
PY
ip netns exec "$(ns p1a)" python3 "$TESTS_DIR/tcp_stream.py" 600 203.0.113.2:80 > "$WORK/stream" &
stream=$!
_pids+=("$stream")
sleep 0.5
up=$(reload_and_time)
sets=$(in_ns node1 nft list sets inet 2>/dev/null | grep -c '^\s*set fqdn')
lookups=$(in_ns node1 nft list table inet fqdnd 2>/dev/null | grep -c '@fqdn4 ')
rules=$(in_ns node1 nft -a list chain inet fqdnd forward 2>/dev/null | grep -c 'handle')
check "the reload to $policies policies was applied" grep -q "reloaded: $((policies + 2)) files, $((policies + 1)) policies" "$WORK/fqdnd-node1.log"
check "the kernel holds the two FQDN sets, whatever the number of selectors" test "$sets" = 2
check "and a rule looks up each selector's tag ($((policies * per + 1)))" test "$lookups" = $((policies * per + 1))
check "echo.k8s.intra's address is still open" connects p1a 203.0.113.2 80
check "a new answer is learned under the large ruleset" test "$(resolve p1b echo.k8s.intra)" = 203.0.113.2
rm "$WORK/node1/policy.d"/scale-*.toml
down=$(reload_and_time)
check "the reload back to one policy was applied" bash -c "grep 'reloaded:' '$WORK/fqdnd-node1.log' | tail -1 | grep -q '2 files, 1 policy,'"
kill "$stream"; wait "$stream" 2>/dev/null
read -r attempts failures failed < "$WORK/stream"
echo "     reload to $policies policies, $((policies * per)) selectors: $up ms ($sets sets, $rules rules in forward); back: $down ms"
echo "     stream across both reloads: $attempts connections, $failures failed $failed"
check "no connection failed across both reloads" test "$attempts" -gt 0 -a "$failures" = 0
check "fqdnd is still running" kill -0 "$FQDND_PID_node1"

[ "$_failed" = 0 ] || grep -v "^fqdnd: .*query" "$WORK/fqdnd-node1.log" | tail -8
finish
