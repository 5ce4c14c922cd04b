#!/usr/bin/env bash
# Fuzz campaign over every cargo-fuzz target (issue 12, item 7), one after another on one core.
# Usage: scripts/fuzz-campaign.sh SECONDS [TARGET...]      (time per target)
#        scripts/fuzz-campaign.sh -runs N [TARGET...]      (executions per target)
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Seeds: fuzz/seeds/TARGET and the saved
# regressions; the corpus grows in fuzz/corpus/TARGET (not committed). Prints executions and crashes per target;
# a crash input lands in fuzz/artifacts/TARGET: copy it to fuzz/regressions/TARGET/ and fix it (the stable suite
# replays that folder: crates/kismatic/tests/fuzz_replay.rs).
# FUZZ_SANITIZER (default none): the code is safe Rust, so the findings are panics, overflows (debug assertions are
# on: -a) and hangs; AddressSanitizer (FUZZ_SANITIZER=address) finds nothing more there and runs far slower.
set -euo pipefail
sanitizer=(-s "${FUZZ_SANITIZER:-none}" -a)
cd "$(dirname "$0")/../fuzz"
if [[ "${1:-}" == "-runs" ]]; then limit=(-runs="$2"); shift 2; else limit=(-max_total_time="${1:?SECONDS or -runs N}"); shift; fi
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(plan release facts probe markers journal version)
cargo +nightly fuzz build -O "${sanitizer[@]}" >/dev/null 2>&1
printf '%-10s %14s %8s %8s\n' target executions crashes seconds
total_crashes=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t" "regressions/$t"
  before=$(find "artifacts/$t" -type f | wc -l)
  start=$(date +%s)
  log=$(mktemp)
  # -rss_limit_mb/-timeout: a hang or a memory blow-up is a finding too (libFuzzer saves it as timeout-/oom-).
  cargo +nightly fuzz run -O "${sanitizer[@]}" "$t" "corpus/$t" "seeds/$t" "regressions/$t" -- "${limit[@]}" -rss_limit_mb=2048 \
    -timeout=10 -print_final_stats=1 -close_fd_mask=3 >"$log" 2>&1 || true
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  after=$(find "artifacts/$t" -type f | wc -l)
  crashes=$((after - before))
  total_crashes=$((total_crashes + crashes))
  printf '%-10s %14s %8d %8d\n' "$t" "${runs:-?}" "$crashes" $(( $(date +%s) - start ))
  [[ $crashes -eq 0 ]] || find "artifacts/$t" -type f -newer "$log" -printf '  %p\n' || true
  rm -f "$log"
done
echo "crashes in total: $total_crashes"
