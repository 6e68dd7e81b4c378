#!/usr/bin/env bash
# Suite 07, run INSIDE an aavm VM as `07-rich-guest.sh REPO`: no denial in real use. A guest with
# what users really configure -- UEFI with secure boot (OVMF, SMM, enrolled keys, its own NVRAM),
# a TPM 2.0 emulator (swtpm), a guest-agent channel, virtio-rng, a cdrom, a qcow2 disk, a pty
# serial with a log file, user networking -- runs in complain mode (<vah:guest mode="complain"/>)
# in libvirt mode and in standalone mode, with the distribution's own profiles for libvirtd,
# virt-aa-helper and swtpm loaded. The ground truth: not one apparmor="ALLOWED" or "DENIED" line,
# for the guest's profile, its children, swtpm, libvirtd or the hook. Every line is printed, with
# the profile it names, so a failure says what to grant or to silence.
set -u
cd "${1:-$(dirname "$0")/../../..}" || exit 1
. tests/lib/common.sh
. tests/aavm/suites/lib/vah.sh

G=vah-rich; U=aaaaaaaa-aa07-4000-8000-000000000007; P=libvirt-$U
D=/srv/vah/rich
WAIT=${VAH_RICH_WAIT:-15}   # seconds the firmware runs (TCG): TPM, rng, NVRAM, serial all in use

vah_clean_state
# A TPM that has never been set up, as on a fresh host: swtpm_setup runs, and swtpm's first start
# reads what a new TPM needs (OpenSSL's configuration) -- state the host's root may hold from an
# earlier run would hide that.
rm -rf /var/lib/libvirt/swtpm /var/log/swtpm/libvirt
echo "  --   $(. /etc/os-release; echo "$PRETTY_NAME"): $(dpkg-query -W -f '${Package} ${Version}; ' libvirt-daemon-system qemu-system-x86 apparmor swtpm ovmf 2>/dev/null)kernel $(uname -r)"
# The distribution's own profiles, as an AppArmor-enabled boot loads them.
for p in usr.sbin.libvirtd usr.lib.libvirt.virt-aa-helper usr.bin.swtpm; do
  [ -e /etc/apparmor.d/$p ] || { echo "  --   (no /etc/apparmor.d/$p in this distribution)"; continue; }
  vah_reload "$p"
done
vah_install_or_stop
vah_reload usr.lib.libvirt.virt-aa-hook

mkdir -p $D
qemu-img create -q -f qcow2 $D/disk.qcow2 64M
head -c 1048576 /dev/zero >$D/cd.iso
META='<metadata><vah:guest xmlns:vah="http://virt-aa-hook.dev/xmlns/domain/1" mode="complain"/></metadata>'
cat >/tmp/$G.xml <<XML
<domain type='qemu'>
  <name>$G</name>
  <uuid>$U</uuid>
  $META
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os firmware='efi'>
    <type arch='x86_64' machine='q35'>hvm</type>
    <firmware><feature enabled='yes' name='secure-boot'/><feature enabled='yes' name='enrolled-keys'/></firmware>
    <loader secure='yes'/>
    <boot dev='hd'/>
  </os>
  <features><acpi/><smm state='on'/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    $(disk_xml "$D/disk.qcow2")
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='$D/cd.iso'/><target dev='sda' bus='sata'/><readonly/></disk>
    <interface type='user'><model type='virtio'/></interface>
    <serial type='pty'><log file='$D/serial.log' append='off'/><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
XML

# audit_lines: every ALLOWED/DENIED line since the last `dmesg -C`.
audit_lines() { dmesg | grep -E 'apparmor="(ALLOWED|DENIED)"'; }
# field KEY LINE: the value of KEY="..." or KEY=... in an audit line (empty when absent).
field() { sed -nE "s/.* $1=\"([^\"]*)\".*/\1/p; t; s/.* $1=([^ ]*).*/\1/p" <<<"$2"; }

run_mode() {   # run_mode libvirt|standalone|swtpm-root (libvirt mode, swtpm as root)
  local mode=$1 driver=apparmor pid lines
  [ "$mode" = standalone ] && driver=none
  echo "  --   mode $mode (security_driver = \"$driver\"${VAH_QEMU_CONF:+, $VAH_QEMU_CONF})"
  if vah_libvirtd $driver; then ok "$mode: libvirtd -d answers"; else fail "$mode: libvirtd -d answers"; return 1; fi
  local t0=$SECONDS
  if out=$(timeout 300 virt-aa-hook caps 2>&1); then ok "$mode: virt-aa-hook caps ($((SECONDS - t0)) s)"; else fail "$mode: virt-aa-hook caps: $out"; fi
  if out=$($VIRSH define /tmp/$G.xml 2>&1); then ok "$mode: virsh define"; else fail "$mode: virsh define: $out"; return 1; fi
  if [ "$mode" = standalone ]; then
    if out=$(virt-aa-hook enroll $G 2>&1); then ok "standalone: virt-aa-hook enroll"; else fail "standalone: enroll: $out"; fi
  fi
  dmesg -C
  t0=$SECONDS
  if out=$($VIRSH start $G 2>&1); then ok "$mode: virsh start ($((SECONDS - t0)) s)"
  else
    fail "$mode: virsh start: $out"; tail -n 20 /var/log/libvirt/qemu/$G.log | sed 's/^/    /'
    tail -n 30 /var/log/swtpm/libvirt/qemu/$G-swtpm.log 2>/dev/null | sed 's/^/    swtpm log: /'
    audit_lines | sed 's/^/    /'; $VIRSH undefine --nvram $G >/dev/null 2>&1; stop_libvirtd; return 1
  fi
  pid=$(cat /run/libvirt/qemu/$G.pid 2>/dev/null)
  expect_eq "$mode: QEMU runs as $P (complain)" "$P (complain)" "$(tr -d '\0' </proc/${pid:-0}/attr/current 2>&1)"
  local sw; sw=$(pgrep -x swtpm | head -n1)
  if [ -n "$sw" ]; then ok "$mode: swtpm runs, as $(tr -d '\0' </proc/$sw/attr/current)"; else fail "$mode: no swtpm process"; fi
  sleep "$WAIT"
  check "$mode: QEMU created the serial log ($(stat -c %s $D/serial.log 2>/dev/null) bytes of firmware output)" test -e $D/serial.log
  check "$mode: QEMU still runs after $WAIT s" kill -0 "${pid:-0}"
  if out=$($VIRSH destroy $G 2>&1); then ok "$mode: virsh destroy"; else fail "$mode: virsh destroy: $out"; fi
  wait_for 120 "the release line of $G in $VAH_LOG" grep -q "\[$G $U\] release/end" $VAH_LOG
  sleep 0.5
  lines=$(audit_lines)
  if [ -z "$lines" ]; then ok "$mode: 0 apparmor=\"ALLOWED\"/\"DENIED\" lines (complain-mode ground truth)"
  else
    fail "$mode: $(wc -l <<<"$lines") apparmor=\"ALLOWED\"/\"DENIED\" lines:"
    # One line per distinct (profile, operation, name, mask/capability): what to grant or silence.
    # (Field by field: sed has only \1-\9, and capname was the tenth group once, so it was lost.)
    local l
    while IFS= read -r l; do
      echo "$(field apparmor "$l") $(field profile "$l") $(field operation "$l") $(field name "$l")" \
        "$(field requested_mask "$l") $(field capname "$l") comm=$(field comm "$l")"
    done <<<"$lines" | sort | uniq -c | sed 's/^/    /'
  fi
  # The guest stays defined (NVRAM and TPM state too): the next mode reuses them, as a host that
  # switches modes would, and is spared a second swtpm_setup (slow under TCG).
  stop_libvirtd
}
stop_libvirtd() {
  local p; p=$(pidof libvirtd) && kill $p
  wait_for 120 "libvirtd to exit" bash -c "! pidof libvirtd"
  rm -f /var/lib/virt-aa-hook/caps.json /run/libvirtd.pid
}

run_mode libvirt
# The same guest in standalone mode: the hook loads the profile, the emulator wrapper applies it.
echo 'mode = "standalone"' >>/etc/libvirt/virt-aa-hook.conf
run_mode standalone
# swtpm as root (`swtpm_user = "root"` in qemu.conf, as many guides set), in libvirt mode, where
# swtpm runs under the guest's profile: again from a TPM that has never been set up (libvirtd is
# stopped here: removing the state is what makes libvirt run swtpm_setup again).
rm -rf /var/lib/libvirt/swtpm /var/log/swtpm/libvirt
sed -i '/^mode = "standalone"$/d' /etc/libvirt/virt-aa-hook.conf
VAH_QEMU_CONF=$'swtpm_user = "root"\nswtpm_group = "root"' run_mode swtpm-root
if grep -q ERROR $VAH_LOG; then fail "hook log has ERROR lines:"; grep ERROR $VAH_LOG | sed 's/^/    /'; else ok "hook log has no ERROR lines"; fi
finish ""
