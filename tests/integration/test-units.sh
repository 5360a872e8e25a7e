#!/bin/bash
# A `units` policy selects the processes of a systemd unit by their cgroup
# v2, on a unified and on a hybrid hierarchy (cgroup2 at
# /sys/fs/cgroup/unified, as on this test machine). Stands in for a unit a
# cgroup of the unit's name made by hand in the cgroup2 hierarchy; the
# processes moved into it are the unit's. Removed at the end.
#
# Then the unit's life as fqdnd meets it: not running when fqdnd starts (as
# at boot), started (its cgroup appears), restarted (a new cgroup, a new
# id), stopped, and named by a reload while it does not run. fqdnd must
# start, follow each change without a reload, and keep its sets.
. "$(dirname "$0")/lib.sh"

router_topology
tcp_server srv 80

root=""
for d in /sys/fs/cgroup /sys/fs/cgroup/unified; do
    [ "$(stat -f -c %T "$d" 2>/dev/null)" = cgroup2fs ] && { root=$d; break; }
done
[ -n "$root" ] || { echo "SKIP no cgroup v2 hierarchy on this host"; finish; exit 0; }
unit="fqdnd-it-$$.service"
cg="$root/$unit"
mkdir "$cg"
# empty_unit: the unit's processes leave its cgroup (for rmdir).
empty_unit() { local p; for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do echo "$p" > "$root/cgroup.procs"; done; }
# The cgroup goes with the test, once its processes have left it.
trap 'empty_unit; rmdir "$cg" 2>/dev/null; cleanup' EXIT
echo "     cgroup2 at $root; the unit's cgroup $cg"

mkdir -p "$WORK/policy.d"
printf '[daemon]\nstate-directory = "%s/state"\n' "$WORK" > "$WORK/fqdnd.toml"
cat > "$WORK/policy.d/unit.toml" <<TOML
[[policy]]
name = "unit"
[policy.selector]
units = ["$unit"]
[[policy.egress]]
to-cidrs = ["198.51.100.0/24"]
TOML
KEEP_MOUNTS=1 start_fqdnd router "$WORK/fqdnd.toml" || exit 1

# in_unit CMD...: runs CMD as a process of the unit (moved into its cgroup first).
in_unit() { nsenter --net="/run/netns/$(ns router)" bash -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@"; }
# connects_as USER ADDR PORT [TIMEOUT]: a connection from the router's
# namespace, as USER (and its group), is accepted and answered.
connects_as() {
    local u=$1; shift
    in_ns router setpriv --reuid="$u" --regid="$(id -g "$u")" --clear-groups /usr/bin/python3 "$TESTS_DIR/tcp_client.py" "$@"
}

check "the rule names the unit's cgroup at its depth" \
    bash -c "ip netns exec $(ns router) nft list chain inet fqdnd output | grep -q 'socket cgroupv2 level 1'"
check "a process of the unit reaches what its policy allows" in_unit python3 "$TESTS_DIR/tcp_client.py" 198.51.100.5 80
check_not "and nothing else" in_unit python3 "$TESTS_DIR/tcp_client.py" 203.0.113.99 80
check "a process outside the unit is not selected" in_ns router python3 "$TESTS_DIR/tcp_client.py" 203.0.113.99 80

echo "== the unit's cgroup comes and goes"
# rule_names POLICY ID: every rule of POLICY that looks at a socket's
# cgroup compares the id ID (nft prints an id it finds under /sys/fs/cgroup
# as its path, quoted).
rule_names() {
    local policy=$1 id=$2 out
    out=$(in_ns router nft list chain inet fqdnd output 2>/dev/null | grep "socket cgroupv2.*comment \"policy $policy[:\"]") ||
        { echo "no socket cgroupv2 rule of policy $policy"; return 1; }
    echo "$out"
    local path=${cg#/sys/fs/cgroup/}
    ! grep -vqE "socket cgroupv2 level 1 ($id|\"$path\") " <<<"$out"
}
# fqdnd's rules name no cgroup while the unit has none: id 0, which no
# cgroup has.
none=0

stop_fqdnd
empty_unit
rmdir "$cg"
cat > "$WORK/policy.d/unit.toml" <<TOML
[[policy]]
name = "unit"
[policy.selector]
units = ["$unit"]
users = ["nobody"]
[[policy.egress]]
to-cidrs = ["198.51.100.0/24"]

[[policy]]
name = "other"
[policy.selector]
users = ["daemon"]
[[policy.egress]]
to-cidrs = ["203.0.113.0/24"]
[[policy.egress]]
to-fqdns = [{ match-name = "kept.example" }]
TOML
# An element of fqdnd's in an FQDN set, from the start.
printf '[fqdn]\npre-cache = "%s/pre.json"\n' "$WORK" >> "$WORK/fqdnd.toml"
pre_cache "$WORK/pre.json" "192.0.2.2 kept.example 192.0.2.250"
log="$WORK/fqdnd-router.log"
started=0
KEEP_MOUNTS=1 start_fqdnd router "$WORK/fqdnd.toml" >"$WORK/start.out" 2>&1 && started=1
shown() { [ "$1" = 1 ] || { cat "$2"; false; }; }
check "fqdnd starts while the unit has no cgroup (as at boot)" shown "$started" "$WORK/start.out"
check "and says so once, naming the unit" test "$(grep -c "warning: .*$unit" "$log")" = 1
check "the unit's rules name no cgroup" rule_names unit "$none"
check "the policy's other selector is in force: nobody reaches what it allows" connects_as nobody 198.51.100.5 80 5
check_not "and nothing else" connects_as nobody 203.0.113.99 80
check "another policy is in force: daemon reaches what it allows" connects_as daemon 203.0.113.99 80 5
check_not "and nothing else" connects_as daemon 198.51.100.5 80
# A re-applied ruleset keeps the sets' elements.
element_kept() { set_addresses router "match-name: kept.example." 4 | grep -qx 192.0.2.250; }
check "the FQDN set holds the pre-cache's element" element_kept

mkdir "$cg"
id=$(stat -c %i "$cg")
check "the unit starts: within 10 s the rules name its new cgroup ($id)" eventually 10 rule_names unit "$id"
check "and says why it re-applied the ruleset" grep -q "$unit started" "$log"
check "a process of the unit reaches what its policy allows" in_unit python3 "$TESTS_DIR/tcp_client.py" 198.51.100.5 80 5
check_not "and is denied the rest" in_unit python3 "$TESTS_DIR/tcp_client.py" 203.0.113.99 80
check "the re-applied ruleset kept the set's elements" element_kept

# A restart: systemd removes the unit's cgroup and makes a new one, with
# another inode.
empty_unit
rmdir "$cg"
mkdir "$cg"
id2=$(stat -c %i "$cg")
check "the unit restarts: the new cgroup has a new id ($id2, was $id)" test "$id2" != "$id"
check "within 10 s the rules name the new cgroup" eventually 10 rule_names unit "$id2"
check "a process of the restarted unit reaches what its policy allows" in_unit python3 "$TESTS_DIR/tcp_client.py" 198.51.100.5 80 5
check_not "and is denied the rest" in_unit python3 "$TESTS_DIR/tcp_client.py" 203.0.113.99 80

# A reload that names a unit which does not run is taken.
later="fqdnd-it-$$-later.service"
cat > "$WORK/policy.d/later.toml" <<TOML
[[policy]]
name = "later"
[policy.selector]
units = ["$later"]
[[policy.egress]]
to-cidrs = ["198.51.100.0/24"]
TOML
reloads=$(grep -c 'reloaded:' "$log")
kill -HUP "$FQDND_PID" 2>/dev/null
reloaded() { [ "$(grep -c 'reloaded:' "$log")" -gt "$reloads" ]; }
check "a reload naming a unit that does not run is taken" eventually 10 reloaded
check "and says so, naming that unit" grep -q "warning: .*$later" "$log"
check "whose rules name no cgroup" rule_names later "$none"
check "the running unit's rules still name its cgroup" rule_names unit "$id2"

# A stop: the cgroup goes; the rules name none until it is back.
empty_unit
rmdir "$cg"
check "the unit stops: within 10 s its rules name no cgroup" eventually 10 rule_names unit "$none"
check "the sets still hold their elements" element_kept
check "fqdnd is still running" kill -0 "$FQDND_PID"

finish
