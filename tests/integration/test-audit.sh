#!/bin/bash
# Write a policy from traffic: an audit policy records what a pod looked up
# and connected to; `fqdnctl policy suggest` writes the policy that allows
# it (siblings collapsed, a deeper name kept with its port, a bare address
# by address); installed with audit = false it allows exactly that.
. "$(dirname "$0")/lib.sh"

seed_topology
tcp_server svc 443 9000
cat > "$WORK/hosts" <<HOSTS
203.0.113.2 a.svc.intra
203.0.113.3 b.svc.intra
203.0.113.4 c.svc.intra
203.0.113.5 x.deep.svc.intra
203.0.113.6 y.deep.svc.intra
HOSTS
dns_server "$WORK/hosts" || exit 1
private_bus || exit 1
mkdir -p "$WORK/node1/policy.d"
printf '[daemon]\nstate-directory = "%s/node1/state"\n' "$WORK" > "$WORK/node1/fqdnd.toml"
cat > "$WORK/node1/policy.d/web.toml" <<TOML
[[policy]]
name = "web"
audit = true
[policy.selector]
sources = ["192.0.2.0/29"]
[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
ports = [{ port = 53, protocol = "any" }]
dns = [{ match-pattern = "*" }]
TOML
start_fqdnd node1 "$WORK/node1/fqdnd.toml" --read-group nogroup || exit 1
for i in $(seq 1 30); do "$FQDNCTL" status >/dev/null 2>&1 && break; sleep 0.1; done

# The pod's day: three siblings on 443, a deeper name on 8080, one bare
# address on 9000. Audit: every connection goes through.
for target in a.svc.intra:443 b.svc.intra:443 c.svc.intra:443 x.deep.svc.intra:8080; do
    name=${target%:*} port=${target#*:}
    addr=$(resolve p1a "$name")
    check "audit: $name resolves ($addr) and $port connects" connects p1a "$addr" "$port"
done
check "audit: the bare address 203.0.113.7:9000 connects" connects p1a 203.0.113.7 9000

suggested=""
for i in $(seq 1 30); do
    "$FQDNCTL" policy suggest web > "$WORK/suggested.toml" 2>&1
    grep -q '"203.0.113.7"' "$WORK/suggested.toml" && grep -q 'x.deep.svc.intra' "$WORK/suggested.toml" && { suggested=1; break; }
    sleep 0.1
done
echo "     fqdnctl policy suggest web:"
sed 's/^/     | /' "$WORK/suggested.toml"
check "suggest: the five flows are recorded" test -n "$suggested"
check "suggest: the three siblings collapse to *.svc.intra, port 443 alone" python3 -c "
import tomllib
p = tomllib.load(open('$WORK/suggested.toml', 'rb'))['policy'][0]
rules = [r for r in p['egress'] if {'match-pattern': '*.svc.intra'} in r.get('to-fqdns', [])]
assert len(rules) == 1, p
assert rules[0]['to-fqdns'] == [{'match-pattern': '*.svc.intra'}], rules
assert rules[0]['ports'] == [{'port': 443, 'protocol': 'tcp'}], rules
"
check "suggest: x.deep.svc.intra keeps its own name, with 8080" python3 -c "
import tomllib
p = tomllib.load(open('$WORK/suggested.toml', 'rb'))['policy'][0]
rules = [r for r in p['egress'] if r.get('to-fqdns') == [{'match-name': 'x.deep.svc.intra'}]]
assert len(rules) == 1 and rules[0]['ports'] == [{'port': 8080, 'protocol': 'tcp'}], p
"
check "suggest: the bare address under to-cidrs, with 9000, commented as such" python3 -c "
import tomllib
p = tomllib.load(open('$WORK/suggested.toml', 'rb'))['policy'][0]
rules = [r for r in p['egress'] if 'to-cidrs' in r]
assert len(rules) == 1 and rules[0]['to-cidrs'] == ['203.0.113.7'], p
assert rules[0]['ports'] == [{'port': 9000, 'protocol': 'tcp'}], p
text = open('$WORK/suggested.toml').read()
assert 'no name explains these addresses' in text, text
"
check "suggest: the DNS server and a dns rule for the names suggested" python3 -c "
import tomllib
p = tomllib.load(open('$WORK/suggested.toml', 'rb'))['policy'][0]
rules = [r for r in p['egress'] if 'to-dns-servers' in r]
assert len(rules) == 1 and rules[0]['to-dns-servers'] == ['203.0.113.53'], p
assert rules[0]['dns'] == [{'match-pattern': '**.svc.intra'}], p
assert p['selector'] == {'sources': ['192.0.2.0/29']} and p['audit'] is True, p
"
check "suggest: each entry says how often and when it was last seen" \
    grep -qE '"\*\.svc\.intra" \}, # covers a\.svc\.intra, b\.svc\.intra, c\.svc\.intra; [0-9]+ times?, last seen 20[0-9-]+T' "$WORK/suggested.toml"
check "suggest -o json parses" bash -c "'$FQDNCTL' policy suggest web -o json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d[0][\"name\"] == \"web\" and d[0][\"configured\"], d'"
check "diff: what the audit policy lacks" bash -c "'$FQDNCTL' policy diff web | tee /dev/stderr | grep -q '+ a.svc.intra. tcp/443 (203.0.113.2): no rule allows it'"
as_user() { local u=$1 g=$2; shift 2; setpriv --reuid="$u" --regid="$g" --clear-groups "$@"; }
check "a reader may ask for a suggestion" as_user nobody nogroup "$FQDNCTL" policy suggest web
check_not "a caller outside the group may not" as_user daemon daemon "$FQDNCTL" policy suggest web
check_not "a reader may not forget" as_user nobody nogroup "$FQDNCTL" policy forget web
check_not "suggest for a policy nobody knows: an error" "$FQDNCTL" policy suggest nosuch

# Passes check-config as it is.
mkdir -p "$WORK/check/policy.d"
cp "$WORK/suggested.toml" "$WORK/check/policy.d/web.toml"
printf '[daemon]\npolicy-directory = "%s/check/policy.d"\nstate-directory = "%s/check/state"\n' "$WORK" "$WORK" \
    > "$WORK/check/fqdnd.toml"
check "the suggestion passes fqdnctl check-config as it is" "$FQDNCTL" check-config "$WORK/check/fqdnd.toml"

# Kept across a restart.
stop_fqdnd
check "the recording is in the state directory" test -s "$WORK/node1/state/audit.json"
start_fqdnd node1 "$WORK/node1/fqdnd.toml" --read-group nogroup || exit 1
for i in $(seq 1 30); do "$FQDNCTL" status >/dev/null 2>&1 && break; sleep 0.1; done
check "after a restart the same suggestion" bash -c "'$FQDNCTL' policy suggest web | diff - '$WORK/suggested.toml'"

# Review done: enforce it.
sed 's/^audit = true.*/audit = false/' "$WORK/suggested.toml" > "$WORK/node1/policy.d/web.toml"
check "installed with audit = false" "$FQDNCTL" reload
check "the policy enforces" bash -c "'$FQDNCTL' policy list | grep -qE '^web +enforce '"
check "diff: the enforced policy lacks nothing recorded" bash -c "'$FQDNCTL' policy diff web | grep -q 'needs nothing it lacks'"
for target in a.svc.intra:443 b.svc.intra:443 c.svc.intra:443 x.deep.svc.intra:8080; do
    name=${target%:*} port=${target#*:}
    addr=$(resolve p1a "$name")
    check "enforced: $name ($addr) port $port is allowed" connects p1a "$addr" "$port"
done
check "enforced: the bare address on 9000 is allowed" connects p1a 203.0.113.7 9000
addr=$(resolve p1a y.deep.svc.intra)
check "enforced: a name never used, y.deep.svc.intra, may be asked about (the dns rule): $addr" test -n "$addr"
check_not "enforced: but its address is denied, on the port x.deep.svc.intra uses" connects p1a "$addr" 8080
check_not "enforced: a port never used (a.svc.intra:8080) is denied" connects p1a 203.0.113.2 8080
check_not "enforced: the bare address on another port is denied" connects p1a 203.0.113.7 80

check "the enforcing policy records its drops: diff shows what it now stops" bash -c "
    for i in \$(seq 1 30); do
        '$FQDNCTL' policy diff web | grep -q '+ y.deep.svc.intra. tcp/8080 (203.0.113.6): no rule allows it' && exit 0
        sleep 0.1
    done; '$FQDNCTL' policy diff web; exit 1"
# Packets conntrack calls invalid (a stray RST or FIN of a connection it
# does not know, as come after a flow ended) are dropped, but are not the
# policy's drops: "not allowed" to an address it allows would mislead, and
# `policy suggest` would learn from them.
timeout 5 "$FQDNCTL" monitor --type drop > "$WORK/strays.mon" 2>&1 &
mon=$!
sleep 0.5
check "stray RST and FINs of no connection sent to a.svc.intra:443" \
    in_ns p1a python3 "$TESTS_DIR/spoof.py" stray 192.0.2.2 203.0.113.2 443
check_not "control: a denied connection in the same time" connects p1a 203.0.113.7 80
wait "$mon"
check "control: the monitor shows the denied connection" grep -q "203.0.113.7:80" "$WORK/strays.mon"
check_not "the strays are not shown as the policy's drops" grep -q "203.0.113.2:443" "$WORK/strays.mon"
check "they are dropped, counted on a rule of their own" bash -c \
    "ip netns exec '$(ns node1)' nft list chain inet fqdnd forward | grep 'conntrack calls invalid' | grep -qE 'packets ([3-9]|[1-9][0-9]+) '"
check "metrics: the recording's size" bash -c "'$FQDNCTL' metrics | grep -qE '^fqdnd_audit_entries [1-9]'"
check "forget clears the recording" bash -c "'$FQDNCTL' policy forget web | grep -q 'forgot [1-9]'"
check "suggest no longer shows what was forgotten" bash -c "! '$FQDNCTL' policy suggest web | grep -q 'x.deep.svc.intra'"

finish
