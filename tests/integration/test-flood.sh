#!/bin/bash
# NFQUEUE flooded past its length while fqdnd is stalled (SIGSTOP): whatever
# fail-open says, what does not fit is dropped by the kernel and counted,
# never let through uninspected (fail-open is for when no fqdnd listens).
# fqdnd drains the queue when it runs again, gives every packet a verdict,
# and inspects and refuses as before. The flood asks names no rule allows:
# none of them may reach the server.
. "$(dirname "$0")/lib.sh"

seed_topology
printf '203.0.113.2 echo.k8s.intra\n' > "$WORK/hosts"
dns_server "$WORK/hosts" || exit 1
echo_config node1 192.0.2.0/29
sed -i 's|^dns = .*|dns = [{ match-pattern = "*.k8s.intra" }]|' "$WORK/node1/policy.d/echo.toml"

flood() { # COUNT queries from p1a as fast as they go, for names no rule allows
    in_ns p1a python3 -c '
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[1])):
    name = b"".join(bytes([len(l)]) + l for l in f"flood{i}.evil.example".encode().split(b"."))
    s.sendto(struct.pack("!HHHHHH", i & 0xffff, 0x0100, 1, 0, 0, 0) + name + b"\0\0\1\0\1", ("203.0.113.53", 53))
' "$1"
}

stat_of() { # a field of fqdnd's SIGUSR1 stats line
    local before
    before=$(wc -l < "$WORK/fqdnd-node1.log")
    kill -USR1 "$FQDND_PID_node1"; sleep 0.5
    tail -n +"$((before + 1))" "$WORK/fqdnd-node1.log" | grep -o "$1 [0-9]*" | tail -1 | awk '{print $NF}'
}

stall_and_flood() { # starts fqdnd, stops it, and sends 6000 queries
    start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1
    kill -STOP "$FQDND_PID_node1"
    flood 6000
}
resume() {
    kill -CONT "$FQDND_PID_node1"
    sleep 2
    check "fqdnd survives the flood" kill -0 "$FQDND_PID_node1"
}

leaked() { grep -c "evil.example" "$WORK/dnsmasq.log"; }

for mode in true false; do
    echo "-- fail-open = $mode: the overflow is dropped and counted"
    [ "$mode" = false ] && { stop_fqdnd; sed -i 's|^\[daemon\]|[daemon]\nfail-open = false|' "$WORK/node1/fqdnd.toml"; }
    : > "$WORK/dnsmasq.log"
    stall_and_flood
    check_not "while fqdnd is stalled and its queue full, DNS is dropped, not let through" \
        in_ns p1b dig +short +time=1 +tries=1 @203.0.113.53 echo.k8s.intra
    resume
    check "not one of the 6000 refused queries reached the server" test "$(leaked)" = 0
    packets=$(stat_of "queue packets")
    echo "     queued and inspected after the stall: $packets packets"
    check "it drained the full queue (4096) and more" test "${packets:-0}" -ge 4096
    dropped=$(stat_of "dropped by the kernel")
    echo "     dropped by the kernel while the queue was full: $dropped"
    check "the drops are counted (the kernel's count, in fqdnd's metrics)" test "${dropped:-0}" -gt 0
    check "then inspects as before: an allowed name opens its address" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2
    check "and it is open" connects p1a 203.0.113.2 80
    check "a name no rule allows is refused" test "$(dns_status p1a evil.example)" = REFUSED
done

echo "-- with no fqdnd at all, fail-open decides"
stop_fqdnd
check_not "fail-open = false: DNS is dropped" in_ns p1b dig +short +time=1 +tries=1 @203.0.113.53 echo.k8s.intra
sed -i '/^fail-open = false/d' "$WORK/node1/fqdnd.toml"
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1
stop_fqdnd
check "fail-open = true: DNS flows uninspected" test "$(resolve p1b echo.k8s.intra)" = 203.0.113.2

finish
