//! Property tests over random small clusters, states, workloads and options.
use super::*;
use crate::checks::CheckOptions;
use crate::planner::{Action, PhaseKind, PlanOptions, plan};
use proptest::prelude::*;
use std::collections::HashSet;

#[derive(Debug, Clone)]
struct Scenario {
    roles: Vec<Vec<Role>>,
    states: Vec<u8>,
    pods: Vec<(usize, u8)>,
    etcd_healthy: bool,
    kubelet_ahead: bool,
    online: bool,
    partial_ok: bool,
    ignore: bool,
    parallel: usize,
    /// Per node: how many minors below the fixture's current Kubernetes its components run (0 = as the fixture).
    behind: Vec<u8>,
    /// Release Kubernetes minors ahead of the fixture's current (1 = the fixture's release).
    ahead: u8,
}

fn role_set() -> impl Strategy<Value = Vec<Role>> {
    prop::sample::subsequence(Role::ALL.to_vec(), 1..=3)
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (2usize..10).prop_flat_map(|n| {
        (
            prop::collection::vec(role_set(), n),
            prop::collection::vec(0u8..6, n),
            prop::collection::vec((0..n, 0u8..6), 0..12),
            any::<bool>(),
            prop::bool::weighted(0.2),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            1usize..4,
            prop::collection::vec(prop::sample::select(vec![0u8, 0, 0, 1, 2, 3]), n),
            prop::sample::select(vec![1u8, 1, 1, 2]),
        )
            .prop_map(
                |(
                    roles,
                    states,
                    pods,
                    etcd_healthy,
                    kubelet_ahead,
                    online,
                    partial_ok,
                    ignore,
                    parallel,
                    behind,
                    ahead,
                )| Scenario {
                    roles,
                    states,
                    pods,
                    etcd_healthy,
                    kubelet_ahead,
                    online,
                    partial_ok,
                    ignore,
                    parallel,
                    behind,
                    ahead,
                },
            )
    })
}

/// Sets a Kubernetes component's versions (marker, installed, running) on a node's facts.
fn set_kube_version(nf: &mut NodeFacts, component: &str, version: &str) {
    if let Some(c) = nf.components.get_mut(component) {
        c.installed_version = Some(version.into());
        c.running_version = Some(version.into());
    }
    if let crate::facts::Marker::Present { value } = &mut nf.component_markers
        && let Some(m) = value.get_mut(component)
    {
        *m = version.into();
    }
}

const KUBE: [&str; 5] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"];

fn build(s: &Scenario) -> Fx {
    let mut release = synth::release();
    if s.ahead > 1 {
        let minor = 33 + u64::from(s.ahead);
        for c in &mut release.components {
            if KUBE.contains(&c.name.as_str()) {
                c.version = format!("1.{minor}.0");
            }
        }
        release.kubernetes = format!("v1.{minor}.0");
    }
    if s.kubelet_ahead {
        for c in &mut release.components {
            if c.name == "kubelet" {
                c.version = "1.35.0".into();
            }
        }
    }
    let nodes: Vec<_> = s.roles.iter().enumerate().map(|(i, r)| synth::node(&format!("n{i}"), i + 1, r)).collect();
    let inventory = synth::inventory(nodes);
    let mut node_facts = Vec::new();
    for (n, st) in inventory.nodes.iter().zip(&s.states) {
        let mut nf = match st {
            1 => synth::node_facts(&n.host, &n.roles, Some(&release)),
            2 => NodeFacts::unreachable(&n.host, "down"),
            _ => synth::node_facts(&n.host, &n.roles, None),
        };
        if *st == 3 {
            nf.disk_free.insert("/".into(), 1);
        }
        let behind = s.behind.get(node_facts.len()).copied().unwrap_or(0);
        if behind > 0 && *st != 1 && *st != 2 {
            for c in KUBE {
                set_kube_version(&mut nf, c, &format!("1.{}.0", 33 - u64::from(behind)));
            }
        }
        if *st == 4
            && let Some(k) = nf.components.get_mut("kubelet")
        {
            k.running_version = Some("1.36.0".into());
        }
        node_facts.push(nf);
    }
    let etcd_hosts: Vec<&str> =
        inventory.nodes.iter().filter(|n| n.has_role(Role::Etcd)).map(|n| n.host.as_str()).collect();
    let mut etcd = synth::healthy_etcd(&etcd_hosts);
    if !s.etcd_healthy && !etcd.members.is_empty() {
        etcd.members[0].healthy = Some(false);
    }
    let kube = KubeFacts {
        nodes: inventory
            .nodes
            .iter()
            .filter(|n| !n.roles.iter().all(|r| *r == Role::Etcd))
            .map(|n| kube_node(&n.host))
            .collect(),
        ..Default::default()
    };
    let facts = Facts::new(inventory, node_facts, Some(kube), vec![etcd], "t");
    let mut fx = Fx { facts, release };
    for (i, (node, kind)) in s.pods.iter().enumerate() {
        let host = format!("n{node}");
        let name = format!("app{i}");
        match kind {
            0 => fx.kube().pods.push(synth::pod("default", &name, &host, vec![], &name)),
            1 => fx.deployment("default", &name, 1, &[&host]),
            2 => fx.deployment("default", &name, 3, &[&host, "n0", "n1"]),
            3 => {
                fx.kube().jobs.push(controller("default", &name, &format!("j{i}"), 1, vec![]));
                fx.kube().pods.push(synth::pod(
                    "default",
                    &name,
                    &host,
                    vec![owner("Job", &name, &format!("j{i}"))],
                    &name,
                ));
            }
            _ => {
                fx.deployment("default", &name, 2, &[&host, &host]);
            }
        }
    }
    fx
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn plan_properties(s in scenario()) {
        let fx = build(&s);
        let mode = if s.online { Mode::Online } else { Mode::Offline };
        let analysis = crate::checks::analyze(&fx.facts, &fx.release, &CheckOptions::new(mode)).unwrap();
        // Online, the same number bounds the worker batches (--max-unavailable).
        let opts = PlanOptions {
            mode,
            partial_ok: s.partial_ok,
            ignore_safety_checks: s.ignore && s.online,
            max_parallel_workers: s.parallel,
            max_unavailable: crate::batching::MaxUnavailable::Count(s.parallel as u32),
            ..PlanOptions::new(mode)
        };
        let p = plan(&fx.facts, &analysis, &fx.release, &opts);
        let inv = &fx.facts.inventory;

        // Order: etcd < apiservers < master < worker < registry < services, each phase once.
        let kinds: Vec<PhaseKind> = p.phases.iter().map(|ph| ph.kind).collect();
        prop_assert!(kinds.windows(2).all(|w| w[0] < w[1]), "{kinds:?}");
        // Every node once per phase at most. A component goes in the phase of the node's earliest role, except:
        // etcd members always in `etcd`; when the masters are split, a master's API server in `apiservers` and its
        // other components in `master`; an etcd node's Kubernetes components in their own role's phase when another
        // master's API server is still to be upgraded.
        let split = kinds.contains(&PhaseKind::ApiServers);
        let api_hosts: HashSet<&str> = p
            .node_plans()
            .filter(|(_, np)| np.upgrades().any(|(c, _, _)| c == "kube-apiserver"))
            .map(|(_, np)| np.host.as_str())
            .collect();
        let mut seen = HashSet::new();
        let mut per_phase = HashSet::new();
        for (phase, np) in p.node_plans() {
            prop_assert!(per_phase.insert((phase.kind, np.host.clone())));
            seen.insert(np.host.clone());
            let node = inv.nodes.iter().find(|n| n.host == np.host).unwrap();
            let earliest = crate::planner::node_phase(node);
            let own = if node.has_role(Role::Master) { PhaseKind::Master } else { PhaseKind::Worker };
            let other_api = api_hosts.iter().any(|h| *h != np.host);
            for (comp, _, _) in np.upgrades() {
                let want = if comp == "etcd" || comp == "etcd-networking" {
                    earliest
                } else if split && comp == "kube-apiserver" {
                    PhaseKind::ApiServers
                } else if split && node.has_role(Role::Master) {
                    PhaseKind::Master
                } else if earliest == PhaseKind::Etcd && other_api {
                    own
                } else {
                    earliest
                };
                prop_assert_eq!(phase.kind, want, "{} on {}", comp, np.host);
            }
        }
        // The version-skew policy holds at every moment of a plan that is not blocked (checked here independently
        // of crate::skew, in minors): what breaks it was broken before the plan.
        if !p.is_blocked() {
            let broken_before = skew_breaks(&kube_minors(&fx.facts));
            let mut now = kube_minors(&fx.facts);
            for (_, np) in p.node_plans() {
                for (comp, _, to) in np.upgrades() {
                    if KUBE.contains(&comp) {
                        let minor = crate::version::parse(to).unwrap().minor;
                        now.insert((np.host.clone(), comp.to_string()), minor);
                        for (key, gap) in skew_breaks(&now) {
                            let before = broken_before.get(&key).copied();
                            prop_assert!(before.is_some_and(|b| b >= gap), "{key:?} {gap} (before: {before:?}) after {comp} on {}", np.host);
                        }
                    }
                }
            }
        }
        // No pruned node appears; no gating finding's node is upgraded.
        for pr in &p.pruned {
            prop_assert!(!seen.contains(&pr.host));
        }
        let gating: HashSet<&str> = p.findings.iter().filter(|f| crate::planner::gates(f, &opts)).map(|f| f.node.as_str()).collect();
        if !p.is_blocked() {
            for h in &gating {
                prop_assert!(!seen.contains(*h), "flagged {h} is in the plan");
            }
        } else {
            prop_assert!(p.phases.is_empty());
        }
        // With --partial-ok no unsafe node is upgraded (unless safety checks are ignored).
        if s.partial_ok && s.online && !opts.ignore_safety_checks {
            for f in p.findings.iter().filter(|f| f.class == crate::checks::Class::Unsafe) {
                prop_assert!(!seen.contains(&f.node));
            }
        }
        // Offline: no cordon, no drain.
        if mode == Mode::Offline {
            for (_, np) in p.node_plans() {
                prop_assert!(!np.drain);
                prop_assert!(np.steps.iter().all(|st| !matches!(st.action, Action::Drain | Action::Cordon | Action::Uncordon)));
            }
        } else {
            // One node at a time except workers, whose batches are at most --max-unavailable and admissible.
            for ph in &p.phases {
                if ph.kind == PhaseKind::Worker {
                    for b in &ph.batches {
                        prop_assert!(!b.nodes.is_empty() && b.nodes.len() <= s.parallel.max(1));
                        // A node alone goes whatever its pods (the findings gate it); several go together only
                        // when their drains fit every budget.
                        if b.nodes.len() > 1 {
                            let hosts: Vec<&str> = b.nodes.iter().map(|n| n.host.as_str()).collect();
                            prop_assert_eq!(crate::batching::admissible(&fx.facts, &hosts), Ok(()));
                        }
                    }
                } else {
                    prop_assert!(ph.batches.iter().all(|b| b.nodes.len() == 1));
                }
            }
        }
        // Partial plans end before the cluster services.
        if p.partial {
            prop_assert!(p.phases.iter().all(|ph| ph.kind <= PhaseKind::Worker));
        }
        // A kubelet is never upgraded past the API servers: every master ends at or above it, and all master
        // upgrades come before any worker-phase kubelet.
        let mut masters_done = true;
        for m in inv.nodes.iter().filter(|n| n.has_role(Role::Master)) {
            let need = analysis.needs.iter().find(|n| n.host == m.host).unwrap();
            if need.needs_upgrade && !seen.contains(&m.host) {
                masters_done = false;
            }
        }
        let apiserver = fx.release.component("kube-apiserver").map(|c| c.version.clone()).unwrap();
        for (_, np) in p.node_plans() {
            for (comp, _, to) in np.upgrades() {
                if comp == "kubelet" {
                    prop_assert!(crate::version::cmp_str(to, &apiserver).is_le(), "kubelet {to} > apiserver {apiserver}");
                    prop_assert!(masters_done, "kubelet upgraded while a master needing upgrade is left out");
                }
            }
        }
    }
}

/// (host, component) → minor of the Kubernetes components the facts show running.
fn kube_minors(facts: &Facts) -> std::collections::BTreeMap<(String, String), u64> {
    let mut out = std::collections::BTreeMap::new();
    for nf in facts.nodes.iter().filter(|n| n.is_reachable()) {
        for c in KUBE {
            if let Some(v) = crate::need::current_version(nf, c).and_then(|v| crate::version::parse(&v)) {
                out.insert((nf.host.clone(), c.to_string()), v.minor);
            }
        }
    }
    out
}

/// What breaks the skew policy (controllers assumed behind the load balancer): (rule, host, component) → minors
/// past the bound. A plan may keep a violation the cluster already had, but never widen it.
fn skew_breaks(
    m: &std::collections::BTreeMap<(String, String), u64>,
) -> std::collections::BTreeMap<(u8, String, String), u64> {
    let apis: Vec<u64> = m.iter().filter(|((_, c), _)| c == "kube-apiserver").map(|(_, v)| *v).collect();
    let mut out = std::collections::BTreeMap::new();
    let (Some(&lo), Some(&hi)) = (apis.iter().min(), apis.iter().max()) else { return out };
    if hi - lo > 1 {
        out.insert((0, String::new(), String::new()), hi - lo - 1);
    }
    for ((h, c), &v) in m {
        let key = |rule: u8| (rule, h.clone(), c.clone());
        match c.as_str() {
            "kubelet" | "kube-proxy" => {
                if v > lo {
                    out.insert(key(1), v - lo);
                }
                let allowed = if v < 25 { 2 } else { 3 };
                if hi > v + allowed {
                    out.insert(key(2), hi - v - allowed);
                }
            }
            "kube-controller-manager" | "kube-scheduler" => {
                if v > lo {
                    out.insert(key(3), v - lo);
                }
                if hi > v + 1 {
                    out.insert(key(4), hi - v - 1);
                }
            }
            _ => {}
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every remedy a blocked plan offers works: rerunning with it (same facts) gives a plan that is not blocked,
    /// and leaves out exactly the nodes the remedy said it would.
    #[test]
    fn offered_remedies_unblock(s in scenario()) {
        use crate::planner::{Acceptance, PlanStatus, Remedy};
        let fx = build(&s);
        let mode = if s.online { Mode::Online } else { Mode::Offline };
        let run = |mode: Mode, partial_ok: bool, accepted: Vec<Acceptance>| {
            let analysis = crate::checks::analyze(&fx.facts, &fx.release, &CheckOptions::new(mode)).unwrap();
            let opts = PlanOptions { mode, partial_ok, accepted, ..PlanOptions::new(mode) };
            plan(&fx.facts, &analysis, &fx.release, &opts)
        };
        let p = run(mode, s.partial_ok, Vec::new());
        let PlanStatus::Blocked { remedies, blocking, .. } = &p.status else { return Ok(()) };
        prop_assert!(!blocking.is_empty());
        prop_assert_eq!(&remedies[0], &Remedy::Fix);
        for r in &remedies[1..] {
            let (again, left_out) = match r {
                Remedy::Fix => unreachable!("only first"),
                Remedy::PartialOk { left_out } => (run(mode, true, Vec::new()), left_out),
                Remedy::Offline { partial_ok, left_out, accept } => {
                    let accepted = accept.iter().map(|a| a.parse::<Acceptance>().unwrap()).collect();
                    (run(Mode::Offline, *partial_ok, accepted), left_out)
                }
                Remedy::Accept { accept, partial_ok, left_out } => {
                    let accepted = accept.iter().map(|a| a.parse::<Acceptance>().unwrap()).collect();
                    (run(mode, *partial_ok, accepted), left_out)
                }
            };
            prop_assert!(!again.is_blocked(), "{r:?} offered but the rerun is blocked: {:?}", again.status);
            let pruned: Vec<&str> = again.pruned.iter().map(|p| p.host.as_str()).collect();
            let said: Vec<&str> = left_out.iter().map(String::as_str).collect();
            prop_assert_eq!(pruned, said, "{:?}", r);
        }
    }
}
