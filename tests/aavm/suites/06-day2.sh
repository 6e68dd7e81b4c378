#!/usr/bin/env bash
# Suite 06, run INSIDE an aavm VM as `06-day2.sh REPO`: day-2 operations on a confined guest on a
# qcow2 chain (top -> mid -> base), first in libvirt mode with HELPER MODE installed (libvirt's
# AppArmor driver runs our binary as /usr/lib/libvirt/virt-aa-helper), then in standalone mode.
# Each operation must succeed with 0 apparmor="DENIED" lines for the guest's profile; afterwards
# the guest is still refused an image outside its definition (QMP blockdev-add). In standalone
# mode an operation that cannot work is recorded as "fails as documented" only when it fails with
# an AppArmor denial (Permission denied + a DENIED line); the exact text is printed.
set -u
cd "${1:-$(dirname "$0")/../../..}" || exit 1
. tests/lib/common.sh
. tests/aavm/suites/lib/vah.sh

G=vah-day2; U=aaaaaaaa-aa06-4000-8000-000000000001; P=libvirt-$U
GB=vah-bench; UB=aaaaaaaa-aa06-4000-8000-000000000002
D=/srv/vah/day2
F=/etc/apparmor.d/libvirt/$P
HELPER=/usr/lib/libvirt/virt-aa-helper
MODE=libvirt
ONLY=${2:-all}   # libvirt | standalone | all (a 2-CPU TCG VM under load needs ~25 min for each)
declare -A RESULT

vah_clean_state
vah_reload usr.sbin.libvirtd usr.lib.libvirt.virt-aa-helper
vah_install_or_stop
sed 's/^/    install: /' /tmp/vah-install.log | grep -i helper
# Under TCG on a loaded host one compile of a guest profile took up to 43 s: the default 60 s
# parser timeout made relabels fail ("cannot update AppArmor profile").
echo 'parser_timeout = 300' >>/etc/libvirt/virt-aa-hook.conf
vah_reload usr.lib.libvirt.virt-aa-hook
expect_eq "helper mode: $HELPER is a symlink to our binary" /usr/lib/libvirt/virt-aa-hook "$(readlink $HELPER)"
check "helper mode: libvirt's helper diverted to $HELPER.distrib" test -x $HELPER.distrib
check "dpkg-divert lists the diversion" bash -c "dpkg-divert --list $HELPER | grep -q virt-aa-hook"

# ------------------------------------------------------------------------------------------------
mkdir -p $D
chain() { # fresh top -> mid -> base chain
  rm -f $D/*.qcow2 $D/*.save $D/*.log
  qemu-img create -q -f qcow2 $D/base.qcow2 16M
  qemu-img create -q -f qcow2 -F qcow2 -b $D/base.qcow2 $D/mid.qcow2
  qemu-img create -q -f qcow2 -F qcow2 -b $D/mid.qcow2 $D/top.qcow2
  qemu-img create -q -f qcow2 $D/hotplug.qcow2 16M
  qemu-img create -q -f qcow2 $D/other-guest.qcow2 16M
  chown libvirt-qemu: $D/other-guest.qcow2   # only AppArmor may refuse it
}
chain
DEVS="$(disk_xml "$D/top.qcow2")
    <controller type='scsi' model='virtio-scsi'/>
    <controller type='virtio-serial'/>"
guest_xml $G $U "$DEVS" >/tmp/$G.xml
guest_xml $GB $UB "" >/tmp/$GB.xml

ndenied() { denials $P | wc -l; }
# op NAME CMD...: run CMD; ok when it succeeds with no new DENIED line for $P. In standalone mode
# a failure with an AppArmor denial is "fails as documented".
op() {
  local name=$1; shift
  local before after out rc new
  before=$(ndenied)
  # A hung operation is a failure with what libvirt and QEMU said, not an hour-long stall (CMD
  # may be a shell function, so no timeout(1)).
  "$@" >/tmp/vah-op.out 2>&1 &
  local p=$!
  if ! wait_for 600 "$MODE: $name to finish" bash -c "! kill -0 $p"; then
    pkill -KILL -P $p; kill -KILL $p
    echo "[timed out after 600 s; the guest's QEMU log ends:] $(tail -n 5 /var/log/libvirt/qemu/$G.log 2>/dev/null)" >>/tmp/vah-op.out
  fi
  wait $p; rc=$?
  out=$(cat /tmp/vah-op.out)
  sleep 1
  after=$(ndenied)
  new=$(denials $P | tail -n +$((before + 1)))
  if [ $rc -eq 0 ] && [ "$after" -eq "$before" ]; then
    ok "$MODE: $name (0 DENIED)"; RESULT[$MODE/$name]=ok
  elif [ $MODE = standalone ] && [ "$after" -gt "$before" ] && { [ $rc -ne 0 ] || [[ $out == *"ermission denied"* ]]; }; then
    local why; why=$(grep -m1 -iE 'error|denied|fail' <<<"$out" | head -c 300)
    ok "$MODE: $name fails as documented: ${why:-exit $rc} [$((after - before)) DENIED: $(grep -o 'name="[^"]*"' <<<"$new" | sort -u | head -3 | tr '\n' ' ')]"
    RESULT[$MODE/$name]="fails (AppArmor)"
  else
    fail "$MODE: $name (rc=$rc, $((after - before)) new DENIED): ...$(tail -c 900 <<<"$out")"
    [ -z "$new" ] || echo "$new" | sed 's/^/    /' | head -5
    grep ERROR $VAH_LOG | tail -n 2 | sed 's/^/    log: /'
    RESULT[$MODE/$name]="FAIL rc=$rc"
  fi
}
# op_refused NAME PATTERN CMD...: an operation our policy refuses on purpose: ok when it fails
# with a DENIED line whose name= matches PATTERN (and no other new DENIED line).
op_refused() {
  local name=$1 pat=$2; shift 2
  local before out rc new
  before=$(ndenied)
  out=$("$@" 2>&1); rc=$?
  sleep 1
  new=$(denials $P | tail -n +$((before + 1)))
  if [ $rc -ne 0 ] && [ -n "$new" ] && ! grep -v "name=\"$pat" <<<"$new" | grep -q .; then
    ok "$MODE: $name refused as designed [$(grep -o 'name="[^"]*"' <<<"$new" | sort -u | head -2 | tr '\n' ' ')]"
    RESULT[$MODE/$name]="refused (by design)"
  else
    fail "$MODE: $name: expected a refusal of $pat (rc=$rc): $(head -c 400 <<<"$out")"
    [ -z "$new" ] || echo "$new" | sed 's/^/    /' | head -5
    RESULT[$MODE/$name]="FAIL rc=$rc"
  fi
}

wait_job() { # wait until the guest has no block job / domain job
  local i
  wait_for 300 "$G's block/domain job to end" bash -c "$VIRSH domjobinfo $G 2>/dev/null | grep -Eq 'Job type: +None'"
}
backup_push() {
  cat >/tmp/backup.xml <<XML
<domainbackup mode='push'><disks><disk name='vda' type='file'><driver type='qcow2'/><target file='$D/backup-full.qcow2'/></disk></disks></domainbackup>
XML
  rm -f $D/backup-full.qcow2
  $VIRSH backup-begin $G /tmp/backup.xml || return 1
  wait_job || { echo "backup job did not finish"; return 1; }
  # One read, kept: without --keep-completed libvirt drops the statistics after the first read.
  local info; info=$($VIRSH domjobinfo $G --completed --keep-completed)
  grep -E 'Job type|Operation' <<<"$info"
  grep -Eq 'Job type: +Completed' <<<"$info" || return 1
  qemu-img info $D/backup-full.qcow2 | grep -q 'file format: qcow2'
}
# The guest's per-domain directory (/var/lib/libvirt/qemu/domain-<id>-<name>): its profile
# grants it, and only it, so a backup export socket there is private to this guest.
domdir() { ls -d /var/lib/libvirt/qemu/domain-"$($VIRSH domid $G | tr -d ' ')"-* 2>/dev/null | head -n1; }
# Pull mode: a scratch file libvirt labels (helper -F) and an NBD export on a unix socket that
# libvirt does not label (qemu_backup.c), read through with qemu-img, then the job is ended.
backup_pull() {
  local sock; sock=$(domdir)/pull.sock
  cat >/tmp/pull.xml <<XML
<domainbackup mode='pull'><server transport='unix' socket='$sock'/><disks><disk name='vda' type='file'><scratch file='$D/scratch-vda.qcow2'/></disk></disks></domainbackup>
XML
  rm -f $D/scratch-vda.qcow2
  $VIRSH backup-begin $G /tmp/pull.xml || return 1
  local rc=0
  qemu-img info "nbd+unix:///vda?socket=$sock" | grep -E 'virtual size' || rc=1
  $VIRSH domjobabort $G || rc=1
  wait_job || rc=1
  return $rc
}
attach_chardev() {
  cat >/tmp/chardev.xml <<XML
<channel type='file'><source path='$D/hot-channel.log'/><target type='virtio' name='org.vah.day2'/></channel>
XML
  $VIRSH attach-device $G /tmp/chardev.xml --live
}
restart_libvirtd() {
  local pid; pid=$(pidof libvirtd)
  kill "$pid"; wait_for 120 "libvirtd (pid $pid) to exit" bash -c "! kill -0 $pid" || return 1
  /usr/sbin/libvirtd -d || return 1
  wait_for 300 "libvirtd to answer" $VIRSH version
  $VIRSH domstate $G | grep -q running
}
qemu_label() { tr -d '\0' </proc/"$(cat /run/libvirt/qemu/$G.pid 2>/dev/null || echo 0)"/attr/current 2>&1; }
start_guest() {
  local out
  if out=$($VIRSH start $G 2>&1); then ok "$MODE: virsh start $G"; else fail "$MODE: virsh start $G: $out"; return 1; fi
  expect_eq "$MODE: QEMU runs as $P (enforce)" "$P (enforce)" "$(qemu_label)"
}
fresh_guest() { # standalone: every chain operation on a fresh chain (earlier ones may have failed)
  [ $MODE = standalone ] || return 0
  $VIRSH destroy $G >/dev/null 2>&1
  chain
  $VIRSH start $G >/dev/null 2>&1 || echo "  --   fresh start failed"
}

day2() {
  echo "  --   [$MODE] day-2 operations"
  op "attach-disk (qcow2, scsi)" $VIRSH attach-disk $G $D/hotplug.qcow2 sdb --targetbus scsi --driver qemu --subdriver qcow2 --live
  if [ $MODE = libvirt ]; then
    check "$P.files lists the hotplugged image, no deny" bash -c "grep -qF '$D/hotplug.qcow2' $F.files && ! grep -q deny $F.files"
  fi
  if [ "${RESULT[$MODE/attach-disk (qcow2, scsi)]}" = ok ]; then
    op "detach-disk" $VIRSH detach-disk $G sdb --live
  else
    echo "  --   $MODE: detach-disk: nothing was attached"; RESULT[$MODE/detach-disk]="n/a"
  fi
  op "attach a file-backed chardev" attach_chardev
  fresh_guest
  op "blockcommit of an inactive layer (mid into base)" $VIRSH blockcommit $G vda --top $D/mid.qcow2 --base $D/base.qcow2 --wait
  fresh_guest
  op "snapshot-create-as --disk-only --atomic" $VIRSH snapshot-create-as $G s1 --disk-only --atomic --no-metadata --diskspec vda,file=$D/s1.qcow2
  fresh_guest
  op "blockcommit --active --pivot" $VIRSH blockcommit $G vda --active --pivot --wait
  fresh_guest
  if [ $MODE = libvirt ]; then
    $VIRSH snapshot-create-as $G s2 --disk-only --atomic --no-metadata --diskspec vda,file=$D/s2.qcow2 >/dev/null 2>&1 ||
      echo "  --   snapshot s2 for blockpull failed"
  fi
  op "blockpull" $VIRSH blockpull $G vda --wait
  fresh_guest
  op "blockcopy + pivot" $VIRSH blockcopy $G vda $D/copy.qcow2 --wait --pivot --transient-job
  fresh_guest
  op "backup-begin push (full)" backup_push
  fresh_guest
  op "backup-begin pull (scratch file, NBD on a unix socket)" backup_pull
  if command -v virtnbdbackup >/dev/null; then
    rm -rf $D/nbd-$MODE $D/nbd-copy-$MODE
    # The other half's backups left checkpoints in libvirt's metadata whose bitmaps the fresh
    # chain does not have: virtnbdbackup's full backup would fail to remove them ("bitmap
    # 'virtnbdbackup.1' not found in backing chain"). Each half starts without them.
    for c in $($VIRSH checkpoint-list $G --name 2>/dev/null); do
      $VIRSH checkpoint-delete $G "$c" --metadata >/dev/null 2>&1
    done
    # virtnbdbackup's default socket, /var/tmp/virtnbdbackup.<pid>, is a name any guest could
    # take first: no profile grants it. Its -f puts the socket in the guest's own directory.
    local gd="\$(ls -d /var/lib/libvirt/qemu/domain-\$($VIRSH domid $G | tr -d ' ')-* | head -n1)"
    if [ $MODE = libvirt ]; then
      op_refused "virtnbdbackup, default socket in /var/tmp" "/var/tmp/virtnbdbackup." \
        virtnbdbackup -d $G -l copy -o $D/nbd-copy-$MODE
      local ex; ex=$(virt-aa-hook explain --guest $G 2>&1)
      if grep -qF -- "-f /var/lib/libvirt/qemu/domain-" <<<"$ex"; then ok "$MODE: explain: the socket stays refused, use virtnbdbackup -f in the guest's directory"
      else fail "$MODE: explain on the virtnbdbackup socket: $(grep -F virtnbdbackup <<<"$ex" | head -3)"; fi
      # The scratch file in /var/tmp is labelled by libvirt: helper mode grants it.
      op "virtnbdbackup -l full -f <guest dir>/nbd.sock" bash -c "virtnbdbackup -d $G -l full -o $D/nbd-$MODE -f $gd/nbd.sock"
      op "virtnbdbackup -l inc -f <guest dir>/nbd.sock" bash -c "virtnbdbackup -d $G -l inc -o $D/nbd-$MODE -f $gd/nbd.sock"
    else
      # Nothing labels the scratch file in standalone mode: with --scratchdir (virtnbdbackup
      # 1.x's -S; 2.x gave -S to --start-domain) it goes to the guest's own directory too,
      # which its profile grants.
      op "virtnbdbackup -l full -f <guest dir>/nbd.sock --scratchdir <guest dir>" bash -c "virtnbdbackup -d $G -l full -o $D/nbd-$MODE -f $gd/nbd.sock --scratchdir $gd"
      op "virtnbdbackup -l inc -f <guest dir>/nbd.sock --scratchdir <guest dir>" bash -c "virtnbdbackup -d $G -l inc -o $D/nbd-$MODE -f $gd/nbd.sock --scratchdir $gd"
    fi
  else
    fail "virtnbdbackup not installed (tests/lib/install-deps.sh installs it)"
  fi
  if [ $MODE = standalone ]; then
    # No event tells us about these in standalone mode: `grant` first, as a script would.
    fresh_guest
    op "grant + attach-disk" bash -c "virt-aa-hook grant $G $D/hotplug.qcow2 && $VIRSH attach-disk $G $D/hotplug.qcow2 sdb --targetbus scsi --driver qemu --subdriver qcow2 --live"
    op "grant + blockcommit --active --pivot" bash -c "virt-aa-hook grant $G $D/base.qcow2 $D/mid.qcow2 && $VIRSH blockcommit $G vda --active --pivot --wait"
    fresh_guest
  fi
  op "managedsave" $VIRSH managedsave $G
  op "start after managedsave" $VIRSH start $G
  op "save" $VIRSH save $G $D/g.save
  if [ $MODE = standalone ]; then
    # A save file of the admin's choice is not in the profile: `grant` it first, as for the
    # other operations no event tells us about. Without the grant, libvirt 9.0 fails the restore
    # (DENIED on the save file) but libvirt 11.3 hangs it (measured on Debian 13: > 10 min).
    op "grant + restore" bash -c "virt-aa-hook grant $G $D/g.save && $VIRSH restore $D/g.save"
  else
    op "restore" $VIRSH restore $D/g.save
  fi
  $VIRSH domstate $G 2>/dev/null | grep -q running || $VIRSH start $G >/dev/null 2>&1
  op "libvirtd restart (guest keeps running)" restart_libvirtd
  expect_eq "$MODE: after all of it QEMU still runs as $P" "$P (enforce)" "$(qemu_label)"
  # Still confined: another guest's image is refused.
  local before out
  before=$(ndenied)
  out=$(qmp_open $G vahx $D/other-guest.qcow2)
  if [[ $out == *"Permission denied"* ]] && [ "$(ndenied)" -gt "$before" ]; then
    ok "$MODE: another guest's image via QMP blockdev-add: Permission denied + DENIED"
  else fail "$MODE: another guest's image via QMP blockdev-add must be denied: $out"; fi
}

# ================================================================================================
if [ "$ONLY" != standalone ]; then
if vah_libvirtd apparmor; then ok "libvirtd -d (security_driver = \"apparmor\") answers"; else fail "libvirtd answers"; finish; exit 1; fi
timeout 300 virt-aa-hook caps >/dev/null 2>&1 || echo "  --   virt-aa-hook caps failed"
for g in $G $GB; do $VIRSH define /tmp/$g.xml >/dev/null || fail "virsh define $g"; done
echo "  --   setup done after $SECONDS s"
start_guest
check "the profile is ours" bash -c "head -n1 $F | grep -q '^# virt-aa-hook generated profile'"
check "helper wrote $P.files (ours)" bash -c "head -n1 $F.files | grep -q '^# virt-aa-hook helper mode'"
echo "  --   log of the start:"; grep -F "$U" $VAH_LOG | sed 's/^/       /'
day2
check_not "no deny rule in $P.files" grep -q deny $F.files
echo "  --   $P.files:"; grep '^# extra' $F.files | sed 's/^/       /'
if out=$($VIRSH destroy $G 2>&1); then ok "virsh destroy"; else fail "virsh destroy: $out"; fi
wait_for 120 "the release line of $G in $VAH_LOG" grep -q "\[$G $U\] release/end" $VAH_LOG
check_not "$P unloaded after destroy" grep -q "^$P " "$PROFILES"
check_not "$P.files removed (-D)" test -e $F.files
check "helper log line for -D" grep -q "\[$P\] helper -D -u $P" $VAH_LOG

# --- the opt-out: libvirt's own helper back, then helper mode again
if vah_install --no-helper-mode >/tmp/vah-nohelper.log 2>&1 && [ ! -L $HELPER ] && [ -x $HELPER ] && [ ! -e $HELPER.distrib ]; then
  ok "install.sh --no-helper-mode restores libvirt's helper"
else fail "install.sh --no-helper-mode: $(cat /tmp/vah-nohelper.log)"; fi
# Start latency, helper mode vs libvirt's own helper (3 starts of a small guest each): only with
# VAH_BENCH=1 — under TCG on a loaded 2-core host one start takes 20-40 s and the numbers are
# noise; it is a measurement, never an assertion.
bench() {
  local i t0 ms=()
  for i in 1 2 3; do
    t0=$(date +%s%N)
    $VIRSH start $GB >/dev/null 2>&1 || { echo "start failed"; return; }
    ms+=($(( ($(date +%s%N) - t0) / 1000000 )))
    $VIRSH destroy $GB >/dev/null 2>&1
  done
  echo "${ms[*]}"
}
[ "${VAH_BENCH:-0}" = 1 ] && echo "  --   start latency, libvirt's own helper (ms): $(bench)"
vah_install >/dev/null 2>&1
expect_eq "helper mode back" /usr/lib/libvirt/virt-aa-hook "$(readlink $HELPER)"
if [ "${VAH_BENCH:-0}" = 1 ]; then
  echo "  --   start latency, helper mode (ms): $(bench)"
  echo "  --   log lines for $GB (3 starts, helper mode): $(grep -cF "[$GB $UB]" $VAH_LOG); loads: $(grep -F "$UB" $VAH_LOG | grep -c ', loaded')"
fi
kill "$(pidof libvirtd)"; wait_for 120 "libvirtd to exit" bash -c "! pidof libvirtd"
fi

# ================================================================================================
MODE=standalone
if [ "$ONLY" != libvirt ]; then
if vah_libvirtd none; then ok "libvirtd -d (security_driver = \"none\") answers"; else fail "libvirtd answers"; finish; exit 1; fi
timeout 300 virt-aa-hook caps >/dev/null 2>&1 || echo "  --   virt-aa-hook caps failed"
chain
$VIRSH define /tmp/$G.xml >/dev/null 2>&1   # (already defined when the libvirt part ran)
if out=$(virt-aa-hook enroll $G 2>&1); then ok "virt-aa-hook enroll $G"; else fail "virt-aa-hook enroll $G: $out"; fi
start_guest
day2
fi

echo "  --   summary (operation: libvirt mode with helper | standalone)"
for k in "${!RESULT[@]}"; do
  # Standalone runs some operations after a `grant` (restore): that row is "grant + NAME" there.
  case $k in libvirt/*) n=${k#libvirt/}; sa=${RESULT[standalone/$n]:-}
    [ -z "$sa" ] && [ -n "${RESULT[standalone/grant + $n]:-}" ] && sa="${RESULT[standalone/grant + $n]} (after grant)"
    printf '       %-48s %-10s | %s\n' "$n" "${RESULT[$k]}" "$sa";; esac
done | sort
if grep -q ERROR $VAH_LOG; then echo "  --   hook log ERROR lines:"; grep ERROR $VAH_LOG | sed 's/^/       /' | tail -20; fi
expect_no_own_denials
finish ""
