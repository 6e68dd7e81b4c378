#!/usr/bin/env bash
# Suite 10, run INSIDE an aavm VM as `10-adversarial.sh REPO`: someone tries to steer the
# product, as the README's security model says they may. Each steering attempt fails closed
# (the guest does not start, with our reason in `virsh start`'s error) or the file stays denied
# (apparmor="DENIED" for QMP blockdev-add) -- and the legitimate case next to it still works.
#
#   guest (owns its image, rewrites the header):  backing file -> another guest's writable disk
#     (shut off, then running), a file outside the trusted image directories, a device node;
#     legit: a shared read-only base in /var/lib/libvirt/images, used by two guests at once.
#   domain definer (every path string):  a chardev file literally named `…/{,**}`, at start and
#     hotplugged (helper -F), must be one literal file, not a subtree grant; a backing file
#     under /etc is refused with the reason in virsh's error (helper mode hid it before);
#     legit: libvirt's own per-domain directory subtree, a hotplugged disk with glob characters.
#
# libvirt mode with helper mode (the package's default), then the header cases in standalone
# mode (the hook alone decides before QEMU starts).
set -u
cd "${1:-$(dirname "$0")/../../..}" || exit 1
. tests/lib/common.sh
. tests/aavm/suites/lib/vah.sh

D=/srv/vah/adv
IMG=/var/lib/libvirt/images
GA=vah-adv-a; UA=aaaaaaaa-aa10-4000-8000-00000000000a; PA=libvirt-$UA
GV=vah-adv-v; UV=aaaaaaaa-aa10-4000-8000-00000000000b
GS=vah-adv-s; US=aaaaaaaa-aa10-4000-8000-00000000000c
GE=vah-adv-e; UE=aaaaaaaa-aa10-4000-8000-00000000000e

vah_clean_state
vah_reload usr.sbin.libvirtd usr.lib.libvirt.virt-aa-helper
vah_install_or_stop
vah_reload usr.lib.libvirt.virt-aa-hook
# (a compile under TCG on a loaded host can take tens of seconds)
echo 'parser_timeout = 300' >>/etc/libvirt/virt-aa-hook.conf

mkdir -p $D/a $D/h $D/g $D/v /opt/vah-adv $IMG
qemu-img create -q -f qcow2 $IMG/vah-adv-shared-base.qcow2 16M
qemu-img create -q -f qcow2 -F qcow2 -b $IMG/vah-adv-shared-base.qcow2 $D/a/a.qcow2
qemu-img create -q -f qcow2 -F qcow2 -b $IMG/vah-adv-shared-base.qcow2 $D/a/s.qcow2
qemu-img create -q -f qcow2 $IMG/vah-adv-victim.qcow2 16M    # V's writable disk, in a trusted dir
qemu-img create -q -f qcow2 /opt/vah-adv/elsewhere.qcow2 16M # outside every trusted dir
qemu-img create -q -f qcow2 /etc/vah-adv-base.qcow2 16M
qemu-img create -q -f qcow2 -F qcow2 -b /etc/vah-adv-base.qcow2 $D/a/etc-top.qcow2
qemu-img create -q -f qcow2 "$D/a/hot[1]*.qcow2" 16M
echo "host secret" >$D/h/secret
echo "host secret" >$D/g/secret
# QEMU's user may open all of these: only AppArmor stands in the way.
chown libvirt-qemu: $IMG/vah-adv-*.qcow2 /opt/vah-adv/elsewhere.qcow2 $D/a/*.qcow2 $D/h/secret $D/g/secret
guest_xml $GA $UA "$(disk_xml $D/a/a.qcow2)
    <controller type='virtio-serial'/>
    <serial type='file'><source path='$D/h/{,**}'/><target port='0'/></serial>" >/tmp/$GA.xml
guest_xml $GV $UV "$(disk_xml $IMG/vah-adv-victim.qcow2)" >/tmp/$GV.xml
guest_xml $GS $US "$(disk_xml $D/a/s.qcow2)" >/tmp/$GS.xml
guest_xml $GE $UE "$(disk_xml $D/a/etc-top.qcow2)" >/tmp/$GE.xml

# start_refused MODE GUEST REASON-PATTERN WHAT: the start fails, virsh's error carries our reason,
# no QEMU runs, no profile of the guest stays loaded.
start_refused() {
  local mode=$1 g=$2 pat=$3 what=$4 out
  if out=$($VIRSH start "$g" 2>&1); then
    fail "$mode: $what: the guest started"; $VIRSH destroy "$g" >/dev/null 2>&1; return
  fi
  if grep -Eq "$pat" <<<"$out"; then ok "$mode: $what: refused, virsh says why ($(grep -Eo "$pat" <<<"$out" | head -n1))"
  else fail "$mode: $what: refused, but virsh's error lacks /$pat/: $(tr '\n' ' ' <<<"$out" | head -c 400)"; fi
}
start_ok() { # MODE GUEST WHAT
  local out
  if out=$($VIRSH start "$2" 2>&1); then ok "$1: $3: starts"; else fail "$1: $3: does not start: $(tr '\n' ' ' <<<"$out" | head -c 400)"; fi
}
# denied_open GUEST PATH WHAT: QEMU asked to open PATH (QMP blockdev-add) gets Permission denied
# and the kernel logs apparmor="DENIED" for it.
denied_open() {
  local out p; p=libvirt-$($VIRSH domuuid "$1" | tr -d ' \n')
  out=$(qmp_open "$1" "adv$RANDOM" "$2")
  if [[ $out == *"ermission denied"* ]] && denials "$p" | grep -qF "name=\"$2\""; then ok "$3: QEMU's open denied (apparmor=\"DENIED\")"
  else fail "$3: QEMU's open of $2 not denied: $(head -c 300 <<<"$out")"; fi
}
steer() { qemu-img rebase -u -F "${3:-qcow2}" -b "$2" "$1"; }   # what a guest writes in its own header

run_header_cases() { # MODE
  local mode=$1
  steer $D/a/a.qcow2 $IMG/vah-adv-victim.qcow2
  start_refused "$mode" $GA "another guest's writable disk" "header names another guest's disk (shut off)"
  start_ok "$mode" $GV "the victim guest itself"
  start_refused "$mode" $GA "another guest's writable disk" "header names another guest's disk (running)"
  $VIRSH destroy $GV >/dev/null 2>&1
  steer $D/a/a.qcow2 /opt/vah-adv/elsewhere.qcow2
  start_refused "$mode" $GA "outside the directories trusted for images" "header names a file outside the trusted image directories"
  steer $D/a/a.qcow2 /dev/zero raw
  start_refused "$mode" $GA "not a regular file|host system path" "header names a device node"
  steer $D/a/a.qcow2 $IMG/vah-adv-shared-base.qcow2
}

# ================================================================================================
MODE=libvirt
if vah_libvirtd apparmor; then ok "libvirtd (security_driver = \"apparmor\") answers"; else fail "libvirtd answers"; finish; exit 1; fi
for g in $GA $GV $GS $GE; do $VIRSH define /tmp/$g.xml >/dev/null 2>&1 || fail "virsh define $g"; done
expect_eq "helper mode: libvirt's helper is ours" /usr/lib/libvirt/virt-aa-hook "$(readlink /usr/lib/libvirt/virt-aa-helper)"

# Legit: two guests on one shared read-only base, at once.
start_ok $MODE $GA "guest on the shared base"
start_ok $MODE $GS "second guest on the same base, at the same time"
$VIRSH destroy $GS >/dev/null 2>&1

# The chardev file literally named {,**}: one literal file, never a subtree.
F=/etc/apparmor.d/libvirt/$PA
check "$MODE: the profile has the escaped literal for '$D/h/{,**}'" grep -qF "\"$D/h/\\{\\,\\*\\*\\}\"" $F
# rules_of FILE...: the rule lines (the .files comments quote libvirt's raw argument).
rules_of() { cat "$@" 2>/dev/null | grep -v '^[[:space:]]*#'; }
subtree_of() { rules_of $F $F.files | grep -qE "\"$1/\*\*\"|\"$1/\{,\*\*\}\"|\"$1/\" "; }
check_not "$MODE: no subtree rule for $D/h in the profile or .files" subtree_of $D/h
cat >/tmp/adv-chardev.xml <<XML
<channel type='file'><source path='$D/g/{,**}'/><target type='virtio' name='org.vah.adv'/></channel>
XML
# Either outcome is safe, and each must show why: attached means the relabel wrote the name as
# one escaped literal into .files; refused means the hook log's ERROR line for that relabel says
# why (libvirt reports a failed hotplug relabel with its own generic message).
if out=$($VIRSH attach-device $GA /tmp/adv-chardev.xml --live 2>&1); then
  check "$MODE: hotplugged chardev named '…/{,**}' attached, as one escaped literal in .files" \
    grep -qF "\"$D/g/\\{\\,\\*\\*\\}\"" $F.files
else
  echo "  --   hotplug of the '{,**}' chardev refused: $(head -c 200 <<<"$out")"
  if why=$(grep -F "$D/g/{,**}" $VAH_LOG | grep ERROR | tail -n 1) && [ -n "$why" ]; then
    ok "$MODE: hotplugged chardev named '…/{,**}' refused, the hook log says why: $(head -c 200 <<<"$why")"
  else fail "$MODE: hotplugged chardev named '…/{,**}' refused, no ERROR line for it in $VAH_LOG: $out"; fi
fi
subtree_of_g_or_h() { subtree_of $D/g || subtree_of $D/h; }
check_not "$MODE: after hotplug, no subtree rule for $D/g (nor $D/h)" subtree_of_g_or_h
denied_open $GA $D/h/secret "$MODE: a file beside the '{,**}' chardev"
denied_open $GA $D/g/secret "$MODE: a file beside the hotplugged '{,**}' chardev"
denied_open $GA $IMG/vah-adv-victim.qcow2 "$MODE: another guest's disk"
# Legit next to it: a hotplugged disk whose name has glob characters, libvirt's own subtree.
if out=$($VIRSH attach-disk $GA "$D/a/hot[1]*.qcow2" vdb --driver qemu --subdriver qcow2 --live 2>&1); then ok "$MODE: hotplug of a disk named 'hot[1]*.qcow2'"
else fail "$MODE: hotplug of 'hot[1]*.qcow2': $out"; fi
check "$MODE: .files has it as an escaped literal" grep -qF "\"$D/a/hot\\[1\\]\\*.qcow2\"" $F.files
check "$MODE: the per-domain directory is a subtree (libvirt's own)" grep -qE '"/var/lib/libvirt/qemu/domain-[0-9]+-vah-adv-a/\*\*"' $F
$VIRSH destroy $GA >/dev/null 2>&1
wait_for 120 "the release line of $GA" grep -q "\[$GA $UA\] release/end" $VAH_LOG

start_refused $MODE $GE "host system path" "a backing file under /etc (the reason reaches virsh in helper mode)"
run_header_cases $MODE
bad=$(denials | grep -vF "profile=\"$PA\"" | grep -E 'profile="(virt-aa-hook|libvirtd)')
if [ -z "$bad" ]; then ok "$MODE: no DENIED line of the hook's or libvirtd's profile"; else fail "$MODE: DENIED lines:"; echo "$bad" | sed 's/^/    /' | head -5; fi
kill "$(pidof libvirtd)"; wait_for 120 "libvirtd to exit" bash -c "! pidof libvirtd"
rm -f /var/lib/virt-aa-hook/caps.json /run/libvirtd.pid

# ================================================================================================
MODE=standalone
echo 'mode = "standalone"' >>/etc/libvirt/virt-aa-hook.conf
if vah_libvirtd none; then ok "libvirtd (security_driver = \"none\") answers"; else fail "libvirtd answers"; finish; exit 1; fi
run_header_cases $MODE
start_refused $MODE $GE "host system path" "a backing file under /etc"

if grep -q ERROR $VAH_LOG; then echo "  --   (ERROR lines in the hook log are the refusals above:)"; grep ERROR $VAH_LOG | sed 's/^/       /' | head -12; fi
for g in $GA $GV $GS $GE; do $VIRSH destroy $g >/dev/null 2>&1; $VIRSH undefine $g >/dev/null 2>&1; done
finish ""
