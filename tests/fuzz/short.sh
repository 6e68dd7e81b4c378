#!/usr/bin/env bash
# The `fuzz` suite of tests/run.sh. Every surface that reads input from outside has a target
# (see src/lib.rs for the properties each one checks):
#   image_header  backing::parse_header   bytes of disk images (the guest writes them)
#   domain_xml    generate::from_xml      domain XML on the hook's stdin (whoever defines guests)
#   config        Config::from_toml       the configuration file
#   hook_args     hook::action_for, wrapper::find_uuid   the hook's and QEMU's arguments
#   denial        denial::parse_line → explain::classify   AppArmor log lines (guests choose paths)
#   helper_args   helper::plan → helper::render_extras   helper mode's argv (-F/-f strings
#                 come from libvirt, and through it from whoever defines guests)
#
#   1. stable: `cargo test --release` here — replays corpus/<target> (and any input saved under
#      artifacts/<target>), compiles the profile of every domain_xml seed with apparmor_parser,
#      and runs a deterministic mutation test per target (FUZZ_MUTATIONS, FUZZ_XML_MUTATIONS, …;
#      see tests/replay.rs);
#   2. nightly, if a nightly toolchain is installed: `cargo fuzz run <target>` for each target,
#      FUZZ_SECONDS seconds each (default 60 for domain_xml and 20 for the others, 160 seconds
#      in all; FUZZ_SECONDS=0 skips it; FUZZ_SECONDS_<TARGET>, e.g. FUZZ_SECONDS_DOMAIN_XML=300,
#      sets one), installing cargo-fuzz from crates.io if missing, and prints how many inputs
#      each target executed. New inputs go to a temporary directory, so the committed seeds stay
#      as they are; a failing input is saved under tests/fuzz/artifacts/<target>/.
#
# The long domain_xml run (10 million executions) is tests/fuzz/long.sh.
# Prints `RESULT passed=N failed=M [skipped=...]` last, as run.sh expects.
set -u
cd "$(dirname "$0")" || exit 1
pass=0
fail=0
skipped=

# Seconds for one target: FUZZ_SECONDS_<TARGET>, else FUZZ_SECONDS, else the default.
secs_for() {
  local var default
  var="FUZZ_SECONDS_$(tr '[:lower:]' '[:upper:]' <<<"$1")"
  default=20
  [ "$1" = domain_xml ] && default=60
  echo "${!var:-${FUZZ_SECONDS:-$default}}"
}

# libFuzzer options per target.
opts_for() {
  case $1 in
    image_header) echo "-max_len=65536" ;;
    domain_xml) echo "-max_len=16384 -dict=domain_xml.dict" ;;
    config) echo "-max_len=4096" ;;
    hook_args) echo "-max_len=1024" ;;
    denial) echo "-max_len=4096" ;;
    helper_args) echo "-max_len=1024" ;;
  esac
}

echo "--- fuzz: stable replay + apparmor_parser + mutation tests"
if cargo test --release; then pass=$((pass + 1)); else fail=$((fail + 1)); fi

targets="domain_xml image_header config hook_args denial helper_args"
total=0
for t in $targets; do total=$((total + $(secs_for "$t"))); done

if [ "$total" -gt 0 ] && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "--- fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked >/tmp/virt-aa-hook-cargo-fuzz-install.log 2>&1 ||
      tail -n 20 /tmp/virt-aa-hook-cargo-fuzz-install.log
  fi
  if command -v cargo-fuzz >/dev/null 2>&1; then
    echo "--- fuzz: building the libFuzzer targets"
    cargo +nightly fuzz build --fuzz-dir . 2>&1 | tail -n 3
    summary=
    for t in $targets; do
      secs=$(secs_for "$t")
      [ "$secs" -gt 0 ] || continue
      echo "--- fuzz: libFuzzer $t, ${secs}s"
      out=$(mktemp -d /tmp/virt-aa-hook-fuzz.XXXXXX)
      log=$out.log
      # shellcheck disable=SC2046
      cargo +nightly fuzz run --fuzz-dir . "$t" "$out" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 $(opts_for "$t") 2>&1 |
        tee "$log" | grep -vE '^#[0-9]+|# Uses: |recommended dictionary|^ *NEW_FUNC|^stat::|^INFO: '
      rc=${PIPESTATUS[0]}
      # Executions: libFuzzer's final stats, else its last `#N` status line.
      execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$log" | tail -n 1)
      [ -n "$execs" ] || execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
      rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$log" | tail -n 1)
      line="$t: ${execs:-?} executions in ${secs}s (${rate:-?}/s)"
      if [ "$rc" -eq 0 ]; then
        pass=$((pass + 1))
      else
        fail=$((fail + 1))
        line="$line FAILED (exit $rc)"
        echo "cargo fuzz $t failed (exit $rc): a build error above, or a crash or property failure whose input is saved under tests/fuzz/artifacts/$t/"
      fi
      echo "fuzz: $line"
      summary="$summary  $line"$'\n'
      rm -rf "$out" "$log"
    done
    echo "--- fuzz: libFuzzer summary"
    printf '%s' "$summary"
  else
    skipped="libFuzzer (cargo-fuzz could not be installed)"
  fi
elif [ "$total" -gt 0 ]; then
  skipped="libFuzzer (no nightly toolchain)"
fi

echo "RESULT passed=$pass failed=$fail${skipped:+ skipped=$skipped}"
[ "$fail" -eq 0 ]
