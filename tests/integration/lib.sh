# Shared by the integration tests: network namespaces with unique names,
# removed on exit (also on failure), the daemon run inside them, checks that
# count, and a closing "N passed, N failed" line.
# Only documentation prefixes are used: 192.0.2.0/24, 198.51.100.0/24,
# 203.0.113.0/24, 2001:db8::/32.

set -u
FQDND=${FQDND:-$(dirname "$0")/../../build/daemon/fqdnd}
FQDNCTL=${FQDNCTL:-$(dirname "$0")/../../build/cli/fqdnctl}
TESTS_DIR=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: integration tests need root (network namespaces)"
    exit 77
fi

_id=$$-$RANDOM
NS_PREFIX="fq$(printf '%x' $RANDOM)"
WORK=$(mktemp -d /tmp/fqdnd-it.XXXXXX)
_namespaces=()
_pids=()
_passed=0
_failed=0

cleanup() {
    local pid
    for pid in "${_pids[@]}"; do
        kill -9 "$pid" 2>/dev/null
    done
    wait 2>/dev/null
    local ns
    for ns in "${_namespaces[@]}"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ns NAME: the full name of a test namespace.
ns() { echo "${NS_PREFIX}-$1"; }
in_ns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }

add_ns() {
    local n
    n=$(ns "$1")
    ip netns add "$n"
    _namespaces+=("$n")
    ip -n "$n" link set lo up
}

# link A B ADDR_A ADDR_B [ADDR6_A ADDR6_B]: a veth pair between two namespaces.
link() {
    local a=$1 b=$2
    ip link add "v-$b" netns "$(ns "$a")" type veth peer name "v-$a" netns "$(ns "$b")"
    ip -n "$(ns "$a")" addr add "$3" dev "v-$b"
    ip -n "$(ns "$b")" addr add "$4" dev "v-$a"
    if [ $# -ge 6 ]; then
        ip -n "$(ns "$a")" addr add "$5" dev "v-$b" nodad
        ip -n "$(ns "$b")" addr add "$6" dev "v-$a" nodad
    fi
    ip -n "$(ns "$a")" link set "v-$b" up
    ip -n "$(ns "$b")" link set "v-$a" up
}

# background NS CMD...: runs a command in a namespace, killed at exit.
background() {
    local n=$1; shift
    ip netns exec "$(ns "$n")" "$@" &
    _pids+=($!)
    LAST_PID=$!
}

# tcp_server NS PORT...: accepts and answers "ok" on every address.
tcp_server() {
    local n=$1; shift
    background "$n" python3 "$TESTS_DIR/tcp_server.py" "$@"
}

# connects NS ADDR PORT: true when a TCP connection is accepted and answered.
connects() {
    in_ns "$1" python3 "$TESTS_DIR/tcp_client.py" "$2" "$3" 2>/dev/null
}

# check "what" COMMAND...: the command must succeed; check_not: must fail.
# What the command prints is shown only when the check fails.
check() { _check 0 "$@"; }
check_not() { _check 1 "$@"; }
_check() {
    local want=$1 what=$2; shift 2
    local got=0
    "$@" >"$WORK/check.out" 2>&1 || got=1
    if [ "$got" = "$want" ]; then
        echo "ok   $what"; _passed=$((_passed + 1))
    else
        echo "FAIL $what"; _failed=$((_failed + 1))
        sed 's/^/     | /' "$WORK/check.out" | head -40
    fi
}

# start_fqdnd NS CONFIG [ARGS...]: runs the daemon, waits until its table
# is in place (bounded), and sets FQDND_PID.
start_fqdnd() {
    local n=$1 config=$2; shift 2
    ip netns exec "$(ns "$n")" "$FQDND" --config "$config" "$@" >>"$WORK/fqdnd.log" 2>&1 &
    FQDND_PID=$!
    _pids+=("$FQDND_PID")
    local i
    for i in $(seq 1 50); do
        if [ "$(grep -c 'ready:' "$WORK/fqdnd.log" 2>/dev/null)" -gt "${_readies:-0}" ]; then
            _readies=$(grep -c 'ready:' "$WORK/fqdnd.log")
            return 0
        fi
        if ! kill -0 "$FQDND_PID" 2>/dev/null; then
            echo "fqdnd exited early:"; cat "$WORK/fqdnd.log"; return 1
        fi
        sleep 0.1
    done
    echo "fqdnd did not get ready in 5 s"; cat "$WORK/fqdnd.log"; return 1
}

stop_fqdnd() {
    kill "$FQDND_PID" 2>/dev/null
    wait "$FQDND_PID" 2>/dev/null
}

# set_of NS PATTERN_COMMENT FAMILY: the name of the set whose comment is
# the selector (e.g. "match-pattern: *.k8s.intra."), 4 or 6.
set_of() {
    in_ns "$1" nft -j list sets inet 2>/dev/null | python3 -c '
import json, sys
comment, family = sys.argv[1], sys.argv[2]
for o in json.load(sys.stdin)["nftables"]:
    s = o.get("set")
    if s and s.get("comment") == comment and s["name"].startswith("fqdn" + family):
        print(s["name"])' "$2" "$3"
}

# router_topology: a router (where fqdnd runs) with clients c1 (192.0.2.2,
# 2001:db8:1::2), c2 (192.0.2.10) and c3 (192.0.2.18) behind it, and srv
# beyond it: 198.51.100.5 and 2001:db8:2::5 on the link, 203.0.113.{2,3,53,99}
# and 2001:db8:4::{2,99} behind it.
router_topology() {
    add_ns router; add_ns c1; add_ns c2; add_ns c3; add_ns srv
    link router c1 192.0.2.1/29 192.0.2.2/29 2001:db8:1::1/64 2001:db8:1::2/64
    link router c2 192.0.2.9/29 192.0.2.10/29
    link router c3 192.0.2.17/29 192.0.2.18/29
    link router srv 198.51.100.1/24 198.51.100.5/24 2001:db8:2::1/64 2001:db8:2::5/64
    in_ns c1 ip route add default via 192.0.2.1
    in_ns c1 ip -6 route add default via 2001:db8:1::1
    in_ns c2 ip route add default via 192.0.2.9
    in_ns c3 ip route add default via 192.0.2.17
    for a in 203.0.113.2 203.0.113.3 203.0.113.53 203.0.113.99; do in_ns srv ip addr add $a/32 dev lo; done
    for a in 2001:db8:4::2 2001:db8:4::99; do in_ns srv ip addr add $a/128 dev lo; done
    in_ns srv ip route add 192.0.2.0/24 via 198.51.100.1
    in_ns srv ip -6 route add 2001:db8:1::/64 via 2001:db8:2::1
    in_ns router ip route add 203.0.113.0/24 via 198.51.100.5
    in_ns router ip -6 route add 2001:db8:4::/64 via 2001:db8:2::5
    in_ns router sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
}

finish() {
    echo "$_passed passed, $_failed failed"
    [ "$_failed" = 0 ]
}
