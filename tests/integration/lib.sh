# Shared by the integration tests: network namespaces with unique names,
# removed on exit (also on failure), the daemon run inside them, checks that
# count, and a closing "N passed, N failed" line.
# Only documentation prefixes are used: 192.0.2.0/24, 198.51.100.0/24,
# 203.0.113.0/24, 2001:db8::/32.

set -u
TESTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FQDND=${FQDND:-$TESTS_DIR/../../build/daemon/fqdnd}
FQDNCTL=${FQDNCTL:-$TESTS_DIR/../../build/cli/fqdnctl}

if [ "$(id -u)" != 0 ]; then
    echo "SKIP: integration tests need root (network namespaces)"
    exit 77
fi

_id=$$-$RANDOM
NS_PREFIX="fq$(printf '%x' $RANDOM)"
WORK=$(mktemp -d /tmp/fqdnd-it.XXXXXX)
_namespaces=()
_pids=()
_fqdnd_pids=()
_passed=0
_failed=0

cleanup() {
    local pid i
    # fqdnd first, with SIGTERM: it exits as in production (the queue
    # drained, the state saved), and a sanitizer build checks for leaks.
    for pid in "${_fqdnd_pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null
    done
    for i in $(seq 1 50); do
        for pid in "${_fqdnd_pids[@]}"; do
            kill -0 "$pid" 2>/dev/null && break
        done
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
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
    # Interfaces made from now on use their link-local addresses at once:
    # while one is tentative (duplicate address detection, a second or
    # two) the neighbour discovery that the first IPv6 packets need fails
    # (a check right after the topology came up would flap).
    ip netns exec "$n" sysctl -qw net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0
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

# eventually SECONDS COMMAND...: COMMAND succeeds within SECONDS (polled; the
# last try's output is shown).
eventually() {
    local end=$((SECONDS + $1)); shift
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -ge "$end" ] && { "$@"; return 1; }
        sleep 0.1
    done
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

# start_fqdnd NS CONFIG [ARGS...]: runs the daemon in NS, logging to
# $WORK/fqdnd-NS.log, waits until it is ready (bounded), and sets FQDND_PID
# (and FQDND_PID_NS).
start_fqdnd() {
    local n=$1 config=$2; shift 2
    local log="$WORK/fqdnd-$n.log"
    local before
    before=$(grep -c 'ready:' "$log" 2>/dev/null)
    # ip netns exec mounts a sysfs of the namespace's own, without the
    # cgroup hierarchy; KEEP_MOUNTS=1 enters the network namespace alone.
    local enter=(ip netns exec "$(ns "$n")")
    [ -n "${KEEP_MOUNTS:-}" ] && enter=(nsenter --net="/run/netns/$(ns "$n")")
    "${enter[@]}" "$FQDND" --config "$config" "$@" >>"$log" 2>&1 &
    FQDND_PID=$!
    eval "FQDND_PID_$n=$FQDND_PID"
    _pids+=("$FQDND_PID")
    _fqdnd_pids+=("$FQDND_PID")
    local i
    for i in $(seq 1 50); do
        if [ "$(grep -c 'ready:' "$log" 2>/dev/null)" -gt "${before:-0}" ]; then
            return 0
        fi
        if ! kill -0 "$FQDND_PID" 2>/dev/null; then
            echo "fqdnd exited early:"; cat "$log"; return 1
        fi
        sleep 0.1
    done
    echo "fqdnd did not get ready in 5 s"; cat "$log"; return 1
}

stop_fqdnd() {
    kill "$FQDND_PID" 2>/dev/null
    wait "$FQDND_PID" 2>/dev/null
}

# tag_of SELECTOR: the tag of an FQDN selector (e.g. "match-pattern:
# *.k8s.intra.") as nft prints it in the elements of the fqdn4 and fqdn6
# sets, "0x812a0c7f . 0x411d30e5": FNV-1a of the text, as fqdnd makes it.
tag_of() {
    python3 -c '
import sys
h = 1469598103934665603
for c in sys.argv[1].encode():
    h = ((h ^ c) * 1099511628211) % (1 << 64)
print("0x%08x . 0x%08x" % (h >> 32, h & 0xffffffff))' "$1"
}

# table_back NS TRIES: the milliseconds until fqdnd's table (its forward
# chain) is listed in NS, polled every 50 ms, or nothing after TRIES polls.
table_back() {
    local start i
    start=$(date +%s%N)
    for i in $(seq 1 "$2"); do
        if in_ns "$1" nft list chain inet fqdnd forward >/dev/null 2>&1; then
            echo $(( ($(date +%s%N) - start) / 1000000 ))
            return
        fi
        sleep 0.05
    done
}

# set_addresses NS SELECTOR FAMILY: the addresses the kernel holds for the
# selector in fqdn4 or fqdn6, one per line, sorted.
set_addresses() {
    in_ns "$1" nft -j list set inet fqdnd "fqdn$3" | python3 -c '
import json, sys
tag = [int(x, 16) for x in sys.argv[1].split(" . ")]
for o in json.load(sys.stdin)["nftables"]:
    for e in o.get("set", {}).get("elem", []):
        v = e["elem"]["val"] if isinstance(e, dict) and "elem" in e else e
        parts = v["concat"]
        if [int(str(p), 0) for p in parts[:2]] == tag:
            print(parts[2])' "$(tag_of "$2")" | sort
}

# pre_cache FILE "ENDPOINT NAME ADDRESS..." ...: a pre-cache file (the state
# file's format) in which each ENDPOINT looked NAME up just now, valid for an
# hour: how a test puts addresses in fqdnd's sets without DNS. (Elements
# added with `nft add element` while fqdnd runs are removed: nothing
# explains them.)
pre_cache() {
    local file=$1; shift
    python3 - "$@" > "$file" <<'PY'
import datetime, json, sys
now = datetime.datetime.now(datetime.timezone.utc)
fmt = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S.000Z")
rows = []
for entry in sys.argv[1:]:
    endpoint, name, *ips = entry.split()
    rows.append({"endpoint": endpoint, "fqdn": name, "ips": ips, "lookup-time": fmt(now),
                 "expiration-time": fmt(now + datetime.timedelta(hours=1)), "ttl": 3600, "source": "lookup"})
print(json.dumps(rows))
PY
}

# seed_two_names: the seed topology, a DNS server with echo.k8s.intra
# (203.0.113.2) and other.k8s.intra (203.0.113.3), and node1's config for
# the echo policy over 192.0.2.0/29.
seed_two_names() {
    seed_topology
    printf '203.0.113.2 echo.k8s.intra\n203.0.113.3 other.k8s.intra\n' > "$WORK/hosts"
    dns_server "$WORK/hosts" || return 1
    echo_config node1 192.0.2.0/29
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

# check_forged_answers NS: in the seed topology, a query from NS
# (192.0.2.2) to 203.0.113.54 (allowed, no server runs there) is seen by
# fqdnd; answers forged in a server's name must match it exactly (id,
# question, port, server, client) to open 203.0.113.7, and the one that
# does opens it. Each forged answer must have been sent for the check to
# mean anything.
check_forged_answers() {
    local n=$1 querier sent=0
    forge() { in_ns svc python3 "$TESTS_DIR/dns_forge.py" answer "$@" && sent=$((sent + 1)); }
    in_ns "$n" python3 "$TESTS_DIR/dns_forge.py" query 203.0.113.54 41000 4242 forged.k8s.intra > "$WORK/querier.out" &
    querier=$!
    sleep 0.5
    forge 203.0.113.54 192.0.2.2 41000 4243 forged.k8s.intra 203.0.113.7
    forge 203.0.113.54 192.0.2.2 41000 4242 other.k8s.intra 203.0.113.7
    forge 203.0.113.54 192.0.2.2 41001 4242 forged.k8s.intra 203.0.113.7
    forge 203.0.113.53 192.0.2.2 41000 4242 forged.k8s.intra 203.0.113.7
    forge 203.0.113.54 192.0.2.3 41000 4242 forged.k8s.intra 203.0.113.7
    sleep 0.3
    check "five forged answers were sent" test "$sent" -eq 5
    check_not "forged answers (wrong id, question, port, server, client) open nothing" connects "$n" 203.0.113.7 80
    forge 203.0.113.54 192.0.2.2 41000 4242 forged.k8s.intra 203.0.113.7
    wait "$querier"
    check "the one answer that matches the query does (control)" test "$sent" -eq 6
    check "and opens its address" connects "$n" 203.0.113.7 80
    # Those on the query's own flow (wrong id, wrong question) answer no
    # query fqdnd saw: dropped, not handed to the client. (The one from
    # another server is no answer on a DNS flow: fqdnd leaves it alone.)
    check "on the query's flow the client got the matching answer alone ($(paste -sd, "$WORK/querier.out"))" \
        test "$(grep ' 203.0.113.54 ' "$WORK/querier.out")" = "4242 203.0.113.54 forged.k8s.intra"
}

finish() {
    echo "$_passed passed, $_failed failed"
    [ "$_failed" = 0 ]
}

# seed_topology: the write-up's cluster on plain Linux. Two nodes (routers
# where fqdnd runs): node1 with pods p1a (192.0.2.2, 2001:db8:1::2) and p1b
# (192.0.2.3) on a bridge, node2 with pod p2a (192.0.2.10). Beyond them svc:
# the DNS server 203.0.113.53 (dnsmasq, the seed's CoreDNS) and the echo
# servers 203.0.113.2 and .3 (and more, for the tests), 2001:db8:4::/64.
seed_topology() {
    add_ns node1; add_ns node2; add_ns p1a; add_ns p1b; add_ns p2a; add_ns svc
    ip -n "$(ns node1)" link add br0 type bridge
    ip -n "$(ns node1)" addr add 192.0.2.1/29 dev br0
    ip -n "$(ns node1)" addr add 2001:db8:1::1/64 dev br0 nodad
    ip -n "$(ns node1)" link set br0 up
    local pod addr
    for pod in p1a:192.0.2.2 p1b:192.0.2.3; do
        addr=${pod#*:}; pod=${pod%%:*}
        ip link add "v-node1" netns "$(ns "$pod")" type veth peer name "v-$pod" netns "$(ns node1)"
        ip -n "$(ns node1)" link set "v-$pod" master br0 up
        ip -n "$(ns "$pod")" addr add "$addr/29" dev v-node1
        ip -n "$(ns "$pod")" link set v-node1 up
        ip -n "$(ns "$pod")" route add default via 192.0.2.1
    done
    ip -n "$(ns p1a)" addr add 2001:db8:1::2/64 dev v-node1 nodad
    ip -n "$(ns p1a)" -6 route add default via 2001:db8:1::1
    link node2 p2a 192.0.2.9/29 192.0.2.10/29
    in_ns p2a ip route add default via 192.0.2.9
    link node1 svc 198.51.100.1/30 198.51.100.2/30 2001:db8:2::1/64 2001:db8:2::2/64
    link node2 svc 198.51.100.5/30 198.51.100.6/30
    local a
    for a in 2 3 4 5 6 7 53 54; do in_ns svc ip addr add 203.0.113.$a/32 dev lo; done
    for a in 2 3 53; do in_ns svc ip addr add 2001:db8:4::$a/128 dev lo; done
    in_ns svc ip route add 192.0.2.0/29 via 198.51.100.1
    in_ns svc ip route add 192.0.2.8/29 via 198.51.100.5
    in_ns svc ip -6 route add 2001:db8:1::/64 via 2001:db8:2::1
    in_ns node1 ip route add 203.0.113.0/24 via 198.51.100.2
    in_ns node1 ip -6 route add 2001:db8:4::/64 via 2001:db8:2::2
    in_ns node2 ip route add 203.0.113.0/24 via 198.51.100.6
    in_ns node1 sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    in_ns node2 sysctl -qw net.ipv4.ip_forward=1
    tcp_server svc 80 hold:8080
}

# dns_server HOSTS_FILE [DNSMASQ_ARGS...]: dnsmasq on 203.0.113.53 and
# 2001:db8:4::53 in svc,
# answering from HOSTS_FILE with TTL 30 (as the seed's CoreDNS), logging
# every query to $WORK/dnsmasq.log. SIGHUP ($DNSMASQ_PID) rereads the file.
dns_server() {
    local hosts=$1; shift
    : > "$WORK/dnsmasq.log"
    background svc dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$hosts" \
        --listen-address=203.0.113.53 --listen-address=2001:db8:4::53 --bind-interfaces --local-ttl="${DNS_TTL:-30}" --user=root \
        --log-queries=extra --log-facility="$WORK/dnsmasq.log" --pid-file= "$@"
    DNSMASQ_PID=$LAST_PID
    local i
    for i in $(seq 1 50); do
        in_ns svc dig +short +time=1 +tries=1 @203.0.113.53 localhost.invalid >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "dnsmasq did not answer"; return 1
}

# resolve NS NAME [DIG_ARGS...]: the addresses dig gets from 203.0.113.53.
resolve() {
    local n=$1 name=$2; shift 2
    in_ns "$n" dig +short +time=2 +tries=1 @203.0.113.53 "$name" "$@" | grep -v '\.$'
}

# dns_status NS NAME [DIG_ARGS...]: the answer's status (NOERROR, REFUSED...).
dns_status() {
    local n=$1 name=$2; shift 2
    in_ns "$n" dig +time=2 +tries=1 @203.0.113.53 "$name" "$@" | sed -n 's/.*status: \([A-Z]*\).*/\1/p'
}

# private_bus [NAME]: a dbus-daemon of the test's own (there is no system
# bus here), permissive at the bus level so that fqdnd's own checks of the
# caller are what is tested; exports DBUS_SYSTEM_BUS_ADDRESS (and sets
# BUS_NAME to it, for a bus per node).
private_bus() {
    local socket="$WORK/bus${1:+-$1}"
    cat > "$WORK/bus.conf" <<XML
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=$socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="org.fqdnd1"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
</busconfig>
XML
    chmod 755 "$WORK" # other users' fqdnctl must reach the socket
    dbus-daemon --config-file="$WORK/bus.conf" --nofork --nopidfile 2>/dev/null &
    _pids+=($!)
    BUS_PID=$!
    export DBUS_SYSTEM_BUS_ADDRESS="unix:path=$socket"
    [ -n "${1:-}" ] && eval "BUS_$1=unix:path=$socket"
    local i
    for i in $(seq 1 50); do [ -S "$socket" ] && return 0; sleep 0.1; done
    echo "dbus-daemon did not start"; return 1
}

# echo_config NODE SOURCES [FQDN_SETTINGS]: $WORK/NODE/fqdnd.toml (with the
# given [fqdn] lines) and the seed's policy "echo" for SOURCES: *.k8s.intra
# opened, DNS to 203.0.113.53 for any name.
echo_config() {
    local node=$1 sources=$2 fqdn=${3:-}
    mkdir -p "$WORK/$node/policy.d"
    printf '[daemon]\nstate-directory = "%s/%s/state"\n' "$WORK" "$node" > "$WORK/$node/fqdnd.toml"
    [ -n "$fqdn" ] && printf '[fqdn]\n%s\n' "$fqdn" >> "$WORK/$node/fqdnd.toml"
    cat > "$WORK/$node/policy.d/echo.toml" <<TOML
[[policy]]
name = "echo"
[policy.selector]
sources = ["$sources"]
[[policy.egress]]
to-fqdns = [{ match-pattern = "*.k8s.intra" }]
[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
dns = [{ match-pattern = "*" }]
TOML
}
