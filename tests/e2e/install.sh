#!/usr/bin/env bash
# shellcheck disable=SC2119 # finish takes an optional "skipped" note, not our arguments
# End-to-end test of install/install.sh, as root on the test machine.
#
# Most checks install into DESTDIR temp directories, so the host is not touched. One round
# installs into / for real and uninstalls again; every host path of the installed layout that
# existed before (the admin's own qemu hook, qemu.d entries, an earlier installation) is saved
# first and put back afterwards. Also compiles the shipped AppArmor files and checks the
# logrotate snippet. Last line: `RESULT passed=N failed=M` (via finish).
# KEEP_TMP=1 keeps the temp directory (installer outputs: real.out, real3.out, ...) for debugging.
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
# shellcheck source=tests/lib/common.sh
. tests/lib/common.sh
export PATH=$PATH:/root/.cargo/bin:/usr/sbin:/sbin
unset CARGO_TARGET_DIR DESTDIR
INST=$ROOT/install/install.sh
BIN_REL=/usr/lib/libvirt/virt-aa-hook

if [ "$(id -u)" -ne 0 ]; then fail "must run as root"; finish; exit 1; fi

T=$(mktemp -d /tmp/virt-aa-hook-install-test.XXXXXX)
HOST_SAVED=0
HOST_PATHS=()
HOST_BEFORE=""
# host_state: a fingerprint of every host path the real round may touch.
host_state() {
  local p
  for p in "${HOST_PATHS[@]}" /usr/lib/libvirt/virt-aa-hook.*; do
    if [ -e "$p" ] || [ -L "$p" ]; then find "$p" -printf '%p %y %m %s %l\n'; fi
  done | sort -u
}
# restore_host: if the real round left the host different, remove what is there now and unpack
# what was saved before it.
restore_host() {
  [ "$HOST_SAVED" -eq 1 ] || return 0
  HOST_SAVED=0
  [ "$(host_state)" != "$HOST_BEFORE" ] || return 0
  echo "  (restoring the host's files from before the real round)"
  local p
  for p in "${HOST_PATHS[@]}" /usr/lib/libvirt/virt-aa-hook.*; do
    if [ -e "$p" ] || [ -L "$p" ]; then rm -rf "$p"; fi
  done
  if [ -s "$T/host.list" ]; then tar -xpf "$T/host.tar" -P; fi
}
cleanup() { restore_host; rm -rf "$T"; }
trap cleanup EXIT
[ -z "${KEEP_TMP:-}" ] || trap restore_host EXIT
trap 'exit 130' INT TERM

# listing DIR: a fingerprint of every entry (type, mode, inode, mtime, size, link target).
listing() { (cd "$1" 2>/dev/null && find . -printf '%p %y %m %i %T@ %s %l\n' | sort); }
# shape DIR: the entries with type, mode and link target only (mtimes of parents change).
shape() { (cd "$1" 2>/dev/null && find . -printf '%p %y %m %l\n' | sort); }
# inst DESTDIR ARGS...: run the installer into DESTDIR with the built binaries; output in $T/out.
inst() { local d=$1; shift; DESTDIR=$d "$INST" --no-build "$@" >"$T/out" 2>&1; }
out_has() { grep -qF -- "$1" "$T/out"; }
same_file() { cmp -s "$1" "$2"; }
is_symlink_to() { [ -L "$1" ] && [ "$(readlink "$1")" = "$2" ]; }
mode_is() { [ "$(stat -c %a "$1")" = "$2" ]; }
hardlink_of() { [ -f "$1" ] && [ ! -L "$1" ] && [ "$1" -ef "$2" ] && [ "$(stat -c %h "$1")" -gt 1 ]; }

echo "== scripts"
check "install.sh: bash -n" bash -n "$INST"
if command -v shellcheck >/dev/null 2>&1 || apt-get install -y -qq shellcheck >/dev/null 2>&1; then
  check "install.sh: shellcheck clean" shellcheck "$INST"
  check "tests/e2e/install.sh: shellcheck clean" shellcheck -x tests/e2e/install.sh
fi
check "install.sh --help exits 0" "$INST" --help
check_not "install.sh rejects an unknown option" "$INST" --bogus

echo "== binaries"
if [ ! -x target/release/virt-aa-hook ] || [ ! -x target/release/virt-aa-hook-libvirt ]; then
  echo "building release binaries (cargo build --release)"
  cargo build --release >"$T/build.log" 2>&1 || tail -20 "$T/build.log"
fi
check "target/release/virt-aa-hook exists" test -x target/release/virt-aa-hook
check "target/release/virt-aa-hook-libvirt exists" test -x target/release/virt-aa-hook-libvirt

echo "== shipped files"
# Every field of config.rs's Config is documented (commented out) in the example config.
keys=$(sed -n '/^pub struct Config {/,/^}/p' src/config.rs | sed -nE 's/^ *pub ([a-z_]+):.*/\1/p')
missing=""
for k in $keys; do grep -qE "^#$k = " install/virt-aa-hook.conf || missing="$missing $k"; done
if [ -n "$keys" ] && [ -z "$missing" ]; then ok "example config documents every Config key ($(echo "$keys" | wc -w))"
else fail "example config lacks keys:${missing:- (no keys found in src/config.rs)}"; fi
extra=$(sed -nE 's/^#([a-z_]+) = .*/\1/p' install/virt-aa-hook.conf | grep -vxF "$keys" | tr '\n' ' ')
if [ -z "$extra" ]; then ok "example config has no keys Config does not know"; else fail "unknown keys in example config: $extra"; fi
check_not "example config sets nothing (all commented out)" grep -qE '^[a-z_]+ *=' install/virt-aa-hook.conf
# Uncommented, the defaults must parse (deny_unknown_fields) and give a working generator.
sed -E 's/^#([a-z_]+ = )/\1/' install/virt-aa-hook.conf >"$T/full.conf"
cat >"$T/dom.xml" <<'EOF'
<domain type='kvm'><name>inst-test</name><uuid>6f1e3a52-0c1d-4d8e-9a53-2f5c1b7d9e01</uuid>
<memory>65536</memory><os><type arch='x86_64'>hvm</type></os>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>
EOF
check "the uncommented example config is accepted (virt-aa-hook generate)" \
  env VIRT_AA_HOOK_CONFIG="$T/full.conf" target/release/virt-aa-hook generate --mode libvirt --no-probe "$T/dom.xml"

P=(-Q -K -I /etc/apparmor.d)
check "apparmor_parser compiles install/apparmor/usr.lib.libvirt.virt-aa-hook" \
  apparmor_parser "${P[@]}" install/apparmor/usr.lib.libvirt.virt-aa-hook
check "the binary's profile attaches to $BIN_REL only (not to the wrappers)" \
  grep -qE "^profile virt-aa-hook $BIN_REL flags=\(attach_disconnected\)" install/apparmor/usr.lib.libvirt.virt-aa-hook
mkdir -p "$T/aa/abstractions" "$T/aa-bad/abstractions"
cp install/apparmor/libvirt-qemu.minimal "$T/aa/abstractions/libvirt-qemu"
{ cat install/apparmor/libvirt-qemu.minimal; echo "  this is not a rule"; } >"$T/aa-bad/abstractions/libvirt-qemu"
cat >"$T/guest.profile" <<'EOF'
include <tunables/global>
profile libvirt-6f1e3a52-0c1d-4d8e-9a53-2f5c1b7d9e01 flags=(attach_disconnected) {
  include <abstractions/libvirt-qemu>
  "/var/lib/libvirt/images/inst-test.qcow2" rwk,
}
EOF
check "a guest profile including the minimal abstraction compiles" \
  apparmor_parser -Q -K -I "$T/aa" -I /etc/apparmor.d "$T/guest.profile"
check_not "(control: a broken abstraction in the same place fails, so ours was the one used)" \
  apparmor_parser -Q -K -I "$T/aa-bad" -I /etc/apparmor.d "$T/guest.profile"
# The hook's template with the minimal abstraction: what a distro without libvirt's files gets.
if target/release/virt-aa-hook generate --profile --mode libvirt --no-probe "$T/dom.xml" >"$T/gen.profile" 2>/dev/null; then
  check "a generated guest profile compiles against the minimal abstraction" \
    apparmor_parser -Q -K -I "$T/aa" -I /etc/apparmor.d "$T/gen.profile"
fi

command -v logrotate >/dev/null 2>&1 || apt-get install -y -qq logrotate >/dev/null 2>&1
if command -v logrotate >/dev/null 2>&1; then
  logrotate -d -s "$T/logrotate.state" install/logrotate/virt-aa-hook >"$T/lr.out" 2>&1; rc=$?
  if [ "$rc" -eq 0 ] && ! grep -qi 'error' "$T/lr.out"; then ok "logrotate -d accepts install/logrotate/virt-aa-hook"
  else fail "logrotate -d rejects install/logrotate/virt-aa-hook: $(grep -i error "$T/lr.out" | head -n1)"; fi
  for w in weekly "rotate 8" compress delaycompress missingok notifempty "create 0640 root adm"; do
    grep -qE "^[[:space:]]*$w\$" install/logrotate/virt-aa-hook || fail "logrotate snippet lacks '$w'"
  done
else
  fail "logrotate is not installed and apt-get could not install it"
fi

echo "== DESTDIR install"
D=$T/d1
if inst "$D"; then ok "DESTDIR install succeeds"; else fail "DESTDIR install failed: $(tail -n1 "$T/out")"; fi
check "binary installed, mode 0755" mode_is "$D$BIN_REL" 755
check "binary is a regular file" test -f "$D$BIN_REL" -a ! -L "$D$BIN_REL"
check "binary is target/release/virt-aa-hook" same_file "$D$BIN_REL" target/release/virt-aa-hook
check "virt-aa-hook-libvirt installed, mode 0755" mode_is "$D/usr/lib/libvirt/virt-aa-hook-libvirt" 755
check "virt-aa-hook-libvirt is target/release/virt-aa-hook-libvirt" \
  same_file "$D/usr/lib/libvirt/virt-aa-hook-libvirt" target/release/virt-aa-hook-libvirt
check "/usr/sbin/virt-aa-hook is a symlink to the binary" is_symlink_to "$D/usr/sbin/virt-aa-hook" "$BIN_REL"
check "hooks/qemu is a symlink to the binary" is_symlink_to "$D/etc/libvirt/hooks/qemu" "$BIN_REL"
check_not "no qemu.d entry when hooks/qemu was free" test -e "$D/etc/libvirt/hooks/qemu.d/50-virt-aa-hook"
nemu=0
for emu in /usr/bin/qemu-system-*; do
  if [ ! -f "$emu" ] || [ ! -x "$emu" ]; then continue; fi
  nemu=$((nemu + 1))
  check "wrapper virt-aa-hook.${emu##*/} is a hard link to the binary" \
    hardlink_of "$D/usr/lib/libvirt/virt-aa-hook.${emu##*/}" "$D$BIN_REL"
done
[ "$nemu" -gt 0 ] || fail "no /usr/bin/qemu-system-* on this machine: wrappers untested"
if [ -x /usr/bin/qemu-system-x86_64 ]; then
  if "$D/usr/lib/libvirt/virt-aa-hook.qemu-system-x86_64" --version 2>/dev/null | grep -q 'QEMU emulator'; then
    ok "the wrapper passes a probe without -uuid through to the real emulator"
  else fail "the wrapper did not run /usr/bin/qemu-system-x86_64 --version"; fi
fi
check "template installed from hooks/template.qemu (0644)" \
  bash -c "cmp -s '$D/etc/libvirt/virt-aa-hook.template' hooks/template.qemu && [ \$(stat -c %a '$D/etc/libvirt/virt-aa-hook.template') = 644 ]"
check "config installed from install/virt-aa-hook.conf (0644)" \
  bash -c "cmp -s '$D/etc/libvirt/virt-aa-hook.conf' install/virt-aa-hook.conf && [ \$(stat -c %a '$D/etc/libvirt/virt-aa-hook.conf') = 644 ]"
check "local rules README installed" test -s "$D/etc/apparmor.d/local/libvirt/README"
check "the README explains libvirt-<uuid> files and the reload" \
  bash -c "grep -q 'libvirt-<uuid>' '$D/etc/apparmor.d/local/libvirt/README' && grep -q 'apparmor_parser -r' '$D/etc/apparmor.d/local/libvirt/README'"
check "binary's AppArmor profile installed" \
  same_file "$D/etc/apparmor.d/usr.lib.libvirt.virt-aa-hook" install/apparmor/usr.lib.libvirt.virt-aa-hook
check "minimal libvirt-qemu abstraction installed (DESTDIR had none)" \
  same_file "$D/etc/apparmor.d/abstractions/libvirt-qemu" install/apparmor/libvirt-qemu.minimal
check "logrotate snippet installed" same_file "$D/etc/logrotate.d/virt-aa-hook" install/logrotate/virt-aa-hook
if command -v logrotate >/dev/null 2>&1; then
  check "logrotate -d accepts the installed snippet" logrotate -d -s "$T/logrotate.state" "$D/etc/logrotate.d/virt-aa-hook"
fi
M=$D/var/lib/virt-aa-hook/install-manifest
check "manifest written" test -s "$M"
bad=""
while read -r kind val path; do
  case $kind in
    file) [ "$(sha256sum <"$D$path" | cut -c1-64)" = "$val" ] || bad="$bad $path" ;;
    symlink) is_symlink_to "$D$path" "$val" || bad="$bad $path" ;;
    hardlink) [ "$D$path" -ef "$D$val" ] || bad="$bad $path" ;;
    dir) [ -d "$D$path" ] || bad="$bad $path" ;;
  esac
done < <(grep -v '^#' "$M")
if [ -z "$bad" ]; then ok "every manifest entry matches what is on disk (sha256, link targets)"; else fail "manifest mismatches:$bad"; fi
for p in "$BIN_REL" /usr/lib/libvirt/virt-aa-hook-libvirt /etc/libvirt/virt-aa-hook.template \
         /etc/libvirt/virt-aa-hook.conf /etc/libvirt/hooks/qemu /usr/sbin/virt-aa-hook; do
  grep -qE " $p\$" "$M" || fail "manifest does not list $p"
done

echo "== idempotence and --dry-run"
before=$(listing "$D")
inst "$D"; rc=$?
if [ "$rc" -eq 0 ] && out_has "nothing to do: already installed"; then ok "second run: nothing to do"
else fail "second run did not say 'nothing to do' (rc=$rc): $(grep -v '^unchanged' "$T/out" | head -n2 | tr '\n' ' ')"; fi
if [ "$before" = "$(listing "$D")" ]; then ok "second run changed nothing on disk"; else fail "second run changed files"; fi
inst "$D" --dry-run; rc=$?
if [ "$rc" -eq 0 ] && [ "$before" = "$(listing "$D")" ]; then ok "--dry-run on an installed tree changes nothing"; else fail "--dry-run changed files (rc=$rc)"; fi
D0=$T/d0
mkdir -p "$D0/etc/libvirt/hooks"
before0=$(listing "$D0")
inst "$D0" --dry-run; rc=$?
if [ "$rc" -eq 0 ] && [ "$before0" = "$(listing "$D0")" ]; then ok "--dry-run on an empty tree changes nothing"; else fail "--dry-run on an empty tree changed files (rc=$rc)"; fi
check "--dry-run prints the plan (would install ...)" grep -q "^would install /etc/libvirt/hooks/qemu -> $BIN_REL" "$T/out"
check "--dry-run does not print 'nothing to do' for a fresh tree" bash -c "! grep -q 'nothing to do' '$T/out'"
check_not "--dry-run with DESTDIR leaves a missing DESTDIR missing" bash -c "DESTDIR='$T/nonexistent' '$INST' --no-build --dry-run >/dev/null 2>&1; test -e '$T/nonexistent'"

echo "== edited configuration"
echo 'parser_timeout = 30  # edited by the admin' >>"$D/etc/libvirt/virt-aa-hook.conf"
cp "$D/etc/libvirt/virt-aa-hook.conf" "$T/edited.conf"
inst "$D"; rc=$?
check "re-run with an edited config succeeds" test "$rc" -eq 0
check "edited config survives a re-run" same_file "$D/etc/libvirt/virt-aa-hook.conf" "$T/edited.conf"
check "the re-run says it kept the edited config" out_has "kept /etc/libvirt/virt-aa-hook.conf"
# An upgrade with a changed default config: the edit stays, the new version lands beside it.
S=$T/src
mkdir -p "$S"
cp -a install hooks "$S/"
echo '# (a new release changed this file)' >>"$S/install/virt-aa-hook.conf"
echo '# (a new release changed this file)' >>"$S/hooks/template.qemu"
DESTDIR=$D CARGO_TARGET_DIR=$ROOT/target "$S/install/install.sh" --no-build >"$T/out" 2>&1; rc=$?
check "upgrade run succeeds" test "$rc" -eq 0
check "upgrade keeps the edited config" same_file "$D/etc/libvirt/virt-aa-hook.conf" "$T/edited.conf"
check "upgrade puts the new config in virt-aa-hook.conf.new" same_file "$D/etc/libvirt/virt-aa-hook.conf.new" "$S/install/virt-aa-hook.conf"
check "upgrade says where the new version went" out_has "virt-aa-hook.conf.new"
check "upgrade updates the unedited template in place" same_file "$D/etc/libvirt/virt-aa-hook.template" "$S/hooks/template.qemu"
check_not "no .new for the unedited template" test -e "$D/etc/libvirt/virt-aa-hook.template.new"
DESTDIR=$D CARGO_TARGET_DIR=$ROOT/target "$S/install/install.sh" --no-build >"$T/out" 2>&1
check "upgrade re-run: nothing to do" out_has "nothing to do: already installed"

echo "== uninstall (DESTDIR)"
mkdir -p "$D/etc/libvirt/qemu"
echo "<domain><devices><emulator>$BIN_REL.qemu-system-x86_64</emulator></devices></domain>" >"$D/etc/libvirt/qemu/g.xml"
before=$(listing "$D")
inst "$D" --uninstall; rc=$?
if [ "$rc" -ne 0 ] && [ "$before" = "$(listing "$D")" ]; then ok "--uninstall refuses (and changes nothing) while a guest uses a wrapper"
else fail "--uninstall went ahead while a guest uses a wrapper (rc=$rc)"; fi
rm -rf "$D/etc/libvirt/qemu"
before=$(listing "$D")
inst "$D" --uninstall --dry-run; rc=$?
if [ "$rc" -eq 0 ] && [ "$before" = "$(listing "$D")" ]; then ok "--uninstall --dry-run changes nothing"; else fail "--uninstall --dry-run (rc=$rc)"; fi
inst "$D" --uninstall; rc=$?
check "--uninstall succeeds" test "$rc" -eq 0
check "--uninstall keeps the edited config" same_file "$D/etc/libvirt/virt-aa-hook.conf" "$T/edited.conf"
left=$(cd "$D" && find . | sort | tr '\n' ' ')
want=". ./etc ./etc/libvirt ./etc/libvirt/virt-aa-hook.conf "
if [ "$left" = "$want" ]; then ok "--uninstall removed everything else it installed (incl. .new, dirs it created)"
else fail "--uninstall left: $left"; fi
check "--uninstall prints the guest-profile / gc hint" out_has "virt-aa-hook gc"

echo "== foreign qemu hook (DESTDIR)"
D2=$T/d2
mkdir -p "$D2/etc/libvirt/hooks"
printf '#!/bin/sh\n# the admin'"'"'s own hook\nexit 0\n' >"$D2/etc/libvirt/hooks/qemu"
chmod 0755 "$D2/etc/libvirt/hooks/qemu"
cp -a "$D2/etc/libvirt/hooks/qemu" "$T/foreign-hook"
pre=$(shape "$D2")
inst "$D2"; rc=$?
check "install next to a foreign hook succeeds" test "$rc" -eq 0
check "the foreign hooks/qemu is left alone" \
  bash -c "[ ! -L '$D2/etc/libvirt/hooks/qemu' ] && cmp -s '$D2/etc/libvirt/hooks/qemu' '$T/foreign-hook'"
check "qemu.d/50-virt-aa-hook is a symlink to the binary" is_symlink_to "$D2/etc/libvirt/hooks/qemu.d/50-virt-aa-hook" "$BIN_REL"
check "the installer says it used qemu.d" out_has "qemu.d/50-virt-aa-hook"
inst "$D2"
check "re-run next to a foreign hook: nothing to do" out_has "nothing to do: already installed"
echo 'lock_timeout = 10' >>"$D2/etc/libvirt/virt-aa-hook.conf"
cp "$D2/etc/libvirt/virt-aa-hook.conf" "$T/edited2.conf"
inst "$D2" --uninstall; rc=$?
check "--uninstall next to a foreign hook succeeds" test "$rc" -eq 0
check "--uninstall leaves the foreign hook" \
  bash -c "[ ! -L '$D2/etc/libvirt/hooks/qemu' ] && cmp -s '$D2/etc/libvirt/hooks/qemu' '$T/foreign-hook'"
check "--uninstall keeps the edited config" same_file "$D2/etc/libvirt/virt-aa-hook.conf" "$T/edited2.conf"
rm -f "$D2/etc/libvirt/virt-aa-hook.conf"
if [ "$pre" = "$(shape "$D2")" ]; then ok "--uninstall removed exactly what it installed (tree as before, but for the kept config)"
else fail "--uninstall: tree differs from before the install: $(diff <(echo "$pre") <(shape "$D2") | head -n3 | tr '\n' ' ')"; fi

echo "== real install into / and uninstall"
HOST_PATHS=(/usr/lib/libvirt/virt-aa-hook /usr/lib/libvirt/virt-aa-hook-libvirt /usr/sbin/virt-aa-hook
  /etc/libvirt/hooks/qemu /etc/libvirt/hooks/qemu.d
  /etc/libvirt/virt-aa-hook.template /etc/libvirt/virt-aa-hook.template.new
  /etc/libvirt/virt-aa-hook.conf /etc/libvirt/virt-aa-hook.conf.new
  /etc/apparmor.d/local/libvirt /etc/apparmor.d/usr.lib.libvirt.virt-aa-hook
  /etc/apparmor.d/usr.lib.libvirt.virt-aa-hook.dpkg-dist /etc/apparmor.d/abstractions/libvirt-qemu
  /etc/logrotate.d/virt-aa-hook /etc/logrotate.d/virt-aa-hook.dpkg-dist /var/lib/virt-aa-hook/install-manifest)
: >"$T/host.list"
for p in "${HOST_PATHS[@]}" /usr/lib/libvirt/virt-aa-hook.*; do
  if [ -e "$p" ] || [ -L "$p" ]; then echo "$p" >>"$T/host.list"; fi
done
if [ -s "$T/host.list" ]; then tar -cpf "$T/host.tar" -P -T "$T/host.list"; fi
HOST_BEFORE=$(host_state)
HOST_SAVED=1
had_install=0; [ -f /var/lib/virt-aa-hook/install-manifest ] && had_install=1
foreign=0
if { [ -e /etc/libvirt/hooks/qemu ] || [ -L /etc/libvirt/hooks/qemu ]; } && ! is_symlink_to /etc/libvirt/hooks/qemu "$BIN_REL"; then foreign=1; fi

"$INST" --no-build >"$T/real.out" 2>&1; rc=$?
if [ "$rc" -eq 0 ]; then ok "real install succeeds"; else fail "real install failed (rc=$rc): $(tail -n1 "$T/real.out")"; fi
if [ "$foreign" -eq 1 ]; then
  check "real install: the host's own qemu hook is kept, qemu.d/50-virt-aa-hook used" \
    is_symlink_to /etc/libvirt/hooks/qemu.d/50-virt-aa-hook "$BIN_REL"
else
  check "real install: /etc/libvirt/hooks/qemu is a symlink to the binary" \
    bash -c "[ \"\$(readlink /etc/libvirt/hooks/qemu)\" = $BIN_REL ] || [ \"\$(readlink /etc/libvirt/hooks/qemu.d/50-virt-aa-hook)\" = $BIN_REL ]"
fi
check "real install: virt-aa-hook is in PATH" bash -c "[ \"\$(command -v virt-aa-hook)\" = /usr/sbin/virt-aa-hook ]"
check "real install: the admin command runs (virt-aa-hook --version)" /usr/sbin/virt-aa-hook --version
check "real install: wrappers are hard links" hardlink_of /usr/lib/libvirt/virt-aa-hook.qemu-system-x86_64 "$BIN_REL"
check "real install: ran virt-aa-hook doctor (its status does not fail the install)" grep -q -- '--- virt-aa-hook doctor' "$T/real.out"
if [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ]; then
  check "real install: the binary's profile is loaded" grep -q '^virt-aa-hook (' /sys/kernel/security/apparmor/profiles
else
  check "real install: says the profile is not loaded (kernel without AppArmor)" grep -q 'not loaded' "$T/real.out"
fi
"$INST" --no-build >"$T/real2.out" 2>&1; rc=$?
if [ "$rc" -eq 0 ] && grep -q 'nothing to do: already installed' "$T/real2.out"; then ok "real re-run: nothing to do"
else fail "real re-run changed something (rc=$rc): $(grep -v '^unchanged' "$T/real2.out" | head -n2 | tr '\n' ' ')"; fi
"$INST" --uninstall >"$T/real3.out" 2>&1; rc=$?
if [ "$rc" -eq 0 ]; then ok "real uninstall succeeds"; else fail "real uninstall failed (rc=$rc): $(tail -n1 "$T/real3.out")"; fi
check_not "real uninstall: binary gone" test -e "$BIN_REL"
check_not "real uninstall: manifest gone" test -e /var/lib/virt-aa-hook/install-manifest
check_not "real uninstall: no hook symlink of ours left" \
  bash -c "[ \"\$(readlink /etc/libvirt/hooks/qemu)\" = $BIN_REL ] || [ -L /etc/libvirt/hooks/qemu.d/50-virt-aa-hook ]"
if [ "$foreign" -eq 1 ]; then
  check "real uninstall: the host's own qemu hook is still there" test -e /etc/libvirt/hooks/qemu
fi
if [ "$had_install" -eq 1 ]; then
  echo "  (the host had virt-aa-hook installed before: restoring it)"
fi
restore_host
if [ "$HOST_BEFORE" = "$(host_state)" ]; then ok "host paths are as they were before the round"
else fail "host paths differ after restore: $(diff <(echo "$HOST_BEFORE") <(host_state) | head -n3 | tr '\n' ' ')"; fi

finish
