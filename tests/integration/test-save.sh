#!/bin/bash
# A host that saves its ruleset (`nft list ruleset > /etc/nftables.conf`)
# must be able to load it back. fqdnd's table, listed by nft, parses and
# loads (`nft -c -f`, then for real in a fresh namespace, where it lists the
# same again); and the command README and fqdnd(8) give to save the host's
# ruleset without fqdnd's table works, with other tables present.
. "$(dirname "$0")/lib.sh"

add_ns host
add_ns fresh
add_ns fresh2

# Every kind of match and statement fqdnd emits, but a unit's cgroup.
mkdir -p "$WORK/policy.d"
printf '[daemon]\nstate-directory = "%s/state"\nqueues = 2\n[fqdn]\npre-cache = "%s/pre.json"\n' "$WORK" "$WORK" > "$WORK/fqdnd.toml"
# Elements in both FQDN sets, as if looked up.
pre_cache "$WORK/pre.json" "192.0.2.2 echo.k8s.intra 203.0.113.2" "192.0.2.2 api.github.com 2001:db8:4::2"
cat > "$WORK/policy.d/save.toml" <<'TOML'
[[policy]]
name = "pods"
[policy.selector]
sources = ["192.0.2.0/29", "192.0.2.64/26", "2001:db8:1::/64"]
interfaces = ["veth*", "wg0"]
[[policy.egress]]
to-fqdns = [{ match-pattern = "*.k8s.intra" }, { match-name = "api.github.com" }]
[[policy.egress]]
to-fqdns = [{ match-name = "mail.example" }]
ports = [{ port = 25, protocol = "tcp" }, { port = 587, protocol = "tcp" }, { port = 443, protocol = "any" }]
[[policy.egress]]
to-dns-servers = ["203.0.113.53", "203.0.113.54", "2001:db8:4::53"]
dns = [{ match-pattern = "*" }]
ports = [{ port = 53, protocol = "any" }, { port = 5353, protocol = "udp" }]
[[policy.egress]]
to-cidrs = ["198.51.100.0/24", "203.0.113.128/25", "2001:db8:9::/48"]

[[policy]]
name = "audited"
audit = true
[policy.selector]
users = ["nobody"]
groups = ["nogroup"]
[[policy.egress]]
to-cidrs = ["198.51.100.7/32"]
TOML

start_fqdnd host "$WORK/fqdnd.toml" || exit 1
check "both FQDN sets hold an element" test "$(set_addresses host "match-pattern: *.k8s.intra." 4) $(set_addresses host "match-name: api.github.com." 6)" = "203.0.113.2 2001:db8:4::2"

# The listing without what changes by the second (counters, expiries).
stable() { sed -E 's/packets [0-9]+ bytes [0-9]+/packets 0 bytes 0/g; s/ expires [0-9a-z]+//g'; }

# The queue statement in either form nft has listed it: `queue num
# 5300-5301 bypass`, or `queue flags bypass to 5300-5301`.
queue_statement='(^|[[:space:]])queue( flags [a-z,]+)? (num|to) [0-9]'
if grep -q 'NFQUEUE: native' "$WORK/fqdnd-host.log"; then
    what="the full listing (this kernel has the native queue expression)"
    in_ns host nft list table inet fqdnd > "$WORK/fqdnd.nft"
    check "the listing queues DNS with the native queue statement" grep -Eq "$queue_statement" "$WORK/fqdnd.nft"
else
    # nft cannot print the xtables NFQUEUE target in an inet table: its
    # rules list without their queue, and would load as rules that queue
    # nothing. Check the table without them, deleted by handle (fqdnd
    # stopped first: it would put them back).
    what="the listing without its queue rules (this kernel has only the xtables NFQUEUE target)"
    in_ns host nft list table inet fqdnd > "$WORK/full.nft" 2>/dev/null
    check_not "the full listing has lost its queue statements (why they are left out)" grep -Eq "$queue_statement" "$WORK/full.nft"
    stop_fqdnd
    in_ns host nft -j -a list table inet fqdnd | python3 -c '
import json, sys
for o in json.load(sys.stdin)["nftables"]:
    r = o.get("rule")
    if r and any("xt" in e or "queue" in e for e in r["expr"]):
        print(r["chain"], r["handle"])' > "$WORK/queue-rules"
    check "there are queue rules to leave out" test "$(wc -l < "$WORK/queue-rules")" -ge 6
    while read -r chain handle; do
        in_ns host nft delete rule inet fqdnd "$chain" handle "$handle"
    done < "$WORK/queue-rules"
    in_ns host nft list table inet fqdnd > "$WORK/fqdnd.nft"
fi
echo "-- checking $what"
check_not "nft prints no [invalid type] in fqdnd's table" grep -q 'invalid type' "$WORK/fqdnd.nft"
check "the tag is typed as a mark" grep -q 'meta mark & 0x812a0c7f | 0x812a0c7f . meta mark & 0x411d30e5 | 0x411d30e5 . ip daddr @fqdn4' "$WORK/fqdnd.nft"
check "it loads in a fresh namespace (nft -c -f)" in_ns fresh nft -c -f "$WORK/fqdnd.nft"
check "and over the running table itself (nft -c -f)" in_ns host nft -c -f "$WORK/fqdnd.nft"
check "it loads for real" in_ns fresh nft -f "$WORK/fqdnd.nft"
in_ns fresh nft list table inet fqdnd | stable > "$WORK/reloaded.nft"
check "and lists the same again, elements included" diff -u <(stable < "$WORK/fqdnd.nft") "$WORK/reloaded.nft"

echo "-- saving the host's ruleset without fqdnd's table"
in_ns host nft -f - <<'NFT'
table inet filter {
	set admins { type ipv4_addr; flags interval; elements = { 192.0.2.128/25 } }
	chain input {
		type filter hook input priority filter; policy accept;
		ct state established,related accept
		ip saddr @admins tcp dport 22 accept
	}
}
table ip nat {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth0" masquerade
	}
}
NFT
kill -0 "$FQDND_PID" 2>/dev/null || start_fqdnd host "$WORK/fqdnd.toml" || exit 1
in_ns host nft list table inet fqdnd 2>/dev/null | stable > "$WORK/fqdnd-before.nft"
# The command README.md and fqdnd(8) give, with the file's path changed.
save_ruleset() {
    nft list tables | while read -r _ family name; do
        [ "$family $name" = "inet fqdnd" ] && continue
        echo "table $family $name"; echo "delete table $family $name"
        nft list table "$family" "$name"
    done > "$1"
}
check "README gives that command" grep -qF '[ "$family $name" = "inet fqdnd" ] && continue' "$TESTS_DIR/../../README.md"
check "and so does fqdnd(8)" grep -qF '[ "$family $name" = "inet fqdnd" ] && continue' "$TESTS_DIR/../../man/fqdnd.8.scd"
in_ns host bash -c "$(declare -f save_ruleset); save_ruleset '$WORK/nftables.conf'"
check_not "the saved ruleset leaves fqdnd's table out" grep -q 'table inet fqdnd' "$WORK/nftables.conf"
check "and holds the host's other tables" grep -q 'ip saddr @admins tcp dport 22 accept' "$WORK/nftables.conf"
check "all of them" grep -q 'oifname "eth0" masquerade' "$WORK/nftables.conf"
check "it loads on an empty ruleset, as at boot (nft -c -f)" in_ns fresh2 nft -c -f "$WORK/nftables.conf"
check "it loads for real" in_ns fresh2 nft -f "$WORK/nftables.conf"
check "and the host's tables list the same there" \
    diff -u <(in_ns host nft list table inet filter; in_ns host nft list table ip nat) \
            <(in_ns fresh2 nft list table inet filter; in_ns fresh2 nft list table ip nat)
check "loaded again over the running ruleset (a reload), it replaces those tables" in_ns host nft -f "$WORK/nftables.conf"
sleep 1 # fqdnd would put its table back about 200 ms after a change
check "and leaves fqdnd's table as it was" diff -u "$WORK/fqdnd-before.nft" <(in_ns host nft list table inet fqdnd 2>/dev/null | stable)
check_not "and fqdnd saw no change to put back" grep -q 'fqdnd was changed\|fqdnd was deleted' "$WORK/fqdnd-host.log"

finish
