#!/bin/bash
# fqdnctl against a running fqdnd on a private bus, with real traffic: every
# verb, JSON that parses, and who may read and who may change.
. "$(dirname "$0")/lib.sh"

seed_topology
printf '203.0.113.2 echo.k8s.intra\n203.0.113.3 other.k8s.intra\n203.0.113.4 ext.example\n' > "$WORK/hosts"
for i in $(seq 1 20); do echo "203.0.113.$((100 + i)) n$i.k8s.intra"; done >> "$WORK/hosts"
dns_server "$WORK/hosts" || exit 1
private_bus || exit 1
echo_config node1 192.0.2.0/29
sed -i "/^state-directory/a metrics-file = \"$WORK/metrics.prom\"" "$WORK/node1/fqdnd.toml"
# DNS rules that refuse some names, for the monitor.
sed -i 's/^dns = .*/dns = [{ match-pattern = "*.k8s.intra" }, { match-name = "ext.example" }]/' "$WORK/node1/policy.d/echo.toml"
# nogroup stands for the fqdnd group here: the test adds no group to the host.
start_fqdnd node1 "$WORK/node1/fqdnd.toml" --read-group nogroup || exit 1
for i in $(seq 1 30); do "$FQDNCTL" status >/dev/null 2>&1 && break; sleep 0.1; done
resolve p1a echo.k8s.intra >/dev/null
resolve p1b other.k8s.intra >/dev/null

check "status" bash -c "'$FQDNCTL' status | grep -q 'Policies: 1'"
check "status -o json parses" bash -c "'$FQDNCTL' status -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"names\"] == 2'"
check "cache list shows what was resolved, like cilium fqdn cache list" \
    bash -c "'$FQDNCTL' cache list | grep -qE '^192.0.2.2 +lookup +echo.k8s.intra\. +3600 +[0-9-]+T[0-9:.]+Z +203.0.113.2$'"
check "cache list -o json parses, in the pre-cache format" bash -c "'$FQDNCTL' cache list -o json | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert {e[\"fqdn\"] for e in d} == {\"echo.k8s.intra.\", \"other.k8s.intra.\"}, d
assert set(d[0]) == {\"endpoint\", \"fqdn\", \"ips\", \"lookup-time\", \"expiration-time\", \"ttl\", \"source\"}'"
check "cache list -e filters by endpoint" bash -c "'$FQDNCTL' cache list -e 192.0.2.3 | grep -q other.k8s.intra && ! '$FQDNCTL' cache list -e 192.0.2.3 | grep -q echo.k8s.intra"
check "cache list -p filters by pattern" bash -c "'$FQDNCTL' cache list -p 'echo.*.intra' | grep -q echo.k8s.intra && ! '$FQDNCTL' cache list -p 'echo.*.intra' | grep -q other"
check "cache list -s connection shows none yet" bash -c "[ \$('$FQDNCTL' cache list -s connection | wc -l) = 1 ]"
check "selectors shows the selector, its names and addresses" \
    bash -c "'$FQDNCTL' selectors | grep 'match-pattern: \*.k8s.intra.' | grep -q '203.0.113.2,203.0.113.3'"
check "selectors -o json parses" bash -c "'$FQDNCTL' selectors -o json | python3 -c 'import json,sys; assert json.load(sys.stdin)[0][\"names\"]'"
check "policy list" bash -c "'$FQDNCTL' policy list | grep -qE '^echo +enforce +2 '"
check "policy list -o json parses" bash -c "'$FQDNCTL' policy list -o json | python3 -c 'import json,sys; assert json.load(sys.stdin)[0][\"name\"] == \"echo\"'"

check "explain ADDRESS: which selector's set holds it, from which name and endpoint, for which policy" \
    bash -c "'$FQDNCTL' explain 203.0.113.2 | tee /dev/stderr | grep -q ALLOWED && '$FQDNCTL' explain 203.0.113.2 | grep -E 'echo.k8s.intra\. +192.0.2.2 +lookup .*match-pattern: \*.k8s.intra\. +fqdn4:0x[0-9a-f]{8}\.0x[0-9a-f]{8} +echo'"
check "explain of an address nothing allows says so" bash -c "'$FQDNCTL' explain 203.0.113.99 | grep -q 'NOT ALLOWED'"
check "explain NAME: DNS rules, selectors, what is known" \
    bash -c "'$FQDNCTL' explain echo.k8s.intra | grep -q 'match-pattern: \*.k8s.intra. (policy echo)' && '$FQDNCTL' explain echo.k8s.intra | grep -q '203.0.113.2'"
check "explain -o json parses" bash -c "'$FQDNCTL' explain 203.0.113.2 -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"allowed\"] and d[\"holders\"][0][\"policies\"] == [\"echo\"]'"

check "metrics: Prometheus text, every sample declared once with HELP and TYPE, every metric with a value, real counts" bash -c "'$FQDNCTL' metrics | python3 -c '
import re, sys
declared, samples, valued = {}, {}, set()
for line in sys.stdin:
    line = line.rstrip(\"\\n\")
    if line.startswith(\"# TYPE \"):
        _, _, name, kind = line.split(\" \")
        assert name not in declared, name
        declared[name] = kind
    elif line and not line.startswith(\"#\"):
        name, value = re.match(r\"([a-z_]+)(?:\\{.*\\})? (\\S+)\", line).groups()
        base = re.sub(r\"_(bucket|sum|count)\$\", \"\", name) if name not in declared else name
        assert base in declared, name
        samples[line.split(\" \")[0]] = float(value)
        valued.add(base)
assert set(declared) == valued, set(declared) - valued
assert samples[\"fqdnd_dns_queries_total{verdict=\\\"allowed\\\"}\"] >= 2, samples
assert samples[\"fqdnd_active_names\"] == 2
assert samples[\"fqdnd_answer_hold_seconds_count\"] >= 2
'"

check "metrics-file: the Prometheus text is written for node_exporter" \
    bash -c "for i in \$(seq 1 30); do grep -q '^fqdnd_active_names ' '$WORK/metrics.prom' 2>/dev/null && exit 0; sleep 0.1; done; exit 1"

as_user() { local u=$1 g=$2; shift 2; setpriv --reuid="$u" --regid="$g" --clear-groups "$@"; }
check "a reader (the read group) may read" as_user nobody nogroup "$FQDNCTL" cache list
check_not "a caller outside the group is refused reads" as_user daemon daemon "$FQDNCTL" cache list
check "and told why" bash -c "setpriv --reuid=daemon --regid=daemon --clear-groups '$FQDNCTL' status 2>&1 | grep -q 'access denied'"
check_not "a non-root reader is refused changes" as_user nobody nogroup "$FQDNCTL" reload
check_not "and cache clean" as_user nobody nogroup "$FQDNCTL" cache clean -f

printf '[[policy]]\nname = "bad"\n[policy.selector]\nsources = ["192.0.2.0/33"]\n' > "$WORK/node1/policy.d/bad.toml"
check_not "reload with an error fails" "$FQDNCTL" reload
check "and says file:line:column" bash -c "'$FQDNCTL' reload 2>&1 | grep -q 'bad.toml:4:12: sources: \"192.0.2.0/33\" has a bad prefix length'"
rm "$WORK/node1/policy.d/bad.toml"
check "reload" "$FQDNCTL" reload

check_not "cache clean without -f and without a terminal refuses" "$FQDNCTL" cache clean -p 'echo.k8s.intra'
check "cache clean -p -f" bash -c "'$FQDNCTL' cache clean -p 'echo.k8s.intra' -f | grep -q 'removed 1'"
check_not "the cleaned name is gone" bash -c "'$FQDNCTL' cache list | grep -q echo.k8s.intra"
check_not "and its address is closed" connects p1a 203.0.113.2 80
check "the other name stays" connects p1b 203.0.113.3 80

# A clean whose removal meets an element that is gone from the kernel
# already (someone deleted it, or its timeout ended a moment before): the
# other elements of the same removal must go all the same.
resolve p1a echo.k8s.intra >/dev/null
check "before the second clean: echo.k8s.intra's address is open" connects p1a 203.0.113.2 80
k8s=$(tag_of "match-pattern: *.k8s.intra.")
# Both at once: fqdnd puts the deleted element back 200 ms after the event.
ip netns exec "$(ns node1)" nft delete element inet fqdnd fqdn4 "{ $k8s . 203.0.113.3 }" &&
    "$FQDNCTL" cache clean -p '*.k8s.intra' -f > "$WORK/clean2"
check "cache clean -p '*.k8s.intra' right after" grep -q 'removed 2' "$WORK/clean2"
check_not "(the deleted element was not put back before the clean)" \
    grep -q "someone else deleted 1 elements of the FQDN sets that fqdnd's cache holds; put back" "$WORK/fqdnd-node1.log"
sleep 1
check_not "the kernel no longer holds the address of the name cleaned" \
    bash -c "ip netns exec $(ns node1) nft list set inet fqdnd fqdn4 | grep -q '203.0.113.2 '"
check_not "and its address is closed" connects p1a 203.0.113.2 80
resolve p1b other.k8s.intra >/dev/null # what the tests below expect in the cache

# Writes the kernel refuses while the table is gone (here cleans, each a
# removal in a table that is not there) must not put off putting it back.
for i in $(seq 1 20); do resolve p1a "n$i.k8s.intra" >/dev/null; done
in_ns node1 nft delete table inet fqdnd
for i in $(seq 1 20); do "$FQDNCTL" cache clean -p "n$i.k8s.intra" -f >/dev/null 2>&1; sleep 0.15; done &
cleans=$!
back=$(table_back node1 80)
wait "$cleans"
echo "     table back after ${back:-never} ms, cleans meanwhile"
check "a deleted table is back within 2 s, refused writes or not" test -n "$back" -a "${back:-9999}" -le 2000

# Nor bring a restore's next try forward while another process holds the
# table's name (`flags owner`, 2 s): the tries keep their own backoff
# (0.2 s, then twice as long), three or four in those 2 s, not one per
# refused write.
for i in $(seq 1 20); do resolve p1a "n$i.k8s.intra" >/dev/null; done
failed_before=$(grep -c "cannot put the ruleset in place (restore)" "$WORK/fqdnd-node1.log")
in_ns node1 env HOME="$WORK" bash -c '(echo "delete table inet fqdnd; add table inet fqdnd { flags owner; }"; sleep 2) | nft -i >/dev/null' &
holder=$!
for i in $(seq 1 20); do "$FQDNCTL" cache clean -p "n$i.k8s.intra" -f >/dev/null 2>&1; sleep 0.1; done
wait "$holder"
back=$(table_back node1 140)
failed=$(( $(grep -c "cannot put the ruleset in place (restore)" "$WORK/fqdnd-node1.log") - failed_before ))
echo "     owned for 2 s, 20 refused cleans: $failed failed tries, table back ${back:-never} ms after the owner left"
check "refused writes leave a restore's retries at their own pace (at most 6 tries)" test "$failed" -ge 1 -a "$failed" -le 6
check "the owner gone, the table is back within 6 s" test -n "$back" -a "${back:-9999}" -le 6000

# monitor: DNS events and drops, as they happen, to subscribers only.
"$FQDNCTL" monitor -o json > "$WORK/monitor.json" 2>"$WORK/monitor.err" &
monitor_pid=$!
_pids+=("$monitor_pid")
"$FQDNCTL" monitor --type drop > "$WORK/monitor-drops.txt" 2>/dev/null &
_pids+=($!)
for i in $(seq 1 30); do
    resolve p1a echo.k8s.intra >/dev/null
    grep -q '"echo.k8s.intra."' "$WORK/monitor.json" 2>/dev/null && break
    sleep 0.1
done
check "monitor shows an allowed query and its answer, with the selector that learned it" python3 -c "
import json
events = [json.loads(l) for l in open('$WORK/monitor.json')]
answers = [e for e in events if e['event'] == 'dns' and e['kind'] == 'answer' and e['name'] == 'echo.k8s.intra.']
assert answers, events
a = answers[0]
assert a['ips'] == ['203.0.113.2'] and a['endpoint'] == '192.0.2.2' and a['server'] == '203.0.113.53', a
assert a['selectors'] == ['match-pattern: *.k8s.intra.'] and a['rcode'] == 'NOERROR', a
assert any(e['kind'] == 'query-allowed' and e['name'] == 'echo.k8s.intra.' for e in events), events
"
check "a refused query is refused" test "$(dns_status p1a blocked.example)" = REFUSED
resolve p1a ext.example >/dev/null
check_not "a known name whose address no rule allows: dropped" connects p1a 203.0.113.4 8080
sleep 0.5
check "monitor shows the refused query" python3 -c "
import json
events = [json.loads(l) for l in open('$WORK/monitor.json')]
assert any(e['event'] == 'dns' and e['kind'] == 'query-refused' and e['name'] == 'blocked.example.'
           and e['endpoint'] == '192.0.2.2' for e in events), events
"
check "monitor shows the drop with its name, policy, port and protocol" python3 -c "
import json
events = [json.loads(l) for l in open('$WORK/monitor.json')]
drops = [e for e in events if e['event'] == 'drop' and e['destination'] == '203.0.113.4']
assert drops, events
d = drops[0]
assert d['names'] == ['ext.example.'] and d['policy'] == 'echo' and d['kind'] == 'drop', d
assert d['port'] == 8080 and d['protocol'] == 'tcp' and d['endpoint'] == '192.0.2.2' and d['source'] == '192.0.2.2', d
"
check "monitor --type drop prints drops only, in words" bash -c "grep -q '192.0.2.2 -> 203.0.113.4:8080 tcp (ext.example.) policy echo: not allowed' '$WORK/monitor-drops.txt' && ! grep -q ' dns ' '$WORK/monitor-drops.txt'"
metric() { "$FQDNCTL" metrics | awk -v n="$1" '$1 == n { print $2 }'; }
before=$(metric fqdnd_drop_log_packets_total)
start=$(date +%s.%N)
in_ns p1a python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
end = time.monotonic() + 1.0
for i in range(20000):
    s.sendto(b"x", ("203.0.113.5", 9))
    if time.monotonic() > end:
        break
'
sleep 0.3
logged=$(( $(metric fqdnd_drop_log_packets_total) - before ))
elapsed=$(python3 -c "import time; print(int(time.time() - $start) + 1)")
echo "     flood: $logged drops logged in about $elapsed s (log-rate 50, burst 50)"
check "a flood of drops reaches fqdnd at most at log-rate (limited in the kernel)" \
    test "$logged" -gt 0 -a "$logged" -le $((50 + 50 * elapsed))
check "a caller outside the group may not subscribe" bash -c "setpriv --reuid=daemon --regid=daemon --clear-groups timeout 2 '$FQDNCTL' monitor 2>&1 | grep -q 'access denied'"
check "properties: Version and counts, read over the bus" bash -c "busctl --address=\"\$DBUS_SYSTEM_BUS_ADDRESS\" get-property org.fqdnd1 /org/fqdnd1 org.fqdnd1.Manager Names | grep -qE '^t [0-9]+$'"
check "the bus policy lets the read group subscribe to the monitor" grep -q 'send_member="Subscribe"' "$TESTS_DIR/../../systemd/org.fqdnd1.conf"

# The bus restarts: fqdnd enforces on and comes back on the new bus.
kill "$BUS_PID"; wait "$BUS_PID" 2>/dev/null; rm -f "$WORK/bus"
check_not "bus gone: fqdnctl cannot reach fqdnd" "$FQDNCTL" status
check_not "bus gone: enforcement goes on" connects p1a 203.0.113.99 80
private_bus || exit 1
back=""
for i in $(seq 1 50); do "$FQDNCTL" status >/dev/null 2>&1 && { back=$i; break; }; sleep 0.2; done
check "the bus is back: fqdnd serves on it again (within 10 s)" test -n "$back"
check "and answers as before" bash -c "'$FQDNCTL' cache list | grep -q other.k8s.intra"
check "a monitor of the old bus has ended" bash -c "for i in \$(seq 1 20); do kill -0 $monitor_pid 2>/dev/null || exit 0; sleep 0.1; done; exit 1"

# Under a DNS rule for every name, queries are copied, not queued: the
# first query a new monitor sees must be shown too, though no queued
# packet came since the monitor subscribed.
sed -i 's/^dns = .*/dns = [{ match-pattern = "*" }]/' "$WORK/node1/policy.d/echo.toml"
check "reloaded to a DNS rule for every name" "$FQDNCTL" reload
resolve p1a echo.k8s.intra >/dev/null # a round with nobody watching
"$FQDNCTL" monitor -o json > "$WORK/monitor2.json" 2>/dev/null &
_pids+=($!)
sleep 0.5
resolve p1a copied.k8s.intra >/dev/null
sleep 0.5
check "monitor shows the first copied query after it subscribed" python3 -c "
import json
events = [json.loads(l) for l in open('$WORK/monitor2.json')]
assert any(e.get('kind') == 'query-allowed' and e.get('name') == 'copied.k8s.intra.' for e in events), events
"

check "usage errors exit 2" bash -c "'$FQDNCTL' cache list -x; [ \$? = 2 ]"
check "fqdnd gone: a clear message" bash -c "kill $FQDND_PID_node1; sleep 0.5; '$FQDNCTL' status 2>&1 | grep -q 'fqdnd is not running'"

finish
