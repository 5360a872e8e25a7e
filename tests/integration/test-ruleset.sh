#!/bin/bash
# The ruleset in the kernel, checked by what packets do: a router namespace
# with fqdnd, clients behind it, servers beyond it.
. "$(dirname "$0")/lib.sh"

router_topology
tcp_server srv 80 443 53

mkdir -p "$WORK/policy.d"
printf '[daemon]\nstate-directory = "%s/state"\n[fqdn]\npre-cache = "%s/pre.json"\n' "$WORK" "$WORK" > "$WORK/fqdnd.toml"
# What the FQDN sets hold: as if c1 had looked the names up.
pre_cache "$WORK/pre.json" "192.0.2.2 echo.k8s.intra 203.0.113.2 2001:db8:4::2" "192.0.2.2 api.github.com 203.0.113.3"
cat > "$WORK/policy.d/echo.toml" <<'TOML'
[[policy]]
name = "echo"
[policy.selector]
sources = ["192.0.2.0/29", "2001:db8:1::/64"]
[[policy.egress]]
to-fqdns = [{ match-pattern = "*.k8s.intra" }]
[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
dns = [{ match-pattern = "*" }]
[[policy.egress]]
to-fqdns = [{ match-name = "api.github.com" }]
ports = [{ port = 443, protocol = "tcp" }]
[[policy.egress]]
to-cidrs = ["198.51.100.0/24"]
TOML
cat > "$WORK/policy.d/more.toml" <<'TOML'
[[policy]]
name = "audited"
audit = true
[policy.selector]
sources = ["192.0.2.16/29"]
[[policy.egress]]
to-cidrs = ["198.51.100.0/24"]

[[policy]]
name = "nobody"
[policy.selector]
users = ["nobody"]
[[policy.egress]]
to-cidrs = ["198.51.100.0/24"]
TOML

start_fqdnd router "$WORK/fqdnd.toml" || exit 1
check "the FQDN sets hold each address under its selector's tag" test "$(set_addresses router "match-pattern: *.k8s.intra." 4) $(set_addresses router "match-pattern: *.k8s.intra." 6) $(set_addresses router "match-name: api.github.com." 4)" = "203.0.113.2 2001:db8:4::2 203.0.113.3"

check_not "selected client is denied an unknown address" connects c1 203.0.113.99 80
check "selected client reaches a to-cidrs address" connects c1 198.51.100.5 80
check_not "selected client is denied DNS to a server no rule lists, even inside to-cidrs" connects c1 198.51.100.5 53
check "selected client reaches an address of an FQDN set" connects c1 203.0.113.2 80
check "a port-limited FQDN rule allows its port" connects c1 203.0.113.3 443
check_not "a port-limited FQDN rule denies other ports" connects c1 203.0.113.3 80
check "IPv6: allowed where the set holds the address" connects c1 2001:db8:4::2 80
check_not "IPv6: other addresses stay denied" connects c1 2001:db8:4::99 80
check "an unselected client is untouched" connects c2 203.0.113.99 80
check "the router's own traffic is untouched" connects router 203.0.113.99 80
check_not "a local process of a selected user is denied" \
    in_ns router setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/bin/python3 "$TESTS_DIR/tcp_client.py" 203.0.113.99 80
check "a local process of a selected user reaches its to-cidrs" \
    in_ns router setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/bin/python3 "$TESTS_DIR/tcp_client.py" 198.51.100.5 80
check "an audited client is not dropped" connects c3 203.0.113.99 80
audit_packets=$(in_ns router nft -j list chain inet fqdnd forward | python3 -c '
import json, sys
for o in json.load(sys.stdin)["nftables"]:
    r = o.get("rule")
    if r and r.get("comment", "").endswith("(audit): would drop"):
        print(sum(e["counter"]["packets"] for e in r["expr"] if "counter" in e))')
check "an audited client's would-be drop is counted" test "${audit_packets:-0}" -gt 0
in_ns router nft list chain inet fqdnd forward > "$WORK/forward.txt" 2>&1
check "and logged to fqdnd's NFLOG group through the shared limit" \
    grep -q 'limit name "drop_log" log prefix "fqdnd audit audited" group 5300' "$WORK/forward.txt"

in_ns router nft -j list table inet fqdnd | python3 "$TESTS_DIR/nft_normalize.py" > "$WORK/ruleset.json"
if [ -n "${FQDND_UPDATE_EXPECTED:-}" ]; then cp "$WORK/ruleset.json" "$TESTS_DIR/expected/ruleset-echo.json"; fi
check "the kernel holds the expected ruleset" diff -u "$TESTS_DIR/expected/ruleset-echo.json" "$WORK/ruleset.json"

finish
