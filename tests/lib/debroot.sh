#!/usr/bin/env bash
# debroot.sh SUITE: a debootstrapped Debian root with libvirt, QEMU, AppArmor and that suite's
# kernel, for booting in the AppArmor VM runner (tests/aavm/aavm --root) or for chroot checks
# (that suite's apparmor_parser, virt-aa-helper). As root:
#
#     tests/lib/debroot.sh trixie            # prints the root's path on stdout (the only stdout line)
#     tests/lib/debroot.sh --versions sid    # same, after printing the package versions to stderr
#
# The root lives in /var/cache/virt-aa-hook-tests/roots/<suite>-vm ($DEBROOT_CACHE) and is built
# once: a stamp file records the suite, mirror and package list, so a changed list rebuilds it.
# Builders of the same suite serialise on a flock; readers never see a half-built root (it is
# built in <suite>-vm.new and renamed). No service starts inside (policy-rc.d), apt runs
# non-interactively, no initramfs is built (the VM runner brings its own). Nothing is mounted
# outside a private mount namespace, so nothing is left mounted on the host.
#
# Knobs: DEBROOT_CACHE, DEBROOT_MIRROR (http://deb.debian.org/debian),
# DEBROOT_EXTRA (more packages; part of the stamp).
set -euo pipefail
VERSIONS=0
[ "${1:-}" = --versions ] && { VERSIONS=1; shift; }
SUITE=${1:?usage: debroot.sh [--versions] SUITE (bookworm|trixie|sid)}
[[ $SUITE =~ ^[a-z]+$ ]] || { echo "debroot: bad suite name: $SUITE" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "debroot: must run as root" >&2; exit 2; }
CACHE=${DEBROOT_CACHE:-/var/cache/virt-aa-hook-tests/roots}
MIRROR=${DEBROOT_MIRROR:-http://deb.debian.org/debian}
ROOT=$CACHE/$SUITE-vm
# Bump when the build steps below change what they produce.
RECIPE=1

# What the AppArmor suites use inside the VM: libvirt + its QEMU driver, QEMU, qemu-img, AppArmor
# (parser, aa-exec), firmware and TPM emulator for the rich guest, the kernel, busybox (initramfs),
# python3 (suite 05), procps (sysctl), kmod, iproute2, virtnbdbackup (suite 06: a real backup client).
PACKAGES=(libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
  apparmor apparmor-utils ovmf swtpm swtpm-tools linux-image-amd64 busybox python3 procps kmod
  iproute2 virtnbdbackup ${DEBROOT_EXTRA:-})
stamp_text() { printf 'recipe=%s\nsuite=%s\nmirror=%s\npackages=%s\n' "$RECIPE" "$SUITE" "$MIRROR" "${PACKAGES[*]}"; }

# in_root DIR CMD...: run CMD chrooted in DIR with /proc, /sys, /dev, a tmpfs /run and /tmp,
# inside a private mount namespace (the mounts vanish with it).
in_root() {
  local r=$1; shift
  unshare --mount --propagation private -- /bin/sh -c '
    r=$1; shift
    mount -t proc proc "$r/proc" && mount -t sysfs sysfs "$r/sys" && mount --rbind /dev "$r/dev" &&
      mount -t tmpfs tmpfs "$r/run" && mount -t tmpfs tmpfs "$r/tmp" || exit 1
    exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
      DEBIAN_FRONTEND=noninteractive INITRD=No "$@"' sh "$r" "$@"
}

versions() {   # the versions that matter, from the root's dpkg database
  local v
  v=$(chroot "$ROOT" dpkg-query -W -f '${Package}=${Version}\n' libvirt-daemon-system qemu-system-x86 apparmor \
      swtpm ovmf 'linux-image-[0-9]*' 2>/dev/null | tr '\n' ' ')
  echo "debroot: $SUITE root $ROOT: $v" >&2
}

build() {
  local new=$ROOT.new t0=$SECONDS
  echo "debroot: building $SUITE root in $ROOT (once; debootstrap + apt, a few minutes)" >&2
  rm -rf "$new"
  mkdir -p "$new"
  debootstrap --variant=minbase "$SUITE" "$new" "$MIRROR" >"$CACHE/$SUITE-vm.log" 2>&1 ||
    { tail -n 20 "$CACHE/$SUITE-vm.log" >&2; echo "debroot: debootstrap $SUITE failed" >&2; return 1; }
  echo "debroot: debootstrap done ($((SECONDS - t0)) s)" >&2
  # No daemon starts in the chroot (nor in the VM by itself: there is no init there).
  printf '#!/bin/sh\nexit 101\n' >"$new/usr/sbin/policy-rc.d"; chmod 755 "$new/usr/sbin/policy-rc.d"
  # A package conffile prompt must never block: keep the maintainer's (new) file.
  # The mirror may be a frozen snapshot whose Release file has expired: accept it.
  printf 'Dpkg::Options { "--force-confdef"; "--force-confnew"; };\nAPT::Install-Recommends "false";\nAcquire::Check-Valid-Until "false";\n' \
    >"$new/etc/apt/apt.conf.d/90virt-aa-hook-tests"
  echo "deb $MIRROR $SUITE main" >"$new/etc/apt/sources.list"
  in_root "$new" apt-get update -qq >>"$CACHE/$SUITE-vm.log" 2>&1 ||
    { tail -n 10 "$CACHE/$SUITE-vm.log" >&2; echo "debroot: apt-get update in $SUITE failed" >&2; return 1; }
  if ! in_root "$new" apt-get install -y -q "${PACKAGES[@]}" >>"$CACHE/$SUITE-vm.log" 2>&1; then
    tail -n 30 "$CACHE/$SUITE-vm.log" >&2; echo "debroot: apt-get install in $SUITE failed" >&2; return 1
  fi
  in_root "$new" apt-get clean >/dev/null 2>&1 || true
  rm -rf "$new"/var/lib/apt/lists/*_Packages "$new"/var/cache/apt/*.bin
  ls "$new"/boot/vmlinuz-* >/dev/null 2>&1 || { echo "debroot: no kernel in /boot of $SUITE" >&2; return 1; }
  stamp_text >"$new/.virt-aa-hook-debroot"
  rm -rf "$ROOT"; mv "$new" "$ROOT"
  echo "debroot: $SUITE root built in $((SECONDS - t0)) s ($(du -sh "$ROOT" | cut -f1))" >&2
}

fresh() { [ "$(cat "$ROOT/.virt-aa-hook-debroot" 2>/dev/null)" = "$(stamp_text)" ]; }

mkdir -p "$CACHE"
if ! fresh; then
  exec 9>"$CACHE/$SUITE-vm.lock"
  flock 9
  fresh || build
  exec 9>&-
fi
[ "$VERSIONS" = 1 ] && versions
echo "$ROOT"
