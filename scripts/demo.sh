#!/usr/bin/env bash
# The demo on the built-in testbed: bring up the `ha` cluster (3 etcd, 2 masters behind HAProxy, 3 workers,
# 1 ingress) at release 1.0.0, `kismatic info`, `kismatic upgrade online` to release 1.1.0, `kismatic info` again.
# Needs root (systemd-nspawn). The testbed stays up afterwards; `target/debug/testbed down -f examples/ha.yaml`
# removes it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --locked -p kismatic -p kube-sim -p testbed
bin=target/debug
plan=examples/ha.yaml

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "testbed up -f $plan"
"$bin/testbed" up -f "$plan"
release=$("$bin/testbed" status -f "$plan" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["release_new"])')
kubeconfig=$("$bin/testbed" kubeconfig -f "$plan")

step "kismatic info"
"$bin/kismatic" info -f "$plan" --release "$release" || true

step "kubectl: a Deployment with 3 replicas protected by a PodDisruptionBudget"
kubectl --kubeconfig "$kubeconfig" apply -f examples/workloads/web.yaml
kubectl --kubeconfig "$kubeconfig" rollout status deployment/web --timeout=120s

# ingress01 is the cluster's only ingress node: an online upgrade reports it (clients may reach services through
# it directly) and stops. The operator acknowledges that one finding on that one node.
step "kismatic upgrade online --accept ingress-node@ingress01"
"$bin/kismatic" upgrade online -f "$plan" --release "$release" --kubeconfig "$kubeconfig" \
  --accept ingress-node@ingress01 --events examples/ha.testbed/events.jsonl

step "kismatic info"
"$bin/kismatic" info -f "$plan" --release "$release"
