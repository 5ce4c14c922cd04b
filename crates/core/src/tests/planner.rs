use super::*;
use crate::planner::{Action, PhaseKind, PlanOptions, PlanStatus, UpgradePlan, plan};

pub fn make(fx: &Fx, opts: &PlanOptions) -> UpgradePlan {
    let a = fx.analyze(opts.mode);
    plan(&fx.facts, &a, &fx.release, opts)
}

fn hosts(p: &UpgradePlan) -> Vec<&str> {
    p.node_plans().map(|(_, n)| n.host.as_str()).collect()
}

#[test]
fn phases_in_order_one_node_at_a_time() {
    let fx = Fx::new();
    let p = make(&fx, &PlanOptions::new(Mode::Online));
    assert_eq!(p.status, PlanStatus::Ready);
    let kinds: Vec<PhaseKind> = p.phases.iter().map(|ph| ph.kind).collect();
    assert_eq!(
        kinds,
        vec![PhaseKind::Etcd, PhaseKind::Master, PhaseKind::Worker, PhaseKind::Registry, PhaseKind::Services]
    );
    assert!(p.phases.iter().all(|ph| ph.batches.iter().all(|b| b.nodes.len() == 1)));
    assert_eq!(
        hosts(&p),
        vec!["etcd00", "etcd01", "etcd02", "master00", "master01", "worker00", "worker01", "worker02"]
    );
    assert_eq!(p.phases[3].services[0].component, "registry");
    assert_eq!(p.phases[4].services[0].component, "dns");
}

#[test]
fn multi_role_node_once_in_earliest_phase() {
    let mut fx = Fx::new();
    fx.node("master00").roles = vec![Role::Master, Role::Etcd, Role::Worker];
    let p = make(&fx, &PlanOptions::new(Mode::Offline));
    let h = hosts(&p);
    assert_eq!(h.iter().filter(|x| **x == "master00").count(), 1);
    let (phase, np) = p.node_plans().find(|(_, n)| n.host == "master00").unwrap();
    assert_eq!(phase.kind, PhaseKind::Etcd);
    let comps: Vec<&str> = np.upgrades().map(|u| u.0).collect();
    assert_eq!(
        comps,
        vec![
            "etcd",
            "container-runtime",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "kubelet",
            "kube-proxy"
        ]
    );
}

#[test]
fn nodes_at_target_are_skipped_and_listed() {
    let mut fx = Fx::new();
    fx.at_target("worker01");
    let p = make(&fx, &PlanOptions::new(Mode::Online));
    assert_eq!(p.skipped, vec!["worker01"]);
    assert!(!hosts(&p).contains(&"worker01"));
}

#[test]
fn everything_at_target_is_an_empty_plan() {
    let mut fx = Fx::new();
    let all: Vec<String> = fx.facts.inventory.nodes.iter().map(|n| n.host.clone()).collect();
    for h in &all {
        fx.at_target(h);
    }
    for m in ["master00", "master01"] {
        if let Marker::Present { value } = &mut fx.node_facts(m).component_markers {
            value.insert("registry".into(), "2.8.3".into());
            value.insert("dns".into(), "1.11.1".into());
        }
    }
    let p = make(&fx, &PlanOptions::new(Mode::Online));
    assert!(p.phases.is_empty(), "{:?}", p.phases);
    assert_eq!(p.skipped.len(), 8);
}

#[test]
fn component_steps_from_to_and_drain_online() {
    let fx = Fx::new();
    let p = make(&fx, &PlanOptions::new(Mode::Online));
    let (_, w) = p.node_plans().find(|(_, n)| n.host == "worker00").unwrap();
    assert!(w.drain);
    let ids: Vec<&str> = w.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "worker/worker00/cordon",
            "worker/worker00/drain",
            "worker/worker00/upgrade/container-runtime",
            "worker/worker00/upgrade/kubelet",
            "worker/worker00/upgrade/kube-proxy",
            "worker/worker00/markers",
            "worker/worker00/uncordon"
        ]
    );
    assert!(matches!(&w.steps[3].action, Action::Upgrade { from: Some(f), to, .. } if f == "1.33.2" && to == "1.34.1"));
    let (_, e) = p.node_plans().find(|(_, n)| n.host == "etcd00").unwrap();
    assert!(!e.drain, "etcd-only nodes are not Kubernetes nodes");
}

#[test]
fn offline_never_drains_and_batches_workers() {
    let fx = Fx::new();
    let opts = PlanOptions { max_parallel_workers: 2, ..PlanOptions::new(Mode::Offline) };
    let p = make(&fx, &opts);
    assert!(
        p.node_plans()
            .all(|(_, n)| !n.drain && n.steps.iter().all(|s| !matches!(s.action, Action::Drain | Action::Cordon)))
    );
    let workers = p.phases.iter().find(|ph| ph.kind == PhaseKind::Worker).unwrap();
    let sizes: Vec<usize> = workers.batches.iter().map(|b| b.nodes.len()).collect();
    assert_eq!(sizes, vec![2, 1]);
    let masters = p.phases.iter().find(|ph| ph.kind == PhaseKind::Master).unwrap();
    assert!(masters.batches.iter().all(|b| b.nodes.len() == 1), "masters one at a time");
}

#[test]
fn online_ignores_max_parallel_workers() {
    let fx = Fx::new();
    let p = make(&fx, &PlanOptions { max_parallel_workers: 5, ..PlanOptions::new(Mode::Online) });
    assert!(p.phases.iter().all(|ph| ph.batches.iter().all(|b| b.nodes.len() == 1)));
}

#[test]
fn blocked_without_partial_ok() {
    let mut fx = Fx::new();
    fx.kube().pods.push(synth::pod("default", "bare", "worker01", vec![], "bare"));
    let p = make(&fx, &PlanOptions::new(Mode::Online));
    assert!(p.is_blocked());
    assert!(p.phases.is_empty());
    assert_eq!(p.findings.len(), 1);
}

#[test]
fn partial_ok_prunes_flagged_workers_and_stops_before_services() {
    let mut fx = Fx::new();
    fx.kube().pods.push(synth::pod("default", "bare", "worker01", vec![], "bare"));
    let p = make(&fx, &PlanOptions { partial_ok: true, ..PlanOptions::new(Mode::Online) });
    assert_eq!(p.status, PlanStatus::Ready);
    assert!(p.partial);
    assert_eq!(p.pruned.len(), 1);
    assert_eq!(p.pruned[0].host, "worker01");
    assert_eq!(p.pruned[0].codes, vec![Code::UnmanagedPod]);
    assert!(!hosts(&p).contains(&"worker01"));
    assert!(p.phases.iter().all(|ph| ph.kind <= PhaseKind::Worker));
}

#[test]
fn partial_ok_cannot_prune_master_or_etcd() {
    let mut fx = Fx::new();
    fx.kube().pods.push(synth::pod("default", "bare", "master01", vec![], "bare"));
    fx.facts.etcd[0].members[0].healthy = Some(false);
    let p = make(&fx, &PlanOptions { partial_ok: true, ..PlanOptions::new(Mode::Online) });
    let PlanStatus::Blocked { reasons, .. } = &p.status else { panic!("not blocked") };
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(reasons[0].contains("etcd node etcd00") && reasons[0].contains("quorum"));
    assert!(reasons[3].contains("master node master01") && reasons[3].contains("version skew"));
}

#[test]
fn ignore_safety_checks_reports_and_goes_on_but_not_for_unready() {
    let mut fx = Fx::new();
    fx.kube().pods.push(synth::pod("default", "bare", "worker01", vec![], "bare"));
    let opts = PlanOptions { ignore_safety_checks: true, ..PlanOptions::new(Mode::Online) };
    let p = make(&fx, &opts);
    assert_eq!(p.status, PlanStatus::Ready);
    assert_eq!(p.findings.len(), 1);
    assert!(hosts(&p).contains(&"worker01"));
    *fx.node_facts("worker02") = NodeFacts::unreachable("worker02", "down");
    assert!(make(&fx, &opts).is_blocked());
}

#[test]
fn offline_partial_prunes_unready() {
    let mut fx = Fx::new();
    fx.node_facts("worker02").disk_free.insert("/".into(), 10);
    let p = make(&fx, &PlanOptions { partial_ok: true, ..PlanOptions::new(Mode::Offline) });
    assert_eq!(p.pruned[0].host, "worker02");
    assert_eq!(p.pruned[0].codes, vec![Code::DiskSpace]);
}

#[test]
fn step_ids_are_unique() {
    let fx = Fx::new();
    let p = make(&fx, &PlanOptions::new(Mode::Online));
    let mut ids: Vec<&str> = p.node_plans().flat_map(|(_, n)| n.steps.iter().map(|s| s.id.as_str())).collect();
    ids.extend(p.phases.iter().flat_map(|ph| ph.services.iter().map(|s| s.id.as_str())));
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n);
}

#[test]
fn accepted_findings_report_but_do_not_gate() {
    use crate::planner::Acceptance;
    let mut fx = Fx::new();
    fx.kube().pods.push(synth::pod("default", "bare", "worker01", vec![], "bare"));
    fx.kube().pods.push(synth::pod("default", "bare2", "worker02", vec![], "bare2"));
    let only_w1: Acceptance = "unmanaged-pod@WORKER01".parse().unwrap();
    let opts = PlanOptions { accepted: vec![only_w1], ..PlanOptions::new(Mode::Online) };
    assert!(make(&fx, &opts).is_blocked(), "worker02's finding is not accepted");
    let everywhere: Acceptance = "unmanaged-pod".parse().unwrap();
    let opts = PlanOptions { accepted: vec![everywhere], ..PlanOptions::new(Mode::Online) };
    let p = make(&fx, &opts);
    assert_eq!(p.status, PlanStatus::Ready);
    assert_eq!(p.findings.len(), 2, "accepted findings are still reported");
    assert!(hosts(&p).contains(&"worker01") && hosts(&p).contains(&"worker02"));
}

#[test]
fn acceptance_parsing() {
    use crate::planner::Acceptance;
    let a: Acceptance = "ingress-node@ingress01".parse().unwrap();
    assert_eq!((a.code, a.node.as_deref()), (Code::IngressNode, Some("ingress01")));
    let e = "disk-space".parse::<Acceptance>().unwrap_err();
    assert!(e.contains("readiness finding and cannot be accepted"), "{e}");
    let e = "ingres-node".parse::<Acceptance>().unwrap_err();
    assert!(e.starts_with("unknown finding code \"ingres-node\"; codes that can be accepted: unmanaged-pod"), "{e}");
    assert!("ingress-node@".parse::<Acceptance>().is_err());
}
