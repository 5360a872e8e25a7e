#!/bin/bash
# Runs every libFuzzer target under ASan+UBSan, each bounded: for SECONDS
# (default 60) or, with --runs N, for N executions. Builds build-fuzz with
# clang first when needed. New inputs go to a scratch corpus, never to the
# tree; a crash fails the run and leaves its input in the scratch directory,
# which is printed. Prints one line per target: executions, rate, coverage.
# Usage: tests/fuzz/run.sh [SECONDS] | --runs N [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../.."
limit=(-max_total_time="${1:-60}")
if [ "${1:-}" = "--runs" ]; then
    limit=(-runs="$2"); shift 2
elif [ $# -gt 0 ]; then
    shift
fi
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config pattern dns state journal audit)

if [ ! -f build-fuzz/build.ninja ]; then
    CXX=clang++ meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
        -Dtests=disabled -Dman=disabled >/dev/null
fi
ninja -C build-fuzz >/dev/null

scratch=$(mktemp -d /tmp/fqdnd-fuzz.XXXXXX)
status=0
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    log="$scratch/$t.log"
    if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        build-fuzz/tests/fuzz/fuzz-"$t" "${limit[@]}" -print_final_stats=1 -artifact_prefix="$scratch/$t-" \
        "$scratch/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
        result=ok
    else
        result=FAILED; status=1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
    printf '%-8s %-7s %12s executions %8s/s  coverage %s\n' "$t" "$result" "${runs:-?}" "${rate:-?}" "${cov:-?}"
    if [ "$result" != ok ]; then
        grep -E 'ERROR|SUMMARY|runtime error' "$log" | head -5
        echo "  log and input kept in $scratch"
    fi
done
[ "$status" = 0 ] && rm -rf "$scratch"
exit "$status"
