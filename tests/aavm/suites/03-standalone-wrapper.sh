#!/usr/bin/env bash
# Suite 03, run INSIDE an aavm VM as `03-standalone-wrapper.sh REPO`: standalone mode
# (security_driver = "none", libvirt applies no AppArmor label). The hook loads the profile, the
# emulator wrapper installed by `virt-aa-hook enroll` puts QEMU into it; a guest whose profile is
# not there does not start (the wrapper fails closed, its message in virsh's error); capability
# probing through the wrapper passes through.
set -u
cd "${1:-$(dirname "$0")/../../..}" || exit 1
. tests/lib/common.sh
. tests/aavm/suites/lib/vah.sh

G1=vah-sa; U1=aaaaaaaa-aa03-4000-8000-000000000001; P1=libvirt-$U1
G2=vah-sa-nopro; U2=aaaaaaaa-aa03-4000-8000-000000000002; P2=libvirt-$U2
WRAP=/usr/lib/libvirt/virt-aa-hook.qemu-system-x86_64
D=/srv/vah/sa

vah_clean_state
# libvirtd confined as on a stock Debian host; with security_driver = "none" it labels nothing.
vah_reload usr.sbin.libvirtd usr.lib.libvirt.virt-aa-helper
vah_install_or_stop
check "wrapper $WRAP is a hard link of the binary" test "$WRAP" -ef /usr/lib/libvirt/virt-aa-hook
if vah_libvirtd none; then ok "libvirtd -d (security_driver = \"none\") answers ($SECONDS s)"; else fail "libvirtd -d answers"; finish; exit 1; fi
expect_eq "libvirtd runs confined" "libvirtd (enforce)" "$(tr -d '\0' </proc/$(pidof libvirtd)/attr/current)"
# mode = "auto": the capability cache (no apparmor secmodel) must make the hook choose standalone.
t0=$SECONDS
if out=$(timeout 300 virt-aa-hook caps 2>&1); then ok "virt-aa-hook caps ($((SECONDS - t0)) s)"; else fail "virt-aa-hook caps: $out"; fi
check_not "virsh capabilities: no apparmor secmodel" bash -c "$VIRSH capabilities | grep -q '<model>apparmor</model>'"

mkdir -p $D
qemu-img create -q -f qcow2 $D/disk.qcow2 16M
qemu-img create -q -f qcow2 $D/other.qcow2 16M
chown libvirt-qemu: $D/other.qcow2   # QEMU's user may open it: only AppArmor stands in the way
DISK="$(disk_xml "$D/disk.qcow2")"
guest_xml $G1 $U1 "$DISK" >/tmp/$G1.xml
if out=$($VIRSH define /tmp/$G1.xml 2>&1); then ok "virsh define $G1"; else fail "virsh define $G1: $out"; fi
if out=$(virt-aa-hook enroll $G1 2>&1); then ok "virt-aa-hook enroll $G1"; else fail "virt-aa-hook enroll $G1: $out"; fi
check "$G1's emulator is now the wrapper" bash -c "$VIRSH dumpxml --inactive $G1 | grep -qF '<emulator>$WRAP</emulator>'"

echo "  --   setup done after $SECONDS s"
t0=$SECONDS
if out=$($VIRSH start $G1 2>&1); then ok "virsh start $G1 ($((SECONDS - t0)) s)"; else fail "virsh start $G1: $out"; tail -n 5 /var/log/libvirt/qemu/$G1.log; fi
pid=$(cat /run/libvirt/qemu/$G1.pid 2>/dev/null)
expect_eq "QEMU (pid ${pid:-?}) runs as $P1 (enforce)" "$P1 (enforce)" "$(tr -d '\0' </proc/${pid:-0}/attr/current 2>&1)"
expect_eq "QEMU's executable is the real emulator" /usr/bin/qemu-system-x86_64 "$(readlink /proc/${pid:-0}/exe)"
expect_eq "$P1 loaded in enforce mode (by the hook)" enforce "$(loaded_mode $P1)"
check "hook log: prepare/begin in standalone mode, loaded" grep -Eq "\[$G1 $U1\] prepare/begin mode=standalone: wrote $P1.*loaded" $VAH_LOG
check "dominfo: no libvirt security model" bash -c "! $VIRSH dominfo $G1 | grep -q '^Security model: *apparmor'"

# The confinement bites: QEMU is refused an image its profile does not name (QMP blockdev-add).
out=$(qmp_open $G1 vahx $D/other.qcow2)
if [[ $out == *"Permission denied"* ]]; then ok "confined QEMU: blockdev-add of an image not in its profile: Permission denied"
else fail "confined QEMU: blockdev-add of $D/other.qcow2 (expected Permission denied): $out"; fi
check "dmesg: apparmor=\"DENIED\" for it" bash -c "dmesg | grep 'apparmor=\"DENIED\"' | grep -F 'profile=\"$P1\"' | grep -qF 'name=\"$D/other.qcow2\"'"
bad=$(denials $P1 | grep -vF "name=\"$D/other.qcow2\"")
if [ -z "$bad" ]; then ok "no other denials for $P1"; else fail "other denials for $P1:"; echo "$bad" | sed 's/^/    /'; fi

# --- a guest on the wrapper whose profile the hook does not write (manage="no"): must not start
META="<metadata><vah:guest xmlns:vah=\"http://virt-aa-hook.dev/xmlns/domain/1\" manage=\"no\"/></metadata>"
METADATA=$META EMULATOR=$WRAP guest_xml $G2 $U2 "" >/tmp/$G2.xml
if out=$($VIRSH define /tmp/$G2.xml 2>&1); then ok "virsh define $G2 (wrapper as emulator, manage=\"no\")"; else fail "virsh define $G2: $out"; fi
out=$($VIRSH start $G2 2>&1); rc=$?
if [ $rc -ne 0 ] && [[ $out == *"virt-aa-hook wrapper: cannot confine QEMU as $P2"*"refusing to start it unconfined"* ]]; then
  ok "$G2 does not start; virsh shows the wrapper's message"
else
  fail "$G2 must not start, with the wrapper's message (rc=$rc): $out"
fi
check_not "$G2 is not running" bash -c "$VIRSH domstate $G2 | grep -q running"
check_not "no profile file for $G2" test -e /etc/apparmor.d/libvirt/$P2
check "hook log: $G2 skipped (manage=no)" grep -q "\[$G2 $U2\] prepare/begin: skipped: opted out" $VAH_LOG

# --- capability probing through the wrapper (no -uuid: passes through)
t0=$SECONDS
if out=$($VIRSH domcapabilities --emulatorbin $WRAP --virttype qemu 2>&1) && grep -q "<path>$WRAP</path>" <<<"$out"; then
  ok "virsh domcapabilities --emulatorbin $WRAP ($((SECONDS - t0)) s)"
else fail "virsh domcapabilities --emulatorbin $WRAP: $(head -c 400 <<<"$out")"; fi

if out=$($VIRSH destroy $G1 2>&1); then ok "virsh destroy $G1"; else fail "virsh destroy $G1: $out"; fi
wait_for 120 "the release line of $G1 in $VAH_LOG" grep -q "\[$G1 $U1\] release/end" $VAH_LOG
check_not "$P1 unloaded after destroy" grep -q "^$P1 " "$PROFILES"
check_not "profile file removed after destroy" test -e /etc/apparmor.d/libvirt/$P1
echo "  --   hook log:"; sed 's/^/       /' $VAH_LOG
expect_no_own_denials
finish ""
