#!/bin/bash
# Connection-aware lifecycle: a mapping whose DNS data expired stays while
# its connections live (source connection), and goes once they closed and
# the grace period passed.
. "$(dirname "$0")/lib.sh"

seed_topology
# Closed TCP flows leave conntrack quickly here, so that the test need not
# wait out TIME_WAIT's two minutes.
for t in time_wait close fin_wait last_ack close_wait; do
    in_ns node1 sysctl -qw net.netfilter.nf_conntrack_tcp_timeout_$t=1
done
cat > "$WORK/hosts" <<'HOSTS'
203.0.113.2 short.k8s.intra
203.0.113.3 idle.k8s.intra
HOSTS
DNS_TTL=1 dns_server "$WORK/hosts" || exit 1
echo_config node1 192.0.2.0/29 'min-ttl = 1
idle-connection-grace-period = "1s"'
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1

cache_of() { # the cache lines of node1's fqdnd for NAME, now
    local before
    before=$(wc -l < "$WORK/fqdnd-node1.log")
    kill -USR1 "$FQDND_PID_node1"; sleep 0.3
    tail -n +"$((before + 1))" "$WORK/fqdnd-node1.log" | sed -n '/cache:/,/^$/p' | grep -F "$1"
}

check "short.k8s.intra resolves (TTL 1, min-ttl 1)" test "$(resolve p1a short.k8s.intra)" = 203.0.113.2
check "idle.k8s.intra resolves too" test "$(resolve p1a idle.k8s.intra)" = 203.0.113.3
ip netns exec "$(ns p1a)" python3 "$TESTS_DIR/tcp_hold.py" 203.0.113.2 8080 30 > "$WORK/hold.out" &
holder=$!
for i in $(seq 1 30); do grep -q connected "$WORK/hold.out" && break; sleep 0.1; done
check "a long connection to short.k8s.intra is open" grep -q connected "$WORK/hold.out"
sleep 2
check "after expiry the entry is connection-sourced" bash -c "$(declare -f cache_of); WORK=$WORK FQDND_PID_node1=$FQDND_PID_node1 cache_of short.k8s.intra | grep -q connection"
check "a second connection to the address succeeds" connects p1a 203.0.113.2 80
check "a pod on the same node may use it too" connects p1b 203.0.113.2 80
check_not "the name without connections is gone from the cache" bash -c "$(declare -f cache_of); WORK=$WORK FQDND_PID_node1=$FQDND_PID_node1 cache_of idle.k8s.intra"
check_not "and its address is denied" connects p1a 203.0.113.3 80

kill "$holder"; wait "$holder" 2>/dev/null
# Watch the cache, not the traffic: a probe connection would itself be a
# new flow and keep the address alive, as it should.
closed=$(date +%s%N); gone=""
for i in $(seq 1 25); do
    if ! (WORK=$WORK FQDND_PID_node1=$FQDND_PID_node1; cache_of short.k8s.intra) >/dev/null; then
        gone=$(( ($(date +%s%N) - closed) / 1000000 )); break
    fi
done
echo "     gone from the cache ${gone:-never} ms after the last connection closed (grace 1 s)"
check "all flows closed: gone from the cache within grace + 2 s" test -n "$gone" -a "${gone:-99999}" -le 3000
check_not "and the address is denied" connects p1a 203.0.113.2 80

finish
