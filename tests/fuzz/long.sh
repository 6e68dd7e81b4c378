#!/usr/bin/env bash
# The long fuzzing run of the domain XML target (the hook's stdin), not part of tests/run.sh:
#
#   tests/fuzz/long.sh                  # 10,000,000 executions, one worker
#   FUZZ_RUNS=50000000 tests/fuzz/long.sh
#   FUZZ_WORKERS=2 tests/fuzz/long.sh   # one worker per core: about twice the rate
#   nohup tests/fuzz/long.sh >/tmp/vah-fuzz-long.log 2>&1 &
#
# Built without AddressSanitizer by default (FUZZ_SANITIZER=address to keep it): the code under
# test is safe Rust, the properties are assertions, and ASan's allocator halves the rate of this
# allocation-heavy target. The short run in the test command keeps ASan. The build goes to its
# own target dir, so the test command's builds never replace the binary under a running job.
#
# libFuzzer runs in fork mode (-fork=N, default one worker) and -ignore_crashes=1, so an input that
# violates a property is saved and the run goes on (a plain run stops at the first one). Work
# files live in FUZZ_LONG_DIR (default /tmp/vah-fuzz-long): corpus/ (seeded from
# corpus/domain_xml, kept between runs) and artifacts/ (the failing inputs). At the end it
# prints the executions, the wall time, the number of crashes and one line per distinct failure
# with the smallest input that shows it; copy those into artifacts/domain_xml/ (and `git add -f`)
# to keep them in the stable replay test.
set -u
cd "$(dirname "$0")" || exit 1
RUNS=${FUZZ_RUNS:-10000000}
WORKERS=${FUZZ_WORKERS:-1}
SANITIZER=${FUZZ_SANITIZER:-none}
DIR=${FUZZ_LONG_DIR:-/tmp/vah-fuzz-long}
mkdir -p "$DIR/corpus" "$DIR/artifacts"
log=$DIR/libfuzzer.log

echo "--- fuzz long: domain_xml, $RUNS executions, $WORKERS worker(s), sanitizer $SANITIZER, work dir $DIR"
build=(--fuzz-dir . -s "$SANITIZER" --target-dir "$DIR/target")
cargo +nightly fuzz build "${build[@]}" domain_xml || exit 1
t0=$(date +%s)
cargo +nightly fuzz run "${build[@]}" domain_xml "$DIR/corpus" corpus/domain_xml -- \
  -runs="$RUNS" -fork="$WORKERS" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
  -dict=domain_xml.dict -max_len=16384 -timeout=10 -print_final_stats=1 \
  -artifact_prefix="$DIR/artifacts/" >"$log" 2>&1
rc=$?
t1=$(date +%s)

# Fork mode reports `#<execs>: cov: … exec/s: … oom/timeout/crash: a/b/c time: …` lines.
last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -n 1)
execs=$(sed -E 's/^#([0-9]+):.*/\1/' <<<"$last")
octc=$(sed -nE 's/.*oom\/timeout\/crash: ([0-9]+\/[0-9]+\/[0-9]+).*/\1/p' <<<"$last")
wall=$((t1 - t0))
echo "executions: ${execs:-?}"
echo "wall time: ${wall}s ($((wall / 3600))h$(((wall % 3600) / 60))m)"
[ "$wall" -gt 0 ] && [ -n "$execs" ] && echo "rate: $((execs / wall)) exec/s"
echo "oom/timeout/crash: ${octc:-?}"
echo "libFuzzer exit: $rc (log: $log)"

# One line per distinct failure (panic message up to its first quoted value), smallest input.
bin=$DIR/target/x86_64-unknown-linux-gnu/release/domain_xml
n=$(find "$DIR/artifacts" -type f | wc -l)
echo "crashes found (inputs saved): $n in $DIR/artifacts"
if [ "$n" -gt 0 ] && [ -x "$bin" ]; then
  find "$DIR/artifacts" -type f -printf '%s %p\n' | sort -n | head -n 500 | while read -r _ f; do
    msg=$("$bin" "$f" 2>&1 | grep -A1 -m1 'panicked at' | tail -n 1 | sed -E 's/"([^"\\]|\\.)*"/"…"/g')
    printf '%s\t%s\n' "$msg" "$f"
  done | sort -t "$(printf '\t')" -k1,1 -s | awk -F '\t' '!seen[$1]++ { print "failure: " $1 "\n  smallest input: " $2 }'
fi
[ "$rc" -eq 0 ]
