#!/usr/bin/env bash
# End-to-end suites against a real libvirtd + QEMU (TCG) on this machine, as root.
# Starts virtlogd/libvirtd when they are not running (and stops only what it started), runs
# every tests/e2e/<suite>.sh in order, and prints one `RESULT passed=N failed=M` line.
# Usage: tests/e2e/run.sh [SUITE...]   (names: install libvirt admin wrapper hung load migrate)
# (migrate runs two libvirt hosts of its own in namespaces, not the daemons started here)
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd); export ROOT
. tests/lib/common.sh
. tests/e2e/lib.sh

start_daemons
remove_test_guests
trap 'remove_test_guests; stop_daemons' EXIT

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(install libvirt admin wrapper hung load migrate)
for s in "${suites[@]}"; do
  f="tests/e2e/$s.sh"
  [ -f "$f" ] || { echo "(no suite $s)"; continue; }
  echo "--- e2e/$s"
  t0=$SECONDS
  out=$(mktemp)
  bash "$f" 2>&1 | tee "$out"
  line=$(grep -E '^RESULT passed=' "$out" | tail -n1)
  p=$(sed -nE 's/^RESULT passed=([0-9]+).*/\1/p' <<<"$line"); f_=$(sed -nE 's/.*failed=([0-9]+).*/\1/p' <<<"$line")
  if [ -z "$line" ]; then fail "e2e/$s produced no RESULT line"; else PASSED=$((PASSED + p)); FAILED=$((FAILED + f_)); fi
  echo "--- e2e/$s: ${p:-0} passed, ${f_:-?} failed ($((SECONDS - t0))s)"
  rm -f "$out"
done
finish
