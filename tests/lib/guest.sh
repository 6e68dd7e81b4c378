# "A libvirtd and a guest": what the end-to-end suites (tests/e2e/lib.sh) and the suites that run
# inside an aavm VM (tests/aavm/suites/lib/vah.sh; the VM sees the repo, so this file too) both
# need. Source after tests/lib/common.sh (wait_for).
VIRSH="virsh -c qemu:///system"

# How long libvirtd may take to answer. Generous on purpose: a daemon that (re)probes QEMU's
# capabilities on a loaded 2-core machine takes tens of seconds (see the /dev/kvm preflight in
# tests/run.sh for the case where it re-probes at every lookup).
LIBVIRT_WAIT=${LIBVIRT_WAIT:-300}

# wait_libvirt [SECONDS]: until the daemon answers.
wait_libvirt() { wait_for "${1:-$LIBVIRT_WAIT}" "libvirtd to answer '$VIRSH version'" $VIRSH version; }

# guest_xml NAME UUID DEVICES-XML [MORE-DEVICES-XML]: a minimal TCG guest. From the environment:
# EMULATOR (default /usr/bin/qemu-system-x86_64) and METADATA (XML put after the uuid, e.g.
# <metadata>...</metadata>; default none).
guest_xml() {
  cat <<XML
<domain type='qemu'>
  <name>$1</name>
  <uuid>$2</uuid>
  ${METADATA:-}
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <devices>
    <emulator>${EMULATOR:-/usr/bin/qemu-system-x86_64}</emulator>
    $3
    ${4:-}
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
XML
}

# disk_xml FILE [TARGET-DEV] [INNER-XML]: a qcow2 file as a virtio disk (vda by default).
disk_xml() { echo "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$1'/><target dev='${2:-vda}' bus='virtio'/>${3:-}</disk>"; }
