#!/usr/bin/env bash
# The AppArmor-kernel VM suite; tests/run.sh runs it as suite "aavm". As root:
#
#     tests/aavm/suite.sh              # everything, over the host's root
#     tests/aavm/suite.sh 00 libvirt   # only the suites whose file name contains one of these
#                                      # (the runner selftest runs only with no argument or "selftest")
#     tests/aavm/suite.sh --distro trixie        # everything, in a Debian 13 root with its kernel
#     tests/aavm/suite.sh --distro sid --smoke   # the smoke subset ($AAVM_SMOKE_SUITES)
#     AAVM_DAY2_MODE=libvirt tests/aavm/suite.sh 06   # one half of 06-day2 (default: both; the smoke: libvirt)
#
# --distro NAME: the host's own codename (or "host") boots the host's root; any other Debian
#    suite boots a root built (once, cached) by tests/lib/debroot.sh NAME, with that suite's
#    kernel, libvirt, QEMU and AppArmor, and the repo mounted read-only at its own path.
# --smoke: only the suites named in AAVM_SMOKE_SUITES (default: "$DEFAULT_SMOKE" below:
#    every corpus profile loaded and its literal rules checked (05), a rich guest's whole
#    lifecycle in libvirt mode and in standalone mode (through the wrapper) with its complain-mode
#    ground truth (07), parser warnings (08), explain (09), the adversarial suite (10), day-2
#    operations in helper mode (06)). 02 and 03 prove the lifecycle in more detail; they
#    are left out of the smoke to keep the test command within CI's 90 minutes (~7 min).
#
# 1. Builds the VM on first use (`aavm --build`; for a distro root, debroot.sh first). If it
#    cannot run at all (no QEMU, no Debian mirror for the kernel), prints
#    `RESULT passed=0 failed=0 skipped=<reason>` and exits 0.
# 2. The runner's own checks: selftest-host.sh --no-guest-selftest.
# 3. Every tests/aavm/suites/NN-name.sh, in order, each in its own fresh VM:
#        tests/aavm/aavm --timeout $AAVM_SUITE_TIMEOUT (900) suites/NN-name.sh REPO
#    It runs as root inside, with cwd = REPO, and prints `  ok   ...` / `  FAIL ...` lines
#    (tests/lib/common.sh); those are counted here. A non-zero exit status with no FAIL line
#    (crash, timeout = 137, VM failure = 125) counts as one failure.
# Ends with one `RESULT passed=N failed=M` line over all of it; exits non-zero on any failure.
# Other aavm knobs (AAVM_MEM, AAVM_ACCEL, ...) pass through the environment.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$ROOT/tests/lib/common.sh"
AAVM=$HERE/aavm
SUITE_TIMEOUT=${AAVM_SUITE_TIMEOUT:-900}
cd "$ROOT" || exit 1
DEFAULT_SMOKE="05- 06- 07- 08- 09- 10-"
DISTRO=host SMOKE=0
while [ $# -gt 0 ]; do
  case $1 in
    --distro) DISTRO=${2:?--distro needs a name}; shift 2 ;;
    --smoke)  SMOKE=1; shift ;;
    *) break ;;
  esac
done
HOST_CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ "$DISTRO" = "$HOST_CODENAME" ] && DISTRO=host
LOGS=$(mktemp -d /tmp/aavm-suite.XXXXXX)
trap 'rm -rf "$LOGS"' EXIT
T_ALL=$SECONDS
VM_RETRIES=0

wanted() {   # wanted NAME: selected by the command-line patterns (all when there are none)
  [ ${#PATTERNS[@]} -eq 0 ] && return 0
  local p; for p in "${PATTERNS[@]}"; do [[ $1 == *"$p"* ]] && return 0; done
  return 1
}
PATTERNS=("$@")
if [ "$SMOKE" = 1 ] && [ $# -eq 0 ]; then read -ra PATTERNS <<<"${AAVM_SMOKE_SUITES:-$DEFAULT_SMOKE}"; fi

# tally LOG: add LOG's ok/FAIL lines to the totals; sets NOK and NFAIL.
tally() {
  NOK=$(grep -cE '^[[:space:]]*ok[[:space:]]' "$1")
  NFAIL=$(grep -cE '^[[:space:]]*FAIL[[:space:]]' "$1")
  PASSED=$((PASSED + NOK)); FAILED=$((FAILED + NFAIL))
}
# The parts' own RESULT lines are indented, so that ours is the only one tests/run.sh sees.
INNER='s/^RESULT /  -- part RESULT /'
ms_since() { local ms=$(( ($(date +%s%N) - $1) / 1000000 )); echo "$((ms / 1000)).$((ms % 1000 / 100))"; }

# --- 1. the VM itself (and for a distro: its root)
ROOTARGS=()
if [ "$DISTRO" != host ]; then
  echo "=== aavm: the $DISTRO root (tests/lib/debroot.sh $DISTRO)"
  t0=$(date +%s%N)
  if groot=$("$ROOT/tests/lib/debroot.sh" --versions "$DISTRO" 2>"$LOGS/debroot.log"); then
    sed 's/^/  /' "$LOGS/debroot.log"
    echo "  --   root $DISTRO: $(ms_since "$t0")s wall"
    ROOTARGS=(--root "$groot" --ro-share "$ROOT")
  else
    sed 's/^/  /' "$LOGS/debroot.log"
    fail "tests/lib/debroot.sh $DISTRO"
    finish ""; exit 1
  fi
else
  echo "  --   root: the host's own / ($(. /etc/os-release && echo "$PRETTY_NAME")); $(dpkg-query -W -f '${Package}=${Version} ' libvirt-daemon-system qemu-system-x86 apparmor swtpm ovmf 2>/dev/null)"
fi
echo "=== aavm: build / check the VM"
t0=$(date +%s%N)
"$AAVM" "${ROOTARGS[@]}" --build >"$LOGS/build.log" 2>&1
rc=$?
sed 's/^/  /' "$LOGS/build.log"
echo "  --   build/check: exit status $rc, $(ms_since "$t0")s wall"
if [ "$rc" -ne 0 ]; then
  reason=$(sed -n 's/^aavm: cannot run: //p' "$LOGS/build.log" | head -n1)
  if [ -n "$reason" ]; then finish "$reason"; exit 0; fi
  fail "the VM kernel + initramfs build (aavm --build exit status $rc)"
  finish ""; exit 1
fi

# --- 2. the runner's own mechanics
if wanted selftest && [ "$DISTRO" = host ]; then   # (the runner's mechanics: once, on the host root)
  echo "=== aavm: runner selftest (selftest-host.sh)"
  "$HERE/selftest-host.sh" --no-guest-selftest 2>&1 | sed -u "$INNER" | tee "$LOGS/selftest-host.log"
  rc=${PIPESTATUS[0]}
  tally "$LOGS/selftest-host.log"
  [ "$rc" -ne 0 ] && [ "$NFAIL" -eq 0 ] && fail "selftest-host.sh: exit status $rc"
fi

# --- 3. the suites, one fresh VM each; they install the Debian package built here (vah_install)
if [ -x target/release/virt-aa-hook ]; then
  # Its own directory: install.sh (e2e suites) rebuilds target/debian/*.deb at any time.
  rm -rf target/debian/aavm
  PATH=$PATH:/root/.cargo/bin cargo deb --no-build --fast --locked -o target/debian/aavm/ >"$LOGS/deb.log" 2>&1 ||
    { sed 's/^/  /' "$LOGS/deb.log"; fail "cargo deb --no-build (tests/lib/install-deps.sh installs cargo-deb)"; }
fi
for f in "$HERE"/suites/[0-9][0-9]-*.sh; do
  [ -e "$f" ] || continue
  name=$(basename "$f" .sh)
  wanted "$name" || continue
  # 06-day2 (every day-2 operation, in libvirt/helper mode and in standalone mode; ~3 min per
  # mode under TCG here): both modes in a full run, the helper-mode half in the smoke (where the
  # product answers libvirt's relabels: every operation must pass with 0 DENIED).
  # AAVM_DAY2_MODE=libvirt|standalone|all overrides.
  extra=()
  if [ "$name" = 06-day2 ]; then
    if [ -n "${AAVM_DAY2_MODE:-}" ]; then extra=("$AAVM_DAY2_MODE")
    elif [ "$SMOKE" = 1 ]; then extra=(libvirt); fi
  fi
  timeout=$SUITE_TIMEOUT
  [ "$name" = 06-day2 ] && timeout=${AAVM_DAY2_TIMEOUT:-3600}   # generous: ~20 min per mode on a loaded host
  echo "=== aavm suite $name ${extra[*]}"
  cmd=("$f"); [ -x "$f" ] || cmd=(/bin/bash "$f")
  t0=$(date +%s%N)
  # A VM that dies under the suite (exit status 125: a guest-kernel panic under TCG, QEMU gone,
  # no exit status from the script) is the machinery's death, not a test result: its partial
  # output is set aside and the suite runs once more in a fresh VM. A second death counts as a
  # failure (aavm printed the console tail).
  for attempt in 1 2; do
    "$AAVM" "${ROOTARGS[@]}" --timeout "$timeout" "${cmd[@]}" "$ROOT" "${extra[@]}" </dev/null 2>&1 | sed -u "$INNER" | tee "$LOGS/$name.log"
    rc=${PIPESTATUS[0]}
    [ "$rc" = 125 ] && [ "$attempt" = 1 ] || break
    echo "  --   VM $name died (exit status 125, $(ms_since "$t0")s): infrastructure, not a result; retrying once in a fresh VM"
    VM_RETRIES=$((VM_RETRIES + 1))
  done
  tally "$LOGS/$name.log"
  echo "  --   VM $name: exit status $rc, $(ms_since "$t0")s wall, $NOK ok, $NFAIL FAIL"
  if [ "$rc" -ne 0 ] && [ "$NFAIL" -eq 0 ]; then
    case $rc in
      137) fail "$name: timed out (--timeout $timeout)" ;;
      125) fail "$name: the VM died twice (exit status 125; console tail above)" ;;
      *)   fail "$name: exit status $rc" ;;
    esac
  fi
done

echo "  --   aavm total ($DISTRO): $((SECONDS - T_ALL))s wall, $VM_RETRIES VM death(s) retried"
finish ""
