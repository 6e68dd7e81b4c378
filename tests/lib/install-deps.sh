#!/usr/bin/env bash
# Install everything the test suites need on a fresh Debian 12 machine (idempotent, quiet when
# everything is already there). Must run as root.
set -eu
need=()
for pair in apparmor_parser:apparmor aa-exec:apparmor-utils virsh:libvirt-clients \
            libvirtd:libvirt-daemon-system qemu-system-x86_64:qemu-system-x86 qemu-img:qemu-utils \
            pkg-config:pkg-config xz:xz-utils cpio:cpio busybox:busybox-static strace:strace \
            debootstrap:debootstrap lintian:lintian virtnbdbackup:virtnbdbackup; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need+=("${pair##*:}")
done
[ -e /usr/include/libvirt/libvirt.h ] || need+=(libvirt-dev)
# No --force-confold here, on purpose: libvirt-daemon-system's conffiles (its
# abstractions/libvirt-qemu among them) must never meet a file some other installer wrote.
[ -e /etc/apparmor.d/abstractions/libvirt-qemu ] || need+=(libvirt-daemon-system)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  if ! apt-get install -y -qq "${need[@]}" >/tmp/virt-aa-hook-apt.log 2>&1; then
    # qemu-utils from backports can block qemu-system-x86 from bookworm: take bookworm's.
    v=$(apt-cache policy qemu-system-x86 | sed -nE 's/^ +Candidate: (.*)/\1/p')
    apt-get install -y -qq --allow-downgrades "qemu-utils=$v" "qemu-block-extra=$v" >>/tmp/virt-aa-hook-apt.log 2>&1 || true
    apt-get install -y -qq "${need[@]}" >>/tmp/virt-aa-hook-apt.log 2>&1 || { tail -20 /tmp/virt-aa-hook-apt.log; exit 1; }
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
