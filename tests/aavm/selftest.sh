#!/usr/bin/env bash
# Runs INSIDE an aavm VM (tests/aavm/aavm tests/aavm/selftest.sh): proves that AppArmor is enabled
# in the guest kernel and actually confines a process, and that the guest is set up the way the
# runner promises. Prints `  ok   ...` / `  FAIL ...` lines and a final RESULT line; exits 1 on
# any failure.
set -u
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$(cd "$(dirname "$0")/../lib" && pwd)/common.sh"

[ "${AAVM:-}" = 1 ] || { echo "run me inside the VM: tests/aavm/aavm $0"; exit 2; }

# --- the guest environment
check "AppArmor is enabled (/sys/kernel/security/apparmor/profiles exists)" \
  test -e /sys/kernel/security/apparmor/profiles
check "apparmor is an active LSM" grep -qw apparmor /sys/kernel/security/lsm
check "/run is a fresh tmpfs" test "$(stat -f -c %T /run)" = tmpfs
check "the hostname resolves via /etc/hosts" getent hosts "$(hostname)"
check "lo is up" test $(( $(cat /sys/class/net/lo/flags) & 1 )) = 1
check "/ is writable (RAM overlay)" touch /aavm-selftest-overlay

# --- a tiny profile: may read /tmp/allowed, nothing else of interest
echo allowed-content >/tmp/allowed
echo denied-content >/tmp/denied
cat >/tmp/aavm-selftest.profile <<'EOF'
#include <tunables/global>
profile aavm-selftest {
  #include <abstractions/base>
  /tmp/allowed r,
  owner @{PROC}/@{pid}/attr/{,apparmor/}current r,
}
EOF
check "apparmor_parser -r loads a tiny profile" apparmor_parser -r /tmp/aavm-selftest.profile
check "the profile is listed as enforcing" grep -qx 'aavm-selftest (enforce)' /sys/kernel/security/apparmor/profiles

out=$(aa-exec -p aavm-selftest -- cat /tmp/allowed 2>&1)
if [ "$out" = allowed-content ]; then ok "confined: cat /tmp/allowed works"; else fail "confined: cat /tmp/allowed works (got: $out)"; fi

out=$(aa-exec -p aavm-selftest -- cat /proc/self/attr/current 2>&1)
if [ "$out" = "aavm-selftest (enforce)" ]; then ok "confined process runs in aavm-selftest (enforce)"
else fail "confined process runs in aavm-selftest (enforce) (got: $out)"; fi

out=$(aa-exec -p aavm-selftest -- cat /tmp/denied 2>&1); rc=$?
if [ "$rc" -ne 0 ] && [[ $out == *"Permission denied"* ]]; then ok "confined: cat /tmp/denied fails with EACCES"
else fail "confined: cat /tmp/denied fails with EACCES (rc=$rc, got: $out)"; fi

out=$(aa-exec -p aavm-selftest -- cat /etc/shadow 2>&1); rc=$?
if [ "$rc" -ne 0 ] && [[ $out == *"Permission denied"* ]]; then ok "confined: root cannot read /etc/shadow"
else fail "confined: root cannot read /etc/shadow (rc=$rc)"; fi

check "unconfined: cat /tmp/denied works" test "$(cat /tmp/denied)" = denied-content

if dmesg | grep 'apparmor="DENIED"' | grep 'profile="aavm-selftest"' | grep -q 'name="/tmp/denied"'; then
  ok "dmesg shows apparmor=\"DENIED\" for /tmp/denied"
else
  fail "dmesg shows apparmor=\"DENIED\" for /tmp/denied"; dmesg | grep -i apparmor | tail -n 5
fi

check "apparmor_parser -R unloads it again" apparmor_parser -R /tmp/aavm-selftest.profile
check_not "the profile is gone" grep -q '^aavm-selftest ' /sys/kernel/security/apparmor/profiles

finish ""   # no skip reason
