#!/bin/bash
# fqdnd --check-config and fqdnctl check-config on conf/ and on broken files:
# exit codes, the one-line summary, and errors at the right line and column.
set -u
fqdnd=$1 fqdnctl=$2 src=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0 checks=0

expect() { # expect NAME WANT_EXIT WANT_TEXT -- COMMAND...
    local name=$1 want_exit=$2 want_text=$3
    shift 4
    local out rc
    out=$("$@" 2>&1); rc=$?
    checks=$((checks + 1))
    if [ "$rc" != "$want_exit" ] || ! grep -qF -- "$want_text" <<<"$out"; then
        echo "FAIL $name: exit $rc (want $want_exit), output:"; echo "$out"; echo "  wanted: $want_text"
        failures=$((failures + 1))
    else
        echo "ok   $name"
    fi
}

expect "fqdnd accepts conf/" 0 "configuration ok: 2 files, 1 policy, 4 egress rules, 2 FQDN selectors" \
    -- "$fqdnd" --check-config --config "$src/conf/fqdnd.toml"
expect "fqdnctl accepts conf/" 0 "configuration ok: 2 files, 1 policy" \
    -- "$fqdnctl" check-config "$src/conf/fqdnd.toml"

mkdir -p "$work/policy.d"
cp "$src/conf/fqdnd.toml" "$work/"
sed 's/"\*\.k8s\.intra"/"*.k8s..intra"/' "$src/conf/policy.d/example.toml" > "$work/policy.d/example.toml"
line=$(grep -n 'k8s\.\.intra' "$work/policy.d/example.toml" | cut -d: -f1)
col=$(awk '/k8s\.\.intra/ { print index($0, "\"*.k8s") }' "$work/policy.d/example.toml")
expect "a bad pattern is refused at its line and column" 1 \
    "$work/policy.d/example.toml:$line:$col: match-pattern \"*.k8s..intra\" has an empty label" \
    -- "$fqdnd" --check-config --config "$work/fqdnd.toml"
expect "fqdnctl reports it the same way" 1 "$work/policy.d/example.toml:$line:$col:" \
    -- "$fqdnctl" check-config "$work/fqdnd.toml"

printf '[daemon]\nqueue = 5300\nfail-opn = true\n[fqdn]\nmin-ttl = "soon"\n' > "$work/fqdnd.toml"
cp "$src/conf/policy.d/example.toml" "$work/policy.d/example.toml"
expect "every error is listed: typo" 1 "$work/fqdnd.toml:3:1: unknown key \"fail-opn\" in [daemon]; did you mean \"fail-open\"?" \
    -- "$fqdnd" --check-config --config "$work/fqdnd.toml"
expect "every error is listed: duration" 1 "$work/fqdnd.toml:5:11: min-ttl: \"soon\" is not a duration" \
    -- "$fqdnd" --check-config --config "$work/fqdnd.toml"
expect "and counted" 1 "configuration refused: 2 errors" \
    -- "$fqdnd" --check-config --config "$work/fqdnd.toml"

printf '[fqdn]\nmax-names = "many"\nmax-addresses = 0\n' > "$work/fqdnd.toml"
expect "the cache bound: a type error" 1 "$work/fqdnd.toml:2:13: max-names: expected an integer, got a string" \
    -- "$fqdnctl" check-config "$work/fqdnd.toml"
expect "the cache bound: out of range" 1 "$work/fqdnd.toml:3:17: max-addresses: 0 is out of range (1 to 1000000000)" \
    -- "$fqdnctl" check-config "$work/fqdnd.toml"
printf '[fqdn]\nmax-names = 5000\nmax-addresses = 20000\n' > "$work/fqdnd.toml"
expect "the cache bound: accepted" 0 "configuration ok" -- "$fqdnctl" check-config "$work/fqdnd.toml"

printf '[daemon\n' > "$work/fqdnd.toml"
expect "a syntax error" 1 "$work/fqdnd.toml:1:" -- "$fqdnd" --check-config --config "$work/fqdnd.toml"
expect "an explicit config that is missing" 1 "$work/none.toml: cannot read: No such file or directory" \
    -- "$fqdnd" --check-config --config "$work/none.toml"
expect "usage error exits 2" 2 "Usage: fqdnd" -- "$fqdnd" --bogus
expect "fqdnctl usage error exits 2" 2 "unknown verb" -- "$fqdnctl" frobnicate
expect "fqdnctl verb help" 0 "Usage: fqdnctl check-config [PATH]" -- "$fqdnctl" check-config --help
expect "versions" 0 "fqdnd 0.1.0" -- "$fqdnd" --version

echo "$((checks - failures)) passed, $failures failed"
[ "$failures" = 0 ]
