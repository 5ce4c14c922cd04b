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

mem_used_mib() { free -m | awk '/^Mem:/ {print $3}'; }

# The machine's CPU use, sampled every 0.5 s for the whole benchmark: "epoch_ms busy_jiffies all_jiffies" (busy is
# everything but idle and iowait), so each worker phase's CPU use can be read afterwards.
cpu_log="$out/cpu.log"
: >"$cpu_log"
(while :; do
  read -r _ u n s i w q sq st _ </proc/stat
  echo "$(date +%s%3N) $((u + n + s + q + sq + st)) $((u + n + s + i + w + q + sq + st))"
  sleep 0.5
done >>"$cpu_log") &
cpu_sampler=$!
trap 'kill "$cpu_sampler" 2>/dev/null || true; "$bin/testbed" down -f "$plan" >/dev/null 2>&1 || true' EXIT

# The worker phase from an events file: its wall time (first worker step started -> last worker step ended), the
# share of both cores busy meanwhile, and each batch's nodes and wall time (a batch runs from its re-check to the
# next batch's re-check). Prints "WALL_S CPU_PERCENT" on its first line, the batches after it.
worker_phase() {
  python3 - "$1" "$cpu_log" <<'PY'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
run = ev[-1]["run_id"]
w = [e for e in ev if e["run_id"] == run and e.get("phase") == "worker" and e["state"] in ("finished", "failed")]
if not w:
    print("0 0")
    sys.exit()
start = lambda e: e["at_ms"] - e.get("duration_ms", 0)
t0, t1 = min(map(start, w)), max(e["at_ms"] for e in w)
cpu = [tuple(map(int, l.split())) for l in open(sys.argv[2]) if len(l.split()) == 3]
inside = [c for c in cpu if t0 <= c[0] <= t1]
busy = (inside[-1][1] - inside[0][1]) / max(1, inside[-1][2] - inside[0][2]) * 100 if len(inside) > 1 else 0
print(f"{(t1 - t0) / 1000:.1f} {busy:.0f}")
rechecks = sorted((start(e), e["step"]) for e in w if e["step"].endswith("/recheck"))
edges = [t for t, _ in rechecks] + [t1 + 1]
for i, (t, _) in enumerate(rechecks):
    nodes = {e["node"] for e in w if edges[i] <= start(e) < edges[i + 1] and not e["step"].startswith("batch/") and e.get("node")}
    print(f"  batch {i + 1}: {len(nodes)} node(s), {(edges[i + 1] - t) / 1000:.1f} s")
PY
}

# One bring-up and one online upgrade; prints "boot_s mem_mib upgrade_s worker_phase_s worker_phase_cpu_percent".
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
  worker_phase "$out/events-$tag.jsonl" >"$out/workers-$tag.txt"
  echo "$(echo "$t1 - $t0" | bc) $((m1 - m0)) $(echo "$t3 - $t2" | bc) $(head -1 "$out/workers-$tag.txt")"
}

r1=$(run 1 max1)
r2=$(run 25% max25)
read -r boot1 mem1 one w1 cpu1 <<<"$r1"
read -r boot2 mem2 quarter w2 cpu2 <<<"$r2"
printf 'scale testbed bring-up: %.0f s and %d MiB (first), %.0f s and %d MiB (second)\n' "$boot1" "$mem1" "$boot2" "$mem2"
printf 'online upgrade of 40 workers: --max-unavailable 1: %.1f s; 25%%: %.1f s; ratio %.2f\n' \
  "$one" "$quarter" "$(echo "$one / $quarter" | bc -l)"
printf 'worker phase alone: --max-unavailable 1: %.1f s; 25%%: %.1f s; ratio %.2f\n' "$w1" "$w2" "$(echo "$w1 / $w2" | bc -l)"
printf 'both cores busy during the worker phase: --max-unavailable 1: %d %%; 25%%: %d %%\n' "$cpu1" "$cpu2"
echo "the 25% run's batches (re-check to next re-check):"
sed -n '2,$p' "$out/workers-max25.txt"
for tag in max1 max25; do
  echo "sampled during the $tag upgrade: $(head -1 "$out/sample-$tag.txt")"
  sed -n '2,$p' "$out/sample-$tag.txt"
done
echo "plans (batches and their bounds): $out/plan-max1.txt $out/plan-max25.txt; events: $out/events-*.jsonl"
