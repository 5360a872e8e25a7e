#!/bin/bash
# A pod floods fqdnd's cache with names: a wildcard domain answered for
# every name it asks (dnsmasq --address), 400 distinct names. With
# max-names = 100 the cache stays at its bound, evicts the mappings that
# expire soonest (the oldest here), counts it, and the kernel's set holds
# no more than the cache; the last answers are allowed as always.
. "$(dirname "$0")/lib.sh"

seed_topology
printf '203.0.113.2 echo.k8s.intra\n' > "$WORK/hosts"
dns_server "$WORK/hosts" --address=/flood.k8s.intra/203.0.113.5 || exit 1
private_bus || exit 1
echo_config node1 192.0.2.0/29 'max-names = 100'
sed -i 's|^to-fqdns = .*|to-fqdns = [{ match-pattern = "*.k8s.intra" }, { match-pattern = "*.flood.k8s.intra" }]|' \
    "$WORK/node1/policy.d/echo.toml"
start_fqdnd node1 "$WORK/node1/fqdnd.toml" || exit 1
for i in $(seq 1 30); do "$FQDNCTL" status >/dev/null 2>&1 && break; sleep 0.1; done

# 400 queries from one socket, each answered before the next is sent.
in_ns p1a python3 - <<'PY'
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for i in range(400):
    name = b"".join(bytes([len(l)]) + l for l in f"n{i}.flood.k8s.intra".encode().split(b"."))
    s.sendto(struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0) + name + b"\0\0\1\0\1", ("203.0.113.53", 53))
    try:
        s.recvfrom(4096)
    except OSError:
        pass
PY

names=$("$FQDNCTL" status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["names"])')
echo "     names in the cache after 400: $names"
check "the cache holds no more names than max-names" test "$names" -le 100
check "and is full to it" test "$names" -ge 99
evicted=$("$FQDNCTL" metrics | awk '$1 == "fqdnd_cache_evictions_total" {print $2}')
echo "     evictions: $evicted"
check "evictions are counted" test "${evicted:-0}" -ge 300
check "the newest name stays" bash -c "'$FQDNCTL' cache list | grep -q 'n399.flood.k8s.intra'"
check_not "the oldest went first" bash -c "'$FQDNCTL' cache list | grep -q ' n0.flood.k8s.intra'"
check "the address the kept names share is still in the set" \
    bash -c "ip netns exec '$(ns node1)' nft list set inet fqdnd fqdn4 | grep -q 203.0.113.5"
check "and allowed" connects p1a 203.0.113.5 80
check "a name asked now is learned and allowed" test "$(resolve p1a echo.k8s.intra)" = 203.0.113.2
check "and connects" connects p1a 203.0.113.2 80
finish
