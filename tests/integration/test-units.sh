#!/bin/bash
# A `units` policy selects the processes of a systemd unit by their cgroup
# v2, on a unified and on a hybrid hierarchy (cgroup2 at
# /sys/fs/cgroup/unified, as on this test machine). Stands in for a unit a
# cgroup of the unit's name made by hand in the cgroup2 hierarchy; the
# processes moved into it are the unit's. Removed at the end.
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
# The cgroup goes with the test, once its processes have left it.
trap 'for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do echo "$p" > "$root/cgroup.procs"; done; rmdir "$cg" 2>/dev/null; cleanup' EXIT
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

check "the rule names the unit's cgroup at its depth" \
    bash -c "ip netns exec $(ns router) nft list chain inet fqdnd output | grep -q 'socket cgroupv2 level 1'"
check "a process of the unit reaches what its policy allows" in_unit python3 "$TESTS_DIR/tcp_client.py" 198.51.100.5 80
check_not "and nothing else" in_unit python3 "$TESTS_DIR/tcp_client.py" 203.0.113.99 80
check "a process outside the unit is not selected" in_ns router python3 "$TESTS_DIR/tcp_client.py" 203.0.113.99 80

finish
