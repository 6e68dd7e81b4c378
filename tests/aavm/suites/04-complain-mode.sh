#!/usr/bin/env bash
# Suite 04, run INSIDE an aavm VM as `04-complain-mode.sh REPO`: per-guest complain mode. Two real
# guests (standalone mode, on the emulator wrapper: the quicker path under TCG), one with
# <vah:guest mode="complain"/> in its metadata: its profile is loaded in complain mode and its QEMU
# runs as libvirt-<uuid> (complain), so an access outside the profile is allowed and logged
# (apparmor="ALLOWED"); the other guest's is in enforce mode and the same access is refused.
set -u
cd "${1:-$(dirname "$0")/../../..}" || exit 1
. tests/lib/common.sh
. tests/aavm/suites/lib/vah.sh

GC=vah-complain; UC=aaaaaaaa-aa04-4000-8000-00000000000c; PC=libvirt-$UC
GE=vah-enforce;  UE=aaaaaaaa-aa04-4000-8000-00000000000e; PE=libvirt-$UE
D=/srv/vah/cm

vah_clean_state
vah_install_or_stop
echo 'mode = "standalone"' >>/etc/libvirt/virt-aa-hook.conf
if vah_libvirtd none; then ok "libvirtd -d (security_driver = \"none\") answers ($SECONDS s)"; else fail "libvirtd -d answers"; finish; exit 1; fi

mkdir -p $D
for g in c e; do qemu-img create -q -f qcow2 $D/$g.qcow2 16M; done
qemu-img create -q -f qcow2 $D/outside.qcow2 16M
chown libvirt-qemu: $D/outside.qcow2   # QEMU's user may open it: only AppArmor decides
METADATA='<metadata><vah:guest xmlns:vah="http://virt-aa-hook.dev/xmlns/domain/1" mode="complain"/></metadata>' \
  guest_xml $GC $UC "$(disk_xml $D/c.qcow2)" >/tmp/$GC.xml
guest_xml $GE $UE "$(disk_xml $D/e.qcow2)" >/tmp/$GE.xml
for g in $GC $GE; do
  if out=$($VIRSH define /tmp/$g.xml 2>&1); then ok "virsh define $g"; else fail "virsh define $g: $out"; fi
done
if out=$(timeout 300 virt-aa-hook enroll $GC $GE 2>&1); then ok "virt-aa-hook enroll $GC $GE"; else fail "enroll: $out"; fi
check "enroll kept mode=\"complain\" in $GC's metadata" bash -c "$VIRSH dumpxml --inactive $GC | grep -q 'mode=.complain.'"

echo "  --   setup done after $SECONDS s"
vah_start $GC $GE
expect_eq "$PC loaded in complain mode" complain "$(loaded_mode $PC)"
expect_eq "$PE loaded in enforce mode" enforce "$(loaded_mode $PE)"
check "$GC's profile file has flags=(attach_disconnected complain)" grep -q "^profile $PC flags=(attach_disconnected[, ]*complain)" /etc/apparmor.d/libvirt/$PC
check "$GE's profile file has no complain flag" bash -c "grep '^profile $PE ' /etc/apparmor.d/libvirt/$PE | grep -vq complain"
pc=$(cat /run/libvirt/qemu/$GC.pid 2>/dev/null); pe=$(cat /run/libvirt/qemu/$GE.pid 2>/dev/null)
expect_eq "$GC's QEMU runs as $PC (complain)" "$PC (complain)" "$(tr -d '\0' </proc/${pc:-0}/attr/current 2>&1)"
expect_eq "$GE's QEMU runs as $PE (enforce)" "$PE (enforce)" "$(tr -d '\0' </proc/${pe:-0}/attr/current 2>&1)"
check "hook log: $GC prepared in complain mode" grep -Eq "\[$GC $UC\] prepare/begin mode=standalone: wrote $PC: [0-9]+ rules, complain" $VAH_LOG
check "hook log: $GE prepared in enforce mode" grep -Eq "\[$GE $UE\] prepare/begin mode=standalone: wrote $PE: [0-9]+ rules, enforce" $VAH_LOG

# The same access outside both profiles: allowed + logged in complain mode, refused in enforce.
out=$(qmp_open $GC vahc $D/outside.qcow2)
if [[ $out != *error* ]]; then ok "complain: QEMU opens an image outside its profile"; else fail "complain: QEMU opens an image outside its profile: $out"; fi
check "complain: dmesg has apparmor=\"ALLOWED\" for it" \
  bash -c "dmesg | grep 'apparmor=\"ALLOWED\"' | grep -F 'profile=\"$PC\"' | grep -qF 'name=\"$D/outside.qcow2\"'"
out=$(qmp_open $GE vahe $D/outside.qcow2)
if [[ $out == *"Permission denied"* ]]; then ok "enforce: the same open is refused (Permission denied)"; else fail "enforce: the same open is refused: $out"; fi
check "enforce: dmesg has apparmor=\"DENIED\" for it" \
  bash -c "dmesg | grep 'apparmor=\"DENIED\"' | grep -F 'profile=\"$PE\"' | grep -qF 'name=\"$D/outside.qcow2\"'"

for g in $GC $GE; do $VIRSH destroy $g >/dev/null 2>&1; done
wait_for 120 "the release line of $GE in $VAH_LOG" grep -q "\[$GE $UE\] release/end" $VAH_LOG
check_not "both profiles unloaded after destroy" grep -Eq "^($PC|$PE) " "$PROFILES"
expect_no_own_denials
finish ""
