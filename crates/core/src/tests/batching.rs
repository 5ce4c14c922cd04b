//! Batches of workers drained together: one unit test per rule, and properties over random clusters checked by an
//! independent counter of what a batch's drain takes from each budget.
use super::*;
use crate::batching::{BatchOptions, Batching, Bound, MaxUnavailable, admissible, batch_workers, split_live};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

const ZONE: &str = "topology.kubernetes.io/zone";

/// `n` Ready workers `w0..`, zoned by `zones[i]` (None: no label), and nothing else.
fn cluster(zones: &[Option<&str>]) -> Facts {
    let nodes: Vec<_> = (0..zones.len()).map(|i| synth::node(&format!("w{i}"), i + 1, &[Role::Worker])).collect();
    let inventory = synth::inventory(nodes);
    let node_facts = inventory.nodes.iter().map(|n| synth::node_facts(&n.host, &n.roles, None)).collect();
    let kube = KubeFacts {
        nodes: zones
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let mut n = kube_node(&format!("w{i}"));
                if let Some(z) = z {
                    n.labels = [(ZONE, *z)].into();
                }
                n
            })
            .collect(),
        ..Default::default()
    };
    Facts::new(inventory, node_facts, Some(kube), vec![], "t")
}

fn hosts(f: &Facts) -> Vec<String> {
    f.inventory.nodes.iter().map(|n| n.host.clone()).collect()
}

fn opts(max: usize) -> BatchOptions {
    BatchOptions { max, topology_key: ZONE.into(), alone: BTreeMap::new() }
}

fn run(f: &Facts, o: &BatchOptions) -> Batching {
    let hs = hosts(f);
    let refs: Vec<&str> = hs.iter().map(String::as_str).collect();
    batch_workers(f, &refs, o)
}

fn sizes(b: &Batching) -> Vec<usize> {
    b.batches.iter().map(|b| b.hosts.len()).collect()
}

/// A Deployment (→ ReplicaSet) with one ready pod on each listed node.
fn deployment(f: &mut Facts, name: &str, replicas: i64, on: &[usize]) {
    let kube = f.kube.as_mut().unwrap();
    let (duid, rsuid, rs) = (format!("d-{name}"), format!("rs-{name}"), format!("{name}-rs"));
    kube.deployments.push(controller("default", name, &duid, replicas, vec![]));
    kube.replica_sets.push(controller("default", &rs, &rsuid, replicas, vec![owner("Deployment", name, &duid)]));
    for (i, n) in on.iter().enumerate() {
        kube.pods.push(pod(
            "default",
            &format!("{rs}-{i}"),
            &format!("w{n}"),
            vec![owner("ReplicaSet", &rs, &rsuid)],
            name,
        ));
    }
}

/// A PDB over `app=name` that allows `allowed` disruptions now.
fn pdb(f: &mut Facts, name: &str, healthy: i64, allowed: i64) {
    f.kube.as_mut().unwrap().pdbs.push(PodDisruptionBudget {
        namespace: "default".into(),
        name: name.into(),
        selector: Some(LabelSelector { match_labels: [("app", name)].into(), ..Default::default() }),
        min_available: Some(IntOrPercent::Int(healthy - allowed)),
        max_unavailable: None,
        disruptions_allowed: allowed,
        current_healthy: healthy,
        desired_healthy: healthy - allowed,
        expected_pods: healthy,
    });
}

#[test]
fn max_unavailable_bounds_a_batch() {
    let f = cluster(&[Some("a"); 7]);
    let b = run(&f, &opts(3));
    assert_eq!(sizes(&b), vec![3, 3, 1]);
    assert_eq!(b.batches[0].bound, Some(Bound::MaxUnavailable { max: 3 }));
    assert_eq!(b.batches[2].bound, Some(Bound::Domain { key: ZONE.into(), value: "a".into() }));
}

#[test]
fn a_pdb_allows_what_it_allows_and_says_so() {
    let mut f = cluster(&[Some("a"); 6]);
    deployment(&mut f, "web", 6, &[0, 1, 2, 3, 4, 5]);
    pdb(&mut f, "web", 6, 2);
    let b = run(&f, &opts(10));
    assert_eq!(sizes(&b), vec![2, 2, 2]);
    let bound = b.batches[0].bound.as_ref().unwrap();
    assert_eq!(bound.describe(), "PDB default/web allows 2");
}

#[test]
fn workers_without_the_pdbs_pods_join_any_batch() {
    let mut f = cluster(&[Some("a"); 4]);
    deployment(&mut f, "web", 2, &[0, 1]);
    pdb(&mut f, "web", 2, 1);
    // w0 and w1 each hold one of the budget's pods: never together; w2, w3 hold none.
    let b = run(&f, &opts(4));
    assert_eq!(b.batches.len(), 2, "{b:?}");
    for batch in &b.batches {
        assert!(!(batch.hosts.contains(&"w0".to_string()) && batch.hosts.contains(&"w1".to_string())));
    }
}

#[test]
fn replicated_controllers_keep_a_ready_replica_outside() {
    let mut f = cluster(&[Some("a"); 3]);
    deployment(&mut f, "api", 3, &[0, 1, 2]);
    let b = run(&f, &opts(3));
    assert_eq!(sizes(&b), vec![2, 1]);
    assert!(matches!(b.batches[0].bound, Some(Bound::Replicas { ref name, ready: 3, .. }) if name == "api"));
    // A single-replica Deployment is a finding of its own; batches do not make it worse.
    let mut f = cluster(&[Some("a"); 3]);
    deployment(&mut f, "solo", 1, &[0]);
    assert_eq!(sizes(&run(&f, &opts(3))), vec![3]);
}

#[test]
fn one_failure_domain_per_batch() {
    let f = cluster(&[Some("a"), Some("b"), Some("a"), Some("b"), None]);
    let b = run(&f, &opts(5));
    let got: Vec<Vec<String>> = b.batches.iter().map(|b| b.hosts.clone()).collect();
    assert_eq!(got, vec![vec!["w0", "w2"], vec!["w1", "w3"], vec!["w4"]]);
    assert_eq!(b.batches[2].bound, Some(Bound::NoDomain { key: ZONE.into() }));
}

#[test]
fn acknowledged_nodes_go_alone() {
    let f = cluster(&[Some("a"); 4]);
    let mut o = opts(4);
    o.alone.insert("w1".into(), "ingress-node".into());
    let b = run(&f, &o);
    let got: Vec<Vec<String>> = b.batches.iter().map(|b| b.hosts.clone()).collect();
    assert_eq!(got, vec![vec!["w0", "w2", "w3"], vec!["w1"]]);
    assert_eq!(b.batches[1].bound.as_ref().unwrap().describe(), "alone: ingress-node was acknowledged");
}

#[test]
fn evicted_requests_must_fit_on_the_nodes_left() {
    let mut f = cluster(&[Some("a"); 4]);
    for n in &mut f.kube.as_mut().unwrap().nodes {
        n.allocatable = Some(Resources { cpu_millis: 1000, memory_bytes: 1 << 30 });
    }
    // Every worker runs 600m of a 4-replica Deployment: draining two leaves 2 × 400m free for 2 × 600m.
    deployment(&mut f, "cpu", 4, &[0, 1, 2, 3]);
    for p in &mut f.kube.as_mut().unwrap().pods {
        p.requests = Some(Resources { cpu_millis: 600, memory_bytes: 1 << 20 });
    }
    let b = run(&f, &opts(4));
    assert!(b.capacity_checked);
    assert_eq!(sizes(&b), vec![1, 1, 1, 1], "{b:?}");
    assert_eq!(b.batches[0].bound, Some(Bound::Capacity { resource: "CPU".into() }));
    // With room to spare, batches grow (3 of 4 replicas may go: one stays).
    for n in &mut f.kube.as_mut().unwrap().nodes {
        n.allocatable = Some(Resources { cpu_millis: 4000, memory_bytes: 1 << 30 });
    }
    assert_eq!(sizes(&run(&f, &opts(4))), vec![3, 1]);
    // A node without allocatable: capacity cannot be checked, and the plan says so.
    f.kube.as_mut().unwrap().nodes[0].allocatable = None;
    assert!(!run(&f, &opts(4)).capacity_checked);
}

#[test]
fn without_kubernetes_facts_every_worker_goes_alone() {
    let mut f = cluster(&[Some("a"); 3]);
    f.kube = None;
    assert_eq!(sizes(&run(&f, &opts(3))), vec![1, 1, 1]);
}

#[test]
fn admissible_is_the_same_rule() {
    let mut f = cluster(&[Some("a"); 3]);
    deployment(&mut f, "web", 3, &[0, 1, 2]);
    pdb(&mut f, "web", 3, 1);
    assert!(admissible(&f, &["w0", "w2"]).is_err());
    assert!(admissible(&f, &["w0"]).is_ok());
}

#[test]
fn the_live_recheck_keeps_a_batch_the_live_state_permits() {
    let mut f = cluster(&[Some("a"); 4]);
    deployment(&mut f, "web", 4, &[0, 1, 2, 3]);
    pdb(&mut f, "web", 4, 2);
    let (parts, why) = split_live(f.kube.as_ref().unwrap(), &["w0", "w1"]);
    assert_eq!(parts, vec![vec!["w0".to_string(), "w1".to_string()]]);
    assert_eq!(why, None);
}

#[test]
fn the_live_recheck_splits_a_batch_the_live_state_no_longer_permits() {
    // Planned with the budget allowing 2; live, a pod is unhealthy elsewhere and it allows 1.
    let mut f = cluster(&[Some("a"); 4]);
    deployment(&mut f, "web", 4, &[0, 1, 2, 3]);
    pdb(&mut f, "web", 4, 1);
    let (parts, why) = split_live(f.kube.as_ref().unwrap(), &["w0", "w1", "w2"]);
    assert_eq!(parts, vec![vec!["w0".to_string()], vec!["w1".to_string()], vec!["w2".to_string()]]);
    assert_eq!(why.map(|b| b.describe()), Some("PDB default/web allows 1".to_string()));
    // Each part is admissible on its own, and every host is in exactly one part.
    for p in &parts {
        let refs: Vec<&str> = p.iter().map(String::as_str).collect();
        assert_eq!(admissible(&f, &refs), Ok(()));
    }
    // Hosts without the budget's pods stay together with the first part that takes them.
    let mut g = cluster(&[Some("a"); 4]);
    deployment(&mut g, "web", 2, &[0, 1]);
    pdb(&mut g, "web", 2, 1);
    let (parts, _) = split_live(g.kube.as_ref().unwrap(), &["w0", "w1", "w2", "w3"]);
    assert_eq!(parts, vec![vec!["w0".to_string(), "w2".to_string(), "w3".to_string()], vec!["w1".to_string()]]);
}

#[test]
fn a_host_a_budget_refuses_alone_is_a_part_of_its_own_never_forced() {
    let mut f = cluster(&[Some("a"); 3]);
    deployment(&mut f, "web", 3, &[0, 1, 2]);
    pdb(&mut f, "web", 3, 0);
    let (parts, why) = split_live(f.kube.as_ref().unwrap(), &["w0", "w1"]);
    assert_eq!(parts.len(), 2);
    assert!(matches!(why, Some(Bound::Pdb { allows: 0, .. })), "{why:?}");
}

#[test]
fn max_unavailable_flag() {
    assert_eq!("3".parse::<MaxUnavailable>(), Ok(MaxUnavailable::Count(3)));
    assert_eq!("25%".parse::<MaxUnavailable>(), Ok(MaxUnavailable::Percent(25)));
    for bad in ["0", "0%", "101%", "-1", "x", "", "1.5", "100001"] {
        let e = bad.parse::<MaxUnavailable>().unwrap_err();
        assert!(e.contains("1 to 100000") && e.contains("1% to 100%"), "{bad}: {e}");
    }
    assert_eq!(MaxUnavailable::Percent(25).resolve(40), 10);
    assert_eq!(MaxUnavailable::Percent(25).resolve(3), 1, "rounded down, at least 1");
    assert_eq!(MaxUnavailable::Count(5).resolve(2), 5);
}

// ----- properties -----

#[derive(Debug, Clone)]
struct Random {
    zones: Vec<Option<u8>>,
    /// Per Deployment: replicas (ready pods, one per listed worker index, repeats allowed), PDB allowed-now.
    deployments: Vec<(Vec<usize>, Option<i64>)>,
    max: usize,
}

fn random() -> impl Strategy<Value = Random> {
    (2usize..40).prop_flat_map(|n| {
        (
            prop::collection::vec(prop::option::weighted(0.9, 0u8..4), n),
            prop::collection::vec((prop::collection::vec(0..n, 1..10), prop::option::of(0i64..4)), 0..12),
            1usize..12,
        )
            .prop_map(|(zones, deployments, max)| Random { zones, deployments, max })
    })
}

fn build(r: &Random) -> Facts {
    let zones: Vec<Option<String>> = r.zones.iter().map(|z| z.map(|z| format!("z{z}"))).collect();
    let zrefs: Vec<Option<&str>> = zones.iter().map(|z| z.as_deref()).collect();
    let mut f = cluster(&zrefs);
    for (i, (on, allowed)) in r.deployments.iter().enumerate() {
        let name = format!("d{i}");
        deployment(&mut f, &name, on.len() as i64, on);
        if let Some(a) = allowed {
            pdb(&mut f, &name, on.len() as i64, (*a).min(on.len() as i64));
        }
    }
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn batches_never_breach_a_budget(r in random()) {
        let f = build(&r);
        let b = run(&f, &opts(r.max));
        let all = hosts(&f);
        // Every worker exactly once.
        let mut seen: Vec<String> = b.batches.iter().flat_map(|b| b.hosts.clone()).collect();
        seen.sort();
        let mut want = all.clone();
        want.sort();
        prop_assert_eq!(seen, want);
        let zone_of: HashMap<String, Option<u8>> =
            all.iter().cloned().zip(r.zones.iter().copied()).collect();
        for batch in &b.batches {
            prop_assert!(batch.hosts.len() <= r.max);
            let zs: HashSet<Option<u8>> = batch.hosts.iter().map(|h| zone_of[h]).collect();
            prop_assert!(zs.len() == 1, "one domain: {:?}", batch.hosts);
            if zs.contains(&None) {
                prop_assert_eq!(batch.hosts.len(), 1, "unlabelled nodes go alone");
            }
            let in_batch: HashSet<usize> =
                batch.hosts.iter().map(|h| h[1..].parse::<usize>().unwrap()).collect();
            // A budget is only ever overrun by a node that overruns it alone — a finding of its own
            // (pdb-blocks-drain, replicas-on-single-node) that stops the plan unless acknowledged — and such a node
            // is alone in its batch, as the seed's one-at-a-time would have it.
            let alone = batch.hosts.len() == 1;
            for (i, (on, allowed)) in r.deployments.iter().enumerate() {
                let taken = on.iter().filter(|n| in_batch.contains(n)).count() as i64;
                if let Some(a) = allowed {
                    prop_assert!(alone || taken <= (*a).min(on.len() as i64), "PDB d{} allows {}: batch takes {}", i, a, taken);
                }
                if on.len() >= 2 {
                    prop_assert!(alone || (on.len() as i64) - taken >= 1, "d{} keeps a ready replica outside", i);
                }
            }
        }
    }
}

/// Batch count against the lower bound ⌈workers / max⌉ over many random clusters (printed; the closing note of
/// the batching issue reports it). Budgets and domains raise the true optimum above the bound, so this is an upper
/// estimate of how far first-fit is from optimal.
#[test]
fn batch_count_against_the_lower_bound() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut batches, mut bound, mut unconstrained) = (0usize, 0usize, (0usize, 0usize));
    for _ in 0..500 {
        let r = random().new_tree(&mut runner).unwrap().current();
        let f = build(&r);
        let n = run(&f, &opts(r.max)).batches.len();
        let lb = r.zones.len().div_ceil(r.max);
        assert!(n >= lb);
        batches += n;
        bound += lb;
        // The same cluster with every node in one zone and no budget: only the replica rule and the maximum
        // bound the batches, so first-fit should come close to the bound.
        let mut one_zone = r.clone();
        one_zone.zones.iter_mut().for_each(|z| *z = Some(0));
        one_zone.deployments.iter_mut().for_each(|d| d.1 = None);
        let n = run(&build(&one_zone), &opts(r.max)).batches.len();
        assert!(n >= lb);
        unconstrained.0 += n;
        unconstrained.1 += lb;
    }
    eprintln!(
        "batch count / lower bound over 500 random clusters: {batches} / {bound} = {:.3}; the same in one zone without budgets: {} / {} = {:.3}",
        batches as f64 / bound as f64,
        unconstrained.0,
        unconstrained.1,
        unconstrained.0 as f64 / unconstrained.1.max(1) as f64
    );
}

// The planner's use of the batches: online worker phases follow them, offline and the default keep one node at a
// time (or --max-parallel-workers), and the plan says how it batched.

fn worker_batches(p: &crate::planner::UpgradePlan) -> Vec<Vec<String>> {
    p.phases
        .iter()
        .filter(|ph| ph.kind == crate::planner::PhaseKind::Worker)
        .flat_map(|ph| &ph.batches)
        .map(|b| b.nodes.iter().map(|n| n.host.clone()).collect())
        .collect()
}

fn online(max: &str) -> crate::planner::PlanOptions {
    crate::planner::PlanOptions {
        max_unavailable: max.parse().unwrap(),
        ..crate::planner::PlanOptions::new(Mode::Online)
    }
}

#[test]
fn planner_default_is_one_worker_at_a_time() {
    let fx = Fx::zoned_with_budget();
    let p = super::planner::make(&fx, &crate::planner::PlanOptions::new(Mode::Online));
    assert_eq!(worker_batches(&p), [["worker00"], ["worker01"], ["worker02"]]);
    assert!(p.batching.is_none());
    assert!(p.phases.iter().flat_map(|ph| &ph.batches).all(|b| b.bound.is_none()));
}

#[test]
fn planner_batches_online_workers_within_the_budgets() {
    let fx = Fx::zoned_with_budget();
    let p = super::planner::make(&fx, &online("100%"));
    assert_eq!(worker_batches(&p), [vec!["worker00", "worker01"], vec!["worker02"]]);
    let phase = p.phases.iter().find(|ph| ph.kind == crate::planner::PhaseKind::Worker).unwrap();
    assert!(matches!(phase.batches[0].bound, Some(Bound::Pdb { allows: 2, .. }) | Some(Bound::Replicas { .. })));
    let summary = p.batching.as_ref().unwrap();
    assert_eq!((summary.max, summary.max_unavailable), (3, MaxUnavailable::Percent(100)));
    for b in worker_batches(&p) {
        let refs: Vec<&str> = b.iter().map(String::as_str).collect();
        assert_eq!(admissible(&fx.facts, &refs), Ok(()), "{b:?}");
    }
    // The masters and etcd nodes still go one at a time.
    assert!(
        p.phases
            .iter()
            .filter(|ph| ph.kind != crate::planner::PhaseKind::Worker)
            .flat_map(|ph| &ph.batches)
            .all(|b| b.nodes.len() == 1)
    );
}

#[test]
fn planner_puts_an_acknowledged_ingress_node_alone() {
    let mut fx = Fx::zoned_with_budget();
    fx.node("worker00").roles.push(Role::Ingress);
    let opts =
        crate::planner::PlanOptions { accepted: vec!["ingress-node@worker00".parse().unwrap()], ..online("100%") };
    let p = super::planner::make(&fx, &opts);
    assert_eq!(p.status, crate::planner::PlanStatus::Ready, "{p:#?}");
    let batches = worker_batches(&p);
    assert!(batches.contains(&vec!["worker00".to_string()]), "{batches:?}");
    let phase = p.phases.iter().find(|ph| ph.kind == crate::planner::PhaseKind::Worker).unwrap();
    let alone = phase.batches.iter().find(|b| b.nodes[0].host == "worker00").unwrap();
    assert_eq!(alone.bound, Some(Bound::Accepted { code: "ingress-node".into() }));
}

#[test]
fn offline_ignores_max_unavailable() {
    let fx = Fx::zoned_with_budget();
    let opts = crate::planner::PlanOptions {
        max_unavailable: MaxUnavailable::Percent(100),
        max_parallel_workers: 2,
        ..crate::planner::PlanOptions::new(Mode::Offline)
    };
    let a = fx.analyze(Mode::Offline);
    let p = crate::planner::plan(&fx.facts, &a, &fx.release, &opts);
    assert_eq!(worker_batches(&p), [vec!["worker00", "worker01"], vec!["worker02"]]);
    assert!(p.batching.is_none());
}
