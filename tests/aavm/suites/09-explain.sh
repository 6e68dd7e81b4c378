#!/usr/bin/env bash
# Suite 09, run INSIDE an aavm VM as `09-explain.sh REPO`: `virt-aa-hook explain` from a real
# denial to the fix, and the complain → explain --apply → enforce bring-up. Three real guests
# (standalone mode on the emulator wrapper, as suite 04). There is no journald in the VM (no
# systemd): explain reads dmesg here; the journal path is covered by unit tests on recorded JSON.
#   A opens a file outside its definition (QMP blockdev-add; the name has a space, so the kernel
#     logs it hex-encoded) → DENIED → explain names the guest, the path and the escaped rule →
#     --apply (idempotent) → the same open succeeds, and A's profile still denies its neighbour
#     file and B's disk; B's disk and /etc are explained as refused, with no rule offered;
#     crafted records (B's name-derived files, host locations, /dev/sda, backup scratch, a
#     capability, an unknown UUID) get their verdicts and --apply writes nothing for them.
#   C is switched to complain with `virt-aa-hook complain`, started, opens its extra site file
#     (ALLOWED), explain --apply, `virt-aa-hook enforce` (reloads the running guest), restart:
#     the same open works with 0 denials.
set -u
cd "${1:-$(dirname "$0")/../../..}" || exit 1
. tests/lib/common.sh
. tests/aavm/suites/lib/vah.sh

GA=vah-ex-a; UA=aaaaaaaa-aa08-4000-8000-00000000000a; PA=libvirt-$UA
GB=vah-ex-b; UB=aaaaaaaa-aa08-4000-8000-00000000000b
GC=vah-ex-c; UC=aaaaaaaa-aa08-4000-8000-00000000000c; PC=libvirt-$UC
D=/srv/vah/ex
SITE="$D/site data/extra 1.img"   # outside every definition; a space → hex-encoded in the log
NEIGH="$D/site data/extra 2.img"  # its neighbour: must stay denied after the apply
CSITE=$D/c-site.img
LOCAL_A=/etc/apparmor.d/local/libvirt/$PA

vah_clean_state
vah_install_or_stop
echo 'mode = "standalone"' >>/etc/libvirt/virt-aa-hook.conf
if vah_libvirtd none; then ok "libvirtd -d (security_driver = \"none\") answers ($SECONDS s)"; else fail "libvirtd -d answers"; finish; exit 1; fi

mkdir -p "$D/site data"
for g in a b c; do qemu-img create -q -f qcow2 $D/$g.qcow2 16M; done
for f in "$SITE" "$NEIGH" "$CSITE"; do qemu-img create -q -f raw "$f" 1M; done
chown -R libvirt-qemu: $D   # QEMU's user may open everything: only AppArmor decides
guest_xml $GA $UA "$(disk_xml $D/a.qcow2)" >/tmp/$GA.xml
guest_xml $GB $UB "$(disk_xml $D/b.qcow2)" >/tmp/$GB.xml
guest_xml $GC $UC "$(disk_xml $D/c.qcow2)" >/tmp/$GC.xml
for g in $GA $GB $GC; do
  if out=$($VIRSH define /tmp/$g.xml 2>&1); then ok "virsh define $g"; else fail "virsh define $g: $out"; fi
done
if out=$(timeout 300 virt-aa-hook enroll $GA $GB $GC 2>&1); then ok "virt-aa-hook enroll"; else fail "enroll: $out"; fi

# qmp NODE PATH [LOCKING]: blockdev-add PATH read-only in guest $G (QEMU's answer on stdout).
qmp() {
  $VIRSH qemu-monitor-command "$G" "{\"execute\":\"blockdev-add\",\"arguments\":{\"driver\":\"file\",\"node-name\":\"$1\",\"filename\":\"$2\",\"read-only\":true,\"locking\":\"${3:-off}\"}}" 2>&1
}

echo "  --   setup done after $SECONDS s"
vah_start $GA $GB
expect_eq "$PA loaded in enforce mode" enforce "$(loaded_mode $PA)"

# --- A: a site-specific file
G=$GA
out=$(qmp n1 "$SITE")
if [[ $out == *"Permission denied"* ]]; then ok "A: opening '$SITE' is refused"; else fail "A: opening '$SITE' is refused: $out"; fi
hex=$(printf '%s' "$SITE" | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
check "A: dmesg logs the name hex-encoded (name=$hex)" bash -c "dmesg | grep -F 'profile=\"$PA\"' | grep -qF 'name=$hex'"
out=$(virt-aa-hook explain --guest $GA 2>&1); rc=$?
echo "$out" | sed 's/^/       | /'
expect_eq "explain exits 0" 0 $rc
check "explain reads dmesg" grep -q '^source: dmesg' <<<"$out"
check "explain names the guest, its UUID and state" grep -qF "guest $GA ($UA, running)" <<<"$out"
check "explain names the path" grep -qF "DENIED open \"$SITE\" r" <<<"$out"
check "explain calls it site-specific" grep -q 'site-specific: not in the guest' <<<"$out"
check "explain prints the escaped rule" grep -qxF "      \"$SITE\" r," <<<"$out"
check "explain names the local file" grep -qF "Rule for $LOCAL_A:" <<<"$out"
check "explain prints the reload command" grep -qF "apparmor_parser -r /etc/apparmor.d/libvirt/$PA" <<<"$out"
check_not "explain --guest A says nothing about guest B" grep -qF "guest $GB" <<<"$out"

out=$(virt-aa-hook explain --guest $GA --apply 2>&1); rc=$?
expect_eq "explain --apply exits 0" 0 $rc
check "explain --apply reports the reload" grep -qF "rule(s) to $LOCAL_A; reloaded $PA" <<<"$out"
check "local file has the rule" grep -qxF "  \"$SITE\" r," "$LOCAL_A"
expect_eq "$PA still loaded in enforce mode" enforce "$(loaded_mode $PA)"
out=$(virt-aa-hook explain --guest $GA --apply 2>&1)
check "explain --apply again changes nothing" grep -qE "apply: ($LOCAL_A already has these rules|nothing to write to $LOCAL_A)" <<<"$out"
expect_eq "local file has the rule once" 1 "$(grep -cF "$SITE" "$LOCAL_A")"

out=$(qmp n2 "$SITE")
if [[ $out != *error* ]]; then ok "A: the same open now succeeds"; else fail "A: the same open now succeeds: $out"; fi
out=$(qmp n3 "$NEIGH")
if [[ $out == *"Permission denied"* ]]; then ok "A: the neighbour file '$NEIGH' is still refused"; else fail "A: the neighbour file is still refused: $out"; fi

# --- A opens B's disk and a host system file: explained, refused, no rule.
sleep 1; T=$(date +%s)   # records from here on: only these two
out=$(qmp n4 $D/b.qcow2)
if [[ $out == *"Permission denied"* ]]; then ok "A: B's disk is refused"; else fail "A: B's disk is refused: $out"; fi
out=$(qmp n5 /etc/hostname)
if [[ $out == *"Permission denied"* ]]; then ok "A: /etc/hostname is refused"; else fail "A: /etc/hostname is refused: $out"; fi
out=$(virt-aa-hook explain --guest $UA --since @$T --apply 2>&1)
echo "$out" | sed 's/^/       | /'
check "explain --since: only the new records" grep -qE "since @$T: [0-9]+ record\(s\) of 1 guest\(s\)" <<<"$out"
check_not "explain --since: not the older ones" grep -qF "$SITE" <<<"$out"
check "explain: B's disk belongs to guest $GB, stays denied" grep -qF "refused by policy, stays denied: $D/b.qcow2 belongs to guest \"$GB\"" <<<"$out"
check "explain: /etc/hostname is a host system path" grep -qF "refused by policy, stays denied: /etc/hostname is a host system path" <<<"$out"
check_not "no rule offered for B's disk" grep -qF "\"$D/b.qcow2\" r," <<<"$out"
check_not "--apply wrote nothing for refused accesses" grep -qE '^apply: (added|.* already has)' <<<"$out"
check_not "local file has no rule for B's disk or /etc" grep -qE "b\.qcow2|/etc/hostname" "$LOCAL_A"
# --- Records a compromised A could provoke (issue 21), as crafted kernel lines read with --log:
# B's name-derived files, host locations, a device, backup scratch, a capability, and a UUID no
# guest has. Each gets its verdict; --apply writes nothing; B's master key stays denied for real.
IDB=$($VIRSH domid $GB 2>/dev/null | tr -d '[:space:]')
UX=aaaaaaaa-aa08-4000-8000-0000000000ff
rec() {  # rec UUID PATH MASK: one kernel record, the name hex-encoded as the kernel may write it
  local hex; hex=$(printf '%s' "$2" | od -An -tx1 | tr -d ' \n' | tr a-f A-F)
  echo "audit: type=1400 audit(1764545412.395:85): apparmor=\"DENIED\" operation=\"open\" profile=\"libvirt-$1\" name=$hex pid=1 comm=\"qemu-system-x86\" requested_mask=\"$3\" denied_mask=\"$3\""
}
CRAFT=/tmp/vah-ex-crafted.log
{
  rec $UA /var/lib/libvirt/qemu/domain-$IDB-$GB/master-key.aes r
  rec $UA /run/libvirt/qemu/$GB.pid w
  rec $UA /var/log/libvirt/qemu/$GB.log w
  rec $UA /root/.bashrc w
  rec $UA /var/spool/cron/crontabs/root w
  rec $UA /run/libvirt/libvirt-sock rw
  rec $UA /var/cache/apparmor/x/y w
  rec $UA /dev/sda rw
  rec $UA /dev/kmsg r
  rec $UA /dev/watchdog w
  rec $UA /sys/devices/pci0000:00/0000:00:02.0/resource0 rw
  rec $UA / r
  rec $UA /var/tmp/backup.Xa3k9Q.vda rw
  rec $UX $D/squat.img rw
  echo "audit: type=1400 audit(1764545412.395:86): apparmor=\"DENIED\" operation=\"capable\" class=\"cap\" profile=\"libvirt-$UA\" pid=1 comm=\"qemu-system-x86\" capability=21 capname=\"sys_admin\""
} >$CRAFT
sum_before=$(md5sum <"$LOCAL_A")
out=$(virt-aa-hook explain --log $CRAFT --apply 2>&1); rc=$?
echo "$out" | sed 's/^/       | /'
expect_eq "explain --log (crafted) exits 0" 0 $rc
check "crafted: B's master key belongs to guest $GB" grep -qF "domain-$IDB-$GB/master-key.aes belongs to guest \"$GB\"" <<<"$out"
check "crafted: B's pid file belongs to guest $GB" grep -qF "/run/libvirt/qemu/$GB.pid belongs to guest \"$GB\"" <<<"$out"
check "crafted: B's log belongs to guest $GB" grep -qF "/var/log/libvirt/qemu/$GB.log belongs to guest \"$GB\"" <<<"$out"
for p in /root/.bashrc /var/spool/cron/crontabs/root /run/libvirt/libvirt-sock /var/cache/apparmor/x/y /dev/kmsg /dev/watchdog /sys/devices/pci0000:00/0000:00:02.0/resource0; do
  check "crafted: $p refused" bash -c 'grep -A1 -F "\"$1\"" <<<"$2" | grep -q "refused by policy"' _ "$p" "$out"
done
check "crafted: \"/\" refused" grep -qF 'refused by policy, stays denied: "/" is the whole host' <<<"$out"
check "crafted: /dev/sda only with grant --device" grep -qF "virt-aa-hook grant --device $GA /dev/sda" <<<"$out"
check "crafted: backup scratch gets the -S advice" grep -qF -- "-S /var/lib/libvirt/qemu/domain-" <<<"$out"
check "crafted: the capability is named" grep -qF "DENIED capable capability sys_admin" <<<"$out"
check "crafted: the unknown UUID gets no rule" grep -qF "no defined guest has UUID $UX" <<<"$out"
check_not "crafted: no site-specific rule offered" grep -q 'site-specific' <<<"$out"
expect_eq "crafted: --apply left A's local file as it was" "$sum_before" "$(md5sum <"$LOCAL_A")"
check_not "crafted: no local file for the unknown UUID" test -e /etc/apparmor.d/local/libvirt/libvirt-$UX
out=$(qmp n6 /var/lib/libvirt/qemu/domain-$IDB-$GB/master-key.aes)
if [[ $out == *"Permission denied"* ]]; then ok "A: B's master key stays denied"; else fail "A: B's master key stays denied: $out"; fi
out=$(virt-aa-hook explain --guest $GA 2>&1)
check "explain: the neighbour file gets its own rule, only when asked" grep -qxF "      \"$NEIGH\" r," <<<"$out"
check_not "local file has no rule for the neighbour file" grep -qF "$NEIGH" "$LOCAL_A"

# status --json: QEMU's real label, the profile mode and the denials since boot.
js=$(timeout 120 virt-aa-hook status $GA --json 2>&1)
check "status --json: qemu_label is $PA (enforce)" grep -qF "\"qemu_label\": \"$PA (enforce)\"" <<<"$js"
check "status --json: profile_mode enforce" grep -qF '"profile_mode": "enforce"' <<<"$js"
n=$(grep -oE '"denials_since_boot": [0-9]+' <<<"$js" | grep -oE '[0-9]+$')
if [ "${n:-0}" -ge 4 ]; then ok "status --json: denials_since_boot = $n (>= 4)"; else fail "status --json: denials_since_boot >= 4: $js"; fi

# --- C: bring-up in complain mode
G=$GC
if out=$(timeout 120 virt-aa-hook complain $GC 2>&1); then ok "virt-aa-hook complain $GC: $out"; else fail "complain $GC: $out"; fi
check "$GC's metadata says mode=complain" bash -c "$VIRSH dumpxml --inactive $GC | grep -q 'mode=.complain.'"
check "$GC's metadata kept original-emulator" bash -c "$VIRSH dumpxml --inactive $GC | grep -q 'original-emulator='"
vah_start $GC
expect_eq "$PC loaded in complain mode" complain "$(loaded_mode $PC)"
out=$(qmp c1 $CSITE auto)
if [[ $out != *error* ]]; then ok "C (complain): opening its site file works"; else fail "C (complain): opening its site file works: $out"; fi
check "C: dmesg has apparmor=\"ALLOWED\" for it" bash -c "dmesg | grep 'apparmor=\"ALLOWED\"' | grep -F 'profile=\"$PC\"' | grep -qF 'name=\"$CSITE\"'"
out=$(virt-aa-hook explain --guest $GC --apply 2>&1)
echo "$out" | sed 's/^/       | /'
check "explain: ALLOWED records are explained too" grep -qF "ALLOWED open \"$CSITE\"" <<<"$out"
check "explain --apply wrote C's rule" grep -qF "\"$CSITE\"" /etc/apparmor.d/local/libvirt/$PC
if out=$(timeout 120 virt-aa-hook enforce $GC 2>&1); then ok "virt-aa-hook enforce $GC: $out"; else fail "enforce $GC: $out"; fi
expect_eq "$PC reloaded in enforce mode (running guest)" enforce "$(loaded_mode $PC)"
pc=$(cat /run/libvirt/qemu/$GC.pid 2>/dev/null)
expect_eq "C's QEMU now runs as $PC (enforce)" "$PC (enforce)" "$(tr -d '\0' </proc/${pc:-0}/attr/current 2>&1)"
$VIRSH destroy $GC >/dev/null 2>&1
wait_for 120 "the release line of $GC in $VAH_LOG" grep -q "\[$GC $UC\] release/end" $VAH_LOG
before=$(denials $PC | wc -l)
t0=$SECONDS
if out=$($VIRSH start $GC 2>&1); then ok "virsh start $GC in enforce mode ($((SECONDS - t0)) s)"; else fail "virsh start $GC: $out"; fi
expect_eq "$PC loaded in enforce mode after restart" enforce "$(loaded_mode $PC)"
out=$(qmp c2 $CSITE auto)
if [[ $out != *error* ]]; then ok "C (enforce): its site file opens"; else fail "C (enforce): its site file opens: $out"; fi
expect_eq "C: 0 new denials after the bring-up" 0 "$(($(denials $PC | wc -l) - before))"

for g in $GA $GB $GC; do $VIRSH destroy $g >/dev/null 2>&1; done
if grep -q ERROR $VAH_LOG; then fail "hook log has ERROR lines:"; grep ERROR $VAH_LOG | sed 's/^/    /'; else ok "hook log has no ERROR lines"; fi
expect_no_own_denials
finish ""
