#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 15) and prints the
# executions per target. Needs cargo-fuzz (`cargo install cargo-fuzz`);
# the stable toolchain accepts cargo-fuzz's nightly flags with
# RUSTC_BOOTSTRAP=1. Corpora live in fuzz/corpus/<target> (seeded from the
# golden fixtures), crashes in fuzz/artifacts/<target>.
#
# Not run in CI (the sanitizer build takes 10+ minutes there): CI runs the
# same properties (fuzz/props, crate focal-fuzz-props) on these seeds and
# seeded mutations of them in `cargo test --workspace`
# (fuzz/props/tests/smoke.rs, which mirrors the seeding below).
#
#   fuzz/run-all.sh 15      # short: a fixed time per target
#   fuzz/run-all.sh 3600    # long run: an hour per target
#
# Exit status is non-zero if any target finds a crash.
set -euo pipefail
SECONDS_PER_TARGET="${1:-15}"
cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1

targets=(frame_decoder context_parser envelope_header stream_opener checkpoint_note audit_record directory_entry relay_config)

# Seeds: real inputs from the frozen fixtures, so the fuzzer starts past the
# outer layers.
seed() { mkdir -p "corpus/$1"; cp "$2" "corpus/$1/$(basename "$2")" 2>/dev/null || true; }
fx=../proto/tests/fixtures
seed checkpoint_note "$fx/audit_v1/checkpoint.note"
seed checkpoint_note "$fx/audit_v1/checkpoint_early.note"
mkdir -p corpus/audit_record
i=0; while read -r leaf; do printf '%b' "$(sed 's/../\\x&/g' <<<"$leaf")" > "corpus/audit_record/leaf$i"; i=$((i+1)); done < "$fx/audit_v1/entries.hex"
seed envelope_header "$fx/envelope_v1.bin"
mkdir -p corpus/relay_config
cp ../deploy/*/*.toml corpus/relay_config/ 2>/dev/null || true
cp ../deploy/*.toml corpus/relay_config/ 2>/dev/null || true

cargo fuzz build

failed=0
printf '%-18s %12s %10s\n' target executions exec/s
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="$(mktemp)"
  if cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status=FAILED; failed=1
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo "?")
  printf '%-18s %12s %10s %s\n' "$t" "$runs" "$rate" "$status"
  if [ "$status" = FAILED ]; then tail -40 "$log"; fi
  rm -f "$log"
done
exit "$failed"
