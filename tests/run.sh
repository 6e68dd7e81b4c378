#!/usr/bin/env bash
# The whole test suite of virt-aa-hook, from a fresh Debian 12 machine, as root:
#
#     sudo tests/run.sh            # everything
#     sudo tests/run.sh cargo e2e  # only some suites (names: deps cargo e2e pkg aavm fuzz migrate)
#
# Suite "migrate" is the AppArmor proof of live migration: two aavm VMs at once
# (tests/aavm/migrate.sh), a guest migrated between them four times.
#
# The AppArmor-kernel VM suite runs once per distro in AAVM_DISTROS (default "bookworm trixie sid"),
# each its own summary line (suite aavm-<distro>): the host's own codename boots the host's root,
# the others a cached debootstrapped root with that suite's kernel (tests/lib/debroot.sh). Distros
# in AAVM_SMOKE_DISTROS (default "sid") run the smoke subset only (tests/aavm/suite.sh --smoke).
# The roots are built (or checked) in the background from the start, while cargo and e2e run:
# a cold root costs 7-9 min of mostly network time, which would otherwise add up in series.
#
# Installs what the tests need (apt), builds, runs `cargo test` (unit + integration, which compile
# every generated profile with the real apparmor_parser), then the end-to-end suites against a real
# libvirtd + QEMU and the AppArmor-kernel VM suite. Prints one line per suite and a final
# `N passed, M failed` line; exits non-zero on any failure. Leaves no guest or daemon running and
# restores the host's own libvirt hook.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export ROOT
# Tests that skip where a tool or root is missing must not skip here: this command installs
# everything and runs as root, so a skip would hide a broken set-up behind a green run.
export VIRT_AA_HOOK_TESTS_STRICT=1
# `sudo` resets PATH to its secure_path, which never holds rustup's ~/.cargo/bin: find cargo the
# way install/install.sh does (the invoking user's toolchain first, then root's).
for d in "${CARGO_HOME:-}" "${SUDO_USER:+$(getent passwd "$SUDO_USER" | cut -d: -f6)/.cargo}" "$HOME/.cargo" /root/.cargo; do
  [ -n "$d" ] && [ -x "$d/bin/cargo" ] && { command -v cargo >/dev/null 2>&1 || PATH=$d/bin:$PATH; }
done
export PATH
. tests/lib/common.sh

# libvirt >= 10 starts QEMU with an unlimited core-size limit and fails ("cannot limit core file
# size ... Operation not permitted") when the daemons our suites start inherit a lower hard limit.
# Debian 13's sudo sets it to 0 (sudoers' rlimit_core); root raises it back, unless it lacks
# CAP_SYS_RESOURCE (some container and micro-VM roots): then say so, once, with the fix.
if ! ulimit -c unlimited 2>/dev/null; then
  echo "tests/run.sh: cannot raise the core-size limit ($(ulimit -Hc)) without CAP_SYS_RESOURCE; libvirt >= 10 will fail" \
    "to start guests. Run as root without sudo, or add 'Defaults rlimit_core=default' to /etc/sudoers.d." >&2
fi

want() { [ $# -eq 0 ] && return 0; for s in "${SUITES[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
SUITES=("$@")
[ ${#SUITES[@]} -eq 0 ] && SUITES=(deps cargo e2e pkg aavm fuzz migrate)

TOTAL_PASS=0
TOTAL_FAIL=0
SUMMARY=()

# record NAME PASSED FAILED SECONDS [NOTE]
record() {
  TOTAL_PASS=$((TOTAL_PASS + $2)); TOTAL_FAIL=$((TOTAL_FAIL + $3))
  local status=ok; [ "$3" -gt 0 ] && status=FAIL
  SUMMARY+=("$(printf 'suite %-12s %-4s %4d passed, %3d failed  (%ss)%s' "$1" "$status" "$2" "$3" "$4" "${5:+  $5}")")
}

# run_suite NAME SCRIPT...: the script prints `RESULT passed=N failed=M [skipped=K]` as its last such line.
run_suite() {
  local name=$1; shift
  local log="$LOGDIR/$name.log" t0=$SECONDS
  echo "=== suite $name: $*"
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line; line=$(grep -E '^RESULT passed=' "$log" | tail -n1)
  local p f note
  p=$(sed -nE 's/^RESULT passed=([0-9]+).*/\1/p' <<<"$line"); p=${p:-0}
  f=$(sed -nE 's/.*failed=([0-9]+).*/\1/p' <<<"$line"); f=${f:-0}
  note=$(sed -nE 's/.*skipped=(.*)$/skipped: \1/p' <<<"$line")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; note="exit status $rc"; fi
  record "$name" "$p" "$f" "$((SECONDS - t0))" "$note"
}

LOGDIR=$(mktemp -d /tmp/virt-aa-hook-tests.XXXXXX)
AAVM_DISTROS=${AAVM_DISTROS:-bookworm trixie sid}
HOST_CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")

if want deps; then
  t0=$SECONDS
  if tests/lib/install-deps.sh; then record deps 1 0 $((SECONDS - t0)); else record deps 0 1 $((SECONDS - t0)); fi
fi

# Preflight: host quirks that make libvirt misbehave, checked after the packages are in.
# - /dev/kvm: udev gives it group kvm, mode 0660 (Debian's 50-udev-default.rules) on a normal
#   host. Some machines of this kind boot it owned by another group (or root:root 0600) with no
#   udev to fix it. libvirt probed QEMU's capabilities with KVM (QEMU itself, as root, can open
#   it), then finds KVM "not available now" for the QEMU user and re-probes QEMU at every lookup
#   (virQEMUCapsIsValid): each `virsh define` takes ~30 s and fixed waits give up. Do what udev
#   would do, and say so.
# - the core-size limit: see above.
preflight() {
  if [ -c /dev/kvm ]; then
    getent group kvm >/dev/null || { groupadd --system kvm && echo "preflight: created group kvm (udev's group for /dev/kvm)"; }
    # This machine kind sets /dev/kvm back to the group it boots with (a gid with no name) at
    # times, also in the middle of a run (2026-12-04: mid-e2e; every `virsh define` then waited
    # minutes on a capability re-probe). With libvirt-qemu in that group as well, KVM stays
    # usable to the qemu user whichever of the two groups /dev/kvm has, and libvirt's view of
    # it does not change under the suites. Only a gid with no name is such a group: a named one
    # (root on machines that boot it root:root 0600) is never handed to the QEMU user.
    local boot_gid; boot_gid=$(stat -c %g /dev/kvm)
    if [ "$boot_gid" != "$(getent group kvm | cut -d: -f3)" ] && id libvirt-qemu >/dev/null 2>&1; then
      getent group "$boot_gid" >/dev/null || groupadd -g "$boot_gid" kvm-boot
      if [ "$(getent group "$boot_gid" | cut -d: -f1)" = kvm-boot ] && ! id -nG libvirt-qemu | grep -qw kvm-boot; then
        usermod -aG kvm-boot libvirt-qemu &&
          echo "preflight: libvirt-qemu also in /dev/kvm's boot-time group (gid $boot_gid, named kvm-boot here), which this machine puts back"
      fi
    fi
    if [ "$(stat -c %G:%a /dev/kvm)" != kvm:660 ]; then
      echo "preflight: /dev/kvm was $(stat -c %U:%G:%a /dev/kvm); set to root:kvm 0660 as udev does on Debian" \
        "(else libvirt re-probes QEMU at every lookup)"
      chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
    fi
    if id libvirt-qemu >/dev/null 2>&1 && ! id -nG libvirt-qemu | grep -qw kvm; then
      usermod -aG kvm libvirt-qemu && echo "preflight: added libvirt-qemu to group kvm (as libvirt-daemon-system's postinst does)"
    fi
  fi
  if [ "$(ulimit -c)" != unlimited ]; then
    echo "preflight: core-size limit is $(ulimit -c), not unlimited: libvirt >= 10 will not start guests (see above)" >&2
    return 1
  fi
  return 0
}
# The /dev/kvm guard, for the whole run: this machine kind changes /dev/kvm's ownership after
# boot, not only before the run (2026-12-05, a fresh machine: root:root 0600 at boot, root:kvm
# 0660 once libvirt's packages were in, then gid 990 (no name) 0660 four minutes later, in the
# middle of e2e, and libvirt re-probed QEMU at every lookup again). udev puts it back on a normal
# host; here this does, at each attribute change (inotify; a 2 s poll without inotifywait), and
# the summary says how often.
kvm_fix() {
  local now; now=$(stat -c %U:%G:%a /dev/kvm)
  [ "${now#*:}" = kvm:660 ] && return 0
  echo "$(date -u +%T) /dev/kvm changed to $now; set back to root:kvm 0660"
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
}
kvm_guard() {
  exec >>"$LOGDIR/kvm-guard.log" 2>&1
  if command -v inotifywait >/dev/null; then
    kvm_fix
    inotifywait -q -m -e attrib /dev/kvm | while read -r _; do kvm_fix; done
  else
    while kvm_fix; sleep 2; do :; done
  fi
}
KVM_GUARD=
stop_kvm_guard() { [ -n "$KVM_GUARD" ] && { pkill -P "$KVM_GUARD"; kill "$KVM_GUARD"; } 2>/dev/null; KVM_GUARD=; }
trap stop_kvm_guard EXIT
if [ "$(id -u)" -eq 0 ]; then
  t0=$SECONDS
  if preflight; then record preflight 1 0 $((SECONDS - t0)); else record preflight 0 1 $((SECONDS - t0)); fi
  if [ -c /dev/kvm ] && getent group kvm >/dev/null; then kvm_guard & KVM_GUARD=$!; fi
fi

# Prefetch the distro roots of the VM suites (debroot.sh serialises builders of one suite on a
# lock, so suite.sh later waits for a build still running, or finds the root ready).
if want aavm && command -v debootstrap >/dev/null 2>&1; then
  for d in $AAVM_DISTROS; do
    [ "$d" = "$HOST_CODENAME" ] || [ "$d" = host ] && continue
    tests/lib/debroot.sh "$d" >"$LOGDIR/debroot-$d.log" 2>&1 &
  done
fi

if want cargo; then
  t0=$SECONDS
  echo "=== suite cargo: cargo test"
  cargo test --release --all-targets --no-fail-fast 2>&1 | tee "$LOGDIR/cargo.log"
  rc=${PIPESTATUS[0]}
  p=$(awk '/^test result:/ {for (i=1;i<=NF;i++) if ($(i)=="passed;") s+=$(i-1)} END {print s+0}' "$LOGDIR/cargo.log")
  f=$(awk '/^test result:/ {for (i=1;i<=NF;i++) if ($(i)=="failed;") s+=$(i-1)} END {print s+0}' "$LOGDIR/cargo.log")
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  record cargo "$p" "$f" $((SECONDS - t0))
fi

if want e2e && [ -x tests/e2e/run.sh ]; then run_suite e2e tests/e2e/run.sh; fi
# The Debian package in clean debootstrapped Debian 12 and 13 roots (install orders, upgrade,
# remove, purge, README table, lintian).
if want pkg && [ -x tests/pkg/run.sh ]; then run_suite pkg tests/pkg/run.sh; fi
if want aavm && [ -x tests/aavm/suite.sh ]; then
  for d in $AAVM_DISTROS; do
    smoke=(); [[ " ${AAVM_SMOKE_DISTROS-sid} " == *" $d "* ]] && smoke=(--smoke)
    run_suite "aavm-$d" tests/aavm/suite.sh --distro "$d" "${smoke[@]}"
  done
fi
if want fuzz && [ -x tests/fuzz/short.sh ]; then run_suite fuzz tests/fuzz/short.sh; fi
if want migrate && [ -x tests/aavm/migrate.sh ]; then run_suite migrate tests/aavm/migrate.sh; fi

stop_kvm_guard
echo
echo "=== summary (logs in $LOGDIR)"
for l in "${SUMMARY[@]}"; do echo "$l"; done
if [ -s "$LOGDIR/kvm-guard.log" ]; then
  echo "/dev/kvm guard: set back $(grep -c 'set back' "$LOGDIR/kvm-guard.log") time(s) ($LOGDIR/kvm-guard.log)"
fi
echo "$TOTAL_PASS passed, $TOTAL_FAIL failed"
[ "$TOTAL_FAIL" -eq 0 ]
