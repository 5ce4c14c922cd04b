//! Issue 13 on the scale testbed (examples/scale.yaml: 3 etcd, 2 masters, 40 workers in 4 zones; workloads
//! examples/workloads/scale.yaml), against the real control plane: `kismatic upgrade online --max-unavailable 25%`
//! while every PodDisruptionBudget and the API through the load balancer are sampled every 250 ms
//! (`testbed::sample`). One worker is made undrainable (a budget that allows no disruption of the two pods pinned to
//! it) and the run uses `--on-drain-timeout skip`: that worker is left out at its old version, uncordoned and
//! untainted, named with the pod and the budget, and the run upgrades the rest (exit 1). The budget is relaxed and
//! the same command is rerun: it retries the worker and completes. Through both runs no budget ever has fewer
//! healthy pods than it desires and the API answers ≥ 99 % of the samples; at the end every worker is at the
//! target and nothing is cordoned or tainted.
//!
//! Deadlines only fail the test when something truly hangs; nothing asserts on wall time.

mod support;

use std::path::Path;
use std::time::Duration;
use support::{Cluster, cordoned_nodes, text, work_dir};
use testbed::e2e_skip_reason;

/// The worker that cannot be drained in the first run (zone-a, in the first batch's zone).
const LOCKED: &str = "worker07";
const TAINT: &str = "upgrade.kismatic.io/drain-soon";

/// Two pods pinned to the locked worker and a budget that allows neither to go.
fn locked_workload(pdb_version: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: locked, namespace: default}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: locked}}}}
  template:
    metadata: {{labels: {{app: locked}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: {LOCKED}}}
      containers: [{{name: locked, image: nginx:1.27}}]
---
apiVersion: {pdb_version}
kind: PodDisruptionBudget
metadata: {{name: locked, namespace: default}}
spec:
  minAvailable: 2
  selector: {{matchLabels: {{app: locked}}}}
"#
    )
}

/// Waits for every Deployment and StatefulSet to finish rolling out.
fn wait_rollouts(c: &Cluster) {
    let list = c.kubectl(&[
        "get",
        "deployment,statefulset",
        "-A",
        "-o",
        "jsonpath={range .items[*]}{.kind}/{.metadata.name}@{.metadata.namespace} {end}",
    ]);
    for w in list.split_whitespace() {
        let (what, ns) = w.split_once('@').expect("kind/name@namespace");
        c.kubectl(&["-n", ns, "rollout", "status", &what.to_lowercase(), "--timeout=300s"]);
    }
}

fn tainted_nodes(c: &Cluster) -> Vec<String> {
    let nodes: serde_json::Value = serde_json::from_str(&c.kubectl(&["get", "nodes", "-o", "json"])).expect("json");
    nodes["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|n| n["spec"]["taints"].as_array().is_some_and(|t| t.iter().any(|t| t["key"] == TAINT)))
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// Hosts `kismatic info` reports at the target, and those it does not.
fn at_target(c: &Cluster) -> (Vec<String>, Vec<String>) {
    let info = c.kismatic_within(&["info", "-o", "json"], Duration::from_secs(300));
    assert_eq!(info.status.code(), Some(0), "{}", text(&info));
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info JSON");
    let mut yes = Vec::new();
    let mut no = Vec::new();
    for n in v["nodes"].as_array().expect("nodes") {
        let host = n["name"].as_str().expect("name").to_string();
        if n["at_target"].as_bool() == Some(true) { yes.push(host) } else { no.push(host) }
    }
    (yes, no)
}

fn workers(c: &Cluster) -> Vec<String> {
    c.hosts().into_iter().filter(|h| h.starts_with("worker")).collect()
}

#[test]
fn parallel_online_upgrade_of_the_scale_testbed() {
    if let Some(reason) = e2e_skip_reason() {
        eprintln!("SKIPPED scale e2e: {reason}");
        return;
    }
    let work = work_dir("scale");
    let mut c = Cluster::up("scale.yaml", &work);
    // A drain refused for 45 s is left out (the locked budget never relents by itself; the other drains take a few
    // seconds, more on a loaded machine).
    c.upgrade_args = ["--drain-timeout", "45", "--node-timeout", "180"].map(String::from).to_vec();
    let workloads = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/workloads/scale.yaml");
    c.kubectl_apply(&std::fs::read_to_string(&workloads).expect("scale workloads"));
    let pdb_version = c.pdb_version();
    c.kubectl_apply(&locked_workload(pdb_version));
    wait_rollouts(&c);
    assert_eq!(workers(&c).len(), 40, "the scale testbed has 40 workers");

    let args: Vec<&str> = vec![
        "upgrade",
        "online",
        "--max-unavailable",
        "25%",
        "--on-drain-timeout",
        "skip",
        "--accept",
        "pdb-blocks-drain@worker07",
        "--accept",
        "replicas-on-single-node@worker07",
    ];
    let dry = c.kismatic_within(&[args.as_slice(), &["--dry-run"]].concat(), Duration::from_secs(300));
    assert_eq!(dry.status.code(), Some(0), "the plan is ready: {}", text(&dry));
    let plan_text = text(&dry);
    let batches = plan_text.lines().filter(|l| l.trim_start().starts_with("worker/batch-")).count();
    assert!((4..40).contains(&batches), "40 workers in fewer batches than one per node, ≥ ⌈40/10⌉: {plan_text}");
    let mut header = "";
    let mut locked_batch = None;
    for l in plan_text.lines() {
        if l.trim_start().starts_with("worker/batch-") {
            header = l;
        } else if l.trim() == format!("{LOCKED} [worker]") {
            locked_batch = Some(header);
        }
    }
    let locked_batch = locked_batch.unwrap_or_else(|| panic!("{LOCKED} is planned: {plan_text}"));
    assert!(
        locked_batch.contains("(1 node: PDB default/locked allows 0)"),
        "the undrainable worker goes alone, bound by its budget: {locked_batch}"
    );

    let sampler = testbed::sample::Sampler::start(&c.kubeconfig(), Duration::from_millis(250));

    // First run: everything but the locked worker.
    let first = c.kismatic(&args);
    let out = text(&first);
    assert_eq!(first.status.code(), Some(1), "a run that left a node out ends unfinished: {out}");
    assert!(
        out.contains("left out at the old version (drain refused; rerun to retry): worker07"),
        "the report lists the worker left out: {out}"
    );
    assert!(out.contains("default/locked"), "the node is named with the budget that refused: {out}");
    let (_, behind) = at_target(&c);
    assert_eq!(behind, vec![LOCKED.to_string()], "only the locked worker is left at the old version");
    assert_eq!(c.marker(LOCKED).trim(), c.old.version.to_string(), "worker07 keeps its old release marker");
    assert!(cordoned_nodes(&c).is_empty(), "a left-out node is uncordoned: {:?}", cordoned_nodes(&c));
    assert!(tainted_nodes(&c).is_empty(), "no drain-soon taint stays: {:?}", tainted_nodes(&c));

    // The operator relaxes the budget; the same command retries the worker and completes.
    c.kubectl(&["-n", "default", "delete", "poddisruptionbudget", "locked"]);
    let second = c.kismatic(&args);
    assert_eq!(second.status.code(), Some(0), "the rerun completes: {}", text(&second));

    let summary = sampler.finish().expect("sampler");
    eprintln!("{}", summary.report());
    assert!(summary.samples > 100, "sampled through both runs: {}", summary.samples);
    assert_eq!(summary.breach_count, 0, "no budget below its desired healthy count: {}", summary.report());
    assert!(summary.availability_percent() >= 99.0, "the API answered: {}", summary.report());
    for b in ["shop/frontend", "shop/api", "shop/search", "shop/checkout", "shop/cart", "shop/db"] {
        assert!(summary.budgets.contains_key(b), "budget {b} was sampled: {}", summary.report());
    }

    let (done, behind) = at_target(&c);
    assert!(behind.is_empty(), "every node at the target: behind {behind:?}");
    assert!(workers(&c).iter().all(|w| done.contains(w)));
    assert_eq!(c.marker(LOCKED).trim(), c.new.version.to_string());
    assert!(cordoned_nodes(&c).is_empty(), "nothing left cordoned: {:?}", cordoned_nodes(&c));
    assert!(tainted_nodes(&c).is_empty(), "no drain-soon taint left: {:?}", tainted_nodes(&c));
    drop(c);
    let _ = std::fs::remove_dir_all(&work);
}
