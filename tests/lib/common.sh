# Shared helpers for the shell test suites. Source it; it defines small assertion helpers that
# count passes and failures and a `finish` that prints the `RESULT passed=N failed=M` line
# tests/run.sh reads.
PASSED=${PASSED:-0}
FAILED=${FAILED:-0}

ok()   { PASSED=$((PASSED + 1)); echo "  ok   $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL $*"; }
# check DESCRIPTION COMMAND...: pass when the command succeeds.
check() { local d=$1; shift; if "$@" >/dev/null 2>&1; then ok "$d"; else fail "$d"; fi; }
# check_not DESCRIPTION COMMAND...: pass when the command fails.
check_not() { local d=$1; shift; if "$@" >/dev/null 2>&1; then fail "$d"; else ok "$d"; fi; }
finish() { echo "RESULT passed=$PASSED failed=$FAILED${1:+ skipped=$1}"; [ "$FAILED" -eq 0 ]; }
