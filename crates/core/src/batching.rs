//! Batches of workers that can be drained at the same time without breaching any PodDisruptionBudget, computed
//! from the facts before anything is touched.
//!
//! Draining a batch evicts every evictable pod on its nodes at once. A batch is admissible when, from the state the
//! facts show:
//! - every PodDisruptionBudget loses at most the disruptions it allows now (`status.disruptionsAllowed`, i.e.
//!   current healthy − desired healthy, which the API server computed with Kubernetes' own rounding of
//!   percentages), counting the *healthy* pods it selects on the batch's nodes;
//! - every controller with ≥ 2 desired replicas keeps at least one ready replica outside the batch;
//! - all its nodes share one failure domain (the value of the topology label; a node without the label is a domain
//!   of its own);
//! - a node with an acknowledged ingress, storage or load-balancer finding is alone in its batch;
//! - where every schedulable node reports its allocatable capacity, the evicted pods' requests fit in the free
//!   capacity of the schedulable nodes outside the batch (a pod without requests reserves nothing, as for the
//!   scheduler; an aggregate, not a bin packing: the scheduler may still fragment, and the live re-check before each
//!   batch is the safety net);
//! - it has at most `--max-unavailable` nodes.
//!
//! Each constraint is a budget that a node's drain consumes (the capacity one included: a node's evicted requests
//! plus its own free capacity must fit in the free capacity of all schedulable nodes), so batches are filled first-fit
//! in plan order, per domain. Batches run one after another and the workloads are back at their ready counts in
//! between, so every batch is checked against the same starting state.

use crate::facts::{Facts, KubeFacts, Pod, PodPhase};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The default failure-domain label.
pub const DEFAULT_TOPOLOGY_KEY: &str = "topology.kubernetes.io/zone";

/// `--max-unavailable N|P%`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxUnavailable {
    Count(u32),
    /// A percentage of the workers, rounded down, at least 1.
    Percent(u32),
}

impl MaxUnavailable {
    /// Nodes per batch for a cluster of `workers` workers (always ≥ 1).
    pub fn resolve(self, workers: usize) -> usize {
        let n = match self {
            MaxUnavailable::Count(n) => n as usize,
            MaxUnavailable::Percent(p) => workers.saturating_mul(p as usize) / 100,
        };
        n.max(1)
    }
}

impl Default for MaxUnavailable {
    fn default() -> Self {
        MaxUnavailable::Count(1)
    }
}

impl std::str::FromStr for MaxUnavailable {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?}: expected a number of nodes (1 to 100000) or a percentage of the workers (1% to 100%)");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(p) if (1..=100).contains(&p) => Ok(MaxUnavailable::Percent(p)),
                _ => Err(bad()),
            },
            None => match s.trim().parse::<u32>() {
                Ok(n) if (1..=100_000).contains(&n) => Ok(MaxUnavailable::Count(n)),
                _ => Err(bad()),
            },
        }
    }
}

impl std::fmt::Display for MaxUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxUnavailable::Count(n) => write!(f, "{n}"),
            MaxUnavailable::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// What stopped a batch from growing (or why it has one node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "bound", rename_all = "snake_case")]
pub enum Bound {
    /// `--max-unavailable` nodes.
    MaxUnavailable { max: usize },
    /// The budget allows no more of its pods to go.
    Pdb { namespace: String, name: String, allows: i64 },
    /// The controller would be left without a ready replica outside the batch.
    Replicas { kind: String, namespace: String, name: String, ready: i64 },
    /// The evicted pods' requests would not fit on the schedulable nodes left.
    Capacity { resource: String },
    /// Alone: an acknowledged finding of this code.
    Accepted { code: String },
    /// Alone: the node has no failure-domain label.
    NoDomain { key: String },
    /// No other worker of its domain was left to add.
    Domain { key: String, value: String },
}

impl Bound {
    pub fn describe(&self) -> String {
        match self {
            Bound::MaxUnavailable { max } => format!("--max-unavailable allows {max}"),
            Bound::Pdb { namespace, name, allows } => format!("PDB {namespace}/{name} allows {allows}"),
            Bound::Replicas { kind, namespace, name, ready } => {
                format!("{kind} {namespace}/{name} must keep a ready replica outside the batch ({ready} ready)")
            }
            Bound::Capacity { resource } => {
                format!("the evicted pods' {resource} requests must fit on the other nodes")
            }
            Bound::Accepted { code } => format!("alone: {code} was acknowledged"),
            Bound::NoDomain { key } => format!("alone: no {key} label"),
            Bound::Domain { key, value } => format!("no other worker in {key}={value}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedBatch {
    pub hosts: Vec<String>,
    /// `None` when the batch holds every worker of its domain it could have held and nothing else bounded it.
    pub bound: Option<Bound>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOptions {
    /// Nodes per batch (resolved from `--max-unavailable`).
    pub max: usize,
    pub topology_key: String,
    /// Hosts that go alone, with the acknowledged code that sends them there.
    pub alone: BTreeMap<String, String>,
}

/// The batches, and whether the capacity constraint could be checked (every pod involved with requests and every
/// schedulable node with allocatable capacity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batching {
    pub batches: Vec<PlannedBatch>,
    pub capacity_checked: bool,
}

/// A budget a node's drain consumes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Budget {
    Pdb(u32),
    Ctrl(u32),
    Cpu,
    Memory,
}

struct Model<'a> {
    kube: &'a KubeFacts,
    limits: FxHashMap<Budget, i64>,
    /// Per worker host (lower-cased): what its drain consumes.
    loads: FxHashMap<String, Vec<(Budget, i64)>>,
    ctrls: Vec<(&'static str, &'a crate::facts::Controller, i64)>,
    capacity_checked: bool,
}

fn evictable(p: &Pod, daemonset_uids: &rustc_hash::FxHashSet<&str>) -> bool {
    !matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed)
        && !p.mirror
        && !p.owners.iter().any(|o| o.kind.as_str() == "DaemonSet" || daemonset_uids.contains(o.uid.as_str()))
}

impl<'a> Model<'a> {
    fn new(kube: &'a KubeFacts, workers: &[&str]) -> Model<'a> {
        let mut ctrls: Vec<(&'static str, &crate::facts::Controller, i64)> = Vec::new();
        let mut by_uid: FxHashMap<&str, u32> = FxHashMap::default();
        for (kind, list) in [
            ("ReplicaSet", &kube.replica_sets),
            ("Deployment", &kube.deployments),
            ("StatefulSet", &kube.stateful_sets),
            ("ReplicationController", &kube.replication_controllers),
            ("Job", &kube.jobs),
        ] {
            for c in list {
                by_uid.insert(c.uid.as_str(), ctrls.len() as u32);
                ctrls.push((kind, c, 0));
            }
        }
        let daemonset_uids: rustc_hash::FxHashSet<&str> = kube.daemon_sets.iter().map(|d| d.uid.as_str()).collect();
        // The top controller of a pod: its controller owner, then that one's (ReplicaSet → Deployment).
        let top = |p: &Pod| -> Option<u32> {
            let first = p.owners.iter().find(|o| o.controller).or(p.owners.first())?;
            let mut at = *by_uid.get(first.uid.as_str())?;
            for _ in 0..4 {
                let c = ctrls[at as usize].1;
                match c
                    .owners
                    .iter()
                    .find(|o| o.controller)
                    .or(c.owners.first())
                    .and_then(|o| by_uid.get(o.uid.as_str()))
                {
                    Some(&up) => at = up,
                    None => break,
                }
            }
            Some(at)
        };
        let worker_set: rustc_hash::FxHashSet<String> = workers.iter().map(|w| w.to_ascii_lowercase()).collect();
        let mut ready_by_ctrl: Vec<i64> = vec![0; ctrls.len()];
        let mut loads: FxHashMap<String, FxHashMap<Budget, i64>> = FxHashMap::default();
        // PDBs by (namespace, first matchLabels entry), and those without matchLabels by namespace: a pod tests only
        // the budgets one of its labels points at (150,000 pods × every PDB would be quadratic).
        let mut pdbs_by_label: FxHashMap<(&str, &str, &str), Vec<u32>> = FxHashMap::default();
        let mut pdbs_other: FxHashMap<&str, Vec<u32>> = FxHashMap::default();
        for (i, pdb) in kube.pdbs.iter().enumerate() {
            let Some(sel) = &pdb.selector else { continue };
            match sel.match_labels.iter().next() {
                Some((k, v)) => pdbs_by_label.entry((pdb.namespace.as_str(), k, v)).or_default().push(i as u32),
                None => pdbs_other.entry(pdb.namespace.as_str()).or_default().push(i as u32),
            }
        }
        // Capacity: known when every schedulable node reports allocatable.
        let mut capacity_checked = false;
        let schedulable: FxHashMap<String, &crate::facts::KubeNode> = kube
            .nodes
            .iter()
            .filter(|n| n.ready && !n.unschedulable)
            .map(|n| (n.name.to_ascii_lowercase(), n))
            .collect();
        let mut used: FxHashMap<String, (i64, i64)> = FxHashMap::default();
        let mut evicted: FxHashMap<String, (i64, i64)> = FxHashMap::default();
        for p in &kube.pods {
            let active = !matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed);
            let node = p.node.as_ref().map(|n| n.as_str().to_ascii_lowercase());
            let ctrl = top(p);
            if let Some(ci) = ctrl
                && p.ready
                && active
            {
                ready_by_ctrl[ci as usize] += 1;
            }
            let Some(node) = node else { continue };
            if active
                && schedulable.contains_key(&node)
                && let Some(r) = p.requests
            {
                let u = used.entry(node.clone()).or_default();
                u.0 = u.0.saturating_add(r.cpu_millis);
                u.1 = u.1.saturating_add(r.memory_bytes);
            }
            if !worker_set.contains(&node) || !evictable(p, &daemonset_uids) {
                continue;
            }
            let load = loads.entry(node.clone()).or_default();
            if let Some(r) = p.requests {
                let e = evicted.entry(node.clone()).or_default();
                e.0 = e.0.saturating_add(r.cpu_millis);
                e.1 = e.1.saturating_add(r.memory_bytes);
            }
            if p.ready {
                if let Some(ci) = ctrl {
                    *load.entry(Budget::Ctrl(ci)).or_default() += 1;
                }
                let ns = p.namespace.as_str();
                let candidates = p
                    .labels
                    .iter()
                    .filter_map(|(k, v)| pdbs_by_label.get(&(ns, k, v)))
                    .chain(pdbs_other.get(ns))
                    .flatten();
                for &i in candidates {
                    let pdb = &kube.pdbs[i as usize];
                    if pdb.selector.as_ref().is_some_and(|s| s.matches(&p.labels)) {
                        *load.entry(Budget::Pdb(i)).or_default() += 1;
                    }
                }
            }
        }
        let mut limits: FxHashMap<Budget, i64> = FxHashMap::default();
        for (i, pdb) in kube.pdbs.iter().enumerate() {
            limits.insert(Budget::Pdb(i as u32), pdb.disruptions_allowed.max(0));
        }
        for (ci, (_, c, ready)) in ctrls.iter_mut().enumerate() {
            *ready = ready_by_ctrl[ci];
            // A controller that wants fewer than two replicas is a finding of its own (single-replica): a batch
            // cannot make its outage worse. Others keep one ready replica outside the batch.
            let budget = if c.desired_replicas.unwrap_or(0) >= 2 { (ready_by_ctrl[ci] - 1).max(0) } else { i64::MAX };
            limits.insert(Budget::Ctrl(ci as u32), budget);
        }
        let mut total_free = (0i64, 0i64);
        if !schedulable.is_empty() && schedulable.values().all(|n| n.allocatable.is_some()) {
            capacity_checked = true;
            for (name, n) in &schedulable {
                let a = n.allocatable.unwrap_or_default();
                let u = used.get(name).copied().unwrap_or_default();
                total_free.0 = total_free.0.saturating_add(a.cpu_millis.saturating_sub(u.0).max(0));
                total_free.1 = total_free.1.saturating_add(a.memory_bytes.saturating_sub(u.1).max(0));
            }
        }
        if capacity_checked {
            limits.insert(Budget::Cpu, total_free.0);
            limits.insert(Budget::Memory, total_free.1);
        }
        let mut out: FxHashMap<String, Vec<(Budget, i64)>> = FxHashMap::default();
        for w in workers {
            let key = w.to_ascii_lowercase();
            let mut l: Vec<(Budget, i64)> = loads.remove(&key).map(|m| m.into_iter().collect()).unwrap_or_default();
            if capacity_checked {
                // Draining the node removes its own free capacity from what the evicted pods can use.
                let free = schedulable.get(&key).and_then(|n| n.allocatable).map_or((0, 0), |a| {
                    let u = used.get(&key).copied().unwrap_or_default();
                    (a.cpu_millis.saturating_sub(u.0).max(0), a.memory_bytes.saturating_sub(u.1).max(0))
                });
                let e = evicted.get(&key).copied().unwrap_or_default();
                l.push((Budget::Cpu, e.0.saturating_add(free.0)));
                l.push((Budget::Memory, e.1.saturating_add(free.1)));
            }
            l.sort_unstable();
            out.insert(key, l);
        }
        Model { kube, limits, loads: out, ctrls, capacity_checked }
    }

    fn bound(&self, b: Budget) -> Bound {
        match b {
            Budget::Pdb(i) => {
                let p = &self.kube.pdbs[i as usize];
                Bound::Pdb {
                    namespace: p.namespace.to_string(),
                    name: p.name.to_string(),
                    allows: p.disruptions_allowed.max(0),
                }
            }
            Budget::Ctrl(i) => {
                let (kind, c, ready) = self.ctrls[i as usize];
                Bound::Replicas {
                    kind: kind.to_string(),
                    namespace: c.namespace.to_string(),
                    name: c.name.to_string(),
                    ready,
                }
            }
            Budget::Cpu => Bound::Capacity { resource: "CPU".into() },
            Budget::Memory => Bound::Capacity { resource: "memory".into() },
        }
    }

    /// The first budget `node` would overrun in a batch that has used `used`.
    fn overrun(&self, used: &FxHashMap<Budget, i64>, node: &str) -> Option<Budget> {
        self.loads.get(node)?.iter().find_map(|(b, n)| {
            let limit = self.limits.get(b).copied().unwrap_or(i64::MAX);
            (used.get(b).copied().unwrap_or(0).saturating_add(*n) > limit).then_some(*b)
        })
    }
}

struct Open {
    domain: Option<String>,
    hosts: Vec<String>,
    used: FxHashMap<Budget, i64>,
    bound: Option<Bound>,
    closed: bool,
}

/// Groups `workers` (plan order) into batches. Without Kubernetes facts every worker goes alone (nothing can be
/// proven).
pub fn batch_workers(facts: &Facts, workers: &[&str], opts: &BatchOptions) -> Batching {
    let Some(kube) = &facts.kube else {
        return Batching {
            batches: workers.iter().map(|w| PlannedBatch { hosts: vec![w.to_string()], bound: None }).collect(),
            capacity_checked: false,
        };
    };
    let model = Model::new(kube, workers);
    let labels: FxHashMap<String, Option<String>> = kube
        .nodes
        .iter()
        .map(|n| (n.name.to_ascii_lowercase(), n.labels.get(&opts.topology_key).map(|v| v.to_string())))
        .collect();
    let max = opts.max.max(1);
    let mut open: Vec<Open> = Vec::new();
    for w in workers {
        let key = w.to_ascii_lowercase();
        if let Some(code) = opts.alone.get(*w) {
            open.push(Open {
                domain: None,
                hosts: vec![w.to_string()],
                used: FxHashMap::default(),
                bound: Some(Bound::Accepted { code: code.clone() }),
                closed: true,
            });
            continue;
        }
        let domain = labels.get(&key).cloned().flatten();
        let Some(domain) = domain else {
            open.push(Open {
                domain: None,
                hosts: vec![w.to_string()],
                used: FxHashMap::default(),
                bound: (max > 1).then(|| Bound::NoDomain { key: opts.topology_key.clone() }),
                closed: true,
            });
            continue;
        };
        let mut placed = false;
        for b in open.iter_mut().filter(|b| !b.closed && b.domain.as_deref() == Some(domain.as_str())) {
            if b.hosts.len() >= max {
                b.closed = true;
                b.bound.get_or_insert(Bound::MaxUnavailable { max });
                continue;
            }
            match model.overrun(&b.used, &key) {
                Some(budget) => {
                    b.bound.get_or_insert_with(|| model.bound(budget));
                }
                None => {
                    for (budget, n) in model.loads.get(&key).into_iter().flatten() {
                        *b.used.entry(*budget).or_default() += n;
                    }
                    b.hosts.push(w.to_string());
                    placed = true;
                    break;
                }
            }
        }
        if !placed {
            let mut used = FxHashMap::default();
            for (budget, n) in model.loads.get(&key).into_iter().flatten() {
                *used.entry(*budget).or_default() += n;
            }
            // A node that alone overruns a budget (a PDB allowing 0) is a finding already (pdb-blocks-drain);
            // acknowledged, it goes alone.
            let bound = model.overrun(&FxHashMap::default(), &key).map(|b| model.bound(b));
            let closed = bound.is_some() || max == 1;
            open.push(Open { domain: Some(domain), hosts: vec![w.to_string()], used, bound, closed });
        }
    }
    let batches = open
        .into_iter()
        .map(|b| {
            let bound = match (b.bound, &b.domain) {
                (Some(x), _) => Some(x),
                (None, _) if b.hosts.len() >= max && max > 1 => Some(Bound::MaxUnavailable { max }),
                (None, Some(d)) if max > 1 => Some(Bound::Domain { key: opts.topology_key.clone(), value: d.clone() }),
                (None, _) => None,
            };
            PlannedBatch { hosts: b.hosts, bound }
        })
        .collect();
    Batching { batches, capacity_checked: model.capacity_checked }
}

/// Whether draining `hosts` together keeps every budget (the planner's own rule, for the live re-check and tests).
pub fn admissible(facts: &Facts, hosts: &[&str]) -> Result<(), Bound> {
    let Some(kube) = &facts.kube else { return Ok(()) };
    let model = Model::new(kube, hosts);
    let mut used: FxHashMap<Budget, i64> = FxHashMap::default();
    for h in hosts {
        let key = h.to_ascii_lowercase();
        if let Some(b) = model.overrun(&used, &key) {
            return Err(model.bound(b));
        }
        for (budget, n) in model.loads.get(&key).into_iter().flatten() {
            *used.entry(*budget).or_default() += n;
        }
    }
    Ok(())
}

/// The live re-check before a planned batch: `kube` is the cluster as it is now (budgets, controllers, pods,
/// nodes). When draining `hosts` together is still admissible, one part (the batch itself); otherwise the batch's
/// hosts placed first-fit, in order, into parts that each are, and the first constraint that split it. A host that
/// alone overruns a budget (a PDB that allows nothing now) is a part of its own: its drain then waits on the budget
/// as a single-node drain does, and is never forced.
pub fn split_live(kube: &KubeFacts, hosts: &[&str]) -> (Vec<Vec<String>>, Option<Bound>) {
    let model = Model::new(kube, hosts);
    let mut parts: Vec<(Vec<String>, FxHashMap<Budget, i64>)> = Vec::new();
    let mut reason = None;
    for h in hosts {
        let key = h.to_ascii_lowercase();
        let mut placed = false;
        for (part, used) in parts.iter_mut() {
            match model.overrun(used, &key) {
                Some(b) => {
                    reason.get_or_insert_with(|| model.bound(b));
                }
                None => {
                    for (budget, n) in model.loads.get(&key).into_iter().flatten() {
                        *used.entry(*budget).or_default() += n;
                    }
                    part.push(h.to_string());
                    placed = true;
                    break;
                }
            }
        }
        if !placed {
            let mut used = FxHashMap::default();
            for (budget, n) in model.loads.get(&key).into_iter().flatten() {
                *used.entry(*budget).or_default() += n;
            }
            parts.push((vec![h.to_string()], used));
        }
    }
    let parts: Vec<Vec<String>> = parts.into_iter().map(|(p, _)| p).collect();
    let reason = if parts.len() > 1 { reason } else { None };
    (parts, reason)
}
