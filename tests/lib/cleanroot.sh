#!/usr/bin/env bash
# The README's two commands, in the README's order, on a clean Debian root:
#
#     tests/lib/cleanroot.sh [--suite bookworm] [--fresh] [--keep] [-- TEST-ARGS...]
#
# Why: a green CI on a machine that already has libvirt, caches and tools installed hid a broken
# set-up once (install.sh wrote a libvirt conffile; apt-get then died at dpkg's prompt). This makes
# a fresh `debootstrap` root (no libvirt, no AppArmor, no cargo-deb, no test caches), gives it only
# what a fresh machine of our kind has (the rustup toolchain, here bind-mounted from the host), and
# runs inside it, in its own PID and mount namespace (so no test can see or kill the host's
# daemons):
#
#     install/install.sh          then          tests/run.sh TEST-ARGS
#
# from a clean `git clone` of this checkout's HEAD. Output goes to stdout and to
# /var/log/virt-aa-hook-cleanroot-<time>.log; the exit status is tests/run.sh's (or install.sh's).
# The root is deleted afterwards unless --keep. Cold cost on 2 cores: debootstrap ~5 min, then
# the test suite with every cache empty (package roots, VM kernel, cargo-deb, cargo-fuzz).
#
# Needs: root, debootstrap, network to deb.debian.org and crates.io, rustup in /root/.rustup.
set -eu
SUITE=bookworm KEEP=0 FRESH=0
while [ $# -gt 0 ]; do
  case $1 in
    --suite) SUITE=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --fresh) FRESH=1; shift ;;
    --) shift; break ;;
    *) echo "usage: $0 [--suite S] [--fresh] [--keep] [-- TEST-ARGS...]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "cleanroot: run as root" >&2; exit 2; }
SRC=$(cd "$(dirname "$0")/../.." && pwd)
RUSTUP=${RUSTUP_HOME:-/root/.rustup}
[ -d "$RUSTUP/toolchains" ] || { echo "cleanroot: no rustup toolchain in $RUSTUP" >&2; exit 2; }
R=/srv/virt-aa-hook-cleanroot.$$
LOG=/var/log/virt-aa-hook-cleanroot-$(date +%Y%m%dT%H%M%S).log

cleanup() {
  # Lazy unmounts: a daemon the tests left behind would otherwise keep the root busy.
  for m in $(awk -v r="$R" '$2 ~ "^"r {print $2}' /proc/mounts | sort -r); do umount -l "$m" 2>/dev/null || true; done
  [ "$KEEP" -eq 1 ] && { echo "cleanroot: kept $R"; return; }
  rm -rf --one-file-system "$R"
}
trap cleanup EXIT

exec > >(tee "$LOG") 2>&1
echo "cleanroot: debootstrap $SUITE into $R ($(date -u +%H:%M:%S))"
t0=$SECONDS
# The pristine debootstrap output is kept as a tarball (nothing ever runs in it) and unpacked
# afresh for every run; --fresh makes a new one.
TAR=/var/cache/virt-aa-hook-tests/roots/clean-$SUITE.tar
if [ "$FRESH" -eq 1 ] || [ ! -s "$TAR" ]; then
  debootstrap --include=ca-certificates,git,sudo "$SUITE" "$R" http://deb.debian.org/debian >/dev/null
  mkdir -p "${TAR%/*}" && tar -C "$R" -cf "$TAR.new" . && mv "$TAR.new" "$TAR"
  echo "cleanroot: debootstrap done in $((SECONDS - t0)) s (kept as $TAR)"
else
  mkdir -p "$R" && tar -C "$R" -xf "$TAR"
  echo "cleanroot: unpacked the pristine debootstrap of $(date -r "$TAR" +%F) ($TAR) in $((SECONDS - t0)) s"
fi
# The root must be a mount point of its own: libvirt makes "/" a slave mount in QEMU's mount
# namespace, and on a plain directory that fails ("Failed disable mount propagation out of the
# root filesystem: Invalid argument"), as does unshare in tests/lib/debroot.sh.
mount --bind "$R" "$R"
mount --make-private "$R"

# What a fresh machine of our kind has beside Debian: rustup's toolchains (shared, read by the
# proxies) and a CARGO_HOME holding only rustup's proxies (no cargo-deb, no cargo-fuzz).
mkdir -p "$R/root/.rustup" "$R/root/.cargo/bin"
mount --bind "$RUSTUP" "$R/root/.rustup"
for p in cargo rustc rustdoc rustup cargo-clippy cargo-fmt rustfmt clippy-driver; do
  cp /root/.cargo/bin/rustup "$R/root/.cargo/bin/$p"
done
cp /etc/resolv.conf /etc/hosts /etc/hostname "$R/etc/"
# The machine's own trust anchors (an egress proxy's CA, say): a fresh machine of our kind has
# them, a fresh debootstrap does not, and crates.io would then fail TLS.
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/"
  chroot "$R" update-ca-certificates >/dev/null
fi
git clone -q "$SRC" "$R/root/virt-aa-hook"
# This machine kind's root cannot raise the core-size limit Debian 13's sudo lowers (no
# CAP_SYS_RESOURCE; why it matters: tests/run.sh): only then, sudo keeps the caller's limit.
if ! (ulimit -Hc 0 && ulimit -Hc unlimited) 2>/dev/null; then
  echo 'Defaults rlimit_core=default' >"$R/etc/sudoers.d/virt-aa-hook-cleanroot-core"
  chmod 0440 "$R/etc/sudoers.d/virt-aa-hook-cleanroot-core"
  echo "cleanroot: this root lacks CAP_SYS_RESOURCE: sudo keeps the caller's core-size limit (/etc/sudoers.d)"
fi

for d in sys dev; do mount --bind "/$d" "$R/$d"; done
mount -t tmpfs tmpfs "$R/run"
mount -t tmpfs tmpfs "$R/tmp"
mkdir -p "$R/dev/shm" && mount -t tmpfs tmpfs "$R/dev/shm"

inner='set -e
cd /root/virt-aa-hook
echo "cleanroot: HEAD $(git log --oneline -1)"
echo "cleanroot: \$ sudo install/install.sh"
t0=$(date +%s)
sudo install/install.sh
echo "cleanroot: install.sh exit 0 in $(( $(date +%s) - t0 )) s"
echo "cleanroot: \$ sudo tests/run.sh $*"
sudo tests/run.sh "$@"'
# The root's own pseudo-terminals: a new devpts instance, mounted inside the private mount
# namespace (the host's /dev/pts bound in made QEMU's `pty` chardevs fail with "Failed to create
# PTY" once libvirt moved it into the guest's namespace: e2e/wrapper's 3 failures of run 3).
set +e
unshare --pid --fork --kill-child --mount --mount-proc="$R/proc" \
  env R="$R" sh -c 'mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts "$R/dev/pts" &&
    mount --bind "$R/dev/pts/ptmx" "$R/dev/ptmx" && exec "$@"' devpts \
  chroot "$R" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
  PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  bash -c "$inner" cleanroot "$@"
rc=$?
echo "cleanroot: exit status $rc after $((SECONDS - t0)) s (log $LOG)"
exit $rc
