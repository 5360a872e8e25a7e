#!/bin/bash
# Lazy kernel renewals (attack-15): an answer that only extends a mapping
# whose kernel element still holds more than half of its grant writes
# nothing, and "a deadline renews it at half the grant". That deadline must
# be armed even when the round that deferred it wrote nothing: otherwise
# the expiry timer stays where it was (the mapping's old expiry, which is
# the kernel element's own), the renewal is written only as the element
# times out, and for that moment (timer slack, a busy fqdnd) connections
# to an address whose mapping is valid fail.
. "$(dirname "$0")/lib.sh"

seed_topology
printf '203.0.113.2 echo.k8s.intra\n' > "$WORK/hosts"
DNS_TTL=40 dns_server "$WORK/hosts" || exit 1
echo_config node1 192.0.2.0/29 'min-ttl = 0'
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1

# kernel_left ADDR: seconds the kernel element of ADDR still has (the
# largest over the selectors that hold it), 0 when there is none.
kernel_left() {
    in_ns node1 nft -j list set inet fqdnd fqdn4 | python3 -c '
import json, sys
best = 0
for o in json.load(sys.stdin)["nftables"]:
    for e in o.get("set", {}).get("elem", []):
        if not (isinstance(e, dict) and "elem" in e):
            continue
        el = e["elem"]
        if el["val"]["concat"][2] == sys.argv[1]:
            best = max(best, el.get("expires", 0))
print(best)' "$1"
}

t0=$(date +%s)
check "an allowed name resolves (TTL 40)" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2
left=$(kernel_left 203.0.113.2)
echo "     kernel element after the first answer: ${left}s left"
check "the kernel holds it for about the TTL" test "${left:-0}" -ge 35
check "and it is open" connects p1a 203.0.113.2 80

# 12 s later: 28 s left of 40, more than half: the renewal is deferred,
# due when 20 s are left (t0+20), to t0+52.
sleep $((t0 + 12 - $(date +%s)))
check "12 s later it resolves again" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2
left=$(kernel_left 203.0.113.2)
echo "     kernel element after the second answer: ${left}s left (deferred)"

# At t0+24 the deferred renewal (due t0+20) must have been written: the
# kernel holds the address until about t0+52, ~28 s. Unrenewed it has ~16 s.
sleep $((t0 + 24 - $(date +%s)))
left=$(kernel_left 203.0.113.2)
echo "     kernel element at t0+24: ${left}s left"
check "the deferred renewal was written at half the grant (kernel element > 22 s left at t0+24)" \
    test "${left:-0}" -gt 22
check "and it is open" connects p1a 203.0.113.2 80
finish
