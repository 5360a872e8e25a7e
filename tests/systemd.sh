#!/bin/bash
# The Debian package under a real systemd, as an administrator meets it:
# this machine's own Debian root, booted in systemd-nspawn on an overlay
# (a tmpfs takes every write), with a network namespace of its own. In
# there: install the package, look at the running unit, drive a `users` and
# a `units` policy end to end with a loopback resolver, use fqdnctl as root,
# as a reader and as nobody, reload good and broken policies, crash fqdnd
# (SIGSEGV, SIGKILL, the watchdog) with an open flow, upgrade, remove and
# purge. Nothing touches this machine's network, ruleset or packages beyond
# installing the test's tools; the container, its mounts and its files go
# when the script ends, however it ends.
#
# Usage: tests/systemd.sh (as root). With FQDND_DEB_DIR set to a directory
# that tests/build-deb.sh filled, that package is tested; otherwise the
# package is built first (about six minutes on two cores).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
started=$SECONDS

name=fqdnd-sd-$$
base=$(mktemp -d "/tmp/$name.XXXXXX")
ct=$base/ct            # a tmpfs: the overlay's upper and work directories
root=$ct/root          # the container's root: the overlay of /
nspawn_pid="" leader=""

alive() { # alive PID: running, not a zombie waiting for us
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) && [ "${st:0:1}" != Z ]
}
cleanup() {
    set +e
    if [ -n "$nspawn_pid" ] && alive "$nspawn_pid"; then
        # SIGTERM asks nspawn to power the container off in order.
        kill -TERM "$nspawn_pid"
        for _ in $(seq 1 60); do alive "$nspawn_pid" || break; sleep 0.5; done
        if alive "$nspawn_pid"; then
            # The container's PID 1 takes its whole PID namespace with it.
            [ -n "$leader" ] && kill -KILL "$leader" 2>/dev/null
            kill -KILL "$nspawn_pid" 2>/dev/null
            for _ in $(seq 1 20); do alive "$nspawn_pid" || break; sleep 0.5; done
        fi
    fi
    [ -n "$nspawn_pid" ] && wait "$nspawn_pid" 2>/dev/null
    for m in "$root" "$ct"; do
        mountpoint -q "$m" && { umount "$m" || umount -l "$m"; }
    done
    if mountpoint -q "$ct" || mountpoint -q "$root"; then
        echo "cleanup: $ct is still mounted; left in place" >&2
    else
        rm -rf --one-file-system "$base"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CHECK_OUT=$base/check.out
. tests/check.sh
fails() { ! "$@"; }
die() { echo "FAIL setup: $*"; failed=$((failed + 1)); echo "$passed passed, $failed failed"; exit 1; }
# wait_for SECONDS COMMAND...: polls every half second until COMMAND
# succeeds or SECONDS passed; the last try shows its output.
wait_for() {
    local end=$((SECONDS + $1)); shift
    while [ "$SECONDS" -lt "$end" ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    "$@"
}

# Commands in the container: its namespaces, a clean environment, and a
# bound on each (two minutes; in_ct_long: five, for apt-get).
in_ct() {
    timeout -k 5 "${ct_timeout:-120}" nsenter -t "$leader" -a \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
in_ct_long() { ct_timeout=300 in_ct "$@"; }
as_nobody() { in_ct setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
as_reader() { in_ct setpriv --reuid=fqreader --regid=fqreader --init-groups "$@"; }
# A process of the transient service fq-probe: it joins the unit's cgroup,
# as the unit's own children are, then runs COMMAND.
in_unit() { in_ct sh -c 'echo $$ > /sys/fs/cgroup/system.slice/fq-probe.service/cgroup.procs && exec "$@"' sh "$@"; }
T=/srv/fqdnd-test     # the test's files in the container, readable by nobody
# connects RUNNER... ADDR PORT: a connection is accepted and echoes.
connects() { "${@:1:$#-2}" python3 "$T/systemd-peer.py" connect "${@: -2}" 3; }
# resolves RUNNER... NAME ADDR: the loopback resolver's answer, through fqdnd.
resolves() {
    local got; got=$("${@:1:$#-2}" dig +short +time=3 +tries=2 @127.0.0.1 "${@: -2:1}")
    local want=${*: -1}; echo "answer: $got"; [ "$got" = "$want" ]
}
# refused RUNNER... NAME: answered REFUSED.
refused() {
    local got; got=$("${@:1:$#-1}" dig +time=3 +tries=2 @127.0.0.1 "${@: -1}" | sed -n 's/.*status: \([A-Z]*\).*/\1/p')
    echo "status: $got"; [ "$got" = REFUSED ]
}
main_pid() { in_ct systemctl show -P MainPID fqdnd; }
is_active() { [ "$(in_ct systemctl show -P ActiveState fqdnd)" = active ]; }
# restarted OLDPID: a new fqdnd runs and systemd has it active.
restarted() { local now; now=$(main_pid); [ "$now" != 0 ] && [ "$now" != "$1" ] && is_active; }
cache_has() { in_ct fqdnctl cache list | grep -q " $1\. "; }
policies_are() { [ "$(in_ct fqdnctl policy list -o json | python3 -c 'import json,sys; print(" ".join(sorted(p["name"] for p in json.load(sys.stdin))))')" = "$*" ]; }
denied() { # denied COMMAND...: fails, and says access denied
    local out
    if out=$("$@" 2>&1); then echo "$out"; echo "(it succeeded)"; return 1; fi
    echo "$out"; grep -qi 'access denied' <<<"$out"
}
# The flow that a transient service holds open as nobody (systemd-peer.py
# hold): a token sent through it comes back.
flow_passes() {
    in_ct rm -f "$T/flow/pong"
    in_ct sh -c "echo $1 > $T/flow/ping.tmp && mv $T/flow/ping.tmp $T/flow/ping"
    wait_for 20 in_ct test -e "$T/flow/pong" || return 1
    local got; got=$(in_ct cat "$T/flow/pong")
    echo "sent $1, got back: $got"
    [ "$got" = "$1" ]
}

echo "== the package"
if [ -n "${FQDND_DEB_DIR:-}" ]; then
    debs=$FQDND_DEB_DIR
else
    debs=$base/debs
    tests/build-deb.sh "$debs"
fi
deb=$(ls "$debs"/fqdnd_*_*.deb)
version=$(dpkg-deb -f "$deb" Version)
echo "testing $(basename "$deb")"
# The container shares this machine's packages and has no network: what the
# package and the test need is installed here first.
need=(systemd-container dbus dnsmasq-base bind9-dnsutils nftables iproute2 python3 util-linux)
read -ra deps <<<"$(dpkg-deb -f "$deb" Depends | sed 's/([^)]*)//g; s/|[^,]*//g; s/,/ /g')"
missing=()
for p in "${need[@]}" "${deps[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    { apt-get update -qq && apt-get install -y --no-install-recommends "${missing[@]}"; } >/dev/null \
        || die "cannot install ${missing[*]} on this machine"
fi
# The upgrade: the same package with a higher version.
mkdir "$base/next"
dpkg-deb -R "$deb" "$base/next/tree"
sed -i "s/^Version: .*/Version: $version+sdtest1/" "$base/next/tree/DEBIAN/control"
dpkg-deb -b "$base/next/tree" "$base/next/fqdnd_${version}+sdtest1.deb" >/dev/null
rm -rf "$base/next/tree"

echo "== boot this machine's root in systemd-nspawn"
mkdir "$ct"
mount -t tmpfs -o size=4g,mode=0755 "$name" "$ct"
mkdir "$ct"/{up,work,root}
mount -t overlay "$name" -o "lowerdir=/,upperdir=$ct/up,workdir=$ct/work" "$root"
rm -f "$root/etc/machine-id"
# As on an administrator's machine, maintainer scripts may start services
# (this image may carry Docker's policy-rc.d, which says no).
rm -f "$root/usr/sbin/policy-rc.d"
mkdir -p "$root$T"
cp "$deb" "$base/next/fqdnd_${version}+sdtest1.deb" tests/systemd-peer.py "$root$T/"
# The unified cgroup hierarchy, as Debian 12 boots by default, whatever
# this machine mounts.
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -D "$root" --machine="$name" --register=no --keep-unit \
    --private-network --boot </dev/null >"$base/console.log" 2>&1 &
nspawn_pid=$!
for _ in $(seq 1 60); do
    for p in $(ps -o pid= --ppid "$nspawn_pid" 2>/dev/null); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = systemd ] && leader=$p
    done
    [ -n "$leader" ] && break
    alive "$nspawn_pid" || break
    sleep 0.5
done
[ -n "$leader" ] || { tail -20 "$base/console.log"; die "the container's systemd did not start"; }
in_ct true || die "cannot enter the container"
boot_state() { ct_timeout=180 in_ct systemctl is-system-running --wait; }
wait_for 180 boot_state >/dev/null || true
state=$(in_ct systemctl is-system-running || true)
check "the container booted (systemctl is-system-running: $state)" test "$state" = running -o "$state" = degraded
if [ "$state" = degraded ]; then in_ct systemctl --failed --no-legend | sed 's/^/     failed unit: /'; fi
check "the container has a network of its own (lo only)" test "$(in_ct ip -o link show | wc -l)" = 1
if in_ct dpkg -s fqdnd >/dev/null 2>&1; then
    echo "     (fqdnd is installed on this machine; purged in the container first)"
    in_ct_long apt-get purge -y fqdnd >/dev/null
fi

echo "== install"
check "apt-get install ./$(basename "$deb")" in_ct_long apt-get install -y "$T/$(basename "$deb")"
check "the unit is enabled" test "$(in_ct systemctl is-enabled fqdnd)" = enabled
running() { [ "$(in_ct systemctl show -P ActiveState,SubState fqdnd | paste -sd/)" = active/running ]; }
check "the postinst started it (Type=notify: active, running)" wait_for 30 running
check "Type=notify" test "$(in_ct systemctl show -P Type fqdnd)" = notify
status_text=$(in_ct systemctl show -P StatusText fqdnd)
check "its status text says what it enforces: \"$status_text\"" test -n "$status_text"
pid=$(main_pid)
proc_field() { in_ct sed -n "s/^$1:[[:space:]]*//p" "/proc/$pid/status"; }
cap_eff=$(proc_field CapEff)
check "CapEff is exactly CAP_NET_ADMIN and CAP_NET_RAW (0x3000): $cap_eff" test "$((16#$cap_eff))" = "$((0x3000))"
check "seccomp filter on (Seccomp: 2)" test "$(proc_field Seccomp)" = 2
check "NoNewPrivs: 1" test "$(proc_field NoNewPrivs)" = 1
check "runs as the fqdnd user" test "$(proc_field Uid | awk '{print $2}')" = "$(in_ct id -u fqdnd)"
in_ct systemd-analyze security --no-pager fqdnd.service >"$base/security.txt" 2>&1 || true
exposure=$(sed -n 's/.*Overall exposure level for fqdnd.service: \([0-9.]*\).*/\1/p' "$base/security.txt")
echo "     systemd-analyze security: exposure ${exposure:-?}; what costs most:"
grep '✗' "$base/security.txt" | awk '{print $NF "\t" $2}' | sort -rn | head -6 | sed 's/^/     | /'
check "systemd-analyze security: exposure ${exposure:-?} is at most 2.0" \
    awk -v e="${exposure:-99}" 'BEGIN { exit !(e <= 2.0) }'

echo "== host mode: a resolver on the loopback, servers behind a veth"
# Inside the container's own network namespace: 192.0.2.1 here, the
# servers in a namespace "srv" behind a veth, dnsmasq on 127.0.0.1:53.
setup() { "$@" >"$base/setup.out" 2>&1 || { cat "$base/setup.out"; die "$*"; }; }
setup in_ct ip netns add srv
setup in_ct ip link add v0 type veth peer name v1 netns srv
setup in_ct ip addr add 192.0.2.1/24 dev v0
setup in_ct ip link set v0 up
for a in 10 11 12 20 30; do setup in_ct ip -n srv addr add 192.0.2.$a/24 dev v1; done
setup in_ct ip -n srv link set v1 up
setup in_ct ip -n srv link set lo up
setup in_ct systemd-run --quiet --unit=fq-echo ip netns exec srv python3 "$T/systemd-peer.py" serve 80
setup in_ct systemd-run --quiet --unit=fq-dns dnsmasq --keep-in-foreground --no-resolv --no-hosts \
    --listen-address=127.0.0.1 --bind-interfaces --user=root --pid-file= \
    --address=/allowed.test/192.0.2.10 --address=/also.test/192.0.2.11 --address=/crash.test/192.0.2.12 \
    --address=/probe.test/192.0.2.20 --address=/other.test/192.0.2.30
setup wait_for 30 resolves in_ct allowed.test 192.0.2.10
setup wait_for 30 connects in_ct 192.0.2.10 80
check "without a policy, nobody reaches 192.0.2.10" connects as_nobody 192.0.2.10 80

echo "== a users policy: nobody"
in_ct tee /etc/fqdnd/policy.d/nobody.toml >/dev/null <<'EOF'
[[policy]]
name = "nobody"
[policy.selector]
users = ["nobody"]
[[policy.egress]]
to-fqdns = [{ match-name = "allowed.test" }]
ports = [{ port = 80, protocol = "tcp" }]
[[policy.egress]]
to-dns-servers = ["127.0.0.1"]
ports = [{ port = 53, protocol = "any" }]
dns = [{ match-name = "allowed.test" }]
EOF
check "systemctl reload fqdnd" in_ct systemctl reload fqdnd
check "the policy is in force (fqdnctl policy list)" wait_for 20 policies_are nobody
check "before any DNS answer, nobody is denied 192.0.2.10" fails connects as_nobody 192.0.2.10 80
check "control: root is not selected and reaches it" connects in_ct 192.0.2.10 80
check "nobody's query for an unlisted name is REFUSED" refused as_nobody other.test
check "nobody's query for allowed.test is answered" resolves as_nobody allowed.test 192.0.2.10
check "after the answer, nobody reaches 192.0.2.10" connects as_nobody 192.0.2.10 80
listed() { in_ct fqdnctl cache list | tee /dev/stderr | grep -qE '^uid:65534 +lookup +allowed\.test\. .*192\.0\.2\.10'; }
check "fqdnctl cache list: uid:65534 lookup allowed.test. 192.0.2.10" listed

echo "== a units policy: the transient service fq-probe, by its cgroup"
setup in_ct systemd-run --quiet --unit=fq-probe sleep infinity
in_ct tee /etc/fqdnd/policy.d/probe.toml >/dev/null <<'EOF'
[[policy]]
name = "probe"
[policy.selector]
units = ["fq-probe.service"]
[[policy.egress]]
to-fqdns = [{ match-name = "probe.test" }]
ports = [{ port = 80, protocol = "tcp" }]
[[policy.egress]]
to-dns-servers = ["127.0.0.1"]
ports = [{ port = 53, protocol = "any" }]
dns = [{ match-name = "probe.test" }]
EOF
check "systemctl reload fqdnd" in_ct systemctl reload fqdnd
check "both policies are in force" wait_for 20 policies_are nobody probe
in_probe_cgroup() { in_unit cat /proc/self/cgroup | grep -qx '0::/system.slice/fq-probe.service'; }
check "control: the probe runs in fq-probe.service's cgroup" in_probe_cgroup
check "before any DNS answer, fq-probe is denied 192.0.2.20" fails connects in_unit 192.0.2.20 80
check "root outside the unit is not selected: it reaches 192.0.2.20" connects in_ct 192.0.2.20 80
check "fq-probe's query for an unlisted name is REFUSED" refused in_unit other.test
check "fq-probe's query for probe.test is answered" resolves in_unit probe.test 192.0.2.20
check "after the answer, fq-probe reaches 192.0.2.20" connects in_unit 192.0.2.20 80
check "nobody's policy does not list probe.test: nobody is still denied 192.0.2.20" fails connects as_nobody 192.0.2.20 80
# At boot fqdnd starts before the network, long before the services that
# units policies name: a unit that is not running must not keep it down.
setup in_ct systemctl stop fq-probe
starts() { in_ct systemctl restart fqdnd && is_active || { in_ct journalctl -u fqdnd -n 3 --no-pager; false; }; }
check "a units policy whose unit is not running (as at boot) does not keep fqdnd from starting" starts
# fqdnd_journal PATTERN: the running fqdnd logged a line matching PATTERN.
fqdnd_journal() { in_ct journalctl --no-pager -o cat _PID="$(main_pid)" | grep -E "$1"; }
check "its journal names the unit that has no cgroup" wait_for 10 fqdnd_journal 'unit fq-probe\.service has no cgroup'
check "it follows the units' cgroups with inotify, in its sandbox" fqdnd_journal 'following the cgroups of 1 unit: inotify on'
without_cgroup() { in_ct fqdnctl metrics | tee /dev/stderr | grep -qx "fqdnd_units_without_cgroup $1"; }
check "fqdnctl metrics: fqdnd_units_without_cgroup 1" without_cgroup 1
setup in_ct systemd-run --quiet --unit=fq-probe sleep infinity
check "fq-probe starts: fqdnd puts its rules in place again, naming its cgroup" wait_for 20 fqdnd_journal 'fq-probe\.service started'
check "fq-probe is denied what its policy does not list (192.0.2.30)" fails connects in_unit 192.0.2.30 80
check "control: root reaches 192.0.2.30" connects in_ct 192.0.2.30 80
check "fqdnctl metrics: fqdnd_units_without_cgroup 0" without_cgroup 0

echo "== a units policy on a slice: a restart of a unit in it opens no window"
setup in_ct systemd-run --quiet --unit=fq-web --slice=fqweb.slice sleep infinity
in_ct tee /etc/fqdnd/policy.d/web.toml >/dev/null <<'EOF'
[[policy]]
name = "web"
[policy.selector]
units = ["fqweb.slice"]
[[policy.egress]]
to-cidrs = ["192.0.2.11/32"]
EOF
check "systemctl reload fqdnd" in_ct systemctl reload fqdnd
check "the three policies are in force" wait_for 20 policies_are nobody probe web
in_web() { in_ct sh -c 'echo $$ > /sys/fs/cgroup/fqweb.slice/fq-web.service/cgroup.procs && exec "$@"' sh "$@"; }
check "a process of fq-web.service (in fqweb.slice) reaches 192.0.2.11" connects in_web 192.0.2.11 80
check "and is denied 192.0.2.30" fails connects in_web 192.0.2.30 80
inode() { in_ct stat -c %i "$1" || echo none; }
slice_id=$(inode /sys/fs/cgroup/fqweb.slice)
service_id=$(inode /sys/fs/cgroup/fqweb.slice/fq-web.service)
setup in_ct systemctl restart fq-web
check "systemctl restart fq-web: the service has a new cgroup" test "$(inode /sys/fs/cgroup/fqweb.slice/fq-web.service)" != "$service_id"
check "and the slice's is the same ($slice_id): the rules that name it stay right" test "$(inode /sys/fs/cgroup/fqweb.slice)" = "$slice_id"
check "the restarted service is denied 192.0.2.30 at once" fails connects in_web 192.0.2.30 80
check "and reaches 192.0.2.11" connects in_web 192.0.2.11 80
# At boot the slice is made when its first unit starts, after fqdnd: unless
# fqdnd starts it (a drop-in), as docs/ruleset.md says.
setup in_ct systemctl stop fqweb.slice
setup in_ct systemctl restart fqdnd
check "without fqweb.slice, fqdnd starts with one unit without a cgroup" wait_for 10 without_cgroup 1
setup in_ct mkdir -p /etc/systemd/system/fqdnd.service.d
in_ct sh -c 'printf "[Unit]\nWants=fqweb.slice\nAfter=fqweb.slice\n" > /etc/systemd/system/fqdnd.service.d/slice.conf'
setup in_ct systemctl daemon-reload
setup in_ct systemctl restart fqdnd
check "with Wants= and After=fqweb.slice in a drop-in, the slice is there before fqdnd starts" wait_for 10 without_cgroup 0
setup in_ct rm /etc/systemd/system/fqdnd.service.d/slice.conf /etc/fqdnd/policy.d/web.toml
setup in_ct systemctl daemon-reload
in_ct systemctl stop fq-probe fqweb.slice >/dev/null 2>&1 || true
setup in_ct rm /etc/fqdnd/policy.d/probe.toml
in_ct systemctl reset-failed fqdnd >/dev/null 2>&1 || true
setup in_ct systemctl restart fqdnd
setup wait_for 20 policies_are nobody

echo "== fqdnctl: root, a member of the fqdnd group, nobody"
setup in_ct useradd --system --no-create-home --user-group --groups fqdnd fqreader
root_status() { in_ct fqdnctl status | grep 'Table: inet fqdnd'; }
check "root: fqdnctl status" root_status
check "root: fqdnctl cache list" cache_has allowed.test
check "root: fqdnctl cache clean (a name nobody asked for)" in_ct fqdnctl cache clean -p nothing.invalid -f
check "fqdnd group: fqdnctl status" as_reader fqdnctl status
check "fqdnd group: fqdnctl cache list" as_reader fqdnctl cache list
check "fqdnd group: fqdnctl cache clean is access denied" denied as_reader fqdnctl cache clean -f
check "fqdnd group: fqdnctl reload is access denied" denied as_reader fqdnctl reload
check "nobody: fqdnctl status is access denied" denied as_nobody fqdnctl status
check "nobody: fqdnctl cache list is access denied" denied as_nobody fqdnctl cache list
check "what the reader could not clean is still there" cache_has allowed.test

echo "== reload: a changed policy applies, a broken one is refused"
check "before: nobody's query for also.test is REFUSED" refused as_nobody also.test
in_ct sed -i -e 's/^to-fqdns = .*/to-fqdns = [{ match-name = "allowed.test" }, { match-name = "also.test" }, { match-name = "crash.test" }]/' \
    -e 's/^dns = .*/dns = [{ match-name = "allowed.test" }, { match-name = "also.test" }, { match-name = "crash.test" }]/' \
    /etc/fqdnd/policy.d/nobody.toml
check "systemctl reload fqdnd with the changed policy" in_ct systemctl reload fqdnd
selector_shown() { in_ct fqdnctl selectors | grep also.test; }
check "fqdnctl selectors shows the new name" wait_for 20 selector_shown
check "nobody's query for also.test is answered now" resolves as_nobody also.test 192.0.2.11
check "and nobody reaches 192.0.2.11" connects as_nobody 192.0.2.11 80
pid=$(main_pid)
in_ct sh -c 'printf "[[policy]]\nname = \"broken\"\n[policy.selector]\nusers = [\"nobody\"\n" > /etc/fqdnd/policy.d/broken.toml'
check "systemctl reload fqdnd fails on a broken policy" fails in_ct systemctl reload fqdnd
journal_has() { in_ct journalctl -u fqdnd -n 40 --no-pager | grep -E "$1"; }
check "the journal says where: broken.toml:LINE:COLUMN" wait_for 10 journal_has 'broken\.toml:[0-9]+:[0-9]+:'
sleep 1 # what a HUP would have done, were one sent, is done by now
same_process() { is_active && [ "$(main_pid)" = "$1" ]; }
check "fqdnd is still active, the same process" same_process "$pid"
check "the old policy stays in force (fqdnctl policy list)" policies_are nobody
check "old behaviour: other.test is still REFUSED for nobody" refused as_nobody other.test
check "old behaviour: nobody still reaches 192.0.2.11" connects as_nobody 192.0.2.11 80
setup in_ct rm /etc/fqdnd/policy.d/broken.toml

echo "== crashes: systemd restarts fqdnd; the cache and open flows survive"
setup in_ct install -d -o nobody -g nogroup "$T/flow"
setup in_ct systemd-run --quiet --unit=fq-hold -p User=nobody -p Group=nogroup \
    python3 "$T/systemd-peer.py" hold 192.0.2.10 80 "$T/flow"
check "nobody holds a flow open to 192.0.2.10" wait_for 20 in_ct test -e "$T/flow/up"
check "the flow passes bytes" flow_passes before
# The mapping is on disk before its answer was released: in the journal
# (the state file follows once the journal has grown, or within a minute).
check "the state directory holds allowed.test" \
    wait_for 30 in_ct sh -c 'cat /var/lib/fqdnd/cache.json /var/lib/fqdnd/cache.journal.* 2>/dev/null | grep -q allowed.test'
for sig in SEGV KILL; do
    pid=$(main_pid)
    restarts=$(in_ct systemctl show -P NRestarts fqdnd)
    in_ct kill -s "$sig" "$pid"
    check "kill -$sig: systemd restarts fqdnd (new MainPID, active)" wait_for 60 restarted "$pid"
    check "kill -$sig: NRestarts went up by one" test "$(in_ct systemctl show -P NRestarts fqdnd)" = $((restarts + 1))
    check "kill -$sig: the cache came back (fqdnctl cache list has allowed.test)" wait_for 10 cache_has allowed.test
    check "kill -$sig: the open flow passes bytes after the restart" flow_passes "after-$sig"
    check "kill -$sig: nobody still reaches 192.0.2.10" connects as_nobody 192.0.2.10 80
done
# A name learned right before a crash: SIGSEGV as soon as the answer is
# out, before the state file follows (issue 16: the crash-safe journal).
pid=$(main_pid)
in_ct sh -c "setpriv --reuid=nobody --regid=nogroup --clear-groups dig +short +time=3 +tries=2 @127.0.0.1 crash.test >$T/crash.answer; kill -SEGV $pid"
check "crash.test was answered just before the SIGSEGV" test "$(in_ct cat "$T/crash.answer")" = 192.0.2.12
check "kill -SEGV right after the answer: systemd restarts fqdnd" wait_for 60 restarted "$pid"
# On failure, the evidence: what fqdnd says of the address, what the kernel holds.
crash_name_kept() {
    wait_for 10 cache_has crash.test && return 0
    echo "fqdnctl explain 192.0.2.12:"; in_ct fqdnctl explain 192.0.2.12
    echo "the kernel's set:"; in_ct nft list set inet fqdnd fqdn4 | grep -o '[^ ,{]* \. [^ ,]* \. 192\.0\.2\.12[^,}]*'
    false
}
check "a name learned right before SIGSEGV is in fqdnctl cache list after the restart (journal, issue 16)" crash_name_kept
check "nobody reaches crash.test's address (the kernel kept it)" connects as_nobody 192.0.2.12 80

echo "== the watchdog: a stopped fqdnd is killed and restarted"
# The test's own restarts are many in little time: clear the start limit.
in_ct systemctl reset-failed fqdnd >/dev/null 2>&1 || true
setup in_ct mkdir -p /etc/systemd/system/fqdnd.service.d
in_ct sh -c 'printf "[Service]\nWatchdogSec=3s\n" > /etc/systemd/system/fqdnd.service.d/watchdog.conf'
setup in_ct systemctl daemon-reload
setup in_ct systemctl restart fqdnd
check "the drop-in is in force (WatchdogUSec=3s)" test "$(in_ct systemctl show -P WatchdogUSec fqdnd)" = 3s
pid=$(main_pid)
sleep 8
check "fqdnd keeps the watchdog fed: still the same process after 8 s" same_process "$pid"
pid=$(main_pid)
in_ct kill -STOP "$pid"
check "kill -STOP: systemd kills it and starts a new fqdnd" wait_for 90 restarted "$pid"
check "the journal says: Watchdog timeout" journal_has 'Watchdog timeout' 
check "the open flow passes bytes after the watchdog's restart" flow_passes after-watchdog
setup in_ct rm /etc/systemd/system/fqdnd.service.d/watchdog.conf
setup in_ct systemctl daemon-reload
in_ct systemctl reset-failed fqdnd >/dev/null 2>&1 || true
setup in_ct systemctl restart fqdnd
setup wait_for 30 is_active

echo "== another process holds the table's name at start"
# fqdnd waits, its status says why, and it is active once the name is
# free: no exits for systemd's start limit to give up on.
setup in_ct systemctl stop fqdnd
setup in_ct nft delete table inet fqdnd
in_ct sh -c '(echo "add table inet fqdnd { flags owner; }"; sleep 8) | nft -i >/dev/null' &
holder=$!
setup wait_for 5 in_ct nft list table inet fqdnd
restarts=$(in_ct systemctl show -P NRestarts fqdnd)
setup in_ct systemctl start --no-block fqdnd
held_status() { in_ct systemctl show -P StatusText fqdnd | grep 'table inet fqdnd is held by another process'; }
check "while the name is held, its status says so" wait_for 6 held_status
check "and fqdnd is still starting (activating)" test "$(in_ct systemctl show -P ActiveState fqdnd)" = activating
wait "$holder"
check "the owner gone: fqdnd is active within 10 s" wait_for 10 is_active
check "without a restart (NRestarts $restarts)" test "$(in_ct systemctl show -P NRestarts fqdnd)" = "$restarts"
fqdnds_table() { in_ct nft list table inet fqdnd | grep 'set fqdn4'; }
check "its table is in place" fqdnds_table
check "nobody still reaches 192.0.2.10" connects as_nobody 192.0.2.10 80

echo "== upgrade, remove, purge"
pid=$(main_pid)
check "apt-get install ./fqdnd_${version}+sdtest1.deb (an upgrade)" in_ct_long apt-get install -y "$T/fqdnd_${version}+sdtest1.deb"
check "the new version is installed" test "$(in_ct dpkg-query -W -f '${Version}' fqdnd)" = "$version+sdtest1"
check "the upgrade restarted fqdnd (new MainPID, active)" wait_for 60 restarted "$pid"
check "the open flow passes bytes after the upgrade" flow_passes after-upgrade
check "the cache is still there" wait_for 10 cache_has allowed.test
check "nobody still reaches 192.0.2.10" connects as_nobody 192.0.2.10 80
check "nobody is still denied what no answer opened (192.0.2.30)" fails connects as_nobody 192.0.2.30 80
in_ct touch "$T/flow/stop"
check "apt-get remove fqdnd" in_ct_long apt-get remove -y fqdnd
check "remove stopped fqdnd" test "$(in_ct systemctl show -P ActiveState fqdnd)" = inactive
no_table() { ! in_ct nft list tables | tee /dev/stderr | grep -q 'inet fqdnd'; }
check "remove deleted its table (nft list tables)" no_table
check "remove kept the conffile and the state" in_ct test -e /etc/fqdnd/fqdnd.toml -a -e /var/lib/fqdnd/cache.json
check "apt-get purge fqdnd" in_ct_long apt-get purge -y fqdnd
check "purge deleted /var/lib/fqdnd" in_ct test ! -e /var/lib/fqdnd
check "purge deleted the conffile /etc/fqdnd/fqdnd.toml" in_ct test ! -e /etc/fqdnd/fqdnd.toml
# The administrator's own policy is no file of the package: dpkg leaves it
# (and says so), as it leaves any file it did not install.
admin_files_only() { [ "$(in_ct find /etc/fqdnd -type f | tee /dev/stderr)" = /etc/fqdnd/policy.d/nobody.toml ]; }
check "purge left in /etc/fqdnd only the administrator's own policy file" admin_files_only
# debian/fqdnd.postrm and tests/package.sh: the user and group stay, as
# Debian policy asks (files they own may remain elsewhere).
check "the fqdnd user and group stay after purge (Debian policy)" in_ct getent passwd fqdnd

echo "took $((SECONDS - started)) s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
