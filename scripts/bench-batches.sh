#!/usr/bin/env bash
# Issue 13's benchmark (not a timed test): the online upgrade of the 40 workers of the scale testbed
# (examples/scale.yaml: 3 etcd, 2 masters, 40 workers in 4 zones, workloads examples/workloads/scale.yaml) with
# `--max-unavailable 1` and with `--max-unavailable 25%`, each on a freshly built testbed at the old release; prints
# the boot time and memory of each bring-up, both wall times and their ratio, and what `testbed sample` saw during
# each upgrade (every PodDisruptionBudget's fewest healthy pods against its desired count, every 250 ms, and the
# API's answers through the load balancer). Needs root (systemd-nspawn) and the
# loopback lock: run as `flock /tmp/kismatic-loopback.lock bash scripts/bench-batches.sh`. The testbed is brought
# down at the end (and on failure).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --locked -p kismatic -p kube-sim -p testbed
bin=target/debug
plan=examples/scale.yaml
out=${BENCH_OUT:-target/bench-batches}
mkdir -p "$out"
trap '"$bin/testbed" down -f "$plan" >/dev/null 2>&1 || true' EXIT

mem_used_mib() { free -m | awk '/^Mem:/ {print $3}'; }

# The worker phase's wall time (first worker step started -> last worker step ended) from an events file.
worker_phase_s() {
  python3 - "$1" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
run = ev[-1]["run_id"]
w = [e for e in ev if e["run_id"] == run and e.get("phase") == "worker" and e["state"] in ("finished", "failed")]
print(f"{(max(e['at_ms'] for e in w) - min(e['at_ms'] - e.get('duration_ms', 0) for e in w)) / 1000:.1f}" if w else "0")
PY
}

# One bring-up and one online upgrade; prints "boot_s mem_mib upgrade_s worker_phase_s".
run() {
  local max=$1 tag=$2
  "$bin/testbed" down -f "$plan" >/dev/null 2>&1 || true
  local m0 t0 t1 m1 t2
  m0=$(mem_used_mib)
  t0=$(date +%s.%N)
  "$bin/testbed" up -f "$plan" >"$out/up-$tag.log" 2>&1
  t1=$(date +%s.%N)
  local release kubeconfig
  release=$("$bin/testbed" status -f "$plan" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["release_new"])')
  kubeconfig=$("$bin/testbed" kubeconfig -f "$plan")
  kubectl --kubeconfig "$kubeconfig" apply -f examples/workloads/scale.yaml >"$out/apply-$tag.log"
  for d in $(kubectl --kubeconfig "$kubeconfig" get deploy,statefulset -A -o jsonpath='{range .items[*]}{.kind}/{.metadata.name}@{.metadata.namespace} {end}'); do
    kubectl --kubeconfig "$kubeconfig" -n "${d#*@}" rollout status "${d%@*}" --timeout=300s >/dev/null
  done
  m1=$(mem_used_mib)
  "$bin/kismatic" upgrade online -f "$plan" --release "$release" --kubeconfig "$kubeconfig" \
    --max-unavailable "$max" --dry-run >"$out/plan-$tag.txt" || true
  "$bin/testbed" sample -f "$plan" --json "$out/sample-$tag.json" >"$out/sample-$tag.txt" 2>&1 &
  local sampler=$!
  t2=$(date +%s.%N)
  "$bin/kismatic" upgrade online -f "$plan" --release "$release" --kubeconfig "$kubeconfig" \
    --max-unavailable "$max" --events "$out/events-$tag.jsonl" >"$out/upgrade-$tag.log" 2>&1
  local t3
  t3=$(date +%s.%N)
  kill -TERM "$sampler"
  wait "$sampler" || true
  echo "$(echo "$t1 - $t0" | bc) $((m1 - m0)) $(echo "$t3 - $t2" | bc) $(worker_phase_s "$out/events-$tag.jsonl")"
}

r1=$(run 1 max1)
r2=$(run 25% max25)
read -r boot1 mem1 one w1 <<<"$r1"
read -r boot2 mem2 quarter w2 <<<"$r2"
printf 'scale testbed bring-up: %.0f s and %d MiB (first), %.0f s and %d MiB (second)\n' "$boot1" "$mem1" "$boot2" "$mem2"
printf 'online upgrade of 40 workers: --max-unavailable 1: %.1f s; 25%%: %.1f s; ratio %.2f\n' \
  "$one" "$quarter" "$(echo "$one / $quarter" | bc -l)"
printf 'worker phase alone: --max-unavailable 1: %.1f s; 25%%: %.1f s; ratio %.2f\n' "$w1" "$w2" "$(echo "$w1 / $w2" | bc -l)"
for tag in max1 max25; do
  echo "sampled during the $tag upgrade: $(head -1 "$out/sample-$tag.txt")"
  sed -n '2,$p' "$out/sample-$tag.txt"
done
echo "plans (batches and their bounds): $out/plan-max1.txt $out/plan-max25.txt; events: $out/events-*.jsonl"
