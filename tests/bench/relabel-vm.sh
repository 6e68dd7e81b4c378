#!/usr/bin/env bash
# Relabel latency, run INSIDE an aavm VM by tests/bench/relabel.sh as `relabel-vm.sh REPO [RUNS]`:
# the same operations on the same running guest, first with helper mode (libvirt's AppArmor driver
# runs our binary as virt-aa-helper), then with libvirt's own virt-aa-helper, printed side by side:
#   - start: `virsh start` of a small guest (the profile made from nothing: helper -c / -r);
#   - attach-disk: one qcow2 hotplugged (the relabel is helper -F FILE, then QEMU's blockdev-add);
#   - snapshot: an external disk-only snapshot (helper -F for the new overlay);
#   - blockcommit: `blockcommit --active --pivot` of that overlay (helper -F for the base, which
#     becomes writable, and the relabel back after the pivot).
# Each figure is the median of RUNS whole `virsh` calls (wall ms). A measurement under TCG: the
# ratio is what to read, never an assertion (the exit status says only whether the runs worked).
set -u
cd "${1:-$(dirname "$0")/../..}" || exit 1
RUNS=${2:-5}
. tests/lib/common.sh
. tests/aavm/suites/lib/vah.sh

G=vah-relabel; U=aaaaaaaa-bbbb-4000-8000-0000000000b1
D=/srv/vah/relabel
HELPER=/usr/lib/libvirt/virt-aa-helper

vah_clean_state
for p in usr.sbin.libvirtd usr.lib.libvirt.virt-aa-helper; do
  apparmor_parser -r /etc/apparmor.d/$p >/dev/null 2>&1 || fail "apparmor_parser -r $p"
done
vah_install || { fail "vah_install"; finish; exit 1; }
echo 'parser_timeout = 300' >>/etc/libvirt/virt-aa-hook.conf
apparmor_parser -r /etc/apparmor.d/usr.lib.libvirt.virt-aa-hook >/dev/null 2>&1 || fail "load our own profile"
vah_libvirtd apparmor || { fail "libvirtd did not answer"; finish; exit 1; }

mkdir -p $D
qemu-img create -q -f qcow2 $D/base.qcow2 16M
qemu-img create -q -f qcow2 -F qcow2 -b $D/base.qcow2 $D/top.qcow2
qemu-img create -q -f qcow2 $D/hot.qcow2 16M
guest_xml $G $U "$(disk_xml "$D/top.qcow2")
    <controller type='scsi' model='virtio-scsi'/>" >/tmp/$G.xml
$VIRSH define /tmp/$G.xml >/dev/null || { fail "define $G"; finish; exit 1; }

# ms CMD...: wall milliseconds of CMD (its output to /tmp/relabel-op.log); "x" when it failed.
ms() {
  local t0; t0=$(date +%s%N)
  if "$@" >/tmp/relabel-op.log 2>&1; then echo $(( ($(date +%s%N) - t0) / 1000000 ))
  else echo x; sed 's/^/    /' /tmp/relabel-op.log | tail -n 3 >&2; fi
}
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {if (NR==0) print "x"; else print a[int((NR+1)/2)]}'; }
detached() { ! $VIRSH domblklist $G | grep -q ' sdb '; }

# measure MODE: RUNS of each operation; fills START/ATTACH/SNAP/COMMIT[MODE].
declare -A START ATTACH SNAP COMMIT
measure() {
  local mode=$1 i s=() a=() n=() c=() t
  for ((i = 1; i <= RUNS; i++)); do
    $VIRSH destroy $G >/dev/null 2>&1
    t=$(ms $VIRSH start $G); s+=("$t")
    [ "$t" = x ] && { fail "$mode: virsh start $G"; continue; }
    t=$(ms $VIRSH attach-disk $G $D/hot.qcow2 sdb --targetbus scsi --driver qemu --subdriver qcow2 --live); a+=("$t")
    if [ "$t" != x ]; then
      $VIRSH detach-disk $G sdb --live >/dev/null 2>&1
      wait_for 120 "sdb detached from $G" detached >/dev/null
    fi
    rm -f $D/ov.qcow2
    t=$(ms $VIRSH snapshot-create-as $G ov --disk-only --atomic --no-metadata --diskspec vda,file=$D/ov.qcow2); n+=("$t")
    [ "$t" = x ] || c+=("$(ms $VIRSH blockcommit $G vda --active --pivot --wait)")
  done
  $VIRSH destroy $G >/dev/null 2>&1
  START[$mode]=$(echo "${s[*]}" | median); ATTACH[$mode]=$(echo "${a[*]}" | median)
  SNAP[$mode]=$(echo "${n[*]}" | median); COMMIT[$mode]=$(echo "${c[*]:-}" | median)
  echo "  --   $mode: start ${s[*]} | attach-disk ${a[*]} | snapshot ${n[*]} | blockcommit ${c[*]:-} (ms)"
  local bad=0 v
  for v in "${s[@]}" "${a[@]}" "${n[@]}" "${c[@]:-x}"; do [ "$v" = x ] && bad=1; done
  if [ $bad = 0 ]; then ok "$mode: $RUNS runs of start, attach-disk, snapshot, blockcommit"
  else fail "$mode: an operation failed (see above)"; fi
}

expect_eq "helper mode: $HELPER is our binary" /usr/lib/libvirt/virt-aa-hook "$(readlink $HELPER)"
measure "helper mode"
# The hook log names each call by its arguments: `[name uuid] helper -c …`, `helper -r …`, and a
# relabel of one file `helper -r -F FILE` (so -F is counted apart, wherever it stands).
echo "  --   helper calls logged: $(grep -c '\] helper -c' $VAH_LOG) -c," \
  "$(grep '\] helper -r' $VAH_LOG | grep -vc ' -F ') -r, $(grep '\] helper ' $VAH_LOG | grep -c ' -F ') -F"
vah_install --no-helper-mode >/dev/null 2>&1
if [ ! -L $HELPER ] && [ -x $HELPER ]; then ok "libvirt's own virt-aa-helper back"; else fail "--no-helper-mode"; fi
measure "virt-aa-helper"

ratio() { if [ "$1" = x ] || [ "$2" = x ] || [ "$1" = 0 ]; then echo "-"; else awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b / a}'; fi; }
echo "  --   relabel latency, median of $RUNS (ms), whole virsh call under TCG:"
printf '  --   %-12s %12s %15s %8s\n' operation "helper mode" "virt-aa-helper" "ratio"
for op in start attach-disk snapshot blockcommit; do
  case $op in start) h=${START[helper mode]} l=${START[virt-aa-helper]} ;;
    attach-disk) h=${ATTACH[helper mode]} l=${ATTACH[virt-aa-helper]} ;;
    snapshot) h=${SNAP[helper mode]} l=${SNAP[virt-aa-helper]} ;;
    blockcommit) h=${COMMIT[helper mode]} l=${COMMIT[virt-aa-helper]} ;; esac
  printf '  --   %-12s %12s %15s %8s\n' "$op" "$h" "$l" "$(ratio "$h" "$l")"
done
echo "  --   (ratio = virt-aa-helper / helper mode: above 1, helper mode is faster)"
finish
