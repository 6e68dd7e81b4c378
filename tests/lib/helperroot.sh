#!/bin/bash
# helperroot.sh SUITE — print the path of a cached Debian root of SUITE that has that suite's own
# libvirt virt-aa-helper, for the per-distro differential in tests/generate.rs. Prefers the VM
# root of tests/lib/debroot.sh (roots/<suite>-vm; complete once its stamp exists), building it
# with that script when the tree has it; otherwise debootstraps a minimal root of its own
# (roots/<suite>-gen: minbase + libvirt-daemon, no recommends, no service started) under a lock.
# stdout: the root's path only; progress and errors go to stderr; exit 1 when no root.
set -euo pipefail
suite=${1:?usage: helperroot.sh SUITE}
[[ $suite =~ ^[a-z]+$ ]] || { echo "helperroot: bad suite name: $suite" >&2; exit 2; }
cache=${DEBROOT_CACHE:-/var/cache/virt-aa-hook-tests/roots}
helper=usr/lib/libvirt/virt-aa-helper
vm=$cache/$suite-vm
if [ -e "$vm/.virt-aa-hook-debroot" ] && [ -x "$vm/$helper" ]; then echo "$vm"; exit 0; fi
debroot=$(dirname "$0")/debroot.sh
[ -x "$debroot" ] && exec "$debroot" "$suite"

root=$cache/$suite-gen
if [ -e "$root/.complete" ]; then echo "$root"; exit 0; fi
mkdir -p "$cache"
exec 9>"$root.lock"
flock 9
if [ -e "$root/.complete" ]; then echo "$root"; exit 0; fi
mirror=${DEBROOT_MIRROR:-http://deb.debian.org/debian}
log=$root.log
echo "helperroot: building a $suite root with libvirt-daemon in $root (once, a few minutes)" >&2
rm -rf "$root.new"; mkdir -p "$root.new"
fail() { tail -n 15 "$log" >&2; echo "helperroot: $1" >&2; rm -rf "$root.new"; exit 1; }
debootstrap --variant=minbase "$suite" "$root.new" "$mirror" >"$log" 2>&1 || fail "debootstrap $suite failed"
printf '#!/bin/sh\nexit 101\n' >"$root.new/usr/sbin/policy-rc.d"; chmod 755 "$root.new/usr/sbin/policy-rc.d"
echo "deb $mirror $suite main" >"$root.new/etc/apt/sources.list"
in_root() { chroot "$root.new" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }
in_root apt-get update -qq >>"$log" 2>&1 || fail "apt-get update in $suite failed"
in_root apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confnew \
    libvirt-daemon >>"$log" 2>&1 || fail "apt-get install libvirt-daemon in $suite failed"
in_root apt-get clean >/dev/null 2>&1 || true
[ -x "$root.new/$helper" ] || fail "the $suite root has no /$helper"
touch "$root.new/.complete"
rm -rf "$root"; mv "$root.new" "$root"
echo "$root"
