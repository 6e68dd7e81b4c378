#!/usr/bin/env bash
# shellcheck disable=SC2119,SC2016 # finish takes an optional note; sh -c and sed scripts are single-quoted on purpose
# The Debian package, proven in clean debootstrapped roots (chroots) of Debian 12 (bookworm) and
# Debian 13 (trixie), as root:
#
#     tests/pkg/run.sh                 both suites (VAH_PKG_SUITES="trixie" for one)
#
# Per suite, each case in a fresh copy of a cached minbase root (tests/pkg/root.sh):
#   order    the README's order: our package, then `apt-get install libvirt-daemon-system`
#            non-interactively — no conffile prompt (we never write a file libvirt ships);
#            profiles compile with and without libvirt's abstraction; a later QEMU gets its
#            wrapper through the dpkg trigger
#   reverse  libvirt first (with an admin's own hooks/qemu and local rules), then our package:
#            hook in qemu.d; upgrade to a second build with an edited conffile (kept, the new
#            one as .dpkg-dist; wrappers re-linked to the new binary); remove; purge — nothing of
#            ours left (listing before vs after), the admin's hook and rules untouched
# Once: the files the .deb ships against README's "Where files go" table, and lintian.
# Services never start in the roots (policy-rc.d), each root has its own pid namespace and /proc
# (a daemon signal cannot reach the host's), apt's downloads are cached across runs.
# Prints cold/warm costs and `RESULT passed=N failed=M`.
set -u
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
# shellcheck source=tests/lib/common.sh
. tests/lib/common.sh
export PATH=$PATH:/root/.cargo/bin:/usr/sbin:/sbin
SUITES=${VAH_PKG_SUITES:-bookworm trixie}
# A package built here links this distribution's glibc (cargo-deb's shlibs: Depends: libc6 (>=
# 2.41) on Debian 13): it installs on this release and newer ones, not older. Roots older than
# the build host are left out, and said (measured: a trixie build refused by bookworm's apt).
rank() { case $1 in bookworm) echo 12 ;; trixie) echo 13 ;; forky | sid) echo 14 ;; *) echo 0 ;; esac; }
HOST_RANK=$(rank "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")")
SKIPPED=""
for s in $SUITES; do
  if [ "$(rank "$s")" -lt "$HOST_RANK" ]; then SKIPPED="$SKIPPED $s"; SUITES=$(echo " $SUITES " | sed "s/ $s / /"); fi
done
[ -n "$SKIPPED" ] && echo "  --   not proven here:$SKIPPED (older than this build host; build the package on it to prove it)"
CACHE=${VAH_ROOTS:-/var/cache/virt-aa-hook-tests/roots}
BIN=/usr/lib/libvirt/virt-aa-hook
T0=$SECONDS

if [ "$(id -u)" -ne 0 ]; then fail "must run as root"; finish; exit 1; fi
T=$(mktemp -d /var/tmp/vah-pkg.XXXXXX)   # not /tmp: roots are large, /tmp may be tmpfs
cleanup() { rm -rf "$T"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

need() { command -v "$1" >/dev/null || flock /tmp/vah-apt.lock apt-get install -y -qq "$2" >/dev/null 2>&1; }
need debootstrap debootstrap
need lintian lintian

# ---------------------------------------------------------------------------------------------
echo "== build: two packages (v2 = next version, its default config changed)"
if [ ! -x target/release/virt-aa-hook ] || [ ! -x target/release/virt-aa-hook-libvirt ]; then
  cargo build --release --locked >"$T/build.log" 2>&1 || tail -n 20 "$T/build.log"
fi
cargo deb --version >/dev/null 2>&1 || cargo install cargo-deb --locked >"$T/cargo-deb.log" 2>&1
VER=$(sed -nE 's/^version = "(.*)"$/\1/p' Cargo.toml | head -n1)
mkdir -p "$T/v1" "$T/v2" "$T/src2"
if cargo deb --no-build --locked -o "$T/v1/" >"$T/deb1.log" 2>&1; then ok "cargo deb builds virt-aa-hook_${VER}_*.deb"
else fail "cargo deb failed: $(tail -n1 "$T/deb1.log")"; finish; exit 1; fi
DEB1=$(ls "$T"/v1/*.deb)
check "package file name is virt-aa-hook_<version>_<arch>.deb" test -f "$T/v1/virt-aa-hook_${VER}_amd64.deb"
cp -a Cargo.toml Cargo.lock README.md src hooks install "$T/src2/"
mkdir -p "$T/src2/tests" && cp -a tests/bench "$T/src2/tests/"
echo '# (changed in the next release)' >>"$T/src2/install/virt-aa-hook.conf"
echo '# (changed in the next release)' >>"$T/src2/hooks/template.qemu"
CARGO_TARGET_DIR=$ROOT/target cargo deb --manifest-path "$T/src2/Cargo.toml" --no-build --fast \
  --deb-version "$VER+pkgtest2" -o "$T/v2/" >"$T/deb2.log" 2>&1 || tail -n 3 "$T/deb2.log"
DEB2=$(ls "$T"/v2/*.deb 2>/dev/null)
check "second build with a bumped version" test -f "$DEB2"

# ---------------------------------------------------------------------------------------------
echo "== the files the .deb ships = README's \"Where files go\" table"
dpkg-deb -c "$DEB1" | awk '{p=$6; sub(/^\./,"",p); if ($1 !~ /^d/) print p}' | sort >"$T/shipped"
# Table rows whose owner is "package" (or "package (conffile …)"): each row's first `code` span.
sed -n '/^## Where files go/,/^## /p' README.md | grep -E '^\| `/' | grep -E '\| package[^|]*\|$' |
  sed -E 's/^\| `([^`]*)`.*/\1/' | sort >"$T/documented"
if [ -s "$T/documented" ] && diff -u "$T/documented" <(grep -vE '^/usr/share/(doc|man|lintian)/' "$T/shipped") >"$T/docdiff"; then
  ok "every shipped file is in the README table and every 'package' row is shipped ($(wc -l <"$T/documented") files)"
else
  fail "README table vs dpkg-deb -c differ: $(grep -E '^[-+]/' "$T/docdiff" | tr '\n' ' ')"
fi
dpkg-deb -I "$DEB1" conffiles >"$T/conffiles" 2>/dev/null
for c in /etc/libvirt/virt-aa-hook.conf /etc/libvirt/virt-aa-hook.template \
         /etc/apparmor.d/usr.lib.libvirt.virt-aa-hook /etc/apparmor.d/usr.lib.libvirt.virt-aa-hook-libvirt \
         /etc/apparmor.d/abstractions/virt-aa-hook-parser /etc/logrotate.d/virt-aa-hook; do
  check "conffile: $c" grep -qx "$c" "$T/conffiles"
done
check_not "the package ships nothing at /etc/apparmor.d/abstractions/libvirt-qemu" grep -qx /etc/apparmor.d/abstractions/libvirt-qemu "$T/shipped"
dpkg-deb -f "$DEB1" Depends Recommends >"$T/control"
check "Depends on apparmor (>= 3.0)" grep -q 'apparmor (>= 3.0)' "$T/control"
check "Recommends libvirt-daemon-system" grep -q '^Recommends: libvirt-daemon-system' "$T/control"

echo "== lintian"
lintian --info "$DEB1" >"$T/lintian" 2>&1
sed 's/^/    /' "$T/lintian"
if grep -qE '^[EW]: ' "$T/lintian"; then fail "lintian: $(grep -cE '^[EW]: ' "$T/lintian") errors/warnings"
else ok "lintian: no errors or warnings"; fi

# ---------------------------------------------------------------------------------------------
# Roots. in_root R CMD: run CMD (sh) in root R with its own pid namespace, /proc and the apt
# archive cache, all gone when it returns. stdin is /dev/null: a prompt fails instead of hanging.
in_root() {
  local r=$1; shift
  unshare --mount --pid --fork --propagation private sh -c '
    r=$1; shift
    mount -t proc proc "$r/proc" && mount --bind "$APTDEBS" "$r/var/cache/apt/archives" &&
      exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        LANG=C.UTF-8 /bin/sh -c "$1"' sh "$r" "$*" </dev/null
}
# new_root NAME: a fresh copy of the prepared root of this suite.
new_root() {
  local r=$T/$SUITE-$1
  cp -a "$T/$SUITE-base" "$r"
  cp "$DEB1" "$r/tmp/v1.deb"; cp "$DEB2" "$r/tmp/v2.deb"
  echo "$r"
}
# Everything a package of ours could leave: type, mode, link target (not times).
LISTING='find /etc /usr /var/lib /var/log/libvirt /var/cache/apparmor -xdev \( -path /var/lib/dpkg -o -path /var/lib/apt -o -path /var/lib/systemd/deb-systemd-helper-enabled -o -path /var/lib/ucf \) -prune -o -printf "%p %y %m %l\n" 2>/dev/null | sort'
HELPER=/usr/lib/libvirt/virt-aa-helper
HELPER_MODE_ON="[ \"\$(dpkg-divert --listpackage $HELPER)\" = virt-aa-hook ] && [ \"\$(readlink $HELPER)\" = $BIN ] && [ -x $HELPER.distrib ]"
APTI='apt-get install -y -q -o DPkg::Lock::Timeout=60'
DOM='<domain type="qemu"><name>pkg</name><uuid>6f1e3a52-0c1d-4d8e-9a53-2f5c1b7d9e01</uuid><memory>65536</memory><os><type arch="x86_64">hvm</type></os><devices><emulator>/usr/bin/qemu-system-x86_64</emulator><disk type="file" device="disk"><source file="/var/lib/libvirt/images/pkg.qcow2"/><target dev="vda"/></disk></devices></domain>'
COMPILE="echo '$DOM' >/tmp/d.xml && $BIN generate --profile --no-probe --mode libvirt /tmp/d.xml >/tmp/p && apparmor_parser -Q -K -I /etc/apparmor.d /tmp/p"

for SUITE in $SUITES; do
  echo "== $SUITE"
  ts=$SECONDS
  tar=$(tests/pkg/root.sh "$SUITE" 2>"$T/root.err") || { fail "$SUITE: debootstrap: $(tail -n1 "$T/root.err")"; continue; }
  built=$(sed -nE 's/^built .* in ([0-9]+)s$/\1/p' "$T/root.err")
  APTDEBS=$CACHE/apt-$SUITE
  export APTDEBS
  mkdir -p "$APTDEBS/partial"
  mkdir "$T/$SUITE-base" && tar -C "$T/$SUITE-base" -xf "$tar"
  printf '#!/bin/sh\nexit 101\n' >"$T/$SUITE-base/usr/sbin/policy-rc.d"; chmod 755 "$T/$SUITE-base/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$T/$SUITE-base/etc/resolv.conf"
  if ! in_root "$T/$SUITE-base" 'apt-get update -q' >"$T/$SUITE-update.log" 2>&1; then
    fail "$SUITE: apt-get update: $(tail -n1 "$T/$SUITE-update.log")"; continue
  fi
  tprep=$((SECONDS - ts))
  echo "  ($SUITE root: ${built:+debootstrap ${built}s (cold), }ready in ${tprep}s)"

  echo "-- $SUITE: order 1: our package, then libvirt-daemon-system"
  R=$(new_root order)
  if in_root "$R" "$APTI --no-install-recommends /tmp/v1.deb" >"$T/o1.log" 2>&1; then ok "$SUITE: apt-get install ./virt-aa-hook.deb on a clean root"
  else fail "$SUITE: install of our package: $(tail -n2 "$T/o1.log" | tr '\n' ' ')"; fi
  check "$SUITE: apt pulled in apparmor (Depends)" in_root "$R" "dpkg-query -W apparmor"
  check "$SUITE: hooks/qemu -> $BIN, and it resolves" in_root "$R" "[ \"\$(readlink /etc/libvirt/hooks/qemu)\" = $BIN ] && [ -x /etc/libvirt/hooks/qemu ]"
  check_not "$SUITE: nothing at /etc/apparmor.d/abstractions/libvirt-qemu (libvirt's path)" test -e "$R/etc/apparmor.d/abstractions/libvirt-qemu"
  check "$SUITE: local/ include of our profile created" test -f "$R/etc/apparmor.d/local/usr.lib.libvirt.virt-aa-hook"
  check "$SUITE: local/ include of the admin binary's profile created" test -f "$R/etc/apparmor.d/local/usr.lib.libvirt.virt-aa-hook-libvirt"
  check "$SUITE: a guest profile compiles without libvirt's abstraction (ours only)" in_root "$R" "$COMPILE"
  if in_root "$R" "$APTI --no-install-recommends libvirt-daemon-system" >"$T/o2.log" 2>&1; then
    ok "$SUITE: then DEBIAN_FRONTEND=noninteractive apt-get install -y libvirt-daemon-system succeeds"
  else fail "$SUITE: libvirt-daemon-system after our package: $(grep -m1 -iE 'conffile|error' "$T/o2.log")"; fi
  check_not "$SUITE: ... with no conffile prompt" grep -qiE 'conffile prompt|Configuration file .* ==>' "$T/o2.log"
  check "$SUITE: libvirt's abstractions/libvirt-qemu is now the distribution's (dpkg -S)" in_root "$R" "dpkg -S /etc/apparmor.d/abstractions/libvirt-qemu | grep -v virt-aa-hook"
  check "$SUITE: libvirtd is installed and runs (--version)" in_root "$R" "libvirtd --version"
  check "$SUITE: the hook symlink is still ours and resolves" in_root "$R" "[ -x /etc/libvirt/hooks/qemu ] && [ \"\$(readlink /etc/libvirt/hooks/qemu)\" = $BIN ]"
  check "$SUITE: a guest profile compiles with libvirt's abstraction" in_root "$R" "$COMPILE"
  check "$SUITE: libvirt installed after us: its virt-aa-helper diverted by our file trigger (helper mode)" \
    in_root "$R" "$HELPER_MODE_ON"
  if in_root "$R" "$APTI --no-install-recommends qemu-system-x86" >"$T/o3.log" 2>&1; then
    check "$SUITE: QEMU installed later: its wrapper made by the dpkg trigger (hard link)" \
      in_root "$R" "[ $BIN.qemu-system-x86_64 -ef $BIN ]"
  else fail "$SUITE: apt-get install qemu-system-x86: $(tail -n1 "$T/o3.log")"; fi
  check "$SUITE: dpkg state clean (no half-configured package)" in_root "$R" "! dpkg --audit | grep -q ."
  rm -rf "$R"

  echo "-- $SUITE: order 2: libvirt first (admin's own hook and rules), then our package; upgrade; remove; purge"
  R=$(new_root reverse)
  in_root "$R" "$APTI --no-install-recommends libvirt-daemon-system apparmor libvirt0" >"$T/r1.log" 2>&1 ||
    fail "$SUITE: libvirt-daemon-system on a clean root: $(tail -n1 "$T/r1.log")"
  mkdir -p "$R/etc/libvirt/hooks" "$R/etc/apparmor.d/local/libvirt"
  printf '#!/bin/sh\n# the admin'"'"'s own hook\nexit 0\n' >"$R/etc/libvirt/hooks/qemu"; chmod 755 "$R/etc/libvirt/hooks/qemu"
  echo '  /srv/admin/** r,' >"$R/etc/apparmor.d/local/libvirt/libvirt-6f1e3a52-0c1d-4d8e-9a53-2f5c1b7d9e01"
  printf '#!/bin/sh\n' >"$R/usr/bin/qemu-system-pkgtest"; chmod 755 "$R/usr/bin/qemu-system-pkgtest"
  cp -a "$R/etc/libvirt/hooks/qemu" "$R/etc/apparmor.d/local/libvirt/libvirt-6f1e3a52-0c1d-4d8e-9a53-2f5c1b7d9e01" "$T/"
  in_root "$R" "$LISTING" >"$T/before"
  if in_root "$R" "$APTI /tmp/v1.deb" >"$T/r2.log" 2>&1; then ok "$SUITE: our package after libvirt installs"
  else fail "$SUITE: our package after libvirt: $(tail -n2 "$T/r2.log" | tr '\n' ' ')"; fi
  check "$SUITE: the admin's hooks/qemu is left alone" cmp -s "$R/etc/libvirt/hooks/qemu" "$T/qemu"
  check "$SUITE: our hook went to hooks/qemu.d/50-virt-aa-hook" in_root "$R" "[ \"\$(readlink /etc/libvirt/hooks/qemu.d/50-virt-aa-hook)\" = $BIN ] && [ -x /etc/libvirt/hooks/qemu.d/50-virt-aa-hook ]"
  check "$SUITE: wrapper for an emulator present at install (postinst setup-links)" in_root "$R" "[ $BIN.qemu-system-pkgtest -ef $BIN ]"
  check "$SUITE: virt-aa-hook in PATH runs" in_root "$R" "virt-aa-hook --version"
  check "$SUITE: libvirt's virt-aa-helper diverted at our configure (helper mode)" in_root "$R" "$HELPER_MODE_ON"
  echo 'parser_timeout = 30  # the admin' >>"$R/etc/libvirt/virt-aa-hook.conf"
  cp "$R/etc/libvirt/virt-aa-hook.conf" "$T/edited.conf"
  mkdir -p "$R/var/lib/virt-aa-hook" "$R/var/log/libvirt"
  echo '{}' >"$R/var/lib/virt-aa-hook/caps.json"; echo 'a log line' >"$R/var/log/libvirt/virt-aa-hook.log"
  # Unattended upgrades (Ansible's apt module, unattended-upgrades) answer conffile questions
  # with confdef/confold: keep the admin's file, put the new one beside it.
  if in_root "$R" "$APTI -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold /tmp/v2.deb" >"$T/r3.log" 2>&1; then
    ok "$SUITE: upgrade to the next build"
  else fail "$SUITE: upgrade: $(tail -n2 "$T/r3.log" | tr '\n' ' ')"; fi
  check "$SUITE: upgrade: the edited config is kept" cmp -s "$R/etc/libvirt/virt-aa-hook.conf" "$T/edited.conf"
  check "$SUITE: upgrade: the new config is beside it (.dpkg-dist)" grep -q 'changed in the next release' "$R/etc/libvirt/virt-aa-hook.conf.dpkg-dist"
  check "$SUITE: upgrade: the unedited template is the new one" grep -q 'changed in the next release' "$R/etc/libvirt/virt-aa-hook.template"
  check "$SUITE: upgrade: the wrapper is re-linked to the new binary" in_root "$R" "[ $BIN.qemu-system-pkgtest -ef $BIN ]"
  check "$SUITE: upgrade: version is the new one" in_root "$R" "dpkg-query -W -f='\${Version}' virt-aa-hook | grep -q pkgtest2"
  if in_root "$R" "apt-get remove -y -q virt-aa-hook" >"$T/r4.log" 2>&1; then ok "$SUITE: apt-get remove"
  else fail "$SUITE: remove: $(tail -n2 "$T/r4.log" | tr '\n' ' ')"; fi
  check_not "$SUITE: remove: our hook symlink is gone" test -L "$R/etc/libvirt/hooks/qemu.d/50-virt-aa-hook"
  check_not "$SUITE: remove: the wrappers are gone" test -e "$R$BIN.qemu-system-pkgtest"
  check "$SUITE: remove: libvirt's own virt-aa-helper is back (no diversion, a regular file)" \
    in_root "$R" "[ -f $HELPER ] && [ ! -L $HELPER ] && [ ! -e $HELPER.distrib ] && [ -z \"\$(dpkg-divert --listpackage $HELPER)\" ]"
  check "$SUITE: remove: the admin's hooks/qemu is untouched" cmp -s "$R/etc/libvirt/hooks/qemu" "$T/qemu"
  check "$SUITE: remove: the configuration stays" cmp -s "$R/etc/libvirt/virt-aa-hook.conf" "$T/edited.conf"
  if in_root "$R" "apt-get purge -y -q virt-aa-hook" >"$T/r5.log" 2>&1; then ok "$SUITE: apt-get purge"
  else fail "$SUITE: purge: $(tail -n2 "$T/r5.log" | tr '\n' ' ')"; fi
  in_root "$R" "$LISTING" >"$T/after"
  if diff -u "$T/before" "$T/after" >"$T/purge.diff"; then ok "$SUITE: purge: no file of ours left (listing of /etc /usr /var/lib /var/log/libvirt as before the install)"
  else fail "$SUITE: purge left or removed: $(grep -E '^[-+]/' "$T/purge.diff" | head -n 5 | tr '\n' ' ')"; fi
  check "$SUITE: purge: the admin's hook is untouched" cmp -s "$R/etc/libvirt/hooks/qemu" "$T/qemu"
  check "$SUITE: purge: the admin's local rules are untouched" cmp -s "$R/etc/apparmor.d/local/libvirt/libvirt-6f1e3a52-0c1d-4d8e-9a53-2f5c1b7d9e01" "$T/libvirt-6f1e3a52-0c1d-4d8e-9a53-2f5c1b7d9e01"
  rm -rf "$R" "$T/$SUITE-base"
  echo "  ($SUITE: $((SECONDS - ts))s in all; versions: $(tar -xOf "$tar" ./etc/debian_version 2>/dev/null))"
done

echo "  (suite pkg: $((SECONDS - T0))s)"
finish "${SKIPPED:+older than the build host:$SKIPPED}"
