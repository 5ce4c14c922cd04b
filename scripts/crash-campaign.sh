#!/usr/bin/env bash
# The seeded crash campaign (issue 12 item 8): N online upgrades of the `ha` testbed, each SIGKILLed as a step picked
# by a seeded RNG from the plan's own steps starts, rerun to completion, end state checked (markers, running versions,
# nothing cordoned, both etcd clusters healthy at the target, 10,000 etcd keys and 500 API objects identical, the
# PDB'd Deployment never below its minimum; with a baseline, the tool's view of every node equal to that after an
# uninterrupted run). Runs as root (the testbed). See docs/testbed.md, "Fault injection".
#
#   scripts/crash-campaign.sh [N] [FIRST_SEED]     seeds FIRST_SEED .. FIRST_SEED+N-1 (default 20 from 1)
#   scripts/crash-campaign.sh --seeds 7,12,31      exactly these seeds (to replay a failure)
#   --baseline FILE   compare with an uninterrupted run's fingerprint (made first when FILE does not exist)
#   --chunk K         iterations per acquisition of the loopback lock (default 3, so other tests interleave)
#
# Every iteration appends one line to the results file (printed at the end); exit status 1 when any differed.
set -euo pipefail
cd "$(dirname "$0")/.."

n=20 first=1 seeds="" baseline="" chunk=3
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds="$2"; shift 2 ;;
    --baseline) baseline="$2"; shift 2 ;;
    --chunk) chunk="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) positional+=("$1"); shift ;;
  esac
done
[ ${#positional[@]} -ge 1 ] && n="${positional[0]}"
[ ${#positional[@]} -ge 2 ] && first="${positional[1]}"
if [ -z "$seeds" ]; then
  seeds=$(seq "$first" $((first + n - 1)) | paste -sd, -)
fi
case "$chunk" in ''|*[!0-9]*|0) echo "--chunk wants a positive number" >&2; exit 2 ;; esac

out=${KISMATIC_CRASH_DIR:-/tmp/kismatic-crash-campaign}
mkdir -p "$out"
results="$out/results-$(date -u +%Y%m%dT%H%M%SZ).txt"
lock=/tmp/kismatic-loopback.lock

# Built once, outside the lock (the test binary, kismatic, testbed and kube-sim in one target dir).
cargo build -p kube-sim -p testbed >&2
cargo test -p kismatic --test e2e_faults --no-run >&2

IFS=, read -r -a all <<<"$seeds"
echo "crash campaign: seeds ${seeds} (${#all[@]} iterations, ${chunk} per lock); results in $results" >&2
status=0
for ((i = 0; i < ${#all[@]}; i += chunk)); do
  part=$(IFS=,; echo "${all[*]:i:chunk}")
  echo "== seeds $part" >&2
  env KISMATIC_CRASH_SEEDS="$part" KISMATIC_CRASH_LOG="$results" ${baseline:+KISMATIC_CRASH_BASELINE="$baseline"} \
    flock "$lock" cargo test -p kismatic --test e2e_faults crash_campaign -- --ignored --exact --nocapture \
    >"$out/seeds-${part//,/-}.log" 2>&1 || status=1
done
echo "--- results ($results)"
cat "$results" 2>/dev/null || echo "(no iteration reported; see $out/seeds-*.log)"
total=$(grep -c '^seed ' "$results" 2>/dev/null || true)
same=$(grep -c 'end state as the target' "$results" 2>/dev/null || true)
echo "iterations run: ${total:-0}, completed with the target end state: ${same:-0}"
exit $status
