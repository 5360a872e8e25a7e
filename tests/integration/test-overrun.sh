#!/bin/bash
# Conntrack overruns: with a tiny event buffer and a burst of flows, events
# are lost (ENOBUFS); fqdnd grows the buffer, resyncs with a dump, counts
# the overrun, and its flow counts are true again.
. "$(dirname "$0")/lib.sh"

seed_topology
printf '203.0.113.2 echo.k8s.intra\n' > "$WORK/hosts"
dns_server "$WORK/hosts" || exit 1
echo_config node1 192.0.2.0/29
# The smallest buffer the kernel allows: a few events fill it.
start_fqdnd node1 "$WORK/node1/fqdnd.toml" --conntrack-buffer 1024 || exit 1
check "echo.k8s.intra resolves" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2

stats() { # the last stats line of node1's fqdnd, fresh
    kill -USR1 "$FQDND_PID_node1"; sleep 0.5
    grep 'stats:' "$WORK/fqdnd-node1.log" | tail -1
}
kernel_flows() { # flows the kernel tracks with fqdnd's flow bit (0x00400000) in their mark, not closing
    in_ns node1 cat /proc/net/nf_conntrack | grep -vE 'TIME_WAIT|CLOSE|FIN_WAIT|LAST_ACK' \
        | sed -n 's/.* mark=\([0-9]*\) .*/\1/p' | awk 'int($1 / 4194304) % 2 == 1 { n++ } END { print n + 0 }'
}

# 300 connections opened at once and held.
ip netns exec "$(ns p1a)" python3 - "$TESTS_DIR" <<'PY' > "$WORK/burst.out" &
import socket, sys, time
socks = []
for _ in range(300):
    try:
        s = socket.create_connection(("203.0.113.2", 8080), timeout=2)
        s.sendall(b"hi\n")
        socks.append(s)
    except OSError:
        pass
print(len(socks), flush=True)
time.sleep(8)
PY
burst=$!
for i in $(seq 1 40); do [ -s "$WORK/burst.out" ] && break; sleep 0.2; done
sleep 1.5
line=$(stats)
overruns=$(sed -n 's/.*conntrack overruns \([0-9]*\).*/\1/p' <<<"$line")
live=$(sed -n 's/.*live flows \([0-9]*\).*/\1/p' <<<"$line")
kernel=$(kernel_flows)
echo "     $(cat "$WORK/burst.out") connections held; overruns $overruns; fqdnd counts $live live flows, the kernel $kernel"
check "the burst overran the tiny buffer (ENOBUFS counted)" test "${overruns:-0}" -gt 0
check "after the resync fqdnd's count is the kernel's" test "$live" = "$kernel" -a "$kernel" -ge 300
check "the buffer grew" grep -q "receive buffer now" "$WORK/fqdnd-node1.log"
kill "$burst"; wait "$burst" 2>/dev/null
sleep 2
line=$(stats)
live=$(sed -n 's/.*live flows \([0-9]*\).*/\1/p' <<<"$line")
check "all closed: fqdnd counts what the kernel still tracks ($(kernel_flows))" test "$live" = "$(kernel_flows)"

finish
