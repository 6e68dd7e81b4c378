#!/usr/bin/env bash
# The aavm runner's own test, run on the host:
#
#     tests/aavm/selftest-host.sh [--no-guest-selftest]
#
# Boots a few VMs and checks the runner's promises: the AppArmor selftest passes inside
# (selftest.sh; skipped with --no-guest-selftest, which suite.sh uses because its suite
# 00-apparmor-works runs the same assertions), the exit status, arguments, cwd and output come
# through intact, --share writes reach the host while other writes do not, a script without the
# exec bit runs under /bin/sh, --timeout gives 137, a missing script gives 125, and no qemu or
# helper process is left behind. Prints `  ok   ...` / `  FAIL ...` lines and a RESULT line.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=SCRIPTDIR/../lib/common.sh
. "$ROOT/tests/lib/common.sh"
AAVM=$HERE/aavm

GUEST_SELFTEST=1
[ "${1:-}" = --no-guest-selftest ] && GUEST_SELFTEST=0

TMP=$(mktemp -d /tmp/aavm-selftest.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
# A marker on every VM's kernel command line, hence in its qemu command line: lets us look for
# leftovers of exactly our VMs (other people's VMs may legitimately be running).
TAG="aavm.selftest=$$"
export AAVM_APPEND="${AAVM_APPEND:+$AAVM_APPEND }$TAG"

# vm NAME AAVM-ARGS...: run the runner with stdout+stderr in $TMP/NAME.out (through a pipe, so a
# leftover holding it open would show up as a hang); sets RC and SECS.
vm() {
  local name=$1 t0; shift
  t0=$(date +%s%N)
  "$AAVM" "$@" >"$TMP/$name.out" 2>&1 </dev/null
  RC=$?
  SECS=$(( ($(date +%s%N) - t0) / 1000000 ))
  SECS="$((SECS / 1000)).$((SECS % 1000 / 100))"
  echo "  --   VM $name: exit status $RC, ${SECS}s wall"
}
show() { sed 's/^/    | /' "$TMP/$1.out"; }

# --- 1. the AppArmor selftest inside the VM
if [ "$GUEST_SELFTEST" = 1 ]; then
  vm selftest "$HERE/selftest.sh"
  n=$(grep -c '^  ok ' "$TMP/selftest.out")
  if [ "$RC" -eq 0 ] && grep -q '^RESULT passed=[1-9][0-9]* failed=0' "$TMP/selftest.out"; then
    ok "AppArmor selftest inside the VM ($n checks)"
  else
    fail "AppArmor selftest inside the VM (exit status $RC)"; show selftest
  fi
fi

# --- 2. mechanics: exit status, arguments, cwd, output, --share
mkdir -p "$TMP/share" "$TMP/cwd"
cat >"$TMP/mech.sh" <<'EOF'
#!/bin/bash
printf '%s\0' "$@" >"$AAVM_SHARE/args"
pwd >"$AAVM_SHARE/pwd"
echo "from the guest" >"$AAVM_SHARE/written-inside"
echo "must stay inside" >./not-shared           # cwd is not the share: must not reach the host
printf 'line1\nline2\ttab\n'
echo to-stderr >&2
exit 7
EOF
chmod +x "$TMP/mech.sh"
# shellcheck disable=SC2016  # the \$ and backquotes must arrive unexpanded
ARGS=('two words' "it's" 'say "hi"' '$HOME and `id` and $(id)' '' 'back\slash' $'new\nline' '*' '-x')
( cd "$TMP/cwd" && vm mech --share "$TMP/share" "$TMP/mech.sh" "${ARGS[@]}"; exit "$RC" ); RC=$?
if [ "$RC" -eq 7 ]; then ok "exit status passes through (script exits 7 -> 7)"
else fail "exit status passes through (script exits 7 -> got $RC)"; show mech; fi
printf '%s\0' "${ARGS[@]}" >"$TMP/args.expected"
check "arguments arrive intact (spaces, quotes, \$, \`\`, empty, backslash, newline, glob, -x)" \
  cmp -s "$TMP/args.expected" "$TMP/share/args"
check "cwd inside is the caller's cwd" test "$(cat "$TMP/share/pwd" 2>/dev/null)" = "$TMP/cwd"
check "stdout+stderr pass through byte for byte (no \\r)" \
  cmp -s <(printf 'line1\nline2\ttab\nto-stderr\n') "$TMP/mech.out"
check "--share writes reach the host" test "$(cat "$TMP/share/written-inside" 2>/dev/null)" = "from the guest"
check_not "writes outside --share stay in the VM" test -e "$TMP/cwd/not-shared"

# --- 3. --timeout: the script is killed, 137, long before the qemu deadline (timeout + 120 s).
# The script has no exec bit: it must run under /bin/sh.
printf 'echo started\nsleep 100\necho not-reached\n' >"$TMP/sleep.sh"
chmod 644 "$TMP/sleep.sh"
vm timeout --timeout 5 "$TMP/sleep.sh"
if [ "$RC" -eq 137 ]; then ok "--timeout 5 with sleep 100 gives 137"; else fail "--timeout 5 with sleep 100 gives 137 (got $RC)"; show timeout; fi
check "... within 2 minutes, output pipe closed (${SECS}s)" test "${SECS%.*}" -lt 120
check "a script without the exec bit runs under /bin/sh" grep -qx started "$TMP/timeout.out"

# --- 4. a missing script is the runner's error (125), without booting anything
vm missing "$TMP/does-not-exist.sh"
check "a missing script gives 125" test "$RC" -eq 125

# --- 5. nothing left behind
check_not "no qemu (or timeout) process of these VMs remains" pgrep -f -- "$TAG"

finish ""   # no skip reason
