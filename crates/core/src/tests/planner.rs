use super::*;
use crate::checks::Code;
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
    // The masters run kubelets: every API server first, then the rest of each master (version-skew policy).
    assert_eq!(
        kinds,
        vec![
            PhaseKind::Etcd,
            PhaseKind::ApiServers,
            PhaseKind::Master,
            PhaseKind::Worker,
            PhaseKind::Registry,
            PhaseKind::Services
        ]
    );
    assert!(p.phases.iter().all(|ph| ph.batches.iter().all(|b| b.nodes.len() == 1)));
    assert_eq!(
        hosts(&p),
        vec![
            "etcd00", "etcd01", "etcd02", "master00", "master01", "master00", "master01", "worker00", "worker01",
            "worker02"
        ]
    );
    assert_eq!(p.phases[4].services[0].component, "registry");
    assert_eq!(p.phases[5].services[0].component, "dns");
}

/// Removes a node from the fixture's inventory and facts.
fn without(fx: &mut Fx, host: &str) {
    fx.facts.inventory.nodes.retain(|n| n.host != host);
    fx.facts.nodes.retain(|n| n.host != host);
    if let Some(k) = fx.facts.kube.as_mut() {
        k.nodes.retain(|n| n.name != host);
    }
}

#[test]
fn multi_role_node_once_in_earliest_phase() {
    // One master: nothing to split, so the multi-role node is upgraded once, in its earliest phase.
    let mut fx = Fx::new();
    without(&mut fx, "master01");
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

fn part<'a>(p: &'a UpgradePlan, kind: PhaseKind, host: &str) -> &'a crate::planner::NodePlan {
    p.node_plans().find(|(ph, n)| ph.kind == kind && n.host == host).map(|(_, n)| n).unwrap()
}

fn components(np: &crate::planner::NodePlan) -> Vec<&str> {
    np.upgrades().map(|u| u.0).collect()
}

#[test]
fn split_masters_every_api_server_first_then_the_rest_under_a_drain() {
    let fx = Fx::new();
    let p = make(&fx, &PlanOptions::new(Mode::Online));
    for m in ["master00", "master01"] {
        let api = part(&p, PhaseKind::ApiServers, m);
        assert_eq!(components(api), vec!["kube-apiserver"]);
        assert!(!api.drain, "an API server restart moves no pod");
        assert!(api.steps.iter().all(|s| !matches!(s.action, Action::WriteMarkers { .. })));
        let rest = part(&p, PhaseKind::Master, m);
        assert_eq!(
            components(rest),
            vec!["container-runtime", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"]
        );
        assert!(rest.drain);
        assert!(matches!(rest.steps.last().map(|s| &s.action), Some(Action::Uncordon)));
        assert!(rest.steps.iter().any(|s| matches!(s.action, Action::WriteMarkers { .. })), "markers once, last");
        assert_eq!(rest.id, format!("master/{m}"));
        assert_eq!(api.id, format!("apiservers/{m}"));
    }
}

#[test]
fn split_multi_role_etcd_master_node() {
    let mut fx = Fx::new();
    fx.node("master00").roles = vec![Role::Master, Role::Etcd];
    let p = make(&fx, &PlanOptions::new(Mode::Offline));
    assert_eq!(components(part(&p, PhaseKind::Etcd, "master00")), vec!["etcd"]);
    assert_eq!(components(part(&p, PhaseKind::ApiServers, "master00")), vec!["kube-apiserver"]);
    assert!(components(part(&p, PhaseKind::Master, "master00")).contains(&"kube-scheduler"));
}

#[test]
fn no_split_when_controllers_talk_to_their_own_api_server_and_masters_run_no_kubelet() {
    let mut fx = Fx::new();
    for m in ["master00", "master01"] {
        fx.node("master00").roles = vec![Role::Master];
        let nf = fx.node_facts(m);
        for c in ["kube-controller-manager", "kube-scheduler"] {
            nf.components.get_mut(c).unwrap().upstream = Some(crate::skew::Upstream::Local);
        }
    }
    fx.release.components.iter_mut().filter(|c| c.name == "kubelet" || c.name == "kube-proxy").for_each(|c| {
        c.roles.retain(|r| *r != Role::Master);
    });
    for m in ["master00", "master01"] {
        let nf = fx.node_facts(m);
        nf.components.remove("kubelet");
        nf.components.remove("kube-proxy");
    }
    let p = make(&fx, &PlanOptions::new(Mode::Online));
    assert_eq!(p.status, PlanStatus::Ready, "{p:?}");
    assert!(p.phases.iter().all(|ph| ph.kind != PhaseKind::ApiServers));
}

#[test]
fn a_kubelet_left_too_far_behind_by_the_control_plane_refuses_the_plan() {
    // worker02 runs a v1.31 kubelet: with the API servers at v1.34 it would be 3 minors behind (2 allowed before
    // v1.25 does not apply; 3 are allowed from 1.25) — fine. At v1.30 it would be 4 behind: refused.
    let mut fx = Fx::new();
    for c in ["kubelet", "kube-proxy"] {
        let o = fx.node_facts("worker02").components.get_mut(c).unwrap();
        o.running_version = Some("1.30.4".into());
        o.installed_version = Some("1.30.4".into());
    }
    let mut opts = PlanOptions::new(Mode::Online);
    opts.partial_ok = true;
    // worker02 pruned for another reason: its kubelet stays at 1.30 while the API servers move to 1.34.
    fx.node_facts("worker02").disk_free.insert("/".into(), 1);
    let p = make(&fx, &opts);
    assert!(p.is_blocked(), "{}", crate::render::plan_text(&p));
    assert!(p.phases.is_empty());
    let f = p
        .findings
        .iter()
        .find(|f| f.code == Code::VersionPolicy && f.message.contains("kubelet v1.30.4 on worker02"))
        .expect("skew finding");
    assert_eq!(f.node, "worker02");
    assert!(f.message.contains("kubelet v1.30.4 on worker02"), "{}", f.message);
    assert!(f.message.contains("upgrade worker02's kubelet first"), "{}", f.message);
    assert!(f.message.contains("version-skew-policy"), "names its source: {}", f.message);
}

#[test]
fn removed_api_and_transition_findings_block_even_partial_plans() {
    let mut fx = Fx::new();
    fx.node_facts("worker00").kismatic_version = crate::facts::Marker::Present { value: semver::Version::new(1, 2, 0) };
    let mut opts = PlanOptions::new(Mode::Online);
    opts.partial_ok = true;
    let p = make(&fx, &opts);
    match &p.status {
        PlanStatus::Blocked { reasons, .. } => {
            assert!(reasons.iter().any(|r| r.contains("transitioning from release 1.0.0 to 1.2.0")), "{reasons:?}")
        }
        other => panic!("{other:?}"),
    }
    assert!(p.pruned.is_empty(), "a cluster-level finding prunes nothing");
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

/// The plan is the whole run: every planned node staged once (a split master once, with all its parts'
/// components), each changing etcd cluster snapshotted before any node, and the journal's ids unique.
#[test]
fn staging_and_snapshots_are_planned_steps() {
    let fx = Fx::new();
    let p = make(&fx, &PlanOptions::new(Mode::Online));
    let staged: Vec<&str> = p.staging.iter().map(|s| s.host.as_str()).collect();
    assert_eq!(staged, ["etcd00", "etcd01", "etcd02", "master00", "master01", "worker00", "worker01", "worker02"]);
    let m0 = p.staging.iter().find(|s| s.host == "master00").unwrap();
    assert_eq!(m0.id, "stage/master00");
    assert_eq!(m0.components[0], "kube-apiserver", "the apiservers part first");
    assert_eq!(m0.components.len(), 6);
    let snaps: Vec<(&str, &str, &str)> =
        p.snapshots.iter().map(|s| (s.id.as_str(), s.cluster.as_str(), s.node.as_str())).collect();
    assert_eq!(snaps, [("etcd/snapshot/etcd", "etcd", "etcd00")]);
    let ids = p.journal_steps();
    assert_eq!(ids[..8], p.staging.iter().map(|s| s.id.clone()).collect::<Vec<_>>()[..]);
    assert_eq!(ids[8], "etcd/snapshot/etcd");
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "step ids are unique");
    let node_steps = p.node_plans().map(|(_, n)| n.steps.len()).sum::<usize>();
    let services = p.phases.iter().map(|ph| ph.services.len()).sum::<usize>();
    assert_eq!(ids.len(), 8 + 1 + node_steps + services);
}

#[test]
fn no_snapshot_when_etcd_does_not_change_and_nothing_staged_when_blocked() {
    let mut fx = Fx::new();
    for e in ["etcd00", "etcd01", "etcd02"] {
        fx.at_target(e);
    }
    let p = make(&fx, &PlanOptions::new(Mode::Online));
    assert!(p.snapshots.is_empty());
    assert!(!p.staging.iter().any(|s| s.host.starts_with("etcd")));
    let mut fx = Fx::new();
    fx.node("worker02").roles.push(Role::Ingress);
    let blocked = make(&fx, &PlanOptions::new(Mode::Online));
    assert!(blocked.is_blocked());
    assert!(blocked.staging.is_empty() && blocked.snapshots.is_empty() && blocked.journal_steps().is_empty());
}

/// Gate kinds and ports are chosen by the planner (core), not the executor.
#[test]
fn each_component_step_carries_its_gates() {
    use crate::gates::Gate;
    let fx = Fx::new();
    let p = make(&fx, &PlanOptions { apiserver_port: 7443, ..PlanOptions::new(Mode::Online) });
    let gates = |host: &str, component: &str| -> Vec<Gate> {
        p.node_plans()
            .filter(|(_, n)| n.host == host)
            .flat_map(|(_, n)| &n.steps)
            .find(|s| matches!(&s.action, Action::Upgrade { component: c, .. } if c == component))
            .map(|s| s.gates.clone())
            .unwrap()
    };
    assert_eq!(gates("etcd00", "etcd"), [Gate::EtcdMember]);
    assert_eq!(gates("master00", "kube-apiserver"), [Gate::Running, Gate::ApiServer { port: 7443 }]);
    assert_eq!(gates("master00", "kube-controller-manager"), [Gate::Running, Gate::Healthz { port: 10257 }]);
    assert_eq!(gates("master00", "kube-scheduler"), [Gate::Running, Gate::Healthz { port: 10259 }]);
    assert_eq!(gates("worker00", "kubelet"), [Gate::Running, Gate::NodeReady]);
    assert_eq!(gates("worker00", "kube-proxy"), [Gate::Running]);
    assert_eq!(gates("worker00", "container-runtime"), [], "a package's version is checked by its install");
    let w0 = p.node_plans().find(|(_, n)| n.host == "worker00").unwrap().1;
    assert_eq!(w0.steps.last().unwrap().gates, [Gate::WorkloadsBack]);
    assert!(p.phases.iter().flat_map(|ph| &ph.services).all(|s| s.gates == [Gate::Rollout]));
}

#[test]
fn replicas_an_interrupted_drain_concentrated_do_not_gate_its_resume() {
    use crate::planner::MovedWorkload;
    // The crash campaign's seed 3: the killed run drained worker01, the scheduler put both replicas on worker02.
    let mut fx = Fx::new();
    fx.deployment("kube-system", "dashboard", 2, &["worker02", "worker02"]);
    let moved = |drained: &str, name: &str| MovedWorkload {
        drained: drained.into(),
        kind: "Deployment".into(),
        namespace: "kube-system".into(),
        name: name.into(),
    };
    let fresh = make(&fx, &PlanOptions::new(Mode::Online));
    assert!(fresh.is_blocked(), "a fresh run is stopped by replicas-on-single-node");

    let opts = PlanOptions {
        moved_by_interrupted_run: vec![moved("WORKER01", "dashboard")],
        ..PlanOptions::new(Mode::Online)
    };
    let resumed = make(&fx, &opts);
    assert_eq!(resumed.status, PlanStatus::Ready, "{:?}", resumed.findings);
    assert_eq!(resumed.findings.len(), 1, "still reported");
    let m = &resumed.findings[0].message;
    assert!(m.contains("caused by the interrupted run's drain of WORKER01") && m.contains("not gating"), "{m}");
    assert!(hosts(&resumed).contains(&"worker02"));

    // Another workload, or the drained node itself holding them: the finding is the cluster's, not the drain's.
    for other in [moved("worker01", "registry"), moved("worker02", "dashboard")] {
        let opts = PlanOptions { moved_by_interrupted_run: vec![other.clone()], ..PlanOptions::new(Mode::Online) };
        assert!(make(&fx, &opts).is_blocked(), "{other:?}");
    }
    // Only replicas-on-single-node: a single replica the drain moved still gates.
    let mut fx = Fx::new();
    fx.deployment("kube-system", "dashboard", 1, &["worker02"]);
    let opts = PlanOptions {
        moved_by_interrupted_run: vec![moved("worker01", "dashboard")],
        ..PlanOptions::new(Mode::Online)
    };
    assert!(make(&fx, &opts).is_blocked());
}

#[test]
fn online_batches_plan_their_recheck_the_next_batchs_taint_and_its_removal() {
    let fx = Fx::zoned_with_budget();
    let opts = PlanOptions { max_unavailable: "100%".parse().unwrap(), ..PlanOptions::new(Mode::Online) };
    let p = make(&fx, &opts);
    let workers = p.phases.iter().find(|ph| ph.kind == PhaseKind::Worker).unwrap();
    let ids = |b: &crate::planner::Batch| b.steps.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&workers.batches[0]), ["batch/worker00/recheck", "batch/worker00/prefer-no-schedule"]);
    assert_eq!(
        workers.batches[0].steps[1].action,
        crate::planner::BatchAction::PreferNoSchedule { nodes: vec!["worker02".into()] }
    );
    assert_eq!(ids(&workers.batches[1]), ["batch/worker02/recheck"], "the last batch taints nothing");
    // The tainted node removes the taint just before its uncordon; the first batch's nodes were never tainted.
    let steps =
        |host: &str| workers.batches.iter().flat_map(|b| &b.nodes).find(|n| n.host == host).unwrap().steps.clone();
    let w2 = steps("worker02");
    let n = w2.len();
    assert_eq!(w2[n - 2].id, "worker/worker02/untaint");
    assert!(matches!(w2[n - 2].action, Action::Untaint));
    assert!(matches!(w2[n - 1].action, Action::Uncordon));
    assert!(steps("worker00").iter().all(|s| !matches!(s.action, Action::Untaint)));
    // The journal lists a batch's steps before its nodes' steps.
    let j = p.journal_steps();
    let pos = |id: &str| j.iter().position(|s| s == id).unwrap();
    assert!(pos("batch/worker00/recheck") < pos("batch/worker00/prefer-no-schedule"));
    assert!(pos("batch/worker00/prefer-no-schedule") < pos("worker/worker00/cordon"));
    assert!(pos("worker/worker01/uncordon") < pos("batch/worker02/recheck"));
    // And the JSON form says it, with stable ids.
    let json: serde_json::Value = serde_json::from_str(&crate::render::plan_json(&p)).unwrap();
    let batch = &json["phases"].as_array().unwrap().iter().find(|ph| ph["id"] == "worker").unwrap()["batches"][0];
    assert_eq!(batch["steps"][1]["action"], "prefer_no_schedule");
    assert_eq!(batch["steps"][1]["nodes"][0], "worker02");
}

#[test]
fn single_node_batches_plan_no_batch_steps() {
    let fx = Fx::zoned_with_budget();
    let p = make(&fx, &PlanOptions::new(Mode::Online));
    assert!(p.phases.iter().flat_map(|ph| &ph.batches).all(|b| b.steps.is_empty()));
    assert!(p.node_plans().all(|(_, np)| np.steps.iter().all(|s| !matches!(s.action, Action::Untaint))));
}
