#!/usr/bin/env bash
# The hook never waits on libvirt: with libvirtd stopped (SIGSTOP: it accepts no call) and a
# stale capability cache, a hook event finishes promptly with the cached data, starts its
# refresh detached, and closes the pipes libvirt reads (a child holding them would hang libvirt).
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd); export ROOT
. tests/lib/common.sh
. tests/e2e/lib.sh

BIN=${VAH_BIN_DIR:-$ROOT/target/release}/virt-aa-hook
R=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null; rm -rf "$R"; stop_daemons; }
trap cleanup EXIT

start_daemons
mkdir -p "$R/etc/libvirt" "$R/var/lib/virt-aa-hook"
cp hooks/template.qemu "$R/etc/libvirt/virt-aa-hook.template"
# a cache from long ago: the hook must use it and ask for a refresh in the background
cat >"$R/var/lib/virt-aa-hook/caps.json" <<JSON
{"version":1,"generated_at":1000,"uri":"qemu:///system","libvirt_version":"9.0.0","daemon_version":"9.0.0","secmodels":["dac"],"emulators":["/usr/bin/qemu-system-x86_64"],"firmware":[],"nvram_templates":[]}
JSON
printf 'caps_max_age = 60\n' >"$R/conf"
XML="<domain type='qemu' id='9'><name>vah-hung</name><uuid>cccccccc-0000-4000-8000-000000000001</uuid><devices><disk type='file' device='disk'><source file='/var/lib/libvirt/images/vah-hung.img'/><target dev='vda'/></disk></devices></domain>"

pid=$(pgrep -x libvirtd | head -n1)
kill -STOP "$pid"
check "libvirtd is stopped (does not answer)" bash -c "! timeout 3 virsh -c qemu:///system version"
t0=$(date +%s%N)
# `| cat` waits until every holder of the hook's stdout has closed it, as libvirt does
echo "$XML" | VIRT_AA_HOOK_ROOT=$R VIRT_AA_HOOK_CONFIG=$R/conf timeout 20 "$BIN" hook vah-hung prepare begin - 2>&1 | cat >"$R/out"
rc=${PIPESTATUS[1]}
out=$(cat "$R/out")
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "  hook event with libvirtd stopped took ${ms} ms (output: ${out:-none})"
[ "$rc" = 0 ] && ok "hook succeeds with libvirtd stopped" || fail "hook exit status $rc: $out"
[ "$ms" -lt 5000 ] && ok "hook and everything holding its pipes finished promptly" || fail "took ${ms} ms"
check "profile written from the cached data" test -f "$R/etc/apparmor.d/libvirt/libvirt-cccccccc-0000-4000-8000-000000000001"
check "a detached capability refresh is running, in its own session" wait_for 60 "a detached 'caps --background'" bash -c \
  "ps -eo sid,pid,args | awk '/virt-aa-hook-libvirt caps --background/ && !/awk/ {print}' | grep -q ."
kill -CONT "$pid"; pid=""
wait_libvirt
# the background refresh finishes once the daemon answers again
wait_for 300 "the background refresh to rewrite caps.json" python3 -c \
  "import json,sys; c=json.load(open('$R/var/lib/virt-aa-hook/caps.json')); sys.exit(0 if c['generated_at']>1000 else 1)"
check "the refresh rewrote the cache after libvirtd came back" python3 -c \
  "import json,sys; c=json.load(open('$R/var/lib/virt-aa-hook/caps.json')); sys.exit(0 if c['generated_at']>1000 else 1)"
finish
