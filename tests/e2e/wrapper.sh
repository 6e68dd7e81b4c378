#!/usr/bin/env bash
# Standalone mode with a real libvirtd + QEMU: a guest enrolled on the emulator wrapper starts
# through it (on this kernel without AppArmor the wrapper passes through and says so in the
# guest's QEMU log), libvirt's capability probing through the wrapper works, and unenroll
# restores the original emulator. Confinement itself is proven in the AppArmor VM suite.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd); export ROOT
. tests/lib/common.sh
. tests/e2e/lib.sh

G=vah-e2e-wrap; U=aaaaaaaa-0000-4000-8000-000000000010
WRAP=/usr/lib/libvirt/virt-aa-hook.qemu-system-x86_64
CONF=/etc/libvirt/virt-aa-hook.conf
cleanup() {
  remove_guest $G
  [ -f /tmp/vah-e2e-conf.bak ] && cp /tmp/vah-e2e-conf.bak $CONF && rm -f /tmp/vah-e2e-conf.bak
  uninstall_product
  stop_daemons
}
trap cleanup EXIT

start_daemons
install_product || { fail "install the product"; finish; exit 1; }
check "wrapper installed as a hard link of the binary" test "$(stat -c %i $WRAP)" = "$(stat -c %i /usr/lib/libvirt/virt-aa-hook)"
cp $CONF /tmp/vah-e2e-conf.bak
echo 'mode = "standalone"' >>$CONF

guest_xml $G $U "" "<serial type='pty'><target port='0'/></serial>" >/tmp/vah-e2e-wrap.xml
$VIRSH define /tmp/vah-e2e-wrap.xml >/dev/null
if /usr/sbin/virt-aa-hook enroll $G >/tmp/vah-e2e-enroll.log 2>&1; then ok "enroll"; else fail "enroll: $(cat /tmp/vah-e2e-enroll.log)"; fi
check "domain XML now runs the wrapper" bash -c "$VIRSH dumpxml $G | grep -q '<emulator>$WRAP</emulator>'"
check "original emulator remembered in our metadata" bash -c "$VIRSH dumpxml --inactive $G | grep -q 'original-emulator=.\/usr\/bin\/qemu-system-x86_64'"

mark=$(log_mark)
if $VIRSH start $G >/tmp/vah-e2e-wstart.log 2>&1; then ok "enrolled guest starts through the wrapper"; else fail "start: $(cat /tmp/vah-e2e-wstart.log)"; fi
pid=$(cat /run/libvirt/qemu/$G.pid 2>/dev/null)
# Same file (device and inode), not the same link text: from a chroot, the link of a process in
# libvirt's per-guest mount namespace does not read as /usr/bin/... (clean Debian 13 root).
check "QEMU process runs the real emulator (the wrapper exec'd it)" test "/proc/${pid:-0}/exe" -ef /usr/bin/qemu-system-x86_64
check "wrapper said it passed through (kernel without AppArmor)" grep -q "virt-aa-hook wrapper: kernel has no AppArmor" /var/log/libvirt/qemu/$G.log
check "hook ran in standalone mode" bash -c "grep -q '\[$G $U\] prepare/begin mode=standalone' <<<\"\$0\"" "$(log_since "$mark")"
check "profile grants exec of the real emulator" grep -qF '"/usr/bin/qemu-system-x86_64" mrix,' /etc/apparmor.d/libvirt/libvirt-$U
check "capability probing through the wrapper works" $VIRSH domcapabilities --emulatorbin $WRAP --virttype qemu
$VIRSH destroy $G >/dev/null 2>&1

if /usr/sbin/virt-aa-hook unenroll $G >/tmp/vah-e2e-unenroll.log 2>&1; then ok "unenroll"; else fail "unenroll: $(cat /tmp/vah-e2e-unenroll.log)"; fi
check "original emulator restored" bash -c "$VIRSH dumpxml $G | grep -q '<emulator>/usr/bin/qemu-system-x86_64</emulator>'"
finish
