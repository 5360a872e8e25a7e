#!/bin/bash
# Every man page renders without a warning (man --warnings).
set -u
failures=0 count=0
for page in "$@"; do
    count=$((count + 1))
    out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
    if [ -n "$out" ]; then
        echo "FAIL $page:"; echo "$out"; failures=$((failures + 1))
    else
        echo "ok   $(basename "$page")"
    fi
done
echo "$((count - failures)) passed, $failures failed"
[ "$failures" = 0 ] && [ "$count" -gt 0 ]
