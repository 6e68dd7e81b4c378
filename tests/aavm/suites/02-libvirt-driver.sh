#!/usr/bin/env bash
# Suite 02, run INSIDE an aavm VM as `02-libvirt-driver.sh REPO`: the whole chain with libvirt's
# AppArmor security driver on (mode "libvirt"). libvirtd runs confined in its own profile, runs
# our hook (which must leave that confinement), libvirt loads OUR generated profile and puts QEMU
# in it; hotplug through libvirt's helper works; destroy unloads and removes the profile.
set -u
cd "${1:-$(dirname "$0")/../../..}" || exit 1
. tests/lib/common.sh
. tests/aavm/suites/lib/vah.sh

G=vah-drv; U=aaaaaaaa-aa02-4000-8000-000000000001
P=libvirt-$U
F=/etc/apparmor.d/libvirt/$P
D=/srv/vah/drv

vah_clean_state
# Audit every write of the hook's log by the hook's OWN profile: an apparmor="AUDIT" line with
# profile="virt-aa-hook" proves the hook ran there (not in libvirtd's profile, not unconfined).
echo '  audit /var/log/libvirt/virt-aa-hook.log w,' >/etc/apparmor.d/local/usr.lib.libvirt.virt-aa-hook
vah_reload usr.sbin.libvirtd usr.lib.libvirt.virt-aa-helper
vah_install_or_stop
vah_reload usr.lib.libvirt.virt-aa-hook
expect_eq "hook entry is a symlink to the binary" /usr/lib/libvirt/virt-aa-hook "$(readlink /etc/libvirt/hooks/qemu)"
for p in libvirtd virt-aa-hook; do expect_eq "profile $p loaded" enforce "$(loaded_mode $p)"; done

if vah_libvirtd apparmor; then ok "libvirtd -d answers ($SECONDS s)"; else fail "libvirtd -d answers"; finish; exit 1; fi
expect_eq "libvirtd runs confined" "libvirtd (enforce)" "$(tr -d '\0' </proc/$(pidof libvirtd)/attr/current)"
# A capability cache written on another boot without AppArmor (secmodels none, dac) must not
# pick standalone mode now: its host key no longer matches (measured bug: every event ran in
# standalone mode and the profile was loaded twice).
cat >/var/lib/virt-aa-hook/caps.json <<'JSON'
{"version": 1, "generated_at": 9999999999, "uri": "qemu:///system", "libvirt_version": "9.0.0",
 "daemon_version": "9.0.0", "secmodels": ["none", "dac"], "emulators": [], "firmware": [],
 "nvram_templates": [], "host_key": {"boot_id": "00000000-old-boot", "apparmor": false,
 "qemu_conf": "", "daemons": []}}
JSON
printf '<domain type="qemu"><name>stale-cache</name><uuid>%s</uuid><memory>65536</memory><os><type>hvm</type></os></domain>' \
  aaaaaaaa-aa02-4000-8000-0000000000ff >/tmp/stale.xml
check "stale capability cache (other boot, no AppArmor) is not trusted: libvirt mode chosen" \
  bash -c "virt-aa-hook generate --profile /tmp/stale.xml 2>/dev/null | grep -q 'libvirt-aaaaaaaa-aa02-4000-8000-0000000000ff.files>'"
t0=$SECONDS
if out=$(timeout 300 virt-aa-hook caps 2>&1); then ok "virt-aa-hook caps ($((SECONDS - t0)) s)"; else fail "virt-aa-hook caps: $out"; fi
check "virsh capabilities: secmodel apparmor" bash -c "$VIRSH capabilities | grep -q '<model>apparmor</model>'"
check "capability cache records the apparmor secmodel" grep -q apparmor /var/lib/virt-aa-hook/caps.json

# --- a guest with a qcow2 over a backing file, a file serial with a chardev log, a 9p share
mkdir -p $D/share
qemu-img create -q -f qcow2 $D/base.qcow2 16M
qemu-img create -q -f qcow2 -F qcow2 -b $D/base.qcow2 $D/top.qcow2
qemu-img create -q -f qcow2 $D/hotplug.qcow2 16M
echo shared >$D/share/file
DEVS="$(disk_xml "$D/top.qcow2")
    <filesystem type='mount' accessmode='passthrough'><source dir='$D/share'/><target dir='share'/></filesystem>
    <serial type='file'><source path='$D/serial.out'/><log file='$D/serial-chardev.log'/><target port='0'/></serial>"
# <bios useserial='yes'/>: SeaBIOS prints to the serial port, so the chardev log gets content.
guest_xml $G $U "$DEVS" | sed "s|<boot dev='hd'/>|<boot dev='hd'/><bios useserial='yes'/>|" >/tmp/$G.xml
if out=$($VIRSH define /tmp/$G.xml 2>&1); then ok "virsh define"; else fail "virsh define: $out"; fi

echo "  --   setup done after $SECONDS s"
t0=$SECONDS
if out=$($VIRSH start $G 2>&1); then ok "virsh start ($((SECONDS - t0)) s)"; else fail "virsh start: $out"; fi
pid=$(cat /run/libvirt/qemu/$G.pid 2>/dev/null)
info=$($VIRSH dominfo $G 2>&1)
check "dominfo: Security model: apparmor" grep -Eq '^Security model: +apparmor$' <<<"$info"
check "dominfo: Security label: $P (enforcing)" grep -Eq "^Security label: +$P \(enforcing\)$" <<<"$info"
expect_eq "QEMU (pid ${pid:-?}) runs as $P (enforce)" "$P (enforce)" "$(tr -d '\0' </proc/${pid:-0}/attr/current 2>&1)"
expect_eq "$P loaded in enforce mode" enforce "$(loaded_mode $P)"

# The loaded profile is ours: our header, and rules virt-aa-helper never writes.
check "$F starts with '# virt-aa-hook generated profile'" bash -c "head -n1 $F | grep -q '^# virt-aa-hook generated profile'"
check "$F has the chardev <log> rule (ours only)" grep -qF "\"$D/serial-chardev.log\" rw," $F
check "$F has the per-domain state dir rule (ours only)" grep -qE '"/var/lib/libvirt/qemu/domain-[0-9]+-vah-drv/\*\*" rwk,' $F
check "$F includes libvirt's .files" grep -qF "include if exists <libvirt/$P.files>" $F
# (libvirt itself opens the chardev source and log files and, when it labels them, has its helper
# append them to $P.files with -F: so in libvirt mode the log is granted twice.)
if grep -qF serial-chardev.log $F.files 2>/dev/null; then
  echo "  --   note: libvirt's helper also appended the chardev log to $P.files"
fi
check "$F grants the 9p share" grep -qF "\"$D/share/**\"" $F

# Let SeaBIOS write its banner through the chardev: the log file is written only if the rule works.
wait_for 180 "the guest's serial output in $D/serial-chardev.log" test -s $D/serial-chardev.log
if [ -s $D/serial-chardev.log ]; then ok "chardev log written by the confined QEMU ($(wc -c <$D/serial-chardev.log) bytes)"
else fail "chardev log $D/serial-chardev.log is empty or missing after 60 s"; ls -l $D; fi

# The hook ran in its own profile, outside libvirtd's.
# Helper mode (the package's default): prepare leaves writing to our helper, which libvirt's
# driver runs with -c right after it; the profile is compiled once.
check "hook log: prepare/begin in libvirt mode leaves the profile to the helper" grep -Eq "\[$G $U\] prepare/begin mode=libvirt: .*helper mode" $VAH_LOG
check "helper log: the helper wrote $P" grep -Eq "\[$G $U\] helper -[cr] .*-u $P.*rewrote profile" $VAH_LOG
if dmesg | grep 'apparmor="AUDIT"' | grep -F 'profile="virt-aa-hook"' | grep -qF "name=\"$VAH_LOG\""; then
  ok "the hook wrote its log under profile virt-aa-hook (apparmor=\"AUDIT\" line)"
else fail "no apparmor=\"AUDIT\" line of profile virt-aa-hook for $VAH_LOG"; fi
bad=$(denials libvirtd | grep -E 'apparmor_parser|/etc/apparmor\.d/libvirt|virt-aa-hook')
if [ -z "$bad" ]; then ok "no libvirtd denial on apparmor_parser, /etc/apparmor.d/libvirt or the hook"
else fail "libvirtd denials:"; echo "$bad" | sed 's/^/    /'; fi

# Hotplug: libvirt's helper appends the new image to $P.files, which our profile includes.
if out=$($VIRSH attach-disk $G $D/hotplug.qcow2 vdb --driver qemu --subdriver qcow2 --live 2>&1); then ok "attach-disk --live"
else fail "attach-disk --live: $out"; fi
check "domblklist shows vdb" bash -c "$VIRSH domblklist $G | grep -q 'vdb .*hotplug.qcow2'"
check "$P.files lists the hotplugged image" grep -qF "$D/hotplug.qcow2" $F.files

bad=$(denials $P)
if [ -z "$bad" ]; then ok "no apparmor=\"DENIED\" lines for $P"; else fail "DENIED lines for $P:"; echo "$bad" | sed 's/^/    /'; fi

if out=$($VIRSH destroy $G 2>&1); then ok "virsh destroy"; else fail "virsh destroy: $out"; fi
wait_for 120 "the release line of $G in $VAH_LOG" grep -q "\[$G $U\] release/end" $VAH_LOG
check_not "$P unloaded after destroy" grep -q "^$P " "$PROFILES"
check_not "$F removed after destroy" test -e $F
check "hook log: release/end" grep -q "\[$G $U\] release/end" $VAH_LOG
if grep -q ERROR $VAH_LOG; then fail "hook log has ERROR lines:"; grep ERROR $VAH_LOG | sed 's/^/    /'; else ok "hook log has no ERROR lines"; fi
echo "  --   hook log:"; grep -F "[$G $U]" $VAH_LOG | sed 's/^/       /'
expect_no_own_denials
finish ""
