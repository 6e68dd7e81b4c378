#!/usr/bin/env bash
# Relabel benchmark (beside tests/bench/run.sh's generate and hook-event figures): the latency of
# a guest start, one hotplug (attach-disk), one external snapshot and one blockcommit --active
# --pivot, in helper mode against libvirt's own virt-aa-helper, side by side in one AppArmor VM
# (libvirt's AppArmor driver needs an AppArmor kernel; this host's may have none). As root:
#
#     tests/bench/relabel.sh [RUNS]     # default 5 runs of each operation per helper; median
#
# It boots the project's AppArmor VM (tests/aavm/aavm, Debian's kernel under QEMU TCG over the
# host's root) and runs tests/bench/relabel-vm.sh in it. Under TCG every figure is slow; read the
# ratio. Never part of tests/run.sh (a measurement, not a test).
set -eu
cd "$(dirname "$0")/../.."
RUNS=${1:-5}
[ -x target/release/virt-aa-hook ] && [ -x target/release/virt-aa-hook-libvirt ] || cargo build --release
rm -rf target/debian/aavm
PATH=$PATH:/root/.cargo/bin cargo deb --no-build --fast --locked -o target/debian/aavm/ >/dev/null
tests/aavm/aavm --build >/dev/null
exec tests/aavm/aavm --timeout $((600 + RUNS * 600)) tests/bench/relabel-vm.sh "$(pwd)" "$RUNS"
