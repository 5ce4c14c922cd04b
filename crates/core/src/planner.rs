//! Planner: turns an [`Analysis`] into an [`UpgradePlan`], the data the executor walks.
//!
//! Shape: phases (etcd → master → worker → registry → services) → batches (nodes upgraded together) → node plans →
//! steps. Every phase, batch, node plan and step has a stable id derived from the phase, host and component
//! (`worker/node-7/upgrade/kubelet`), so a journal can record progress by id and a rerun resumes at the first
//! unfinished step.

use crate::batching::{self, BatchOptions, Bound, DEFAULT_TOPOLOGY_KEY, MaxUnavailable};
use crate::checks::{Analysis, Class, Code, Finding, Mode};
use crate::facts::Facts;
use crate::gates::{self, Gate};
use kismatic_plan::{Node, Role};
use kismatic_release::{Delivery, Release, ServicePhase};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// Version of the plan's JSON form.
pub const PLAN_FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    pub mode: Mode,
    pub partial_ok: bool,
    /// Online only: unsafe/unavailable findings are reported but do not stop or prune.
    pub ignore_safety_checks: bool,
    /// Offline only: workers upgraded together (at least 1).
    pub max_parallel_workers: usize,
    /// Online only: workers drained and upgraded together at most (`--max-unavailable`); batches are smaller
    /// where a PodDisruptionBudget, a controller's replicas, a failure domain or capacity requires it.
    pub max_unavailable: MaxUnavailable,
    /// Online only: the node label whose value is a failure domain; a batch stays within one.
    pub topology_key: String,
    /// Online only: findings the operator has acknowledged (`--accept CODE[@NODE]`); reported, not gating.
    pub accepted: Vec<Acceptance>,
    /// Where each master's own API server listens: the port of its health gate.
    pub apiserver_port: u16,
    /// Online, when this run resumes an interrupted one: the workloads whose pods that run's drains evicted (the
    /// journal's `draining` records). See [`caused_by_interrupted_drain`].
    pub moved_by_interrupted_run: Vec<MovedWorkload>,
}

/// A workload whose pods an interrupted run's drain of `drained` evicted (from its journal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedWorkload {
    pub drained: String,
    /// `Deployment`, `StatefulSet`, ... as the journal records it.
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// The interrupted drain that explains a finding, if one does: `replicas-on-single-node` on node X for a workload
/// whose pods the interrupted run's drain of another node moved. The drain put them there (the scheduler had one
/// node left for them, measured in the crash campaign: dashboard and registry onto ingress01 after worker01's
/// drain), the analysis before that run found the workload spread, and an uninterrupted run would go on draining X
/// in the same state. So on resume it does not gate: it is reported, naming the drain, and the run carries on as
/// the uninterrupted one would. Only this code: a PDB that refuses is still the live answer of the Eviction API.
pub fn caused_by_interrupted_drain<'a>(finding: &Finding, opts: &'a PlanOptions) -> Option<&'a MovedWorkload> {
    if opts.mode != Mode::Online || finding.code != Code::ReplicasOnSingleNode {
        return None;
    }
    opts.moved_by_interrupted_run.iter().find(|m| {
        !m.drained.eq_ignore_ascii_case(&finding.node)
            && finding.object == format!("{} {}/{}", m.kind, m.namespace, m.name)
    })
}

/// An operator's acknowledgement of one kind of unsafe or unavailable finding, on one node or on all: narrower
/// than `--ignore-safety-checks`, which waves through everything. Readiness findings cannot be accepted: an
/// unready node cannot take the upgrade whatever the operator wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acceptance {
    pub code: Code,
    /// `None` accepts the code on every node.
    pub node: Option<String>,
}

impl Acceptance {
    pub fn covers(&self, finding: &Finding) -> bool {
        finding.code == self.code && self.node.as_deref().is_none_or(|n| n.eq_ignore_ascii_case(&finding.node))
    }
}

impl std::str::FromStr for Acceptance {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (code, node) = match s.split_once('@') {
            Some((c, n)) if !n.is_empty() => (c, Some(n.to_string())),
            Some(_) => return Err(format!("{s:?}: a node name must follow '@'")),
            None => (s, None),
        };
        let Some(found) = Code::ALL.iter().copied().find(|c| c.as_str() == code) else {
            let known: Vec<&str> =
                Code::ALL.iter().filter(|c| c.class() != Class::Unready).map(|c| c.as_str()).collect();
            return Err(format!("unknown finding code {code:?}; codes that can be accepted: {}", known.join(", ")));
        };
        if found.class() == Class::Unready {
            return Err(format!(
                "{code} is a readiness finding and cannot be accepted: the node cannot take the upgrade"
            ));
        }
        Ok(Acceptance { code: found, node })
    }
}

impl PlanOptions {
    pub fn new(mode: Mode) -> Self {
        PlanOptions {
            mode,
            partial_ok: false,
            ignore_safety_checks: false,
            max_parallel_workers: 1,
            max_unavailable: MaxUnavailable::default(),
            topology_key: DEFAULT_TOPOLOGY_KEY.to_string(),
            accepted: Vec::new(),
            apiserver_port: kismatic_plan::DEFAULT_APISERVER_PORT,
            moved_by_interrupted_run: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpgradePlan {
    pub format: u32,
    pub mode: Mode,
    /// Target release version.
    pub release: semver::Version,
    /// Target `kubernetes` marker.
    pub kubernetes: String,
    pub status: PlanStatus,
    /// `--partial-ok` pruned nodes: the plan ends before the cluster services.
    pub partial: bool,
    /// Every planned node's artifacts, staged in the background from the start, in this order (a node's own turn
    /// waits for its staging).
    #[serde(default)]
    pub staging: Vec<StageStep>,
    /// A verified snapshot of each etcd cluster that will change, before any node is touched.
    #[serde(default)]
    pub snapshots: Vec<SnapshotStep>,
    pub phases: Vec<Phase>,
    /// Nodes already at the target release.
    pub skipped: Vec<String>,
    /// Nodes left out under `--partial-ok`, with the codes that flagged them.
    pub pruned: Vec<PrunedNode>,
    /// Every finding, gating or not, grouped by node.
    pub findings: Vec<Finding>,
    /// Online with `--max-unavailable` above one node: how the workers were batched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batching: Option<BatchingSummary>,
}

/// How the online worker batches were formed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchingSummary {
    /// Nodes per batch at most (`--max-unavailable` resolved against the workers).
    pub max: usize,
    /// `--max-unavailable` as given.
    pub max_unavailable: MaxUnavailable,
    pub topology_key: String,
    /// Whether the evicted pods' requests were checked against the free capacity (every pod involved declares
    /// requests and every schedulable node its allocatable capacity).
    pub capacity_checked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PlanStatus {
    /// Nothing stops the plan (it may be empty: nothing to do).
    Ready,
    /// The run must stop; every reason is listed, with the nodes and codes that stop it and the remedies that
    /// would work for them.
    Blocked {
        reasons: Vec<String>,
        #[serde(default)]
        blocking: Vec<BlockingNode>,
        /// Codes of the cluster-level findings that stop the plan (no node can be left out to avoid them).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cluster: Vec<Code>,
        #[serde(default)]
        remedies: Vec<Remedy>,
    },
}

/// A node whose findings stop the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockingNode {
    pub host: String,
    /// The node's phase: `etcd` and `master` nodes cannot be left out by `--partial-ok`.
    pub phase: PhaseKind,
    /// The codes that gate under the options given.
    pub codes: Vec<Code>,
}

/// A way out of a blocked plan, offered only when it would work for every blocking node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "remedy", rename_all = "snake_case")]
pub enum Remedy {
    /// Fix what the findings describe (always possible), then rerun.
    Fix,
    /// Rerun with `--partial-ok`: every blocking node can be left out.
    PartialOk { left_out: Vec<String> },
    /// `kismatic upgrade offline` (no safety checks, cordons or drains); with `--partial-ok` when nodes with
    /// readiness findings must be left out, and `--accept` for what stops offline upgrades too (an API the
    /// upgrade removes, a kubelet changing minor in place).
    Offline {
        partial_ok: bool,
        left_out: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        accept: Vec<String>,
    },
    /// Acknowledge these findings (`--accept CODE@NODE` each); with `--partial-ok` when the nodes left are
    /// left out.
    Accept { accept: Vec<String>, partial_ok: bool, left_out: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrunedNode {
    pub host: String,
    pub codes: Vec<Code>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhaseKind {
    Etcd,
    /// Every master's API server, before anything else of the masters (see [`split_masters`]).
    ApiServers,
    Master,
    Worker,
    Registry,
    Services,
}

impl PhaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseKind::Etcd => "etcd",
            PhaseKind::ApiServers => "apiservers",
            PhaseKind::Master => "master",
            PhaseKind::Worker => "worker",
            PhaseKind::Registry => "registry",
            PhaseKind::Services => "services",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    pub id: String,
    pub kind: PhaseKind,
    /// Node phases: batches in order; the nodes of one batch are upgraded together.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub batches: Vec<Batch>,
    /// Registry / services phases: manifests applied in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceStep>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    pub id: String,
    pub nodes: Vec<NodePlan>,
    /// Online worker batches: what kept the batch from growing (absent when nothing did, or batches are single
    /// nodes by choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bound: Option<Bound>,
    /// Online worker batches (`--max-unavailable` above one node): run before the batch's nodes are cordoned —
    /// the live re-check, then the next batch's drain-soon taint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<BatchStep>,
}

/// The `PreferNoSchedule` taint put on the next batch's nodes before a batch is drained, so that the pods it evicts
/// prefer nodes that are not about to be drained too; removed at each node's uncordon (and on abort).
pub const DRAIN_SOON_TAINT: &str = "upgrade.kismatic.io/drain-soon";

/// A step of a whole online worker batch. Ids: `batch/<first host>/recheck`, `batch/<first host>/prefer-no-schedule`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStep {
    pub id: String,
    #[serde(flatten)]
    pub action: BatchAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum BatchAction {
    /// Re-read the budgets and controllers; when the live state no longer permits draining the batch whole, split
    /// it into parts that it permits ([`crate::batching::split_live`]), never force it.
    Recheck,
    /// Taint the next batch's nodes [`DRAIN_SOON_TAINT`]`:PreferNoSchedule`.
    PreferNoSchedule { nodes: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    pub id: String,
    pub host: String,
    pub roles: Vec<Role>,
    /// Cordoned and drained before, uncordoned after (online only, and only nodes registered in the cluster).
    pub drain: bool,
    pub steps: Vec<Step>,
}

impl NodePlan {
    pub fn upgrades(&self) -> impl Iterator<Item = (&str, Option<&str>, &str)> {
        self.steps.iter().filter_map(|s| match &s.action {
            Action::Upgrade { component, from, to, .. } => Some((component.as_str(), from.as_deref(), to.as_str())),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    #[serde(flatten)]
    pub action: Action,
    /// What must be seen, in this order, before the step counts as done ([`Gate`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<Gate>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Cordon,
    /// Every pod evicted through the Eviction API (budgets respected); the workloads moved are journaled.
    Drain,
    /// Install the component at `to` (staged artifacts, switched in place), restart its service when `restart`
    /// and the files or the running process were not at the target, then pass the step's gates.
    Upgrade {
        component: String,
        delivery: Delivery,
        from: Option<String>,
        to: String,
        #[serde(default)]
        restart: bool,
    },
    WriteMarkers {
        kismatic_version: String,
        kubernetes: String,
    },
    /// Remove the [`DRAIN_SOON_TAINT`] the previous batch put on the node (just before its uncordon).
    Untaint,
    Uncordon,
}

/// Staging one node's artifacts: uploaded once per digest, checked and unpacked beside what runs
/// (docs/node-contract.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageStep {
    pub id: String,
    pub host: String,
    /// Components staged, in the order the node's parts upgrade them.
    pub components: Vec<String>,
}

/// A snapshot of one etcd cluster, taken on `node` and verified, once the cluster is healthy with a leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStep {
    pub id: String,
    pub cluster: String,
    pub node: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStep {
    pub id: String,
    pub component: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub to: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<Gate>,
}

/// Canonical order of components on a node: data store first, then the runtime, the control plane, the node agents.
const COMPONENT_ORDER: [&str; 9] = [
    "etcd",
    "etcd-networking",
    "container-runtime",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "network",
];

fn component_rank(name: &str) -> usize {
    COMPONENT_ORDER.iter().position(|c| *c == name).unwrap_or(COMPONENT_ORDER.len())
}

/// The earliest phase of a node with these roles.
pub fn node_phase(node: &Node) -> PhaseKind {
    if node.has_role(Role::Etcd) {
        PhaseKind::Etcd
    } else if node.has_role(Role::Master) {
        PhaseKind::Master
    } else {
        PhaseKind::Worker
    }
}

/// Whether a finding stops (or, with `--partial-ok`, prunes) its node under these options.
pub fn gates(finding: &Finding, opts: &PlanOptions) -> bool {
    if caused_by_interrupted_drain(finding, opts).is_some() {
        return false;
    }
    let accepted = || opts.accepted.iter().any(|a| a.covers(finding));
    match opts.mode {
        Mode::Offline => finding.class == Class::Unready || (finding.code.gates_offline() && !accepted()),
        Mode::Online => finding.class == Class::Unready || !(opts.ignore_safety_checks || accepted()),
    }
}

/// Builds the plan. Pure: same inputs, same plan.
pub fn plan(facts: &Facts, analysis: &Analysis, release: &Release, opts: &PlanOptions) -> UpgradePlan {
    let mut p = plan_core(facts, analysis, release, opts);
    // A remedy is offered only if rerunning with it would not stop again: each candidate is planned and kept
    // only if that plan is ready and leaves out exactly the nodes it names.
    if let PlanStatus::Blocked { remedies, .. } = &mut p.status {
        remedies.retain(|r| remedy_works(r, facts, analysis, release, opts));
    }
    p
}

fn remedy_works(r: &Remedy, facts: &Facts, analysis: &Analysis, release: &Release, opts: &PlanOptions) -> bool {
    let (mode, partial_ok, accept, left_out) = match r {
        Remedy::Fix => return true,
        Remedy::PartialOk { left_out } => (opts.mode, true, &[][..], left_out),
        Remedy::Offline { partial_ok, left_out, accept } => (Mode::Offline, *partial_ok, &accept[..], left_out),
        Remedy::Accept { accept, partial_ok, left_out } => (opts.mode, *partial_ok, &accept[..], left_out),
    };
    let mut o = opts.clone();
    o.mode = mode;
    o.partial_ok = partial_ok;
    for a in accept {
        match a.parse::<Acceptance>() {
            Ok(a) => o.accepted.push(a),
            Err(_) => return false,
        }
    }
    let offline;
    let a = if mode == opts.mode {
        analysis
    } else {
        // What an offline analysis finds: the findings that gate offline (the in-place kubelet changes it would
        // add are among what the remedy acknowledges).
        o.ignore_safety_checks = false;
        offline = Analysis {
            mode,
            needs: analysis.needs.clone(),
            findings: analysis.findings.iter().filter(|f| f.code.gates_offline()).cloned().collect(),
        };
        &offline
    };
    let again = plan_core(facts, a, release, &o);
    !again.is_blocked() && again.pruned.iter().map(|p| &p.host).eq(left_out.iter())
}

fn plan_core(facts: &Facts, analysis: &Analysis, release: &Release, opts: &PlanOptions) -> UpgradePlan {
    let inv = &facts.inventory;
    let mut flagged: HashMap<&str, BTreeSet<Code>> = HashMap::new();
    let mut cluster_reasons = Vec::new();
    for f in analysis.findings.iter().filter(|f| gates(f, opts)) {
        if f.is_cluster_level() {
            cluster_reasons.push(format!("{} (cluster): {}", f.code, f.message));
        } else {
            flagged.entry(f.node.as_str()).or_default().insert(f.code);
        }
    }
    let mut out = UpgradePlan {
        format: PLAN_FORMAT,
        mode: opts.mode,
        release: release.version.clone(),
        kubernetes: release.kubernetes.clone(),
        status: PlanStatus::Ready,
        partial: false,
        staging: Vec::new(),
        snapshots: Vec::new(),
        phases: Vec::new(),
        skipped: Vec::new(),
        pruned: Vec::new(),
        findings: analysis
            .findings
            .iter()
            .map(|f| match caused_by_interrupted_drain(f, opts) {
                Some(m) => Finding {
                    message: format!(
                        "{} — caused by the interrupted run's drain of {} (journal): not gating on resume, the run goes \
                         on as it would have",
                        f.message, m.drained
                    ),
                    ..f.clone()
                },
                None => f.clone(),
            })
            .collect(),
        batching: None,
    };
    for (node, need) in inv.nodes.iter().zip(&analysis.needs) {
        if !need.needs_upgrade {
            out.skipped.push(node.host.clone());
        }
    }
    // About the whole cluster: no node can be left out to get around it.
    if !cluster_reasons.is_empty() {
        out.status = blocked(cluster_reasons, inv, analysis, opts);
        return out;
    }
    if !flagged.is_empty() {
        if !opts.partial_ok {
            let nodes = inv.nodes.iter().filter(|n| flagged.contains_key(n.host.as_str())).count();
            out.status = blocked(
                vec![format!(
                    "{nodes} node(s) have findings that stop {} upgrade",
                    if opts.mode == Mode::Online { "an online" } else { "an offline" }
                )],
                inv,
                analysis,
                opts,
            );
            return out;
        }
        let mut reasons = Vec::new();
        for n in inv.nodes.iter().filter(|n| flagged.contains_key(n.host.as_str())) {
            let codes = codes_list(&flagged[n.host.as_str()]);
            if n.has_role(Role::Etcd) {
                reasons.push(format!(
                    "etcd node {} is flagged ({codes}) and cannot be left out: etcd members must move together, one at a time, keeping quorum",
                    n.host
                ));
            } else if n.has_role(Role::Master) {
                reasons.push(format!(
                    "master node {} is flagged ({codes}) and cannot be left out: kubelets must never be newer than an API server (version skew)",
                    n.host
                ));
            }
        }
        if !reasons.is_empty() {
            out.status = blocked(reasons, inv, analysis, opts);
            return out;
        }
        out.partial = true;
        for n in inv.nodes.iter().filter(|n| flagged.contains_key(n.host.as_str())) {
            out.pruned
                .push(PrunedNode { host: n.host.clone(), codes: flagged[n.host.as_str()].iter().copied().collect() });
        }
    }

    let registered: HashSet<String> =
        facts.kube.iter().flat_map(|k| &k.nodes).map(|n| n.name.to_ascii_lowercase()).collect();
    let planned: Vec<(&Node, Vec<&crate::need::ComponentChange>)> = inv
        .nodes
        .iter()
        .zip(&analysis.needs)
        .filter(|(node, need)| need.needs_upgrade && !flagged.contains_key(node.host.as_str()))
        .map(|(node, need)| {
            let mut changes: Vec<_> = need.changes.iter().collect();
            changes.sort_by_key(|c| component_rank(&c.component));
            (node, changes)
        })
        .collect();
    let split = split_masters(facts, &planned);
    let mut by_phase: BTreeMap<PhaseKind, Vec<NodePlan>> = BTreeMap::new();
    for (node, changes) in &planned {
        let earliest = node_phase(node);
        // Each part of the node: the phase it runs in and its components, in canonical order.
        let mut parts: Vec<(PhaseKind, Vec<&crate::need::ComponentChange>)> = Vec::new();
        // An etcd node that runs Kubernetes components too keeps them in the etcd phase only when no other
        // master's API server is still to be upgraded: otherwise they would run ahead of it.
        let other_api = planned.iter().any(|(n, cs)| {
            n.host != node.host && n.has_role(Role::Master) && cs.iter().any(|c| c.component == "kube-apiserver")
        });
        for c in changes {
            let kind = component_phase(&c.component, node, earliest, split, other_api);
            match parts.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, cs)) => cs.push(c),
                None => parts.push((kind, vec![c])),
            }
        }
        if parts.is_empty() {
            // Only the markers are stale: written in the node's earliest phase.
            parts.push((earliest, Vec::new()));
        }
        parts.sort_by_key(|(k, _)| *k);
        let registered = registered.contains(&node.host.to_ascii_lowercase());
        let last = parts.len() - 1;
        for (i, (kind, components)) in parts.into_iter().enumerate() {
            // A drain protects the node's pods from what restarts under them; an API server, controller-manager
            // or scheduler of its own (split out before the rest) restarts nothing on the node.
            let touches_pods = components.iter().any(|c| {
                !matches!(c.component.as_str(), "kube-apiserver" | "kube-controller-manager" | "kube-scheduler")
                    && !gates::is_etcd(&c.component)
            });
            let drain = opts.mode == Mode::Online
                && registered
                && !components.is_empty()
                && (touches_pods || (!split && i == last));
            by_phase.entry(kind).or_default().push(node_plan(
                node,
                kind,
                &components,
                drain,
                i == last,
                release,
                opts.apiserver_port,
            ));
        }
    }
    for (kind, nodes) in by_phase {
        let batches = if kind == PhaseKind::Worker {
            worker_batches(facts, analysis, nodes, opts, &mut out.batching)
        } else {
            nodes.into_iter().map(|n| vec![(n, None)]).collect()
        };
        let batches = batches
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let bound = b.first().and_then(|(_, bound)| bound.clone());
                Batch {
                    id: format!("{}/batch-{}", kind.as_str(), i + 1),
                    nodes: b.into_iter().map(|(n, _)| n).collect(),
                    bound,
                    steps: Vec::new(),
                }
            })
            .collect();
        let batches = if kind == PhaseKind::Worker && out.batching.is_some() { batch_steps(batches) } else { batches };
        out.phases.push(Phase { id: kind.as_str().to_string(), kind, batches, services: Vec::new() });
    }
    if !out.partial {
        for (kind, sp) in [(PhaseKind::Registry, ServicePhase::Registry), (PhaseKind::Services, ServicePhase::Services)]
        {
            let services: Vec<ServiceStep> = release
                .components
                .iter()
                .filter(|c| c.delivery == Delivery::Manifest && c.phase == Some(sp))
                .filter_map(|c| service_step(facts, kind, c))
                .collect();
            if !services.is_empty() {
                out.phases.push(Phase { id: kind.as_str().to_string(), kind, batches: Vec::new(), services });
            }
        }
    }
    let skew = skew_findings(facts, &out);
    if !skew.is_empty() {
        let mut blocking: Vec<BlockingNode> = Vec::new();
        for f in &skew {
            if let Some(node) = inv.nodes.iter().find(|n| n.host == f.node)
                && !blocking.iter().any(|b| b.host == f.node)
            {
                blocking.push(BlockingNode { host: f.node.clone(), phase: node_phase(node), codes: vec![f.code] });
            }
        }
        // Leaving a node out cannot mend skew (its component stays where it is): only changing versions can.
        out.status = PlanStatus::Blocked {
            reasons: skew.iter().map(|f| format!("{} on {}: {}", f.code, f.node, f.message)).collect(),
            blocking,
            cluster: Vec::new(),
            remedies: vec![Remedy::Fix],
        };
        // A blocked plan runs nothing; the findings say where it would have broken the policy.
        out.phases.clear();
        out.partial = false;
        out.findings.extend(skew);
    }
    if !out.is_blocked() {
        out.staging = staging(&out);
        out.snapshots = snapshots(&out, inv);
    }
    out
}

/// One staging step per planned host, in plan order (a master split across phases is staged once, for all its
/// parts).
fn staging(plan: &UpgradePlan) -> Vec<StageStep> {
    let mut out: Vec<StageStep> = Vec::new();
    for (_, np) in plan.node_plans() {
        let components = np.upgrades().map(|(c, _, _)| c.to_string());
        match out.iter_mut().find(|s| s.host == np.host) {
            Some(s) => s.components.extend(components),
            None => out.push(StageStep {
                id: format!("stage/{}", np.host),
                host: np.host.clone(),
                components: components.collect(),
            }),
        }
    }
    out
}

/// A snapshot of each etcd cluster with at least one member upgrade in the plan, in [`gates::ETCD_CLUSTERS`]
/// order, taken on the first etcd node of the plan file.
fn snapshots(plan: &UpgradePlan, inv: &kismatic_plan::Inventory) -> Vec<SnapshotStep> {
    let Some(first) = inv.nodes_with_role(Role::Etcd).next() else { return Vec::new() };
    gates::ETCD_CLUSTERS
        .iter()
        .filter(|cluster| plan.node_plans().any(|(_, np)| np.upgrades().any(|(c, _, _)| c == **cluster)))
        .map(|cluster| SnapshotStep {
            id: format!("etcd/snapshot/{cluster}"),
            cluster: cluster.to_string(),
            node: first.host.clone(),
        })
        .collect()
}

/// The steps of online worker batches: each batch with a node to drain is re-checked live first; each batch that
/// has a next batch with nodes to drain taints them before it drains, and those nodes remove the taint just before
/// their uncordon.
fn batch_steps(mut batches: Vec<Batch>) -> Vec<Batch> {
    let drains = |b: &Batch| -> Vec<String> { b.nodes.iter().filter(|n| n.drain).map(|n| n.host.clone()).collect() };
    let draining: Vec<Vec<String>> = batches.iter().map(drains).collect();
    for (i, b) in batches.iter_mut().enumerate() {
        let Some(first) = b.nodes.first().map(|n| n.host.clone()) else { continue };
        if !draining[i].is_empty() {
            b.steps.push(BatchStep { id: format!("batch/{first}/recheck"), action: BatchAction::Recheck });
            if let Some(next) = draining.get(i + 1).filter(|n| !n.is_empty()) {
                b.steps.push(BatchStep {
                    id: format!("batch/{first}/prefer-no-schedule"),
                    action: BatchAction::PreferNoSchedule { nodes: next.clone() },
                });
            }
        }
        if i > 0 && !draining[i - 1].is_empty() {
            for n in b.nodes.iter_mut().filter(|n| n.drain) {
                let Some(at) = n.steps.iter().position(|s| matches!(s.action, Action::Uncordon)) else { continue };
                let id = format!("{}/untaint", n.id);
                n.steps.insert(at, Step { id, action: Action::Untaint, gates: Vec::new() });
            }
        }
    }
    batches
}

type Grouped = Vec<Vec<(NodePlan, Option<Bound>)>>;

/// The worker phase's batches: offline, `--max-parallel-workers` at a time in plan order; online, the batches that
/// [`batching::batch_workers`] proves cannot breach a budget, at most `--max-unavailable` nodes each (the bound is
/// carried on each batch's first node).
fn worker_batches(
    facts: &Facts,
    analysis: &Analysis,
    nodes: Vec<NodePlan>,
    opts: &PlanOptions,
    summary: &mut Option<BatchingSummary>,
) -> Grouped {
    let chunked = |size: usize, nodes: Vec<NodePlan>| -> Grouped {
        let mut out = Vec::new();
        let mut it = nodes.into_iter().map(|n| (n, None)).peekable();
        while it.peek().is_some() {
            out.push(it.by_ref().take(size.max(1)).collect());
        }
        out
    };
    if opts.mode == Mode::Offline {
        return chunked(opts.max_parallel_workers, nodes);
    }
    let max = opts
        .max_unavailable
        .resolve(facts.inventory.nodes.iter().filter(|n| node_phase(n) == PhaseKind::Worker).count());
    if max <= 1 {
        return chunked(1, nodes);
    }
    // Acknowledged findings that make a node special for a drain: it goes alone.
    let alone: BTreeMap<String, String> = analysis
        .findings
        .iter()
        .filter(|f| matches!(f.code, Code::IngressNode | Code::StorageNode | Code::LoadBalancerNode))
        .filter(|f| opts.accepted.iter().any(|a| a.covers(f)))
        .map(|f| (f.node.clone(), f.code.as_str().to_string()))
        .collect();
    let hosts: Vec<&str> = nodes.iter().map(|n| n.host.as_str()).collect();
    let batching =
        batching::batch_workers(facts, &hosts, &BatchOptions { max, topology_key: opts.topology_key.clone(), alone });
    *summary = Some(BatchingSummary {
        max,
        max_unavailable: opts.max_unavailable,
        topology_key: opts.topology_key.clone(),
        capacity_checked: batching.capacity_checked,
    });
    let mut by_host: HashMap<String, NodePlan> = nodes.into_iter().map(|n| (n.host.clone(), n)).collect();
    batching
        .batches
        .into_iter()
        .map(|b| {
            let mut bound = b.bound;
            b.hosts.iter().filter_map(|h| by_host.remove(h)).map(|n| (n, bound.take())).collect::<Vec<_>>()
        })
        .filter(|b| !b.is_empty())
        .collect()
}

/// The version-skew policy at every moment of the plan ([`crate::skew`]): a plan that would break it half-way is
/// refused, with the component to change first named.
fn skew_findings(facts: &Facts, plan: &UpgradePlan) -> Vec<Finding> {
    use crate::skew;
    let mut initial = skew::Moment::default();
    let in_plan: HashSet<&str> = facts.inventory.nodes.iter().map(|n| n.host.as_str()).collect();
    for nf in facts.nodes.iter().filter(|n| n.is_reachable() && in_plan.contains(n.host.as_str())) {
        for (name, obs) in &nf.components {
            if skew::role_of(name).is_none() {
                continue;
            }
            if let Some(v) = crate::need::current_version(nf, name).and_then(|v| crate::version::parse(&v)) {
                initial.set(&nf.host, name, v);
            }
            if let Some(u) = obs.upstream {
                initial.set_upstream(&nf.host, name, u);
            }
        }
    }
    let changes: Vec<skew::Change> = plan
        .node_plans()
        .flat_map(|(_, np)| {
            np.upgrades().filter_map(|(component, _, to)| {
                Some(skew::Change {
                    host: np.host.clone(),
                    component: component.to_string(),
                    to: crate::version::parse(to)?,
                })
            })
        })
        .collect();
    skew::walk(&initial, &changes)
        .into_iter()
        .filter_map(|sv| {
            let c = changes.get(sv.after)?;
            let (host, component) = sv.violation.subjects.first()?.clone();
            Some(Finding {
                node: host,
                code: Code::VersionPolicy,
                class: Code::VersionPolicy.class(),
                message: format!(
                    "once {} on {} is at v{}, {} (version-skew policy: {}; {})",
                    c.component,
                    c.host,
                    c.to,
                    sv.violation.message,
                    sv.violation.rule.statement(),
                    skew::SKEW_POLICY
                ),
                object: format!("component {component}"),
                bytes: None,
            })
        })
        .collect()
}

/// One part of a node's upgrade in one phase: optional cordon and drain, its components, the markers when it is the
/// node's last part, the uncordon.
fn node_plan(
    node: &Node,
    kind: PhaseKind,
    components: &[&crate::need::ComponentChange],
    drain: bool,
    markers: bool,
    release: &Release,
    apiserver_port: u16,
) -> NodePlan {
    let id = format!("{}/{}", kind.as_str(), node.host);
    let step = |what: &str, action: Action, gates: Vec<Gate>| Step { id: format!("{id}/{what}"), action, gates };
    let mut steps = Vec::new();
    if drain {
        steps.push(step("cordon", Action::Cordon, Vec::new()));
        steps.push(step("drain", Action::Drain, Vec::new()));
    }
    for c in components {
        let restart = release.component(&c.component).is_some_and(gates::restarts);
        steps.push(step(
            &format!("upgrade/{}", c.component),
            Action::Upgrade {
                component: c.component.clone(),
                delivery: c.delivery,
                from: c.from.clone(),
                to: c.to.clone(),
                restart,
            },
            gates::component_gates(&c.component, c.delivery, apiserver_port),
        ));
    }
    if markers {
        steps.push(step(
            "markers",
            Action::WriteMarkers {
                kismatic_version: release.version.to_string(),
                kubernetes: release.kubernetes.clone(),
            },
            Vec::new(),
        ));
    }
    if drain {
        steps.push(step("uncordon", Action::Uncordon, vec![Gate::WorkloadsBack]));
    }
    NodePlan { id, host: node.host.clone(), roles: node.roles.clone(), drain, steps }
}

/// The phase a component of `node` is upgraded in. A node is upgraded in its earliest phase, except where that would
/// break the version-skew policy: with the masters split, a master's API server goes in `apiservers` and its other
/// components in `master`; an etcd node's Kubernetes components wait for their own role's phase when another
/// master's API server is still to be upgraded. etcd members always move in the etcd phase.
fn component_phase(component: &str, node: &Node, earliest: PhaseKind, split: bool, other_api: bool) -> PhaseKind {
    let own_role = if node.has_role(Role::Master) { PhaseKind::Master } else { PhaseKind::Worker };
    match component {
        c if gates::is_etcd(c) => earliest,
        _ if earliest == PhaseKind::Etcd && !other_api && !split => earliest,
        "kube-apiserver" if split => PhaseKind::ApiServers,
        _ if earliest == PhaseKind::Etcd || split => own_role,
        _ => earliest,
    }
}

/// Whether the masters' upgrade is split in two — every API server first (phase `apiservers`), then the rest of each
/// master (phase `master`): when more than one API server changes and a controller-manager or scheduler talks to
/// the load balancer (or its kubeconfig was not read), or a master runs a kubelet or kube-proxy. Node by node, such
/// a component would run ahead of the API servers not yet upgraded, which the version-skew policy forbids.
fn split_masters(facts: &Facts, planned: &[(&Node, Vec<&crate::need::ComponentChange>)]) -> bool {
    let masters: Vec<&(&Node, Vec<&crate::need::ComponentChange>)> =
        planned.iter().filter(|(n, _)| n.has_role(Role::Master)).collect();
    let api_servers = masters.iter().filter(|(_, cs)| cs.iter().any(|c| c.component == "kube-apiserver")).count();
    if api_servers < 2 {
        return false;
    }
    masters.iter().any(|(node, cs)| {
        cs.iter().any(|c| match c.component.as_str() {
            "kube-controller-manager" | "kube-scheduler" => {
                let upstream = facts
                    .nodes
                    .iter()
                    .find(|n| n.host == node.host)
                    .and_then(|n| n.components.get(&c.component))
                    .and_then(|o| o.upstream);
                upstream != Some(crate::skew::Upstream::Local)
            }
            "kubelet" | "kube-proxy" => true,
            _ => false,
        })
    })
}

/// A service is applied unless every reachable master's `/etc/component-versions` already records it at the
/// target (on-cluster services have no node of their own; the masters' markers are where the tool records them).
fn service_step(facts: &Facts, kind: PhaseKind, c: &kismatic_release::Component) -> Option<ServiceStep> {
    let markers: Vec<Option<&String>> = facts
        .inventory
        .nodes_with_role(Role::Master)
        .filter_map(|m| facts.nodes.iter().find(|n| n.host == m.host && n.is_reachable()))
        .map(|n| n.component_markers.present().and_then(|mk| mk.get(&c.name)))
        .collect();
    let at_target =
        !markers.is_empty() && markers.iter().all(|m| m.is_some_and(|v| crate::version::same(v, &c.version)));
    if at_target {
        return None;
    }
    Some(ServiceStep {
        id: format!("{}/{}", kind.as_str(), c.name),
        component: c.name.clone(),
        from: markers.iter().flatten().next().map(|s| s.to_string()),
        to: c.version.clone(),
        gates: vec![Gate::Rollout],
    })
}

/// The blocked status: the gating findings per node (inventory order) and of the cluster, and the remedies that
/// would work for all of them. A remedy is offered only if rerunning with it would not stop at these findings again.
fn blocked(
    reasons: Vec<String>,
    inv: &kismatic_plan::Inventory,
    analysis: &Analysis,
    opts: &PlanOptions,
) -> PlanStatus {
    let findings = &analysis.findings;
    let cluster: BTreeSet<Code> =
        findings.iter().filter(|f| f.is_cluster_level() && gates(f, opts)).map(|f| f.code).collect();
    let mut blocking: Vec<BlockingNode> = Vec::new();
    // Per blocking node: (acceptable pairs, has a readiness finding).
    let mut detail: Vec<(Vec<String>, bool)> = Vec::new();
    for node in &inv.nodes {
        let gating: Vec<&Finding> = findings.iter().filter(|f| f.node == node.host && gates(f, opts)).collect();
        if gating.is_empty() {
            continue;
        }
        let codes: BTreeSet<Code> = gating.iter().map(|f| f.code).collect();
        let mut pairs: Vec<String> = Vec::new();
        for c in codes.iter().filter(|c| c.class() != Class::Unready) {
            pairs.push(format!("{}@{}", c.as_str(), node.host));
        }
        detail.push((pairs, codes.iter().any(|c| c.class() == Class::Unready)));
        blocking.push(BlockingNode {
            host: node.host.clone(),
            phase: node_phase(node),
            codes: codes.into_iter().collect(),
        });
    }
    let mut remedies = vec![Remedy::Fix];
    // A cluster-level readiness finding (a transition to another release) leaves only fixing it.
    if cluster.iter().any(|c| c.class() == Class::Unready) {
        return PlanStatus::Blocked { reasons, blocking, cluster: cluster.into_iter().collect(), remedies };
    }
    // Acknowledged cluster-wide (`--accept removed-api`): there is no node to name.
    let cluster_accepts: Vec<String> = cluster.iter().map(|c| c.as_str().to_string()).collect();
    let prunable = |b: &BlockingNode| b.phase == PhaseKind::Worker;
    let all_prunable = blocking.iter().all(prunable);
    let unready_anywhere = detail.iter().any(|(_, u)| *u);
    let unready_on_kept = blocking.iter().zip(&detail).any(|(b, (_, u))| !prunable(b) && *u);
    let hosts = |pred: &dyn Fn(&BlockingNode, bool) -> bool| -> Vec<String> {
        blocking.iter().zip(&detail).filter(|(b, (_, u))| pred(b, *u)).map(|(b, _)| b.host.clone()).collect()
    };
    if !opts.partial_ok && all_prunable && cluster.is_empty() {
        remedies.push(Remedy::PartialOk { left_out: hosts(&|_, _| true) });
    }
    if opts.mode == Mode::Online {
        // Offline drops the safety checks; readiness findings still stop it, unless they are on nodes that can
        // be left out; a removed API and an in-place kubelet minor change stop it too unless acknowledged.
        let offline_accepts = |left_out: &[String]| -> Vec<String> {
            let mut a = cluster_accepts.clone();
            a.extend(inv.nodes.iter().zip(&analysis.needs).filter_map(|(n, need)| {
                let in_place = need.needs_upgrade
                    && !left_out.contains(&n.host)
                    && need.changes.iter().any(crate::checks::changes_kubelet_minor);
                in_place.then(|| format!("{}@{}", Code::InPlaceKubeletMinor.as_str(), n.host))
            }));
            a
        };
        if !unready_anywhere {
            let accept = offline_accepts(&[]);
            remedies.push(Remedy::Offline { partial_ok: opts.partial_ok, left_out: Vec::new(), accept });
        } else if !unready_on_kept {
            let left_out = hosts(&|_, u| u);
            let accept = offline_accepts(&left_out);
            remedies.push(Remedy::Offline { partial_ok: true, left_out, accept });
        }
    }
    // Readiness findings cannot be accepted: accepting works when there are none, or when they are only on nodes
    // that `--partial-ok` leaves out (then the etcd and master nodes' findings are accepted). Offline, only the
    // codes that stop offline upgrades without being readiness ones gate, and they can be accepted the same way.
    if !unready_anywhere {
        let mut accept = cluster_accepts.clone();
        accept.extend(detail.iter().flat_map(|(p, _)| p.iter().cloned()));
        remedies.push(Remedy::Accept { accept, partial_ok: opts.partial_ok, left_out: Vec::new() });
    } else if !unready_on_kept && !all_prunable {
        let mut accept = cluster_accepts.clone();
        accept.extend(
            blocking.iter().zip(&detail).filter(|(b, _)| !prunable(b)).flat_map(|(_, (p, _))| p.iter().cloned()),
        );
        remedies.push(Remedy::Accept { accept, partial_ok: true, left_out: hosts(&|b, _| prunable(b)) });
    }
    PlanStatus::Blocked { reasons, blocking, cluster: cluster.into_iter().collect(), remedies }
}

fn codes_list(codes: &BTreeSet<Code>) -> String {
    codes.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
}

impl UpgradePlan {
    pub fn is_blocked(&self) -> bool {
        matches!(self.status, PlanStatus::Blocked { .. })
    }

    /// Every journaled step's id, in execution order: staging, snapshots, then the phases' node and service steps.
    /// The journal's header lists them; a rerun skips the finished ones.
    pub fn journal_steps(&self) -> Vec<String> {
        let mut steps: Vec<String> = self.staging.iter().map(|s| s.id.clone()).collect();
        steps.extend(self.snapshots.iter().map(|s| s.id.clone()));
        for phase in &self.phases {
            for b in &phase.batches {
                steps.extend(b.steps.iter().map(|s| s.id.clone()));
                steps.extend(b.nodes.iter().flat_map(|n| &n.steps).map(|s| s.id.clone()));
            }
            steps.extend(phase.services.iter().map(|s| s.id.clone()));
        }
        steps
    }

    /// Every node plan, in execution order.
    pub fn node_plans(&self) -> impl Iterator<Item = (&Phase, &NodePlan)> {
        self.phases.iter().flat_map(|p| p.batches.iter().flat_map(move |b| b.nodes.iter().map(move |n| (p, n))))
    }
}
