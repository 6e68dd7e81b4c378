#!/usr/bin/env bash
# shellcheck disable=SC2119 # finish takes an optional "skipped" note, not our arguments
# End-to-end test of install/install.sh (which builds the Debian package and apt-installs it), as
# root on the test machine. The package itself (upgrade, remove, purge, any install order) is
# proven in clean Debian roots by tests/pkg/run.sh; here: the installer's options, the shipped
# files, a DESTDIR unpack, and one real install into / and purge. Every host path the real round
# may touch (the admin's own qemu hook, qemu.d entries) is saved first and put back afterwards.
# Last line: `RESULT passed=N failed=M` (via finish).
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
out_has() { grep -qF -- "$1" "$T/out"; }
is_symlink_to() { [ -L "$1" ] && [ "$(readlink "$1")" = "$2" ]; }
hardlink_of() { [ -f "$1" ] && [ ! -L "$1" ] && [ "$1" -ef "$2" ] && [ "$(stat -c %h "$1")" -gt 1 ]; }

echo "== scripts"
check "install.sh: bash -n" bash -n "$INST"
if command -v shellcheck >/dev/null 2>&1 || apt-get install -y -qq shellcheck >/dev/null 2>&1; then
  check "install.sh: shellcheck clean" shellcheck "$INST"
  check "maintainer scripts (install/debian): shellcheck clean" shellcheck -x install/debian/postinst install/debian/prerm install/debian/postrm install/debian/maint-functions.sh
  check "tests/e2e/install.sh, tests/pkg/*.sh: shellcheck clean" shellcheck -x tests/e2e/install.sh tests/pkg/run.sh tests/pkg/root.sh
fi
check "install.sh --help exits 0" "$INST" --help
check_not "install.sh rejects an unknown option" "$INST" --bogus
check_not "install.sh rejects --prefix other than /usr" "$INST" --prefix /opt --dry-run
check_not "install.sh rejects --purge without --uninstall" "$INST" --purge --dry-run
"$INST" --no-build --dry-run >"$T/out" 2>&1; rc=$?
if [ "$rc" -eq 0 ] && out_has "would run: (cd $ROOT && cargo deb --no-build" && grep -q "would run: .*apt-get .* install .*virt-aa-hook_" "$T/out"; then
  ok "--dry-run prints the cargo deb and apt-get commands"
else fail "--dry-run (rc=$rc): $(head -n2 "$T/out" | tr '\n' ' ')"; fi
"$INST" --uninstall --purge --dry-run >"$T/out" 2>&1
check "--uninstall --purge --dry-run prints apt-get purge" out_has "purge virt-aa-hook"

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

# (our profiles include our own abstractions: install/apparmor first, as the package installs them)
for prof in usr.lib.libvirt.virt-aa-hook usr.lib.libvirt.virt-aa-hook-libvirt; do
  check "apparmor_parser compiles install/apparmor/$prof" \
    apparmor_parser -Q -K -I install/apparmor -I /etc/apparmor.d "install/apparmor/$prof"
done
check "the binary's profile attaches to $BIN_REL only (not to the wrappers)" \
  grep -qE "^profile virt-aa-hook $BIN_REL flags=\(attach_disconnected\)" install/apparmor/usr.lib.libvirt.virt-aa-hook
# Our own abstraction compiles, and a broken copy of it first in the include path fails the
# compile (so it is the one used). Without libvirt's abstraction at all: tests/pkg/run.sh.
mkdir -p "$T/aa/abstractions" "$T/aa-bad/abstractions"
cp install/apparmor/abstractions/virt-aa-hook-qemu "$T/aa/abstractions/"
{ cat install/apparmor/abstractions/virt-aa-hook-qemu; echo "  this is not a rule"; } >"$T/aa-bad/abstractions/virt-aa-hook-qemu"
cat >"$T/guest.profile" <<'EOF'
include <tunables/global>
profile libvirt-6f1e3a52-0c1d-4d8e-9a53-2f5c1b7d9e01 flags=(attach_disconnected) {
  include <abstractions/virt-aa-hook-qemu>
  "/var/lib/libvirt/images/inst-test.qcow2" rwk,
}
EOF
check "a guest profile including abstractions/virt-aa-hook-qemu compiles" \
  apparmor_parser -Q -K -I "$T/aa" -I /etc/apparmor.d "$T/guest.profile"
check_not "(control: a broken abstraction in the same place fails, so ours was the one used)" \
  apparmor_parser -Q -K -I "$T/aa-bad" -I /etc/apparmor.d "$T/guest.profile"
# The hook's template with only our abstraction: what a host without libvirt's files gets.
if target/release/virt-aa-hook generate --profile --mode libvirt --no-probe "$T/dom.xml" >"$T/gen.profile" 2>/dev/null; then
  check "a generated guest profile compiles against our abstraction" \
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

echo "== DESTDIR: the package's files unpacked"
D=$T/d1
if DESTDIR=$D "$INST" --no-build >"$T/out" 2>&1; then ok "DESTDIR=... install.sh --no-build succeeds"; else fail "DESTDIR install failed: $(tail -n1 "$T/out")"; fi
DEB=$(sed -n 's/^package: //p' "$T/out")
check "it says which package it built (target/debian/virt-aa-hook_<version>_<arch>.deb)" \
  bash -c "[[ '$DEB' == $ROOT/target/debian/virt-aa-hook_*_*.deb ]] && [ -f '$DEB' ]"
if [ -f "$DEB" ]; then
  (dpkg-deb -c "$DEB" | awk '{p=$6; sub(/^\./,"",p); print p}' | sed 's|/$||' | grep . | sort) >"$T/deb.list"
  (cd "$D" && find . -mindepth 1 | sed 's/^\.//' | sort) >"$T/d.list"
  if diff -q "$T/deb.list" "$T/d.list" >/dev/null; then ok "DESTDIR holds exactly the package's files"; else fail "DESTDIR differs from dpkg-deb -c: $(diff "$T/deb.list" "$T/d.list" | head -n3 | tr '\n' ' ')"; fi
fi
check "binary installed, mode 0755, runs" bash -c "[ \$(stat -c %a '$D$BIN_REL') = 755 ] && '$D$BIN_REL' --version"
check "/usr/sbin/virt-aa-hook is a relative symlink to the binary" is_symlink_to "$D/usr/sbin/virt-aa-hook" ../lib/libvirt/virt-aa-hook
check "template is hooks/template.qemu" cmp -s "$D/etc/libvirt/virt-aa-hook.template" hooks/template.qemu
check "config is install/virt-aa-hook.conf" cmp -s "$D/etc/libvirt/virt-aa-hook.conf" install/virt-aa-hook.conf
check "our abstraction is shipped under our own name" cmp -s "$D/etc/apparmor.d/abstractions/virt-aa-hook-qemu" install/apparmor/abstractions/virt-aa-hook-qemu
check_not "nothing at libvirt's abstractions/libvirt-qemu" test -e "$D/etc/apparmor.d/abstractions/libvirt-qemu"
check_not "no hook symlink in DESTDIR (the postinst makes it)" test -e "$D/etc/libvirt/hooks/qemu"
before=$(listing "$D")
DESTDIR=$D "$INST" --no-build --dry-run >"$T/out" 2>&1; rc=$?
if [ "$rc" -eq 0 ] && [ "$before" = "$(listing "$D")" ]; then ok "--dry-run with DESTDIR changes nothing"; else fail "--dry-run changed files (rc=$rc)"; fi

echo "== real install into / and purge"
HOST_PATHS=(/usr/lib/libvirt/virt-aa-hook /usr/lib/libvirt/virt-aa-hook-libvirt /usr/sbin/virt-aa-hook
  /etc/libvirt/hooks/qemu /etc/libvirt/hooks/qemu.d
  /etc/libvirt/virt-aa-hook.template /etc/libvirt/virt-aa-hook.conf
  /etc/apparmor.d/local/libvirt/README /etc/apparmor.d/usr.lib.libvirt.virt-aa-hook
  /etc/apparmor.d/local/usr.lib.libvirt.virt-aa-hook /etc/apparmor.d/abstractions/virt-aa-hook-qemu
  /etc/logrotate.d/virt-aa-hook)
: >"$T/host.list"
for p in "${HOST_PATHS[@]}" /usr/lib/libvirt/virt-aa-hook.*; do
  if [ -e "$p" ] || [ -L "$p" ]; then echo "$p" >>"$T/host.list"; fi
done
if [ -s "$T/host.list" ]; then tar -cpf "$T/host.tar" -P -T "$T/host.list"; fi
HOST_BEFORE=$(host_state)
HOST_SAVED=1
abstraction_before=$(sha256sum /etc/apparmor.d/abstractions/libvirt-qemu 2>/dev/null)
foreign=0
if { [ -e /etc/libvirt/hooks/qemu ] || [ -L /etc/libvirt/hooks/qemu ]; } && ! is_symlink_to /etc/libvirt/hooks/qemu "$BIN_REL"; then foreign=1; fi

"$INST" --no-build >"$T/real.out" 2>&1; rc=$?
if [ "$rc" -eq 0 ]; then ok "real install succeeds (apt-get install ./virt-aa-hook_*.deb)"; else fail "real install failed (rc=$rc): $(tail -n1 "$T/real.out")"; fi
check "real install: dpkg knows the package" bash -c "dpkg-query -W -f='\${Status}' virt-aa-hook | grep -q 'ok installed'"
if [ "$foreign" -eq 1 ]; then
  check "real install: the host's own qemu hook is kept, qemu.d/50-virt-aa-hook used" \
    is_symlink_to /etc/libvirt/hooks/qemu.d/50-virt-aa-hook "$BIN_REL"
else
  check "real install: /etc/libvirt/hooks/qemu is a symlink to the binary" is_symlink_to /etc/libvirt/hooks/qemu "$BIN_REL"
fi
check "real install: virt-aa-hook is in PATH" bash -c "[ \"\$(command -v virt-aa-hook)\" = /usr/sbin/virt-aa-hook ]"
check "real install: the admin command runs (virt-aa-hook --version)" /usr/sbin/virt-aa-hook --version
check "real install: wrappers are hard links" hardlink_of /usr/lib/libvirt/virt-aa-hook.qemu-system-x86_64 "$BIN_REL"
check "real install: libvirt's abstractions/libvirt-qemu untouched" test "$(sha256sum /etc/apparmor.d/abstractions/libvirt-qemu 2>/dev/null)" = "$abstraction_before"
check "real install: ran virt-aa-hook doctor" grep -q -- 'QEMU abstraction' "$T/real.out"
if [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ]; then
  check "real install: the binary's profile is loaded" grep -q '^virt-aa-hook (' /sys/kernel/security/apparmor/profiles
fi
"$INST" --no-build >"$T/real2.out" 2>&1; rc=$?
if [ "$rc" -eq 0 ] && hardlink_of /usr/lib/libvirt/virt-aa-hook.qemu-system-x86_64 "$BIN_REL"; then ok "real re-run (reinstall) succeeds, wrappers re-linked to the new binary"
else fail "real re-run (rc=$rc): $(tail -n1 "$T/real2.out")"; fi
"$INST" --uninstall --purge >"$T/real3.out" 2>&1; rc=$?
if [ "$rc" -eq 0 ]; then ok "real --uninstall --purge succeeds"; else fail "real purge failed (rc=$rc): $(tail -n1 "$T/real3.out")"; fi
check_not "real purge: binary gone" test -e "$BIN_REL"
check_not "real purge: wrappers gone" test -e /usr/lib/libvirt/virt-aa-hook.qemu-system-x86_64
check_not "real purge: dpkg no longer lists the package" bash -c "dpkg-query -W virt-aa-hook 2>/dev/null | grep -q ."
check_not "real purge: no hook symlink of ours left" \
  bash -c "[ \"\$(readlink /etc/libvirt/hooks/qemu)\" = $BIN_REL ] || [ -L /etc/libvirt/hooks/qemu.d/50-virt-aa-hook ]"
if [ "$foreign" -eq 1 ]; then
  check "real purge: the host's own qemu hook is still there" test -e /etc/libvirt/hooks/qemu
fi
restore_host
if [ "$HOST_BEFORE" = "$(host_state)" ]; then ok "host paths are as they were before the round"
else fail "host paths differ after restore: $(diff <(echo "$HOST_BEFORE") <(host_state) | head -n3 | tr '\n' ' ')"; fi

finish
