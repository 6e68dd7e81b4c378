#!/usr/bin/env bash
# tests/pkg/root.sh SUITE: print the path of a clean debootstrapped Debian SUITE root (minbase),
# built once and cached as a tarball: $VAH_ROOTS/pkg-SUITE.tar (default
# /var/cache/virt-aa-hook-tests/roots). Concurrent callers wait on a lock; a half-built root is
# never published (built beside, renamed when complete). Prints "built in Ns" on stderr when it
# had to build (the cold cost), nothing when the cache was there.
set -euo pipefail
SUITE=${1:?usage: tests/pkg/root.sh SUITE}
ROOTS=${VAH_ROOTS:-/var/cache/virt-aa-hook-tests/roots}
MIRROR=${VAH_MIRROR:-http://deb.debian.org/debian}
TAR=$ROOTS/pkg-$SUITE.tar
mkdir -p "$ROOTS"
exec 9>"$TAR.lock"
flock 9
if [ -s "$TAR" ]; then echo "$TAR"; exit 0; fi
command -v debootstrap >/dev/null || flock /tmp/vah-apt.lock apt-get install -y -qq debootstrap >/dev/null
t0=$SECONDS
dir=$(mktemp -d "$ROOTS/.pkg-$SUITE.XXXXXX")
trap 'rm -rf "$dir" "$TAR.tmp"' EXIT
if ! debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
  "$SUITE" "$dir" "$MIRROR" >"$ROOTS/pkg-$SUITE.log" 2>&1; then
  tail -n 5 "$ROOTS/pkg-$SUITE.log" >&2
  exit 1
fi
# A clean root: no downloaded .debs, no package lists (each test runs apt-get update itself).
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*_Packages
tar -C "$dir" -cf "$TAR.tmp" .
mv "$TAR.tmp" "$TAR"
echo "built $TAR in $((SECONDS - t0))s" >&2
echo "$TAR"
