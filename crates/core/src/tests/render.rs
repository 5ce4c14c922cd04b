use super::planner::make;
use super::*;
use crate::planner::PlanOptions;
use crate::render::{findings_json, findings_text, plan_json, plan_text};

fn unsafe_fx() -> Fx {
    let mut fx = Fx::new();
    fx.node("worker02").roles.push(Role::Ingress);
    fx.kube().pods.push(synth::pod("default", "bare", "worker01", vec![], "bare"));
    fx.deployment("shop", "db", 1, &["worker00"]);
    fx.node_facts("worker00").disk_free.insert("/".into(), 900_000_000);
    fx
}

#[test]
fn snapshot_ready_plan_text() {
    let fx = Fx::new();
    insta::assert_snapshot!(plan_text(&make(&fx, &PlanOptions::new(Mode::Online))));
}

/// The journal's step ids of a whole online plan, in execution order: what `--dry-run --output json` shows and a
/// rerun resumes by (staging and snapshots first, then the phases).
#[test]
fn snapshot_ready_plan_step_ids() {
    let fx = Fx::new();
    insta::assert_snapshot!(make(&fx, &PlanOptions::new(Mode::Online)).journal_steps().join("\n"));
}

/// The JSON of the plan-level steps and of one master's node plan: staging, snapshot, every step with its gates.
#[test]
fn snapshot_ready_plan_json_steps() {
    let fx = Fx::new();
    let p = make(&fx, &PlanOptions::new(Mode::Online));
    let master = p.node_plans().find(|(ph, _)| ph.kind == crate::planner::PhaseKind::Master).map(|(_, n)| n);
    let parts = serde_json::json!({
        "staging": &p.staging[..2],
        "snapshots": p.snapshots,
        "master_node_plan": master,
        "services": p.phases.iter().flat_map(|ph| &ph.services).collect::<Vec<_>>(),
    });
    insta::assert_json_snapshot!(parts);
}

#[test]
fn snapshot_offline_batched_plan_text() {
    let fx = Fx::new();
    let opts = PlanOptions { max_parallel_workers: 2, ..PlanOptions::new(Mode::Offline) };
    insta::assert_snapshot!(plan_text(&make(&fx, &opts)));
}

#[test]
fn snapshot_blocked_plan_text() {
    let fx = unsafe_fx();
    insta::assert_snapshot!(plan_text(&make(&fx, &PlanOptions::new(Mode::Online))));
}

#[test]
fn snapshot_partial_plan_text() {
    let fx = unsafe_fx();
    insta::assert_snapshot!(plan_text(&make(&fx, &PlanOptions { partial_ok: true, ..PlanOptions::new(Mode::Online) })));
}

#[test]
fn snapshot_partial_plan_json() {
    let mut fx = unsafe_fx();
    fx.facts.inventory.nodes.retain(|n| !n.host.starts_with("master01") && !n.host.starts_with("etcd0"));
    fx.facts.etcd.clear();
    insta::assert_snapshot!(plan_json(&make(&fx, &PlanOptions { partial_ok: true, ..PlanOptions::new(Mode::Online) })));
}

#[test]
fn snapshot_findings() {
    let fx = unsafe_fx();
    let a = fx.online();
    insta::assert_snapshot!("findings_text", findings_text(&a.findings));
    insta::assert_snapshot!("findings_json", findings_json(&a.findings));
}

#[test]
fn plan_json_round_trips() {
    let fx = unsafe_fx();
    let p = make(&fx, &PlanOptions { partial_ok: true, ..PlanOptions::new(Mode::Online) });
    let back: crate::planner::UpgradePlan = serde_json::from_str(&plan_json(&p)).unwrap();
    assert_eq!(back, p);
}

/// Three kinds of blocked plan, each with only the remedies that would work for it.
#[test]
fn snapshot_blocked_safety_findings_on_workers_only() {
    // Every remedy works: --partial-ok, offline, or acknowledging each finding.
    let mut fx = Fx::new();
    fx.node("worker02").roles.push(Role::Ingress);
    fx.kube().pods.push(synth::pod("default", "bare", "worker01", vec![], "bare"));
    insta::assert_snapshot!(plan_text(&make(&fx, &PlanOptions::new(Mode::Online))));
}

#[test]
fn snapshot_blocked_master_flagged_and_worker_unready() {
    // --partial-ok cannot leave the master out; offline still stops at the disk; what works: offline leaving
    // the worker out, or accepting the master's finding and leaving the worker out.
    let mut fx = Fx::new();
    fx.kube().pods.push(synth::pod("kube-system", "debug", "master01", vec![], "debug"));
    fx.node_facts("worker00").disk_free.insert("/".into(), 999_999_000);
    insta::assert_snapshot!(plan_text(&make(&fx, &PlanOptions::new(Mode::Online))));
}

#[test]
fn snapshot_blocked_etcd_unready() {
    // An etcd node that cannot take the upgrade: nothing but fixing it works.
    let mut fx = Fx::new();
    fx.node_facts("etcd01").disk_free.insert("/".into(), 200_000_000);
    fx.kube().pods.push(synth::pod("default", "bare", "worker01", vec![], "bare"));
    let p = make(&fx, &PlanOptions::new(Mode::Online));
    insta::assert_snapshot!(plan_text(&p));
    let crate::planner::PlanStatus::Blocked { remedies, .. } = &p.status else { panic!("blocked") };
    assert_eq!(remedies, &vec![crate::planner::Remedy::Fix]);
}

#[test]
fn snapshot_blocked_offline_worker_unready() {
    let mut fx = Fx::new();
    fx.node_facts("worker02").disk_free.insert("/".into(), 500_000_000);
    insta::assert_snapshot!(plan_text(&make(&fx, &PlanOptions::new(Mode::Offline))));
}

#[test]
fn snapshot_blocked_plan_json_lists_nodes_codes_and_remedies() {
    let mut fx = Fx::new();
    fx.kube().pods.push(synth::pod("kube-system", "debug", "master01", vec![], "debug"));
    fx.node_facts("worker00").disk_free.insert("/".into(), 999_999_000);
    let p = make(&fx, &PlanOptions::new(Mode::Online));
    let v: serde_json::Value = serde_json::from_str(&plan_json(&p)).unwrap();
    insta::assert_json_snapshot!(v["status"]);
    // Exact sizes in JSON, human ones in the message.
    let disk = p.findings.iter().find(|f| f.code == Code::DiskSpace).unwrap();
    assert_eq!(disk.bytes, Some(crate::checks::ByteCounts { available: 999_999_000, required: 1_120_002_000 }));
    assert!(disk.message.starts_with("/ has 1.00 GB available, needs 1.12 GB"), "{}", disk.message);
}

#[test]
fn snapshot_batched_online_plan_text() {
    let fx = Fx::zoned_with_budget();
    let opts = PlanOptions { max_unavailable: "100%".parse().unwrap(), ..PlanOptions::new(Mode::Online) };
    insta::assert_snapshot!(plan_text(&make(&fx, &opts)));
}
