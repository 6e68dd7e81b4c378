#!/usr/bin/env bash
# Benchmarks, printed side by side in one run (as root, after `cargo build --release`):
#   - whole-process `virt-aa-hook generate` vs libvirt's `virt-aa-helper -d -c` for guests with
#     1, 100 and 1000 qcow2 disks over one backing file (both read the image headers);
#   - the hook's whole-process time per event: parser excluded (a no-op parser), included (the
#     real apparmor_parser compile check), and an unchanged restart (no compile at all);
#   - how time and peak memory grow with the number of devices;
#   - in-process generation time (cargo bench).
# Usage: tests/bench/run.sh [RUNS]      (default 30 runs per measurement; median reported)
set -eu
cd "$(dirname "$0")/../.."
RUNS=${1:-30}
BIN=${VAH_BIN:-target/release/virt-aa-hook}
HELPER=/usr/lib/libvirt/virt-aa-helper
[ -x "$BIN" ] || cargo build --release --bin virt-aa-hook >/dev/null
W=$(mktemp -d /var/tmp/vah-bench.XXXXXX)
trap 'rm -rf "$W"' EXIT
qemu-img create -q -f qcow2 "$W/base.qcow2" 16M
qemu-img create -q -f qcow2 -F qcow2 -b "$W/base.qcow2" "$W/top.qcow2"

mkxml() { # N -> file
  local n=$1 f="$W/guest-$1.xml" i
  # libvirt wants real target names: vda … vdz, vdaa …
  mapfile -t names < <(python3 -c "
import sys
def name(i):
    s = ''
    i += 1
    while i:
        i, r = divmod(i - 1, 26); s = chr(97 + r) + s
    return 'vd' + s
print('\n'.join(name(i) for i in range($n)))")
  {
    echo "<domain type='kvm' id='5'><name>bench$n</name><uuid>12345678-1234-4234-8234-$(printf %012d "$n")</uuid>"
    echo "<memory unit='MiB'>64</memory><os><type arch='x86_64' machine='pc'>hvm</type></os><devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
    for ((i = 0; i < n; i++)); do
      [ -e "$W/top$i.qcow2" ] || cp "$W/top.qcow2" "$W/top$i.qcow2"
      echo "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='$W/top$i.qcow2'/><target dev='${names[$i]}' bus='virtio'/></disk>"
    done
    echo "</devices></domain>"
  } >"$f"
  echo "$f"
}

command -v hyperfine >/dev/null || apt-get install -y -qq hyperfine >/dev/null 2>&1 || true
# median_ms RUNS CMD... (stdin from $IN): median wall time in ms. hyperfine subtracts its shell's
# own start-up; without hyperfine, a python loop (which includes fork/exec costs) is used.
median_ms() {
  local runs=$1; shift
  if command -v hyperfine >/dev/null; then
    local cmd; cmd=$(printf '%q ' "$@")
    [ -n "${IN:-}" ] && cmd="$cmd < $(printf %q "$IN")"
    hyperfine -w 2 -r "$runs" --export-json "$W/h.json" "$cmd" >/dev/null 2>&1 || { echo NaN; return; }
    python3 -c "import json;print('%.2f'%(json.load(open('$W/h.json'))['results'][0]['median']*1000))"
    return
  fi
  python3 - "$runs" "$@" <<'PY'
import subprocess, sys, time, os
runs = int(sys.argv[1]); cmd = sys.argv[2:]
inp = os.environ.get("IN")
ts = []
for _ in range(runs):
    f = open(inp, "rb") if inp else subprocess.DEVNULL
    t = time.perf_counter()
    subprocess.run(cmd, stdin=f, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ts.append(time.perf_counter() - t)
ts.sort()
print(f"{ts[len(ts)//2]*1000:.2f}")
PY
}
# maxrss_kb "CMD ARGS" FILE: peak RSS of the command itself. GNU time when installed: python's
# RUSAGE_CHILDREN also counts the forked interpreter's own RSS (~14 MB) before the exec, which
# hid both programs' real figures.
maxrss_kb() {
  if [ -x /usr/bin/time ]; then
    # shellcheck disable=SC2086 # the command line is split on purpose
    /usr/bin/time -f %M $1 <"$2" 2>&1 >/dev/null | tail -1
    return
  fi
  IN=$2 python3 - "$1" <<'PY'
import resource, subprocess, sys, os
subprocess.run(sys.argv[1:] if len(sys.argv) > 2 else sys.argv[1].split(), stdin=open(os.environ["IN"], "rb"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
}

echo "virt-aa-hook benchmarks — $(date -u +%Y-%m-%d), $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
echo "== generate (whole process, median of $RUNS runs) vs virt-aa-helper -d -c"
printf '%8s %14s %16s %8s %12s %12s\n' disks virt-aa-hook virt-aa-helper ratio hook-maxRSS helper-maxRSS
for n in 1 100 1000; do
  f=$(mkxml $n)
  ours=$(IN=$f median_ms "$RUNS" "$BIN" generate --profile)
  theirs=$(IN=$f median_ms "$RUNS" "$HELPER" -d -c -u "libvirt-12345678-1234-4234-8234-$(printf %012d $n)")
  rss1=$(maxrss_kb "$BIN generate --profile" "$f")
  rss2=$(maxrss_kb "$HELPER -d -c -u libvirt-12345678-1234-4234-8234-$(printf %012d $n)" "$f")
  printf '%8s %12sms %14sms %7.1fx %10sKB %10sKB\n' "$n" "$ours" "$theirs" "$(python3 -c "print($theirs/$ours)")" "$rss1" "$rss2"
done
echo
echo "== growth with the number of devices (virt-aa-hook generate, whole process)"
printf '%8s %12s %12s\n' disks median maxRSS
for n in 1 10 100 1000 5000; do
  f=$(mkxml $n)
  printf '%8s %10sms %10sKB\n' "$n" "$(IN=$f median_ms 10 "$BIN" generate --profile)" "$(maxrss_kb "$BIN generate --profile" "$f")"
done

echo
echo "== hook, whole process per event (typical guest: 1 qcow2 disk over a backing file)"
R=$W/root; mkdir -p "$R/etc/libvirt" "$R/var/lib/virt-aa-hook"; cp hooks/template.qemu "$R/etc/libvirt/virt-aa-hook.template"
# a fresh capability cache, so the hook does not start a background refresh on every event: its
# host key is what the hook reads under this root (no boot id, AppArmor, qemu.conf or daemon
# there); without one the cache "predates host keys" and every event forks the admin binary
printf '{"version":1,"generated_at":%s,"uri":"","libvirt_version":"","daemon_version":"","secmodels":["dac"],"emulators":[],"firmware":[],"nvram_templates":[],"host_key":{"boot_id":"","apparmor":false,"qemu_conf":"","daemons":[]}}' "$(date +%s)" >"$R/var/lib/virt-aa-hook/caps.json"
f=$(mkxml 1)
printf '%s\n' "apparmor_parser = \"/bin/true\"" >"$W/noparser.conf"
: >"$W/real.conf"
export VIRT_AA_HOOK_ROOT=$R
run_ev() { # conf op sub
  VIRT_AA_HOOK_CONFIG=$1 IN=$f median_ms "$RUNS" "$BIN" hook bench1 "$2" "$3" -
}
fresh() { rm -f "$R"/etc/apparmor.d/libvirt/libvirt-*; }
# prepare on a fresh root each run: remove the profile between runs via a wrapper
cat >"$W/prep.sh" <<SH
#!/bin/sh
rm -f $R/etc/apparmor.d/libvirt/libvirt-*
exec "$(realpath "$BIN")" hook bench1 prepare begin - 
SH
chmod +x "$W/prep.sh"
pe=$(VIRT_AA_HOOK_CONFIG=$W/noparser.conf IN=$f median_ms "$RUNS" "$W/prep.sh")
pi=$(VIRT_AA_HOOK_CONFIG=$W/real.conf IN=$f median_ms 10 "$W/prep.sh")
fresh; VIRT_AA_HOOK_CONFIG=$W/real.conf "$BIN" hook bench1 prepare begin - <"$f"
su=$(run_ev "$W/real.conf" start begin)
st=$(run_ev "$W/real.conf" started begin)
printf '  %-52s %8sms\n' "prepare, apparmor_parser excluded (no-op parser)" "$pe" \
  "prepare, apparmor_parser -Q included" "$pi" \
  "start, unchanged profile (no compile, no rewrite)" "$su" \
  "started (check only)" "$st"
unset VIRT_AA_HOOK_ROOT

echo
echo "== process start-up: hook binary vs libvirt-linked admin binary"
if [ -x target/release/virt-aa-hook-libvirt ]; then
  printf '  %-30s %8sms (%s shared libraries)\n' "virt-aa-hook --version" "$(median_ms "$RUNS" "$BIN" --version)" "$(ldd "$BIN" | wc -l)" \
    "virt-aa-hook-libvirt --version" "$(median_ms "$RUNS" target/release/virt-aa-hook-libvirt --version)" "$(ldd target/release/virt-aa-hook-libvirt | wc -l)"
fi

echo
echo "== in-process generation (cargo bench --bench inprocess)"
cargo bench -q --bench inprocess 2>/dev/null | grep -vE '^(running|test result|$)'
