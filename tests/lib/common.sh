# Shared helpers for the shell test suites. Source it; it defines small assertion helpers that
# count passes and failures and a `finish` that prints the `RESULT passed=N failed=M` line
# tests/run.sh reads.
PASSED=${PASSED:-0}
FAILED=${FAILED:-0}

ok()   { PASSED=$((PASSED + 1)); echo "  ok   $*"; }
fail() { FAILED=$((FAILED + 1)); echo "  FAIL $*"; }
# check DESCRIPTION COMMAND...: pass when the command succeeds. The command's output is not
# shown, except a wait_for's time-out line when the check fails (it says what was waited for).
CHECK_ERR=${TMPDIR:-/tmp}/vah-check-err.$$
check() {
  local d=$1; shift
  if "$@" >/dev/null 2>"$CHECK_ERR"; then ok "$d"; else fail "$d"; grep -h '(timed out after' "$CHECK_ERR" >&2; fi
  rm -f "$CHECK_ERR"
}
# check_not DESCRIPTION COMMAND...: pass when the command fails.
check_not() { local d=$1; shift; if "$@" >/dev/null 2>&1; then fail "$d"; else ok "$d"; fi; }
finish() { echo "RESULT passed=$PASSED failed=$FAILED${1:+ skipped=$1}"; [ "$FAILED" -eq 0 ]; }

# wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds (polled every 0.2 s), at most SECONDS.
# Every wait in the suites is one of these: a condition, a generous deadline (a slow machine, a
# libvirtd that re-probes QEMU, a TCG guest), and on time-out one line on stderr that names what
# was waited for, so that a failure says why instead of running on into the next check.
wait_for() {
  local secs=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "  (timed out after ${secs}s waiting for: $what)" >&2
      return 1
    fi
    sleep 0.2
  done
}
# log_has FILE FIXED-STRING [FROM-LINE]: FILE has the string (after line FROM-LINE) — for wait_for.
log_has() { [ -f "$1" ] && tail -n +"$((${3:-0} + 1))" "$1" | grep -qF -- "$2"; }
