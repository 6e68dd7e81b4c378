#!/usr/bin/env bash
# End-to-end test of the libvirt-facing admin commands (caps, status, gc, doctor, enroll,
# unenroll) against the real qemu:///system. Run as root with libvirtd and virtlogd running.
#
# Our own files (profiles, cache, log) live in a temporary root (VIRT_AA_HOOK_ROOT), so nothing
# of the host's virt-aa-hook state is read or changed. On the host, the test defines two tiny
# guests named vah-admin-test-<pid>[-b] and, only if missing, the emulator wrapper
# /usr/lib/libvirt/virt-aa-hook.qemu-system-x86_64; all of them are removed again on exit.
#
#     sudo tests/e2e/admin.sh          # binaries from target/release (or $VAH_BIN_DIR)
set -u
cd "$(dirname "$0")/../.."
ROOT=${ROOT:-$(pwd)}
. "$ROOT/tests/lib/common.sh"
. "$ROOT/tests/e2e/lib.sh"   # guest_xml

BIN=${VAH_BIN_DIR:-$ROOT/target/release}
ADMIN=$BIN/virt-aa-hook-libvirt
URI=qemu:///system
DEAD_URI='qemu+unix:///system?socket=/tmp/nonexistent-vah-admin.sock'
MARKER='# virt-aa-hook generated profile'
QEMU=/usr/bin/qemu-system-x86_64
WRAPPER=/usr/lib/libvirt/virt-aa-hook.qemu-system-x86_64
T=60 # seconds any single command may take before we call it hung

echo "=== admin commands against $URI ($ADMIN)"
if [ ! -x "$ADMIN" ]; then
  fail "binary $ADMIN missing (cargo build --release, or set VAH_BIN_DIR)"
  finish; exit
fi
if ! start_daemons; then
  fail "libvirt at $URI is not answering"
  finish; exit
fi

TMPROOT=$(mktemp -d /tmp/vah-admin.XXXXXX)
export VIRT_AA_HOOK_ROOT=$TMPROOT
# A config file that does not exist: defaults, whatever the host's own config says.
export VIRT_AA_HOOK_CONFIG=$TMPROOT/virt-aa-hook.conf
PROFILES=$TMPROOT/etc/apparmor.d/libvirt
LOG=$TMPROOT/var/log/libvirt/virt-aa-hook.log
CACHE=$TMPROOT/var/lib/virt-aa-hook/caps.json
mkdir -p "$PROFILES" "$(dirname "$LOG")"

NAME=vah-admin-test-$$
NAME_B=$NAME-b
UUID=$(cat /proc/sys/kernel/random/uuid)
UUID_B=$(cat /proc/sys/kernel/random/uuid)
CREATED_WRAPPER=0
KERNEL_AA=0
[ -e /sys/module/apparmor/parameters/enabled ] && grep -q Y /sys/module/apparmor/parameters/enabled && KERNEL_AA=1

cleanup() {
  for n in "$NAME" "$NAME_B"; do
    virsh -c "$URI" destroy "$n" >/dev/null 2>&1
    virsh -c "$URI" undefine "$n" >/dev/null 2>&1
  done
  [ "$CREATED_WRAPPER" = 1 ] && rm -f "$WRAPPER"
  rm -rf "$TMPROOT"
  stop_daemons
}
trap cleanup EXIT

admin() { timeout "$T" "$ADMIN" "$@"; }
has() { grep -qF -- "$2" <<<"$1"; }          # has TEXT NEEDLE
hasnt() { ! grep -qF -- "$2" <<<"$1"; }


# --- caps -------------------------------------------------------------------------------------
out=$(admin caps 2>&1); rc=$?
check "caps exits 0" test "$rc" -eq 0
check "caps lists $QEMU" has "$out" "$QEMU"
check "caps writes the cache" test -s "$CACHE"
json=$(admin caps --json 2>/dev/null)
check "caps --json is valid JSON" python3 -m json.tool <<<"$json"
models=$(python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["secmodels"]))' <<<"$json" 2>/dev/null)
check "security models include dac ($models)" grep -qw dac <<<"$models"
check "security models include none ($models)" grep -qw none <<<"$models"
if [ "$KERNEL_AA" = 0 ]; then
  check_not "no apparmor security model without kernel AppArmor" grep -qw apparmor <<<"$models"
  check "summary says the AppArmor driver is inactive" has "$out" "libvirt AppArmor driver: inactive"
fi
check "cache records emulators" python3 -c "import json,sys; assert '$QEMU' in json.load(open('$CACHE'))['emulators']"

# caps --background: silent, and a held lock makes it exit 0 at once without touching the cache.
rm -f "$CACHE"
bg=$(admin caps --background 2>&1); rc=$?
check "caps --background exits 0" test "$rc" -eq 0
check "caps --background prints nothing" test -z "$bg"
check "caps --background writes the cache" test -s "$CACHE"
rm -f "$CACHE"
# The lock held by this shell itself (no background holder: its child would keep this suite's
# output pipe open after it is killed).
exec {LK}>"$TMPROOT/var/lib/virt-aa-hook/caps.lock"
flock "$LK"
t0=$(date +%s)
admin caps --background >/dev/null 2>&1; rc=$?
check "caps --background with the lock held exits 0" test "$rc" -eq 0
check "... promptly" test $(( $(date +%s) - t0 )) -lt 3
check_not "... without writing the cache" test -e "$CACHE"
exec {LK}>&-

# --- status -----------------------------------------------------------------------------------
EMULATOR=$QEMU guest_xml "$NAME" "$UUID" "" >"$TMPROOT/guest.xml"
check "define test guest" virsh -c "$URI" define "$TMPROOT/guest.xml"
check "start test guest (TCG)" virsh -c "$URI" start "$NAME"
printf '%s for domain %s\n' "$MARKER" "$NAME" >"$PROFILES/libvirt-$UUID"
echo "2026-01-01T00:00:00.000Z INFO  [$NAME $UUID] prepare/begin mode=standalone (test): wrote" >>"$LOG"
out=$(admin status 2>&1); rc=$?
check "status exits 0" test "$rc" -eq 0
line=$(grep -F -- "$NAME " <<<"$out")
check "status lists the guest" test -n "$line"
check "status shows it running" has "$line" "running"
check "status shows its UUID" has "$line" "$UUID"
check "status shows our profile" has "$line" "ours"
check "status shows the last event" has "$line" "2026-01-01T00:00:00.000Z prepare/begin"
if [ "$KERNEL_AA" = 0 ]; then
  check "status shows no AppArmor" has "$line" "n/a (no AppArmor)"
fi
check "status header" has "$(head -n1 <<<"$out")" "NAME"
j=$(admin status "$UUID" --json 2>/dev/null)
check "status UUID --json: one running guest" python3 -c "
import json,sys; a=json.loads(sys.argv[1]); assert len(a)==1 and a[0]['name']=='$NAME' and a[0]['state']=='running', a" "$j"
check_not "status of an unknown guest fails" admin status "no-such-guest-$$"

# --- gc ---------------------------------------------------------------------------------------
STALE=$(cat /proc/sys/kernel/random/uuid)
FOREIGN=$(cat /proc/sys/kernel/random/uuid)
printf '%s for domain gone\n' "$MARKER" >"$PROFILES/libvirt-$STALE"
echo '  "/x" r,' >"$PROFILES/libvirt-$STALE.files"
echo '#include <tunables/global>' >"$PROFILES/libvirt-$FOREIGN"
out=$(admin gc --dry-run 2>&1); rc=$?
check "gc --dry-run exits 0" test "$rc" -eq 0
check "gc --dry-run names the stale profile" has "$out" "would remove     $PROFILES/libvirt-$STALE"
check "gc --dry-run removes nothing" test -e "$PROFILES/libvirt-$STALE" -a -e "$PROFILES/libvirt-$STALE.files"
out=$(admin gc 2>&1); rc=$?
check "gc exits 0" test "$rc" -eq 0
check_not "gc removed the stale profile of ours" test -e "$PROFILES/libvirt-$STALE"
check_not "gc removed its .files" test -e "$PROFILES/libvirt-$STALE.files"
check "gc kept the defined guest's profile" test -e "$PROFILES/libvirt-$UUID"
check "gc kept the file that is not ours" test -e "$PROFILES/libvirt-$FOREIGN"
check "gc says so" has "$out" "kept (not ours)  $PROFILES/libvirt-$FOREIGN"
check "gc logged the removal" grep -qF "[(gc) $STALE] gc/remove: removed" "$LOG"
check_not "gc with libvirt unreachable fails" admin gc --connect "$DEAD_URI"
check "... and removes nothing" test -e "$PROFILES/libvirt-$FOREIGN" -a -e "$PROFILES/libvirt-$UUID"

# --- doctor -----------------------------------------------------------------------------------
out=$(admin doctor 2>&1); rc=$?
check "doctor runs" test "$rc" -le 1
if [ "$KERNEL_AA" = 0 ]; then
  check "doctor exits non-zero (kernel without AppArmor)" test "$rc" -ne 0
  check "doctor: kernel AppArmor is a failed check" has "$out" "✗ kernel AppArmor"
  check "doctor: with the hint" has "$out" "boot with apparmor=1 security=apparmor / install a kernel with AppArmor"
fi
check "doctor: daemon reachable" has "$out" "✓ libvirt daemon"
check "doctor: security models" grep -q "^✓ security models: .*dac" <<<"$out"

# --- libvirt not answering ----------------------------------------------------------------------
t0=$(date +%s)
err=$(admin status --connect "$DEAD_URI" 2>&1); rc=$?
check "status with nobody answering fails" test "$rc" -ne 0
check "... promptly" test $(( $(date +%s) - t0 )) -lt 10
check "... with a clear message" has "$err" "cannot connect to libvirt at $DEAD_URI"
out=$(admin doctor --connect "$DEAD_URI" 2>&1); rc=$?
check "doctor with nobody answering fails" test "$rc" -ne 0
check "... daemon check failed with a hint" has "$out" "fix: start the daemon"
check "... remaining libvirt checks not checked" grep -q "^- security models: not checked (daemon unreachable)" <<<"$out"

# --- enroll / unenroll --------------------------------------------------------------------------
if [ ! -e "$WRAPPER" ]; then
  # The real wrapper if we have it (it passes capability probes and, without AppArmor, starts
  # QEMU unconfined), else a shim that behaves the same for this test.
  if [ -x "$BIN/virt-aa-hook" ]; then
    cp "$BIN/virt-aa-hook" "$WRAPPER"
  else
    printf '#!/bin/sh\nexec %s "$@"\n' "$QEMU" >"$WRAPPER"
  fi
  chmod 755 "$WRAPPER"
  CREATED_WRAPPER=1
fi
out=$(admin caps --refresh 2>&1)
check "caps --refresh touches the wrapper" has "$out" "touched $WRAPPER"

# Running guest: only the persistent definition changes.
out=$(admin enroll "$NAME" 2>&1); rc=$?
check "enroll a running guest exits 0" test "$rc" -eq 0
check "... says it takes effect at next start" has "$out" "takes effect at next start (guest is running)"
check "... status shows it" has "$(admin status "$NAME")" "yes (at next start)"
check "destroy test guest" virsh -c "$URI" destroy "$NAME"
xml=$(virsh -c "$URI" dumpxml --inactive "$NAME")
check "enrolled: emulator is the wrapper" has "$xml" "<emulator>$WRAPPER</emulator>"
check "enrolled: original emulator remembered" has "$xml" "original-emulator=\"$QEMU\""
out=$(admin enroll "$NAME" 2>&1); rc=$?
check "enroll again: no change" has "$out" "already enrolled"
check "... exits 0" test "$rc" -eq 0
check "start the enrolled guest through the wrapper" virsh -c "$URI" start "$NAME"
check "... status: enrolled" grep -qE "$NAME .* yes( |$)" <<<"$(admin status "$NAME")"
check "destroy test guest again" virsh -c "$URI" destroy "$NAME"
out=$(admin unenroll "$NAME" 2>&1); rc=$?
check "unenroll exits 0" test "$rc" -eq 0
xml=$(virsh -c "$URI" dumpxml --inactive "$NAME")
check "unenrolled: original emulator back" has "$xml" "<emulator>$QEMU</emulator>"
check "unenrolled: metadata attribute gone" hasnt "$xml" "original-emulator"
out=$(admin unenroll "$NAME" 2>&1)
check "unenroll again: no change" has "$out" "not enrolled"

# A guest whose emulator has no wrapper is refused with a hint.
if [ ! -e /usr/lib/libvirt/virt-aa-hook.qemu-system-i386 ] && [ -x /usr/bin/qemu-system-i386 ]; then
  EMULATOR=/usr/bin/qemu-system-i386 guest_xml "$NAME_B" "$UUID_B" "" | sed "s/arch='x86_64'/arch='i686'/" >"$TMPROOT/b.xml"
  check "define second guest (i386)" virsh -c "$URI" define "$TMPROOT/b.xml"
  out=$(admin enroll "$NAME_B" 2>&1); rc=$?
  check "enroll without a wrapper fails" test "$rc" -ne 0
  check "... with the setup-links hint" has "$out" "run 'virt-aa-hook setup-links'"
  check "... and changes nothing" has "$(virsh -c "$URI" dumpxml --inactive "$NAME_B")" "<emulator>/usr/bin/qemu-system-i386</emulator>"
fi
check_not "enroll an unknown guest fails" admin enroll "no-such-guest-$$"

finish
