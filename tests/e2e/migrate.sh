#!/usr/bin/env bash
# Live migration between two libvirt hosts with the hook installed on both (issue #16), on a
# kernel without AppArmor: two network + mount namespaces on this machine, each with its own
# libvirtd and virtlogd (tests/e2e/twohost.sh), TCG guests. For every migration: the guest runs
# on the destination, the destination wrote the profile before QEMU started (hook log order and
# file time), the source removed its profile at release, the hook printed nothing on stdout on
# either host, and each host's log has one line per event. Also: a migration the destination's
# hook refuses leaves the guest running on the source.
#
# Host-global state is shared with other runs: the suite holds /tmp/vah-host.lock (taken here
# unless the caller already holds it on an inherited descriptor) and never touches the
# machine's own libvirtd or /etc/libvirt.
# Usage: tests/e2e/migrate.sh   (root; needs target/release built and cargo-deb)
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd); export ROOT
LOCK=/tmp/vah-host.lock
if [ -z "${VAH_HOST_LOCKED:-}" ]; then
  for fd in /proc/$$/fd/*; do [ "$(readlink "$fd")" = "$LOCK" ] && export VAH_HOST_LOCKED=1; done
  [ -n "${VAH_HOST_LOCKED:-}" ] || exec env VAH_HOST_LOCKED=1 flock "$LOCK" "$ROOT/tests/e2e/migrate.sh" "$@"
fi
. tests/lib/common.sh
. tests/e2e/lib.sh
. tests/e2e/twohost.sh

trap 'th_down' EXIT
t_start=$SECONDS

th_init || { fail "package for the hosts"; finish; exit 1; }
th_host_up a $TH_NET.1 && th_host_up b $TH_NET.2 && th_link a b \
  && th_daemons_up a && th_daemons_up b || {
  fail "two hosts up: $(cat "$TH_DIR"/*/holder.log 2>/dev/null)"
  for h in a b; do echo "  --   host $h: addresses $(ip -n "${TH_NS[$h]}" -br addr 2>&1 | tr '\n' ' '); libvirtd.log:"
    grep -E ' (error|warning) ' "$TH_DIR/$h/var-log-libvirt/libvirtd.log" 2>/dev/null | tail -n 5 | sed 's/^/       /'; done
  finish; exit 1; }
ok "two hosts up (vahm-a ${TH_IP[a]}, vahm-b ${TH_IP[b]}), each its own libvirtd ($(vsh a version 2>/dev/null | sed -n 's/.*[Rr]unning hypervisor: //p'))"
check "host a reaches host b's libvirtd over the veth link" on a virsh -c "qemu+tcp://${TH_IP[b]}/system" version

hlog() { echo "$TH_DIR/$1/root/var/log/libvirt/virt-aa-hook.log"; }
hmark() { [ -f "$(hlog "$1")" ] && wc -l <"$(hlog "$1")" || echo 0; }
hsince() { [ -f "$(hlog "$1")" ] && tail -n +"$(($2 + 1))" "$(hlog "$1")" || true; }
profile() { echo "$TH_DIR/$1/root/etc/apparmor.d/libvirt/libvirt-$2"; }
# events HOST MARK NAME UUID: the guest's events in that host's log since MARK, one per line.
events() { hsince "$1" "$2" | sed -nE "s/.* \[$3 $4\] ([a-z]+\/[a-z]+).*/\1/p"; }

# qemu_start HOST NAME: when the guest's QEMU process started (epoch seconds, 10 ms ticks).
qemu_start() {
  local pid boot ticks
  pid=$(on "$1" cat "/run/libvirt/qemu/$2.pid" 2>/dev/null) || return 1
  # Boot time to 10 ms (/proc/stat's btime is whole seconds): now minus uptime.
  boot=$(awk -v now="$(date +%s.%N)" '{printf "%.2f", now - $1}' /proc/uptime)
  ticks=$(awk '{print $22}' "/proc/$pid/stat") || return 1
  echo "$boot $ticks $(getconf CLK_TCK)" | awk '{printf "%.2f", $1 + $2 / $3}'
}

# migrated CASE NAME UUID SRC DST MARK_SRC MARK_DST OUT_SRC OUT_DST: the checks after a
# successful migration.
migrated() {
  local c=$1 g=$2 u=$3 s=$4 d=$5 ms=$6 md=$7 os=$8 od=$9 ev t_prof t_qemu
  check "$c: guest runs on $d" test "$(vsh "$d" domstate "$g" 2>&1)" = running
  check_not "$c: guest no longer defined on $s (--undefinesource)" vsh "$s" dominfo "$g"
  check "$c: $d has the profile file" test -f "$(profile "$d" "$u")"
  check_not "$c: $s removed its profile file at release" test -e "$(profile "$s" "$u")"
  ev=$(events "$d" "$md" "$g" "$u" | tr '\n' ' ')
  # libvirt runs migrate on the destination before prepare, start and started (qemu_migration.c
  # qemuMigrationDstPrepareAny, then qemuProcessInit/Launch/FinishStartup); the profile is
  # written at prepare. A tunnelled migration (libvirt 9.0) ran without a started hook on
  # the destination in one of our runs: accepted there, and said.
  local want="migrate/begin prepare/begin start/begin started/begin "
  if [ "$ev" = "$want" ] || { [[ "$c" == *tunnelled* ]] && [ "$ev" = "migrate/begin prepare/begin start/begin " ] \
    && echo "  (note: $c: no started/begin on $d)"; }; then
    ok "$c: $d's log: one line each for $want"
  else
    fail "$c: $d's events: $ev (want $want)"
  fi
  # migrate/begin only checks (libvirt may still abort without a release here); prepare writes.
  if hsince "$d" "$md" | grep "\[$g $u\] migrate/begin" | grep -q "checked libvirt-$u: .*compile ok"; then
    ok "$c: $d checked the profile at migrate/begin (compile ok, nothing written)"
  else
    fail "$c: $d migrate/begin: $(hsince "$d" "$md" | grep "\[$g $u\] migrate/begin")"
  fi
  if hsince "$d" "$md" | grep "\[$g $u\] prepare/begin" | grep -q " wrote libvirt-$u"; then
    ok "$c: $d wrote the profile at prepare/begin"
  else
    fail "$c: $d prepare/begin: $(hsince "$d" "$md" | grep "\[$g $u\] prepare/begin")"
  fi
  t_prof=$(stat -c %.2Y "$(profile "$d" "$u")" 2>/dev/null)
  t_qemu=$(qemu_start "$d" "$g")
  if [ -n "$t_prof" ] && [ -n "$t_qemu" ] && awk -v p="$t_prof" -v q="$t_qemu" 'BEGIN {exit !(p <= q + 0.01)}'; then
    ok "$c: profile file written before $d's QEMU started ($t_prof <= $t_qemu)"
  else
    fail "$c: profile time $t_prof, QEMU start $t_qemu"
  fi
  ev=$(events "$s" "$ms" "$g" "$u" | tr '\n' ' ')
  if [ "$ev" = "stopped/end release/end " ]; then ok "$c: $s's log: stopped, release (one line each)"; else fail "$c: $s's events: $ev"; fi
  if hsince "$s" "$ms" | grep "\[$g $u\] release/end" | grep -q "removed .*libvirt-$u"; then
    ok "$c: $s's release line says the profile was removed"
  else
    fail "$c: $s release: $(hsince "$s" "$ms" | grep "\[$g $u\] release/end")"
  fi
  check_not "$c: no ERROR or WARN line on either host" bash -c "{ $(declare -f hsince hlog); hsince $s $ms; hsince $d $md; } | grep -E ' (ERROR|WARN) '"
  check "$c: the hook printed nothing on stdout on $s" test "$(stat -c %s "$TH_DIR/$s/hook-stdout")" = "$os"
  check "$c: the hook printed nothing on stdout on $d" test "$(stat -c %s "$TH_DIR/$d/hook-stdout")" = "$od"
}

# migrate CASE NAME UUID SRC DST VIRSH-MIGRATE-ARGS...: migrate (virsh on SRC), then check.
migrate() {
  local c=$1 g=$2 u=$3 s=$4 d=$5; shift 5
  local ms md os od t0
  ms=$(hmark "$s"); md=$(hmark "$d")
  os=$(stat -c %s "$TH_DIR/$s/hook-stdout"); od=$(stat -c %s "$TH_DIR/$d/hook-stdout")
  t0=$(date +%s.%N)
  if vsh "$s" migrate "$@" "$g" "qemu+tcp://${TH_IP[$d]}/system" >"$TH_DIR/migrate.out" 2>&1; then
    ok "$c: virsh migrate $* ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s)"
  else
    fail "$c: virsh migrate $*: $(tr '\n' ' ' <"$TH_DIR/migrate.out")"
    return 1
  fi
  migrated "$c" "$g" "$u" "$s" "$d" "$ms" "$md" "$os" "$od"
}

G1=vah-mig-shared; U1=aaaaaaaa-0000-4000-8000-00000000a001
G2=vah-mig-copy; U2=aaaaaaaa-0000-4000-8000-00000000a002
SHARED=$TH_DIR/shared
LIVE=(--live --persistent --undefinesource --verbose)

# --- shared storage: one directory both hosts see at the same path ---------------------------
qemu-img create -q -f qcow2 "$SHARED/$G1.qcow2" 16M
guest_xml $G1 $U1 "$(disk_xml "$SHARED/$G1.qcow2")" >"$TH_DIR/$G1.xml"
vsh a define "$TH_DIR/$G1.xml" >/dev/null
if vsh a start $G1 >"$TH_DIR/start.out" 2>&1; then ok "$G1 starts on a"; else fail "$G1 starts on a: $(cat "$TH_DIR/start.out")"; fi
check "a has the profile of $G1" test -f "$(profile a $U1)"
# A local directory is not a shared filesystem to libvirt (NFS, Ceph...): --unsafe says we know.
migrate "shared a->b" $G1 $U1 a b "${LIVE[@]}" --unsafe
migrate "shared b->a" $G1 $U1 b a "${LIVE[@]}" --unsafe
migrate "p2p tunnelled a->b" $G1 $U1 a b "${LIVE[@]}" --unsafe --p2p --tunnelled
migrate "p2p tunnelled b->a" $G1 $U1 b a "${LIVE[@]}" --unsafe --p2p --tunnelled

# --- postcopy -----------------------------------------------------------------------------------
# The destination QEMU (user libvirt-qemu, no CAP_SYS_PTRACE) needs userfaultfd: QEMU 7.2 only
# has the syscall, which an unprivileged process may use only with vm.unprivileged_userfaultfd=1
# (/dev/userfaultfd comes with QEMU 8.1 + libvirt 9.x passing it). Set for this case only and put
# back (the trap too): without it QEMU answers "Postcopy is not supported".
UFFD_OLD=$(sysctl -n vm.unprivileged_userfaultfd 2>/dev/null || echo)
trap 'th_down; [ -n "$UFFD_OLD" ] && sysctl -qw vm.unprivileged_userfaultfd=$UFFD_OLD' EXIT
[ -n "$UFFD_OLD" ] && sysctl -qw vm.unprivileged_userfaultfd=1
ms=$(hmark a); md=$(hmark b); os=$(stat -c %s "$TH_DIR/a/hook-stdout"); od=$(stat -c %s "$TH_DIR/b/hook-stdout")
# Precopy throttled to 1 MiB/s so that it is still running when migrate-postcopy switches over.
vsh a migrate "${LIVE[@]}" --unsafe --postcopy --bandwidth 1 $G1 "qemu+tcp://${TH_IP[b]}/system" >"$TH_DIR/migrate.out" 2>&1 &
mpid=$!
switched=""
for ((i = 0; i < 100; i++)); do
  if vsh a domjobinfo $G1 2>/dev/null | grep -q 'Job type: *Unbounded'; then
    vsh a migrate-postcopy $G1 >"$TH_DIR/postcopy.out" 2>&1 && { switched=1; break; }
  fi
  kill -0 $mpid 2>/dev/null || break
  sleep 0.1
done
if wait $mpid; then
  if [ -n "$switched" ]; then
    ok "postcopy a->b: virsh migrate --postcopy, then migrate-postcopy switched to post-copy"
  else
    fail "postcopy a->b: migrate-postcopy did not switch ($(cat "$TH_DIR/postcopy.out" 2>/dev/null))"
  fi
  migrated "postcopy a->b" $G1 $U1 a b "$ms" "$md" "$os" "$od"
  POSTCOPY=ok
else
  POSTCOPY=$(tr '\n' ' ' <"$TH_DIR/migrate.out")
  fail "postcopy a->b: $POSTCOPY"
  check "postcopy refused: the guest keeps running on a" test "$(vsh a domstate $G1 2>&1)" = running
fi
[ -n "$UFFD_OLD" ] && sysctl -qw vm.unprivileged_userfaultfd="$UFFD_OLD"
where=a; [ "$POSTCOPY" = ok ] && where=b
other=b; [ $where = b ] && other=a

# --- the destination's hook refuses the profile: the guest stays on the source ----------------
# A local rules file on the destination only that does not compile: the compile check at
# migrate/begin fails there, and libvirt aborts the migration before any QEMU starts.
LOCAL_BAD="$TH_DIR/$other/root/etc/apparmor.d/local/libvirt/libvirt-$U1"
mkdir -p "${LOCAL_BAD%/*}"
echo 'this is not apparmor syntax {' >"$LOCAL_BAD"
ms=$(hmark $where); md=$(hmark $other)
os=$(stat -c %s "$TH_DIR/$where/hook-stdout"); od=$(stat -c %s "$TH_DIR/$other/hook-stdout")
if vsh $where migrate "${LIVE[@]}" --unsafe $G1 "qemu+tcp://${TH_IP[$other]}/system" >"$TH_DIR/migrate.out" 2>&1; then
  fail "refused $where->$other: migration succeeded although $other's hook refuses the profile"
else
  ok "refused $where->$other: virsh migrate fails: $(grep -o 'virt-aa-hook:.*' "$TH_DIR/migrate.out" | head -c 160)"
fi
check "refused: the error names our hook" grep -q "virt-aa-hook" "$TH_DIR/migrate.out"
check "refused: the guest keeps running on $where" test "$(vsh $where domstate $G1 2>&1)" = running
check "refused: the guest is still defined on $where" vsh $where dominfo $G1
check_not "refused: no guest on $other" vsh $other dominfo $G1
check "refused: $where's profile is still there" test -f "$(profile $where $U1)"
check_not "refused: no profile left on $other" test -e "$(profile $other $U1)"
if hsince $other "$md" | grep "\[$G1 $U1\] migrate/begin" | grep -q "ERROR.*FAILED"; then
  ok "refused: $other's log has the failed migrate/begin"
else
  fail "refused: $other's log: $(hsince $other "$md")"
fi
check_not "refused: nothing in $where's log (its guest did not change)" bash -c "$(declare -f hsince hlog); hsince $where $ms | grep -q ."
check "refused: the hook printed nothing on stdout" test "$(stat -c %s "$TH_DIR/$other/hook-stdout")" = "$od"
rm -f "$LOCAL_BAD"
migrate "after the refusal, $where->$other" $G1 $U1 $where $other "${LIVE[@]}" --unsafe

# --- no shared storage: --copy-storage-all ------------------------------------------------------
IMG=/var/lib/libvirt/images/$G2.qcow2
on a qemu-img create -q -f qcow2 "$IMG" 16M
guest_xml $G2 $U2 "$(disk_xml "$IMG")" >"$TH_DIR/$G2.xml"
vsh a define "$TH_DIR/$G2.xml" >/dev/null
if vsh a start $G2 >"$TH_DIR/start.out" 2>&1; then ok "$G2 starts on a"; else fail "$G2 starts on a: $(cat "$TH_DIR/start.out")"; fi
# libvirt pre-creates the destination image only inside a storage pool: without the image on b
# libvirt aborts the migration AFTER the migrate hook ran there, and no release event follows
# on b: whatever migrate/begin wrote would stay behind.
md=$(hmark b)
if vsh a migrate "${LIVE[@]}" --copy-storage-all $G2 "qemu+tcp://${TH_IP[b]}/system" >"$TH_DIR/migrate.out" 2>&1; then
  fail "copy-storage without the image on b: migration succeeded"
else
  ok "copy-storage without the image on b: libvirt refuses ($(grep -o 'error: .*' "$TH_DIR/migrate.out" | tail -n1 | head -c 120))"
fi
check "copy-storage refused: the guest keeps running on a" test "$(vsh a domstate $G2 2>&1)" = running
check "copy-storage refused: b's migrate hook ran" bash -c "$(declare -f hsince hlog); hsince b $md | grep -q '\[$G2 $U2\] migrate/begin'"
check_not "copy-storage refused: no profile left on b" test -e "$(profile b $U2)"
on b qemu-img create -q -f qcow2 "$IMG" 16M
check "no shared storage: the two hosts' images are different files" test "$(stat -c %i "$TH_DIR/a/var-lib-libvirt/images/$G2.qcow2")" != "$(stat -c %i "$TH_DIR/b/var-lib-libvirt/images/$G2.qcow2")"
migrate "copy-storage a->b" $G2 $U2 a b "${LIVE[@]}" --copy-storage-all

echo "  (postcopy: $POSTCOPY; suite time $((SECONDS - t_start)) s)"
finish
