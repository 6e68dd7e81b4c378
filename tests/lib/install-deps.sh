#!/usr/bin/env bash
# Install everything the test suites need on a fresh Debian 12 machine (idempotent, quiet when
# everything is already there). Must run as root.
set -eu
# missing: the packages whose commands (or files) are not there, in $need.
missing() {
  need=()
  local pair
  for pair in apparmor_parser:apparmor aa-exec:apparmor-utils virsh:libvirt-clients \
              libvirtd:libvirt-daemon-system qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils \
              pkg-config:pkg-config xz:xz-utils cpio:cpio busybox:busybox-static strace:strace \
              debootstrap:debootstrap lintian:lintian virtnbdbackup:virtnbdbackup \
              inotifywait:inotify-tools; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair##*:}")
  done
  [ -e /usr/include/libvirt/libvirt.h ] || need+=(libvirt-dev)
  # No --force-confold here, on purpose: libvirt-daemon-system's conffiles (its
  # abstractions/libvirt-qemu among them) must never meet a file some other installer wrote.
  [ -e /etc/apparmor.d/abstractions/libvirt-qemu ] || need+=(libvirt-daemon-system)
  return 0
}
# install PACKAGE...: apt-get install; when that fails, QEMU's packages pinned to one version
# (qemu-utils from backports, which this machine kind ships, blocks qemu-system-x86 from bookworm).
install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq "$@" >>/tmp/virt-aa-hook-apt.log 2>&1 && return 0
  local v
  v=$(apt-cache policy qemu-system-x86 | sed -nE 's/^ +Candidate: (.*)/\1/p')
  apt-get install -y -qq --allow-downgrades "qemu-utils=$v" "qemu-block-extra=$v" >>/tmp/virt-aa-hook-apt.log 2>&1 || true
  apt-get install -y -qq "$@" >>/tmp/virt-aa-hook-apt.log 2>&1 || { tail -20 /tmp/virt-aa-hook-apt.log; return 1; }
}
: >/tmp/virt-aa-hook-apt.log
missing
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  apt-get update -qq
  install "${need[@]}" || exit 1
  # Resolving one install can remove a package that was there before (bookworm's qemu-system-x86
  # removes backports' qemu-utils, and qemu-img with it): look again.
  missing
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing (removed by the first install): ${need[*]}"
    install "${need[@]}" || exit 1
    missing
    [ ${#need[@]} -eq 0 ] || { echo "still missing after install: ${need[*]}"; exit 1; }
  fi
fi
# The package is built with cargo-deb (crates.io; compiled once, ~3 minutes on 2 cores).
PATH=$PATH:${CARGO_HOME:-$HOME/.cargo}/bin
if ! cargo deb --version >/dev/null 2>&1; then
  echo "installing cargo-deb"
  cargo install cargo-deb --locked >/tmp/virt-aa-hook-cargo-deb.log 2>&1 || { tail -20 /tmp/virt-aa-hook-cargo-deb.log; exit 1; }
fi
# libvirt's postinst may have started nothing (no systemd here); the suites start daemons themselves.
echo "dependencies present: $(apparmor_parser --version | head -n1); $(virsh --version 2>/dev/null | sed 's/^/libvirt /'); $(qemu-system-x86_64 --version | head -n1)"
