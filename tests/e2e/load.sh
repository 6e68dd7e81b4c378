#!/usr/bin/env bash
# Load with a real libvirtd + QEMU: start and stop N (default 30) TCG guests concurrently with the
# hook installed. All start, every profile exists while they run and is gone after, and no hook
# run took longer than the configured parser timeout.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd); export ROOT
. tests/lib/common.sh
. tests/e2e/lib.sh

N=${VAH_LOAD_GUESTS:-30}
name() { printf 'vah-load-%02d' "$1"; }
uuid() { printf 'bbbbbbbb-0000-4000-8000-%012d' "$1"; }
cleanup() {
  for i in $(seq "$N"); do remove_guest "$(name "$i")"; done
  rm -f /var/lib/libvirt/images/vah-load-*.qcow2
  uninstall_product
  stop_daemons
}
trap cleanup EXIT

start_daemons
install_product || { fail "install the product"; finish; exit 1; }
for i in $(seq "$N"); do
  img=/var/lib/libvirt/images/$(name "$i").qcow2
  qemu-img create -q -f qcow2 "$img" 8M
  guest_xml "$(name "$i")" "$(uuid "$i")" \
    "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$img'/><target dev='vda' bus='virtio'/></disk>" \
    >/tmp/vah-load-$i.xml
  $VIRSH define /tmp/vah-load-$i.xml >/dev/null
done
mark=$(log_mark)
t0=$SECONDS
for i in $(seq "$N"); do $VIRSH start "$(name "$i")" >/tmp/vah-load-start-$i.log 2>&1 & done
wait
echo "  started $N guests concurrently in $((SECONDS - t0)) s"
running=0; profiles=0
for i in $(seq "$N"); do
  [ "$($VIRSH domstate "$(name "$i")" 2>/dev/null)" = running ] && running=$((running + 1))
  [ -f "/etc/apparmor.d/libvirt/libvirt-$(uuid "$i")" ] && profiles=$((profiles + 1))
done
[ "$running" = "$N" ] && ok "all $N guests started" || fail "$running of $N guests running: $(cat /tmp/vah-load-start-*.log | grep -i error | head -3)"
[ "$profiles" = "$N" ] && ok "all $N profiles exist while the guests run" || fail "$profiles of $N profiles exist"
t0=$SECONDS
for i in $(seq "$N"); do $VIRSH destroy "$(name "$i")" >/dev/null 2>&1 & done
wait
echo "  stopped $N guests concurrently in $((SECONDS - t0)) s"
all_released() { [ "$(log_since "$mark" | grep -c 'vah-load-.*release/end')" -ge "$N" ]; }
wait_for 300 "a release line for each of the $N guests" all_released
left=0
for i in $(seq "$N"); do [ -e "/etc/apparmor.d/libvirt/libvirt-$(uuid "$i")" ] && left=$((left + 1)); done
[ "$left" = 0 ] && ok "all profiles removed after stop" || fail "$left profiles left after stop"
events=$(log_since "$mark" | grep -c 'vah-load-')
want=$((N * 5))
[ "$events" = "$want" ] && ok "log has one line per event ($events)" || fail "log has $events lines for $want events"
timeout_ms=$((60 * 1000))
slow=$(log_since "$mark" | grep 'vah-load-' | sed -nE 's/.*\(([0-9.]+) ms\)$/\1/p' | awk -v t=$timeout_ms '$1 > t' | wc -l)
max=$(log_since "$mark" | grep 'vah-load-' | sed -nE 's/.*\(([0-9.]+) ms\)$/\1/p' | sort -g | tail -n1)
[ "$slow" = 0 ] && ok "no hook run exceeded the parser timeout (slowest ${max} ms)" || fail "$slow hook runs exceeded ${timeout_ms} ms"
check_not "no ERROR lines under load" bash -c "grep 'vah-load-' <<<\"\$0\" | grep -q ERROR" "$(log_since "$mark")"
finish
