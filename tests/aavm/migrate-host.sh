#!/usr/bin/env bash
# One of the two hosts of tests/aavm/migrate.sh, run INSIDE an aavm VM with AppArmor:
#     migrate-host.sh a|b REPO SHARED
# Both VMs see SHARED (a host directory, 9p) at the same path: the guest's disk lives there, and
# empty files there are the barriers between the two scripts. Each host: libvirt's AppArmor driver
# on, the package installed as in suite 02 (helper mode), libvirtd listening on TCP on eth0
# (QEMU socket netdev between the VMs). Host a starts the guest; four rounds move it a->b, b->a
# (plain live migration over shared storage), then a->b, b->a peer-to-peer and tunnelled (the
# destination QEMU reads the stream from libvirt's `*.tunnelmigrate.dest.<name>` socket, a rule
# of ours); after each, each host checks what it is: the destination runs QEMU as
# libvirt-<uuid> (enforce), the source unloaded and removed the profile at release; no
# apparmor="DENIED" anywhere; libvirt used no XML from the hook (no "hook-script" taint).
set -u
ME=$1; cd "${2:?REPO}" || exit 1; S=${3:?SHARED}
. tests/lib/common.sh
. tests/aavm/suites/lib/vah.sh
declare -A IP=([a]=192.168.77.1 [b]=192.168.77.2)
PEER=b; [ "$ME" = b ] && PEER=a
G=vah-mig; U=aaaaaaaa-aa16-4000-8000-000000000001
P=libvirt-$U
F=/etc/apparmor.d/libvirt/$P
IMG=$S/$G.qcow2
LIVE=(--live --persistent --undefinesource --unsafe)

# put NAME / await NAME [SECONDS]: barriers in the shared directory; "abort" ends the waits.
put() { touch "$S/$1"; }
await() {
  local i
  for ((i = 0; i < ${2:-600} * 2; i++)); do
    [ -e "$S/$1" ] && return 0
    [ -e "$S/abort" ] && { echo "  ($ME: $PEER gave up before $1)"; return 1; }
    sleep 0.5
  done
  echo "  ($ME: no $1 after ${2:-600} s)"; return 1
}
bail() {
  fail "$ME: $*"; put abort
  echo "  --   $ME: hook log (last 15 lines):"; tail -n 15 "$VAH_LOG" 2>/dev/null | cut -c1-300 | sed 's/^/       /'
  finish; exit 1
}
at() { printf '%4ds' "$SECONDS"; }

vah_clean_state
hostname "vahm-$ME"
printf '%s vahm-a\n%s vahm-b\n' "${IP[a]}" "${IP[b]}" >>/etc/hosts
for p in usr.sbin.libvirtd usr.lib.libvirt.virt-aa-helper; do
  out=$(apparmor_parser -r /etc/apparmor.d/$p 2>&1) || bail "apparmor_parser -r $p: $out"
done
vah_install || bail "install the package (install.sh --deb)"
# One compile of a guest profile took up to 43 s under TCG on a loaded host (suite 06): the
# default 60 s parser timeout is too tight for a 1-CPU VM beside another one.
echo 'parser_timeout = 300' >>/etc/libvirt/virt-aa-hook.conf
out=$(apparmor_parser -r /etc/apparmor.d/usr.lib.libvirt.virt-aa-hook 2>&1) || bail "apparmor_parser -r usr.lib.libvirt.virt-aa-hook: $out"
ok "$ME: package installed, hook $(readlink /etc/libvirt/hooks/qemu), profiles libvirtd + virt-aa-hook loaded ($(at))"

# Two hosts: own hostname and host UUID (libvirt refuses to migrate to itself), libvirtd on TCP
# without auth on the private link, migration data on that link too.
cat >/etc/libvirt/libvirtd.conf <<EOF
listen_tls = 0
listen_tcp = 1
listen_addr = "${IP[$ME]}"
auth_tcp = "none"
host_uuid = "00000000-0000-4000-8000-0000000000a$ME"
EOF
cat >/etc/libvirt/qemu.conf <<EOF
security_driver = "apparmor"
stdio_handler = "file"
remember_owner = 0
migration_address = "${IP[$ME]}"
migration_host = "${IP[$ME]}"
EOF
mkdir -p /run/libvirt /var/lib/libvirt/images
/usr/sbin/libvirtd -d --listen || bail "libvirtd -d --listen"
wait_for 300 "libvirtd on $ME to answer" $VIRSH version
$VIRSH version >/dev/null 2>&1 || bail "libvirtd does not answer"
expect_eq "$ME: libvirtd runs confined" "libvirtd (enforce)" "$(tr -d '\0' </proc/$(pidof libvirtd)/attr/current)"
timeout 300 virt-aa-hook caps >/dev/null 2>&1 || fail "$ME: virt-aa-hook caps"
ok "$ME: libvirtd answers on ${IP[$ME]} ($(at))"
put "$ME.ready"
await "$PEER.ready" || bail "the other host never came up"
check "$ME: reaches $PEER's libvirtd over the socket link" virsh -c "qemu+tcp://${IP[$PEER]}/system" version

# dest_checks N: this host has just received the guest.
dest_checks() {
  local n=$1 pid ev
  expect_eq "$n $ME: guest running here" running "$($VIRSH domstate $G 2>&1)"
  pid=$(cat /run/libvirt/qemu/$G.pid 2>/dev/null)
  expect_eq "$n $ME: QEMU (pid ${pid:-?}) runs as $P (enforce)" "$P (enforce)" "$(tr -d '\0' </proc/${pid:-0}/attr/current 2>&1)"
  expect_eq "$n $ME: $P loaded in enforce mode" enforce "$(loaded_mode $P)"
  check "$n $ME: $F is ours" bash -c "head -n1 $F | grep -q '^# virt-aa-hook generated profile'"
  check "$n $ME: $F grants the shared image" grep -qF "\"$IMG\" rwk," $F
  # Helper mode: migrate/prepare leave the profile to our helper (libvirt's driver runs it with
  # -c before QEMU exists), start regenerates, started sees QEMU in it.
  ev=$(tail -n +"$(($2 + 1))" $VAH_LOG | grep -F "[$G $U]" | sed -nE "s/.*\[$G $U\] (migrate\/begin|prepare\/begin|start\/begin|started\/begin|helper -[a-zA-Z]).*/\1/p" | tr '\n' ' ')
  # (libvirt 9.0 ran a tunnelled migration without a started hook on the destination in one of
  # the e2e runs: accepted there, and said, as in tests/e2e/migrate.sh.)
  if [[ "$ev" == "migrate/begin prepare/begin helper -c "*"start/begin "*"started/begin "* ]]; then
    ok "$n $ME: log order: $ev"
    check "$n $ME: started/begin saw QEMU confined" bash -c "tail -n +$(($2 + 1)) $VAH_LOG | grep -F '[$G $U] started/begin' | tail -n1 | grep -q 'runs confined: $P (enforce)'"
  elif [[ "$n" == *tunnelled* && "$ev" == "migrate/begin prepare/begin helper -c "*"start/begin "* ]]; then
    ok "$n $ME: log order: $ev (note: no started/begin)"
  else fail "$n $ME: log order: $ev"; fi
  check_not "$n $ME: libvirt took no XML from the migrate hook (no hook-script taint)" grep -q "tainted: hook-script" /var/log/libvirt/qemu/$G.log
}
# src_checks N MARK: this host has just sent the guest away.
src_checks() {
  local n=$1
  wait_for 180 "the release line of $G on $ME" bash -c "tail -n +$(($2 + 1)) $VAH_LOG | grep -qF '[$G $U] release/end'"
  check_not "$n $ME: guest gone here (--undefinesource)" $VIRSH dominfo $G
  check_not "$n $ME: $P unloaded at release" grep -q "^$P " "$PROFILES"
  check_not "$n $ME: $F removed at release" test -e $F
  # (libvirt's driver runs our helper with -D at the stop, which may remove it before release)
  check "$n $ME: log has stopped/end and release/end" bash -c "tail -n +$(($2 + 1)) $VAH_LOG | grep -F '[$G $U]' | grep -q 'stopped/end' && tail -n +$(($2 + 1)) $VAH_LOG | grep -F '[$G $U]' | grep -q 'release/end'"
}
mark() { wc -l <$VAH_LOG 2>/dev/null || echo 0; }

if [ "$ME" = a ]; then
  qemu-img create -q -f qcow2 "$IMG" 16M
  guest_xml $G $U "$(disk_xml "$IMG")" >/tmp/$G.xml
  $VIRSH define /tmp/$G.xml >/dev/null || bail "virsh define"
  out=$($VIRSH start $G 2>&1) || bail "virsh start: $out"
  pid=$(cat /run/libvirt/qemu/$G.pid)
  expect_eq "a: started here, QEMU runs as $P (enforce)" "$P (enforce)" "$(tr -d '\0' </proc/$pid/attr/current 2>&1)"
fi
# Round i moves the guest FROM -> TO with the extra flags. Barriers: TO puts ready<i> (its log
# mark taken, the previous round's checks done), FROM migrates and puts mig<i>, TO checks.
ROUNDS=("a b" "b a" "a b --p2p --tunnelled" "b a --p2p --tunnelled")
for i in "${!ROUNDS[@]}"; do
  read -r from to extra <<<"${ROUNDS[$i]}"
  n="$from->$to${extra:+ $extra}"
  if [ "$ME" = "$to" ]; then
    m=$(mark)
    put "ready$i"
    await "mig$i" || bail "$n: no migration from $from"
    dest_checks "$n" "$m"
  elif [ "$ME" = "$from" ]; then
    await "ready$i" || bail "$n: $to not ready"
    m=$(mark); t0=$SECONDS
    # shellcheck disable=SC2086 # extra: flags, split on purpose
    if out=$($VIRSH migrate "${LIVE[@]}" $extra $G "qemu+tcp://${IP[$to]}/system" 2>&1); then
      ok "$n: virsh migrate ${LIVE[*]}${extra:+ $extra} ($((SECONDS - t0)) s)"
    else bail "$n: virsh migrate: $out"; fi
    put "mig$i"
    src_checks "$n" "$m"
  fi
done

bad=$(denials)
if [ -z "$bad" ]; then ok "$ME: no apparmor=\"DENIED\" line on this host"
else fail "$ME: DENIED lines:"; echo "$bad" | sed 's/^/    /'; fi
if grep -q ERROR $VAH_LOG; then fail "$ME: hook log has ERROR lines:"; grep ERROR $VAH_LOG | sed 's/^/    /'; else ok "$ME: hook log has no ERROR lines"; fi
put "$ME.done"
if [ "$ME" = a ]; then
  # The guest ends its life here: release unloads and removes the profile as for any guest.
  $VIRSH destroy $G >/dev/null 2>&1
  wait_for 180 "the release line of $G (profile removed) on a" bash -c "grep -F '[$G $U] release/end' $VAH_LOG | tail -n1 | grep -q removed && [ ! -e $F ]"
  check_not "a: after destroy, $P unloaded" grep -q "^$P " "$PROFILES"
  check_not "a: after destroy, $F removed" test -e $F
fi
await "$PEER.done" 300 || fail "$ME: $PEER did not finish"
echo "  --   $ME: hook log:"; grep -F "[$G $U]" $VAH_LOG | cut -c1-220 | sed 's/^/       /'
finish ""
