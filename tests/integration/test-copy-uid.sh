#!/bin/bash
# Queries under a DNS rule allowing every name pass unheld and are copied
# to fqdnd over NFLOG (attack-15). A policy that selects local users must
# still have its answers matched: the copy has to say whose socket sent the
# query (the NFLOG instance flag for uid/gid), or fqdnd finds the query
# selected by no policy, forgets it, and drops its answer.
. "$(dirname "$0")/lib.sh"

router_topology
tcp_server srv 80
printf '203.0.113.2 echo.example\n' > "$WORK/hosts"
background srv dnsmasq --keep-in-foreground --no-resolv --no-hosts --addn-hosts="$WORK/hosts" \
    --listen-address=203.0.113.53 --bind-interfaces --local-ttl=30 --user=root --pid-file=
for i in $(seq 1 50); do
    in_ns srv dig +short +time=1 +tries=1 @203.0.113.53 echo.example | grep -q 203.0.113.2 && break; sleep 0.1
done

mkdir -p "$WORK/policy.d"
printf '[daemon]\nstate-directory = "%s/state"\n' "$WORK" > "$WORK/fqdnd.toml"
cat > "$WORK/policy.d/user.toml" <<TOML
[[policy]]
name = "user"
[policy.selector]
users = ["nobody"]
[[policy.egress]]
to-fqdns = [{ match-name = "echo.example" }]
[[policy.egress]]
to-dns-servers = ["203.0.113.53"]
dns = [{ match-pattern = "*" }]
TOML
start_fqdnd router "$WORK/fqdnd.toml" || exit 1

as_nobody() { in_ns router setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups "$@"; }
check "the user's queries are copied, not queued" \
    bash -c "ip netns exec $(ns router) nft list chain inet fqdnd output | grep -q 'fqdnd query'"
got=$(as_nobody dig +short +time=2 +tries=1 @203.0.113.53 echo.example | grep -v '\.$')
check "nobody resolves an allowed name through the copied path" test "$got" = 203.0.113.2
check "and connects to it" as_nobody /usr/bin/python3 "$TESTS_DIR/tcp_client.py" 203.0.113.2 80 5
finish
