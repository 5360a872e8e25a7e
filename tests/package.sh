#!/bin/bash
# The Debian package, as CI checks it: built from a clean copy of the tree
# with dpkg-buildpackage, checked by lintian, installed with apt-get on this
# machine, looked at, upgraded in place, and purged. Whatever the maintainer
# scripts do to nftables happens in a network namespace of this script's
# own, and no service is started (policy-rc.d), so the machine's ruleset is
# never touched. Usage: tests/package.sh (as root); with FQDND_DEB_DIR set
# to a directory that tests/build-deb.sh filled, that package is tested.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
export DEBIAN_FRONTEND=noninteractive

work=$(mktemp -d /tmp/fqdnd-pkg.XXXXXX)
ns=fqdnd-pkg-$$
made_policy_rc=""
cleanup() {
    ip netns del "$ns" 2>/dev/null || true
    [ -n "$made_policy_rc" ] && rm -f /usr/sbin/policy-rc.d
    rm -rf "$work"
}
trap cleanup EXIT

CHECK_OUT=$work/check.out
. tests/check.sh

echo "== build: the two commands of the README, from a clean copy of the tree"
apt-get install -y --no-install-recommends dpkg-dev lintian >/dev/null
if [ -n "${FQDND_DEB_DIR:-}" ]; then
    debs=$FQDND_DEB_DIR     # built by tests/build-deb.sh already (.ci/run)
else
    debs=$work
    tests/build-deb.sh "$debs"
fi
deb=$(ls "$debs"/fqdnd_*_*.deb)
echo "built $(basename "$deb")"

echo "== lintian"
# Errors fail; warnings and notes are listed (docs/packaging.md says why
# each that is left stays).
lintian --display-info --pedantic --fail-on none "$debs"/fqdnd_*.changes 2>&1 | grep -v 'root privileges' || true
check "lintian reports no errors" lintian --fail-on error "$debs"/fqdnd_*.changes

echo "== install"
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy_rc=1
fi
check "apt-get install ./fqdnd_*.deb" apt-get install -y "$deb"
for f in /usr/sbin/fqdnd /usr/bin/fqdnctl /lib/systemd/system/fqdnd.service /usr/lib/sysusers.d/fqdnd.conf \
    /usr/share/dbus-1/system.d/org.fqdnd1.conf /etc/fqdnd/fqdnd.toml /usr/share/man/man8/fqdnd.8.gz \
    /usr/share/man/man8/fqdnctl.8.gz /usr/share/man/man5/fqdnd.toml.5.gz /usr/share/man/man5/org.fqdnd1.5.gz \
    /usr/share/bash-completion/completions/fqdnctl /usr/share/doc/fqdnd/examples/example.toml \
    /usr/share/doc/fqdnd/copyright; do
    check "installed: $f" test -e "$f"
done
check "installed: /etc/fqdnd/policy.d (empty)" test -d /etc/fqdnd/policy.d
check "/etc/fqdnd/fqdnd.toml is a conffile" grep -qx /etc/fqdnd/fqdnd.toml /var/lib/dpkg/info/fqdnd.conffiles
check "the fqdnd user and group exist (sysusers.d)" bash -c "getent passwd fqdnd && getent group fqdnd"
check "the unit is enabled" test -L /etc/systemd/system/multi-user.target.wants/fqdnd.service
check "fqdnd --version" bash -c "/usr/sbin/fqdnd --version | grep -q '^fqdnd [0-9]'"
check "fqdnctl --version" bash -c "/usr/bin/fqdnctl --version | grep -q '^fqdnctl [0-9]'"
check "fqdnd --check-config on the shipped config" /usr/sbin/fqdnd --check-config
check "the shipped example policy checks too" bash -c "d=\$(mktemp -d) && mkdir \$d/policy.d && cp /usr/share/doc/fqdnd/examples/example.toml \$d/policy.d/ && touch \$d/fqdnd.toml && /usr/sbin/fqdnd --check-config --config \$d/fqdnd.toml; r=\$?; rm -rf \$d; exit \$r"
check "systemd-analyze verify on the installed unit" bash -c \
    "out=\$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify /lib/systemd/system/fqdnd.service 2>&1); echo \"\$out\"; [ -z \"\$out\" ]"
check "man fqdnd renders" bash -c "MANWIDTH=80 man --warnings fqdnd 2>&1 >/dev/null | grep -c . | grep -qx 0"

# The maintainer scripts' nftables work, in a namespace that holds a table
# inet fqdnd as a running fqdnd would have left it.
ip netns add "$ns"
ip netns exec "$ns" nft add table inet fqdnd
echo "== upgrade (reinstall): enforcement stays"
check "dpkg -i over the installed package" ip netns exec "$ns" dpkg -i "$deb"
check "the table is still there after an upgrade" ip netns exec "$ns" nft list table inet fqdnd
mkdir -p /var/lib/fqdnd && echo '[]' > /var/lib/fqdnd/cache.json

echo "== remove, then purge"
check "apt-get remove" ip netns exec "$ns" apt-get remove -y fqdnd
check_gone() { ! ip netns exec "$ns" nft list table inet fqdnd; }
check "remove took the table away (fqdnd --remove-rules)" check_gone
check "remove kept the conffile and the state" test -e /etc/fqdnd/fqdnd.toml -a -e /var/lib/fqdnd/cache.json
check "apt-get purge" ip netns exec "$ns" apt-get purge -y fqdnd
check "purge removed the state directory" test ! -e /var/lib/fqdnd
check "purge removed /etc/fqdnd" test ! -e /etc/fqdnd
check "purge removed the unit's enable link" test ! -e /etc/systemd/system/multi-user.target.wants/fqdnd.service
check "nothing of the package is left in dpkg's database" bash -c "! dpkg -s fqdnd 2>/dev/null | grep -q '^Status: install'"
leftover=$(for f in /usr/sbin/fqdnd /usr/bin/fqdnctl /lib/systemd/system/fqdnd.service /usr/lib/sysusers.d/fqdnd.conf \
    /usr/share/dbus-1/system.d/org.fqdnd1.conf /usr/share/doc/fqdnd; do [ -e "$f" ] && echo "$f"; done; true)
check "no file of the package is left" test -z "$leftover"
check "the fqdnd user stays, as Debian policy wants" getent passwd fqdnd

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
