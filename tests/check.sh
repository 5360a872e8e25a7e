# check WHAT CMD...: runs CMD, prints "ok   WHAT" or "FAIL WHAT" with the
# first lines of its output, and counts into $passed and $failed. For the
# scripts that test the package (sourced; CHECK_OUT names the scratch file).
passed=0 failed=0
check() {
    local what=$1; shift
    if "$@" >"$CHECK_OUT" 2>&1; then
        echo "ok   $what"; passed=$((passed + 1))
    else
        echo "FAIL $what"; sed 's/^/     | /' "$CHECK_OUT" | head -20; failed=$((failed + 1))
    fi
}
