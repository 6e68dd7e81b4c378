#!/usr/bin/env bash
# Build the virt-aa-hook Debian package and install it with apt (or remove it again). As root,
# from a checkout:
#
#     install/install.sh                 cargo deb (build + package), apt-get install ./the.deb
#     install/install.sh --no-build      package the binaries already in target/release
#     install/install.sh --deb FILE      dpkg -i a package built before (no cargo, no network)
#     install/install.sh --uninstall     apt-get remove virt-aa-hook (--purge: also its config)
#     install/install.sh --dry-run       print the commands, run nothing
#     DESTDIR=/tmp/stage install/install.sh   unpack the package's files below DESTDIR (other
#                                        distributions, packagers): no maintainer scripts run
#
# What goes where, and every install/upgrade/remove step, is the package's: the file list is
# [package.metadata.deb] in Cargo.toml, the steps are install/debian/{postinst,prerm,postrm} and
# the maint-functions.sh that postinst and prerm source.
# dpkg keeps an admin's edits to the files in /etc (the new version lands as .dpkg-dist).
set -Eeuo pipefail

PROG=install.sh
die() { echo "$PROG: error: $*" >&2; exit 1; }
trap 'die "command failed (line $LINENO): $BASH_COMMAND"' ERR

usage() {
  cat <<'EOF'
Usage: install/install.sh [--no-build | --deb FILE] [--dry-run] [--uninstall [--purge]]

  --no-build     do not compile; package the binaries already in target/release
  --deb FILE     install this already built package (offline: its dependencies must be there)
  --no-helper-mode  leave libvirt's own virt-aa-helper in place (undo helper mode if on)
  --dry-run      print the commands that would run, change nothing
  --uninstall    apt-get remove virt-aa-hook (configuration kept); with --purge, apt-get purge
  --prefix /usr  accepted for compatibility; no other prefix (see below)
  -h, --help     this text

Environment:
  DESTDIR=DIR    unpack the package's files below DIR instead of installing it (no apt, no
                 maintainer scripts). On a distribution without dpkg, DESTDIR=/ followed by
                 'install/debian/postinst configure' installs it by hand.

The binaries must be in /usr/lib/libvirt: libvirtd's AppArmor profile lets only programs there
leave its confinement, and the wrappers and admin commands are looked up there.
EOF
}

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PKG=virt-aa-hook
DRY=0 UNINSTALL=0 PURGE=0 BUILD=1 DEB=""
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; [ "${2%/}" = /usr ] || die "only --prefix /usr is supported (see --help)"; shift ;;
    --prefix=*) [ "${1#--prefix=}" = /usr ] || die "only --prefix /usr is supported (see --help)" ;;
    --dry-run) DRY=1 ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    --no-build) BUILD=0 ;;
    --no-helper-mode) export VIRT_AA_HOOK_HELPER_MODE=no ;;
    --deb) [ $# -ge 2 ] || die "--deb needs a file"; DEB=$2; OFFLINE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done
D=${DESTDIR:-}
case $D in ''|/*) ;; *) die "DESTDIR must be an absolute path, not '$D'" ;; esac
[ "$PURGE" -eq 0 ] || [ "$UNINSTALL" -eq 1 ] || die "--purge goes with --uninstall"

run() { if [ "$DRY" -eq 1 ]; then echo "would run: $*"; else "$@"; fi; }
# apt waits for a busy dpkg lock (another apt run, unattended-upgrades) instead of failing.
APT=(env DEBIAN_FRONTEND=noninteractive apt-get -y -o DPkg::Lock::Timeout=600)
# A machine whose package lists were never fetched (a fresh debootstrap, a container image)
# cannot resolve a single dependency: fetch them once first.
apt_lists() {
  ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || run "${APT[@]}" -q update >/dev/null || die "apt-get update failed"
}

if [ "$DRY" -eq 0 ] && [ -z "$D" ] && [ "$(id -u)" -ne 0 ]; then
  die "run as root (or use --dry-run, or DESTDIR=... to stage into a directory)"
fi

if [ "$UNINSTALL" -eq 1 ]; then
  [ -z "$D" ] || die "--uninstall with DESTDIR: delete $D yourself"
  command -v apt-get >/dev/null || die "not a Debian system: run 'install/debian/prerm remove' and delete the files 'dpkg-deb -c' lists"
  if [ "$PURGE" -eq 1 ]; then run "${APT[@]}" purge "$PKG"; else run "${APT[@]}" remove "$PKG"; fi
  exit 0
fi

# An installation by the install.sh before the package (it kept a manifest): dpkg would find
# its unowned files in /etc and stop at a conffile prompt. Say so rather than half-install.
OLD_MANIFEST=$D/var/lib/virt-aa-hook/install-manifest
[ ! -f "$OLD_MANIFEST" ] || die "$OLD_MANIFEST: installed by an older install.sh; run that version's 'install.sh --uninstall' first"

find_cargo() {
  local c
  for c in "$(command -v cargo || true)" "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" /root/.cargo/bin/cargo; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  die "cargo not found: install Rust with rustup (https://rustup.rs), then run this again"
}

# build_deb: print the path of the .deb cargo-deb made (its last line of output).
build_deb() {
  local cargo args=(deb)
  cargo=$(find_cargo)
  if ! "$cargo" deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb (cargo install cargo-deb --locked)" >&2
    "$cargo" install cargo-deb --locked >&2 || die "cargo install cargo-deb failed"
  fi
  if [ "$BUILD" -eq 0 ]; then
    for b in virt-aa-hook virt-aa-hook-libvirt; do
      [ -x "${CARGO_TARGET_DIR:-$SRC/target}/release/$b" ] || die "target/release/$b is missing (build first or drop --no-build)"
    done
    args+=(--no-build --fast)
  fi
  [ ! -f "$SRC/Cargo.lock" ] || args+=(--locked)
  (cd "$SRC" && "$cargo" "${args[@]}") | tail -n1
}

if [ -n "$DEB" ]; then
  [ -f "$DEB" ] || die "--deb $DEB: no such file"
  case $DEB in /*) ;; *) DEB=$(pwd)/$DEB ;; esac   # apt-get takes a path, not a name
elif [ "$DRY" -eq 1 ]; then
  echo "would run: (cd $SRC && cargo deb$([ "$BUILD" -eq 1 ] || echo ' --no-build --fast') --locked)"
  DEB="$SRC/target/debian/${PKG}_<version>_<arch>.deb"
else
  # What building needs beside Rust: a C linker and libc headers (rustup brings neither; a fresh
  # Debian has no cc, and cargo-deb's own build fails without one), and, since
  # virt-aa-hook-libvirt links libvirt, its headers and pkg-config.
  if command -v apt-get >/dev/null; then
    need=()
    command -v cc >/dev/null || need+=(gcc libc6-dev)
    if [ "$BUILD" -eq 1 ]; then
      [ -e /usr/include/libvirt/libvirt.h ] || need+=(libvirt-dev)
      command -v pkg-config >/dev/null || need+=(pkg-config)
    fi
    if [ ${#need[@]} -gt 0 ]; then
      echo "installing build dependencies: ${need[*]}"
      apt_lists
      "${APT[@]}" -q install "${need[@]}" >/dev/null || die "apt-get install ${need[*]} failed"
    fi
  fi
  DEB=$(build_deb)
  [ -f "$DEB" ] || die "cargo deb did not produce a package (got '$DEB')"
  echo "package: $DEB"
fi

if [ -n "$D" ]; then
  run mkdir -p "$D"
  if command -v dpkg-deb >/dev/null; then
    run dpkg-deb -x "$DEB" "$D"
  else
    # No dpkg: a .deb is an ar archive; its files are data.tar.*.
    member=$(ar t "$DEB" | grep '^data\.tar')
    run sh -c "ar p '$DEB' '$member' | tar -x -f - -C '$D'"
  fi
  echo "unpacked into $D; on a live system then run: install/debian/postinst configure"
  exit 0
fi

command -v apt-get >/dev/null || die "not a Debian system: use DESTDIR=/ (see --help)"
# apt resolves the dependencies (apparmor; libvirt is recommended) and runs the postinst:
# AppArmor profile, wrapper links, the hook symlink, a reload of a running libvirtd.
if [ "${OFFLINE:-0}" -eq 1 ]; then
  # Offline (the test VMs): dpkg alone, which checks only this package's dependencies.
  run dpkg -i "$DEB"
else
  # --reinstall: a rebuilt checkout keeps its version number; --allow-downgrades: an older one.
  apt_lists
  run "${APT[@]}" install --reinstall --allow-downgrades "$DEB"
fi
[ "$DRY" -eq 1 ] || /usr/sbin/virt-aa-hook doctor </dev/null || echo "note: see the doctor's hints above; the package is installed"
