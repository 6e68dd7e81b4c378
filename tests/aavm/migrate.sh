#!/usr/bin/env bash
# Live migration between two AppArmor hosts (issue #16): two aavm VMs at once, each -smp 1, joined
# by a QEMU socket netdev on 127.0.0.1 (192.168.77.1 and .2 inside) and a shared host directory
# (9p, same path in both: the guest's disk and the barrier files). Each runs
# tests/aavm/migrate-host.sh (package installed, libvirt's AppArmor driver on, libvirtd on TCP):
# a guest goes a->b and back with shared storage, then a->b and back --p2p --tunnelled; the destination runs QEMU as
# libvirt-<uuid> (enforce), the source unloads and removes the profile, no apparmor="DENIED".
# As root; holds /tmp/vah-vm.lock (the two VMs count as one VM user). tests/run.sh: suite migrate.
# Prints both hosts' ok/FAIL lines, the wall time, and one `RESULT passed=N failed=M` line.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOCK=/tmp/vah-vm.lock
if [ -z "${VAH_VM_LOCKED:-}" ]; then
  for fd in /proc/$$/fd/*; do [ "$(readlink "$fd")" = "$LOCK" ] && export VAH_VM_LOCKED=1; done
  [ -n "${VAH_VM_LOCKED:-}" ] || exec env VAH_VM_LOCKED=1 flock "$LOCK" "$0" "$@"
fi
. "$ROOT/tests/lib/common.sh"
cd "$ROOT" || exit 1
AAVM=$HERE/aavm
T0=$SECONDS

"$AAVM" --build >/tmp/vah-aavm-migrate-build.log 2>&1 || {
  reason=$(sed -n 's/^aavm: cannot run: //p' /tmp/vah-aavm-migrate-build.log | head -n1)
  [ -n "$reason" ] && { finish "$reason"; exit 0; }
  cat /tmp/vah-aavm-migrate-build.log; fail "aavm --build"; finish; exit 1
}
[ -x target/release/virt-aa-hook ] || { fail "target/release/virt-aa-hook missing (cargo build --release)"; finish; exit 1; }
# The package the VMs install (as tests/aavm/suite.sh makes it; the same directory).
rm -rf target/debian/aavm
PATH=$PATH:/root/.cargo/bin cargo deb --no-build --fast --locked -o target/debian/aavm/ >/tmp/vah-aavm-migrate-deb.log 2>&1 ||
  { cat /tmp/vah-aavm-migrate-deb.log; fail "cargo deb --no-build"; finish; exit 1; }

S=$(mktemp -d /tmp/vah-aavm-migrate.XXXXXX)
LOGS=$(mktemp -d /tmp/vah-aavm-migrate-logs.XXXXXX)
chmod 755 "$S"
VMPIDS=()
cleanup() {
  local p
  for p in "${VMPIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$S" "$LOGS"
}
trap cleanup EXIT

# A free port on 127.0.0.1 for the listening VM.
for _ in $(seq 50); do
  PORT=$((20000 + RANDOM % 20000))
  [ -z "$(ss -Hltn "sport = :$PORT" 2>/dev/null)" ] && break
done
vm() {   # vm a|b listen|connect ADDR: one VM in the background, its output in $LOGS/NAME.log
  "$AAVM" --smp 1 --mem "${AAVM_MEM:-768}" --timeout "${AAVM_MIGRATE_TIMEOUT:-1800}" --share "$S" \
    --net-socket "$2:$PORT" --net-ip "$3/24" "$HERE/migrate-host.sh" "$1" "$ROOT" "$S" </dev/null >"$LOGS/$1.log" 2>&1 &
  VMPIDS+=($!)
}
vm a listen 192.168.77.1
port_listens() { [ -n "$(ss -Hltn "sport = :$PORT" 2>/dev/null)" ]; }
wait_for 120 "VM a to listen on 127.0.0.1:$PORT" port_listens
vm b connect 192.168.77.2
wait "${VMPIDS[0]}"; rc_a=$?
wait "${VMPIDS[1]}"; rc_b=$?
VMPIDS=()
# The hosts' own RESULT lines are indented, so that ours is the only one tests/run.sh sees.
for h in a b; do echo "=== host $h (exit status $(eval echo \$rc_$h))"; sed 's/^RESULT /  -- part RESULT /' "$LOGS/$h.log"; done
for h in a b; do
  n_ok=$(grep -cE '^[[:space:]]*ok[[:space:]]' "$LOGS/$h.log"); n_fail=$(grep -cE '^[[:space:]]*FAIL[[:space:]]' "$LOGS/$h.log")
  PASSED=$((PASSED + n_ok)); FAILED=$((FAILED + n_fail))
done
[ "$rc_a" -ne 0 ] && ! grep -qE '^[[:space:]]*FAIL' "$LOGS/a.log" && fail "VM a: exit status $rc_a"
[ "$rc_b" -ne 0 ] && ! grep -qE '^[[:space:]]*FAIL' "$LOGS/b.log" && fail "VM b: exit status $rc_b"
echo "  --   migrate: two VMs, $((SECONDS - T0)) s wall"
finish
