#!/bin/bash
# The systemd unit verifies clean (systemd-analyze verify, pointed at the
# built binary) and the bus policy is well-formed XML.
set -u
build=$1 src=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
sed "s|^ExecStartPre=.*fqdnd |ExecStartPre=$build/daemon/fqdnd |; s|^ExecReload=.*fqdnd |ExecReload=$build/daemon/fqdnd |; s|^ExecStart=.*fqdnd$|ExecStart=$build/daemon/fqdnd|" \
    "$build/systemd/fqdnd.service" > "$work/fqdnd.service"
if out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$work/fqdnd.service" 2>&1) && [ -z "$out" ]; then
    echo "ok   systemd-analyze verify fqdnd.service"
else
    echo "FAIL systemd-analyze verify fqdnd.service:"; echo "$out"; failures=$((failures + 1))
fi
if python3 -c 'import sys, xml.dom.minidom; xml.dom.minidom.parse(sys.argv[1])' "$src/systemd/org.fqdnd1.conf"; then
    echo "ok   org.fqdnd1.conf is well-formed"
else
    echo "FAIL org.fqdnd1.conf"; failures=$((failures + 1))
fi
echo "$((2 - failures)) passed, $failures failed"
[ "$failures" = 0 ]
