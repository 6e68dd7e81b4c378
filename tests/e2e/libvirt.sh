#!/usr/bin/env bash
# The hook with a real libvirtd and QEMU (TCG) on this machine: libvirt runs our hook for every
# lifecycle event, the profile is written, compiles, covers the guest's files, is cleaned up;
# a refused path stops the start with our message; a daemon restart keeps the guest running.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd); export ROOT
. tests/lib/common.sh
. tests/e2e/lib.sh

IMG=/var/lib/libvirt/images
G1=vah-e2e-one; U1=aaaaaaaa-0000-4000-8000-000000000001
G2=vah-e2e-etc; U2=aaaaaaaa-0000-4000-8000-000000000002
DUMMY=/etc/vah-e2e-dummy.img
PROFILE1=/etc/apparmor.d/libvirt/libvirt-$U1

cleanup() {
  remove_guest $G1; remove_guest $G2
  rm -f "$IMG/vah-e2e-base.qcow2" "$IMG/vah-e2e-top.qcow2" "$DUMMY" /var/log/libvirt/qemu/vah-e2e-serial.log
  uninstall_product
  stop_daemons
}
trap cleanup EXIT

start_daemons
install_product || { fail "install the product"; finish; exit 1; }
ok "product installed, hook is $(readlink /etc/libvirt/hooks/qemu 2>/dev/null || ls /etc/libvirt/hooks/qemu.d/)"

mkdir -p $IMG
qemu-img create -q -f qcow2 $IMG/vah-e2e-base.qcow2 16M
qemu-img create -q -f qcow2 -F qcow2 -b $IMG/vah-e2e-base.qcow2 $IMG/vah-e2e-top.qcow2
chown libvirt-qemu:libvirt-qemu $IMG/vah-e2e-*.qcow2 2>/dev/null || true

DISK="<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$IMG/vah-e2e-top.qcow2'/><target dev='vda' bus='virtio'/></disk>"
SERIAL="<serial type='file'><source path='/var/log/libvirt/qemu/vah-e2e-serial.log'/><target port='0'/></serial>"
guest_xml $G1 $U1 "$DISK" "$SERIAL" > /tmp/vah-e2e-g1.xml
$VIRSH define /tmp/vah-e2e-g1.xml >/dev/null

mark=$(log_mark)
if $VIRSH start $G1 >/tmp/vah-e2e-start.log 2>&1; then ok "guest with qcow2 over backing file + file serial starts"; else fail "guest starts: $(cat /tmp/vah-e2e-start.log)"; fi
check "profile file exists while the guest runs" test -f $PROFILE1
check "profile compiles with apparmor_parser -Q" apparmor_parser -Q -K -I /etc/apparmor.d $PROFILE1
check "profile grants the top image rwk" grep -qF "\"$IMG/vah-e2e-top.qcow2\" rwk," $PROFILE1
check "profile grants the backing image rk (no deny w)" grep -qF "\"$IMG/vah-e2e-base.qcow2\" rk," $PROFILE1
check_not "profile has no deny rule for the backing file" grep -q "deny.*vah-e2e-base" $PROFILE1
check "profile grants the file serial" grep -qF '"/var/log/libvirt/qemu/vah-e2e-serial.log" rw,' $PROFILE1
events=$(log_since "$mark")
for ev in prepare/begin start/begin started/begin; do
  n=$(grep -c "\[$G1 $U1\] $ev" <<<"$events")
  if [ "$n" = 1 ]; then ok "log has one line for $ev"; else fail "log has $n lines for $ev"; fi
done
check "hook never fails silently: no ERROR lines" bash -c "! grep -q ERROR <<<\"\$0\"" "$events"

# daemon restart with the guest running: reconnect must keep it running, file not rewritten
mtime=$(stat -c %Y.%N $PROFILE1 2>/dev/null)
mark=$(log_mark)
restart_libvirtd
wait_for 120 "the reconnect line of $G1 in $LOG" log_has "$LOG" "[$G1 $U1] reconnect/begin" "$mark"
state=$($VIRSH domstate $G1 2>&1)
if [ "$state" = running ]; then ok "guest keeps running across a libvirtd restart"; else fail "guest state after restart: $state"; fi
if log_since "$mark" | grep -q "\[$G1 $U1\] reconnect/begin.*unchanged"; then ok "reconnect logged, profile unchanged"; else fail "reconnect line: $(log_since "$mark" | tail -n 3)"; fi
check "unchanged restart did not rewrite the profile" test "$mtime" = "$(stat -c %Y.%N $PROFILE1)"

mark=$(log_mark)
$VIRSH destroy $G1 >/dev/null 2>&1
wait_for 120 "the release line of $G1 in $LOG" log_has "$LOG" "[$G1 $U1] release/end" "$mark"
check_not "profile removed after destroy" test -e $PROFILE1
events=$(log_since "$mark")
for ev in stopped/end release/end; do
  if grep -q "\[$G1 $U1\] $ev" <<<"$events"; then ok "log has $ev"; else fail "log lacks $ev"; fi
done

# A second start of an unchanged guest writes an equal profile (and the log says so at start).
$VIRSH start $G1 >/dev/null 2>&1 && ok "guest restarts" || fail "guest restarts"
$VIRSH destroy $G1 >/dev/null 2>&1

# A disk that is a dummy file under /etc: the start must fail with our message, nothing left.
touch $DUMMY; chmod 600 $DUMMY
owner_before=$(stat -c %U:%G $DUMMY)
guest_xml $G2 $U2 "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='$DUMMY'/><target dev='vda' bus='virtio'/></disk>" > /tmp/vah-e2e-g2.xml
$VIRSH define /tmp/vah-e2e-g2.xml >/dev/null
if $VIRSH start $G2 >/tmp/vah-e2e-start2.log 2>&1; then
  fail "guest with a disk under /etc must not start"
else
  ok "guest with a disk under /etc does not start"
fi
check "virsh error carries our one-line reason" grep -q "disk 'vda': $DUMMY is a host system path and cannot be granted rwk" /tmp/vah-e2e-start2.log
check_not "no profile left for the refused guest" test -e /etc/apparmor.d/libvirt/libvirt-$U2
check "the dummy file was not chowned to the QEMU user" test "$owner_before" = "$(stat -c %U:%G $DUMMY)"
check_not "no QEMU process left for the refused guest" pgrep -f "guest=$G2"

finish
