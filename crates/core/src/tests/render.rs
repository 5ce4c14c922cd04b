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
