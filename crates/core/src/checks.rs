//! Checks: readiness, cluster availability and workload safety, producing [`Finding`]s with stable codes
//! (architecture §6, documented in docs/checks.md).
//!
//! Everything is computed from indexes built once over the facts (pods by node, controllers and owners by uid,
//! claims and volumes by name, PDBs by label), so the cost is linear in the size of the cluster, never
//! nodes × pods. The per-pod path allocates nothing: nodes are looked up by index, findings are deduplicated on
//! borrowed keys, and a message is formatted only for a finding that is reported (issue 5's budget: analysis and
//! planning no slower than parsing the facts).

use crate::facts::{
    Controller, EtcdClusterFacts, Facts, KubeFacts, NodeFacts, PersistentVolume, PersistentVolumeClaim, Pod, PodPhase,
    PvKind, VolumeKind,
};
use crate::human;
use crate::need::{self, NodeNeed};
use crate::version;
use kismatic_plan::{Inventory, Node, Role};
use kismatic_release::{Delivery, Release};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;

/// Default minimum free space on `/` after the artifacts are placed: Kismatic's 1 GB.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 1_000_000_000;
/// Largest `--min-free-bytes` accepted: 1 PiB, far beyond any node's disk, far from u64 overflow.
pub const MAX_MIN_FREE_BYTES: u64 = 1 << 50;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Data may be lost.
    Unsafe,
    /// Availability may be lost.
    Unavailable,
    /// The node cannot take the upgrade.
    Unready,
}

impl Class {
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Unsafe => "unsafe",
            Class::Unavailable => "unavailable",
            Class::Unready => "unready",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stable finding codes (architecture §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    UnmanagedPod,
    EmptydirVolume,
    HostpathVolume,
    HostpathPersistentVolume,
    LocalPersistentVolume,
    SingleReplica,
    ReplicasOnSingleNode,
    DaemonsetSingleNode,
    JobPod,
    PdbBlocksDrain,
    UnknownController,
    EtcdQuorum,
    LastMaster,
    LoadBalancerNode,
    LastWorker,
    IngressNode,
    StorageNode,
    Unreachable,
    DiskSpace,
    PackageMissing,
    VersionPolicy,
    RemovedApi,
    InPlaceKubeletMinor,
}

impl Code {
    pub const ALL: [Code; 23] = [
        Code::UnmanagedPod,
        Code::EmptydirVolume,
        Code::HostpathVolume,
        Code::HostpathPersistentVolume,
        Code::LocalPersistentVolume,
        Code::SingleReplica,
        Code::ReplicasOnSingleNode,
        Code::DaemonsetSingleNode,
        Code::JobPod,
        Code::PdbBlocksDrain,
        Code::UnknownController,
        Code::EtcdQuorum,
        Code::LastMaster,
        Code::LoadBalancerNode,
        Code::LastWorker,
        Code::IngressNode,
        Code::StorageNode,
        Code::Unreachable,
        Code::DiskSpace,
        Code::PackageMissing,
        Code::VersionPolicy,
        Code::RemovedApi,
        Code::InPlaceKubeletMinor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::UnmanagedPod => "unmanaged-pod",
            Code::EmptydirVolume => "emptydir-volume",
            Code::HostpathVolume => "hostpath-volume",
            Code::HostpathPersistentVolume => "hostpath-persistent-volume",
            Code::LocalPersistentVolume => "local-persistent-volume",
            Code::SingleReplica => "single-replica",
            Code::ReplicasOnSingleNode => "replicas-on-single-node",
            Code::DaemonsetSingleNode => "daemonset-single-node",
            Code::JobPod => "job-pod",
            Code::PdbBlocksDrain => "pdb-blocks-drain",
            Code::UnknownController => "unknown-controller",
            Code::EtcdQuorum => "etcd-quorum",
            Code::LastMaster => "last-master",
            Code::LoadBalancerNode => "load-balancer-node",
            Code::LastWorker => "last-worker",
            Code::IngressNode => "ingress-node",
            Code::StorageNode => "storage-node",
            Code::Unreachable => "unreachable",
            Code::DiskSpace => "disk-space",
            Code::PackageMissing => "package-missing",
            Code::VersionPolicy => "version-policy",
            Code::RemovedApi => "removed-api",
            Code::InPlaceKubeletMinor => "in-place-kubelet-minor",
        }
    }

    pub fn class(self) -> Class {
        use Code::*;
        match self {
            UnmanagedPod | EmptydirVolume | HostpathVolume | HostpathPersistentVolume | LocalPersistentVolume => {
                Class::Unsafe
            }
            SingleReplica | ReplicasOnSingleNode | DaemonsetSingleNode | JobPod | PdbBlocksDrain
            | UnknownController | EtcdQuorum | LastMaster | LoadBalancerNode | LastWorker | IngressNode
            | StorageNode | RemovedApi | InPlaceKubeletMinor => Class::Unavailable,
            Unreachable | DiskSpace | PackageMissing | VersionPolicy => Class::Unready,
        }
    }
}

impl Code {
    /// Whether an offline upgrade is stopped by this code too: readiness, and the few availability findings that
    /// no drain can avoid (an API the upgrade removes; a kubelet changing minor in place, which upstream does not
    /// support without a drain). The latter can be acknowledged with `--accept`, readiness cannot.
    pub fn gates_offline(self) -> bool {
        self.class() == Class::Unready || matches!(self, Code::RemovedApi | Code::InPlaceKubeletMinor)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `node` of a finding about the whole cluster rather than one node (`removed-api`, a transition to another
/// release): it cannot be pruned by `--partial-ok`.
pub const CLUSTER: &str = "";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Plan host name; empty ([`CLUSTER`]) for a finding about the whole cluster.
    pub node: String,
    pub code: Code,
    pub class: Class,
    pub message: String,
    /// The object concerned: `Kind namespace/name`, an etcd cluster, a path, a component, or `Node HOST` where no
    /// other object applies.
    pub object: String,
    /// Sizes behind a `disk-space` finding, exact (the message rounds them for people).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<ByteCounts>,
}

/// Bytes available and required on a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteCounts {
    pub available: u64,
    pub required: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Online,
    Offline,
}

impl Finding {
    pub fn is_cluster_level(&self) -> bool {
        self.node == CLUSTER
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Online => "online",
            Mode::Offline => "offline",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    pub mode: Mode,
    /// Free bytes that must remain on `/` after the artifacts are placed.
    pub min_free_bytes: u64,
    /// `--skip-preflight`: skip the disk-space and package checks (never unreachable or version policy).
    pub skip_preflight: bool,
}

impl CheckOptions {
    pub fn new(mode: Mode) -> Self {
        CheckOptions { mode, min_free_bytes: DEFAULT_MIN_FREE_BYTES, skip_preflight: false }
    }
}

/// The analysis: what every node needs, and every finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub mode: Mode,
    /// One per inventory node, in inventory order.
    pub needs: Vec<NodeNeed>,
    /// Grouped by node in inventory order.
    pub findings: Vec<Finding>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalysisError {
    #[error(
        "online checks need the Kubernetes facts (nodes, pods, controllers, volumes, PDBs), but the facts have none; \
         gather them with the API reachable, or use `kismatic upgrade offline`"
    )]
    KubeFactsMissing,
    #[error(
        "online checks need every Kubernetes list, but {0} could not be read; fix the cause (the facts' \
         kube.list_errors) and gather again, or use `kismatic upgrade offline`"
    )]
    KubeListsFailed(String),
}

/// Runs every check the mode calls for on every node that needs an upgrade.
pub fn analyze(facts: &Facts, release: &Release, opts: &CheckOptions) -> Result<Analysis, AnalysisError> {
    let inv = &facts.inventory;
    let by_host: FxHashMap<&str, &NodeFacts> = facts.nodes.iter().map(|n| (n.host.as_str(), n)).collect();
    let node_facts = |n: &Node| by_host.get(n.host.as_str()).copied();
    let needs: Vec<NodeNeed> = inv.nodes.iter().map(|n| need::node_need(n, node_facts(n), release)).collect();

    let online = match opts.mode {
        Mode::Online => {
            let kube = facts.kube.as_ref().ok_or(AnalysisError::KubeFactsMissing)?;
            if !kube.list_errors.is_empty() {
                let failed: Vec<String> = kube.list_errors.iter().map(|e| format!("{}: {}", e.list, e.error)).collect();
                return Err(AnalysisError::KubeListsFailed(failed.join("; ")));
            }
            Some(Online::new(kube, inv, release, &needs))
        }
        Mode::Offline => None,
    };
    let api_floor = api_server_floor(facts, release);

    let mut findings = Vec::new();
    if needs.iter().any(|n| n.needs_upgrade) {
        cluster_checks(&mut Out { node: CLUSTER, findings: &mut findings }, facts, release);
    }
    for (idx, (node, need)) in inv.nodes.iter().zip(&needs).enumerate() {
        if !need.needs_upgrade {
            continue;
        }
        let mut out = Out { node: &node.host, findings: &mut findings };
        readiness(&mut out, node, node_facts(node), need, release, inv, opts, api_floor.as_ref());
        if let Some(online) = &online {
            availability(&mut out, node, idx, inv, &facts.etcd, online);
            online.workloads(&mut out, idx);
        }
    }
    Ok(Analysis { mode: opts.mode, needs, findings })
}

struct Out<'a> {
    node: &'a str,
    findings: &'a mut Vec<Finding>,
}

impl Out<'_> {
    /// `object: None` is the node itself.
    fn push(&mut self, code: Code, message: String, object: Option<String>) {
        let object = object.unwrap_or_else(|| format!("Node {}", self.node));
        self.findings.push(Finding {
            node: self.node.to_string(),
            code,
            class: code.class(),
            message,
            object,
            bytes: None,
        });
    }

    fn push_sized(&mut self, message: String, object: &str, available: u64, required: u64) {
        self.push(Code::DiskSpace, message, Some(object.to_string()));
        if let Some(f) = self.findings.last_mut() {
            f.bytes = Some(ByteCounts { available, required });
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Readiness
// ---------------------------------------------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn readiness(
    out: &mut Out,
    node: &Node,
    nf: Option<&NodeFacts>,
    need: &NodeNeed,
    release: &Release,
    inv: &Inventory,
    opts: &CheckOptions,
    api_floor: Option<&semver::Version>,
) {
    let nf = match nf {
        Some(nf) => match &nf.read {
            crate::facts::NodeRead::Ok => nf,
            crate::facts::NodeRead::Unreachable { error } => {
                out.push(Code::Unreachable, format!("node could not be read: {error}"), None);
                return;
            }
        },
        None => {
            out.push(Code::Unreachable, "no facts were gathered for this node".into(), None);
            return;
        }
    };
    if !opts.skip_preflight {
        disk_space(out, nf, need, release, opts.min_free_bytes);
        if inv.disable_package_installation {
            packages(out, nf, need, release);
        }
    }
    version_policy(out, node, nf, need, release, api_floor, opts.mode);
}

/// Artifacts land under `/opt/kismatic` (binary) or the package cache on `/`; the minimum must remain on `/`
/// afterwards. When the gatherer measured `/opt/kismatic` separately, the artifacts are counted there instead.
fn disk_space(out: &mut Out, nf: &NodeFacts, need: &NodeNeed, release: &Release, min_free: u64) {
    let artifacts: u64 = need
        .changes
        .iter()
        .filter_map(|c| release.component(&c.component))
        .map(|c| c.artifact.size.saturating_add(c.unit.as_ref().map_or(0, |u| u.size)))
        .fold(0, u64::saturating_add);
    let Some(&root) = nf.disk_free.get("/") else {
        out.push(Code::DiskSpace, "free space on / is unknown".into(), Some("/".into()));
        return;
    };
    let opt = nf.disk_free.get("/opt/kismatic").copied();
    // Saturating: `--min-free-bytes` and artifact sizes are bounded, but a sum past u64 means "more than any disk".
    let root_needed = if opt.is_some() { min_free } else { min_free.saturating_add(artifacts) };
    if root < root_needed {
        let (has, needs) = human::bytes_pair(root, root_needed);
        out.push_sized(
            format!(
                "/ has {has} available, needs {needs} ({} minimum + {} of artifacts)",
                human::bytes(min_free),
                human::bytes(root_needed.saturating_sub(min_free))
            ),
            "/",
            root,
            root_needed,
        );
    }
    if let Some(opt) = opt
        && opt < artifacts
    {
        let (has, needs) = human::bytes_pair(opt, artifacts);
        out.push_sized(
            format!("/opt/kismatic has {has} available, the artifacts need {needs}"),
            "/opt/kismatic",
            opt,
            artifacts,
        );
    }
}

fn packages(out: &mut Out, nf: &NodeFacts, need: &NodeNeed, release: &Release) {
    for change in need.changes.iter().filter(|c| c.delivery == Delivery::Package) {
        let Some(comp) = release.component(&change.component) else { continue };
        let pkg = comp.package.as_deref().unwrap_or(&comp.name);
        let installed = nf.components.get(&comp.name).and_then(|o| o.installed_version.as_deref());
        if !installed.is_some_and(|v| version::same(v, &comp.version)) {
            out.push(
                Code::PackageMissing,
                format!(
                    "package installation is disabled and {pkg} {} is not installed (installed: {})",
                    comp.version,
                    installed.unwrap_or("none")
                ),
                Some(format!("package {pkg}")),
            );
        }
    }
}

const CONTROL_PLANE: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/// The lowest API server version once the plan has run: the release's `kube-apiserver` (every master needing it
/// is upgraded, or the run is blocked), or when the release does not carry one, the lowest version reported.
fn api_server_floor(facts: &Facts, release: &Release) -> Option<semver::Version> {
    if let Some(c) = release.component("kube-apiserver") {
        return version::parse(&c.version);
    }
    let from_nodes = facts.inventory.nodes_with_role(Role::Master).filter_map(|m| {
        let nf = facts.nodes.iter().find(|n| n.host == m.host)?;
        need::current_version(nf, "kube-apiserver").and_then(|v| version::parse(&v))
    });
    let from_api =
        facts.kube.iter().flat_map(|k| &k.api_servers).filter_map(|a| a.version.as_deref().and_then(version::parse));
    from_nodes.chain(from_api).min_by(|a, b| a.cmp_precedence(b))
}

fn version_policy(
    out: &mut Out,
    node: &Node,
    nf: &NodeFacts,
    need: &NodeNeed,
    release: &Release,
    api_floor: Option<&semver::Version>,
    mode: Mode,
) {
    if let crate::facts::Marker::Present { value } = &nf.kismatic_version
        && value.cmp_precedence(&release.version).is_gt()
    {
        out.push(
            Code::VersionPolicy,
            format!(
                "node is at release {value}, newer than the target {}: downgrades are not supported",
                release.version
            ),
            Some("release".into()),
        );
    }
    if let Some(from) = nf.component_markers.present().and_then(|m| m.get("kubernetes"))
        && let (Some(f), Some(t)) = (version::parse(from), version::parse(&release.kubernetes))
    {
        step_policy(out, "kubernetes", from, &f, &release.kubernetes, &t, true);
    }
    for change in &need.changes {
        let (Some(from), Some(to)) = (change.from.as_deref(), version::parse(&change.to)) else { continue };
        let Some(f) = version::parse(from) else { continue };
        let is_etcd = crate::gates::is_etcd(&change.component);
        let one_minor = CONTROL_PLANE.contains(&change.component.as_str()) || is_etcd;
        step_policy(out, &change.component, from, &f, &change.to, &to, one_minor);
        if is_etcd && let Some(min) = crate::skew::etcd_minimum_unmet(&f, &to) {
            let (a, b, c) = min.at_least;
            out.push(
                Code::VersionPolicy,
                format!(
                    "{} {from} cannot move to {}: etcd requires every member at {a}.{b}.{c} or later before \
                     leaving {}.{} ({}); upgrade to the latest {}.{} patch first",
                    change.component, change.to, min.from.0, min.from.1, min.source, min.from.0, min.from.1
                ),
                Some(format!("component {}", change.component)),
            );
        }
        if mode == Mode::Offline && changes_kubelet_minor(change) {
            out.push(
                Code::InPlaceKubeletMinor,
                format!(
                    "kubelet {from} → {} changes minor version in place: upstream supports a minor kubelet \
                     upgrade only on a drained node ({}); upgrade online (which drains), or acknowledge with \
                     --accept in-place-kubelet-minor",
                    change.to,
                    crate::skew::SKEW_POLICY
                ),
                Some("component kubelet".into()),
            );
        }
    }
    if let Some(kubelet) = need.changes.iter().find(|c| c.component == "kubelet")
        && let (Some(to), Some(floor)) = (version::parse(&kubelet.to), api_floor)
        && to.cmp_precedence(floor).is_gt()
    {
        out.push(
            Code::VersionPolicy,
            format!(
                "kubelet {} would be newer than the API servers ({}) after the upgrade",
                kubelet.to,
                version::with_v(floor)
            ),
            Some("component kubelet".into()),
        );
    }
    let _ = node;
}

/// A kubelet change across minor versions (in place, it is unsupported upstream without a drain).
pub fn changes_kubelet_minor(change: &crate::need::ComponentChange) -> bool {
    let parsed = (change.from.as_deref().and_then(version::parse), version::parse(&change.to));
    change.component == "kubelet" && matches!(parsed, (Some(f), Some(t)) if (f.major, f.minor) != (t.major, t.minor))
}

fn step_policy(
    out: &mut Out,
    comp: &str,
    from: &str,
    f: &semver::Version,
    to: &str,
    t: &semver::Version,
    one_minor: bool,
) {
    if t.cmp_precedence(f).is_lt() {
        out.push(
            Code::VersionPolicy,
            format!("{comp} would go from {from} down to {to}: downgrades are not supported"),
            Some(format!("component {comp}")),
        );
    } else if one_minor {
        match version::minor_step(f, t) {
            Some(step) if step > 1 => out.push(
                Code::VersionPolicy,
                format!("{comp} would move {step} minor versions ({from} → {to}); upgrade one minor version at a time"),
                Some(format!("component {comp}")),
            ),
            None => out.push(
                Code::VersionPolicy,
                format!("{comp} would change major version ({from} → {to}); not supported"),
                Some(format!("component {comp}")),
            ),
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Cluster-level checks
// ---------------------------------------------------------------------------------------------------------------

/// Findings about the whole cluster, in both modes: a target other than the release the cluster is transitioning
/// to, and APIs the upgrade removes that something still uses.
fn cluster_checks(out: &mut Out, facts: &Facts, release: &Release) {
    if let Some(c) = crate::summary::transition_conflict(&facts.nodes, &release.version) {
        out.push(Code::VersionPolicy, c.message(), Some(format!("release {}", c.target)));
    }
    removed_apis(out, facts, release);
}

/// The lowest Kubernetes version running now: the API servers as the nodes and the API report them, else the
/// nodes' `kubernetes` markers.
fn current_kubernetes_floor(facts: &Facts) -> Option<semver::Version> {
    let from_nodes = facts.inventory.nodes_with_role(Role::Master).filter_map(|m| {
        let nf = facts.nodes.iter().find(|n| n.host == m.host && n.is_reachable())?;
        need::current_version(nf, "kube-apiserver").and_then(|v| version::parse(&v))
    });
    let from_api =
        facts.kube.iter().flat_map(|k| &k.api_servers).filter_map(|a| a.version.as_deref().and_then(version::parse));
    let floor = from_nodes.chain(from_api).min_by(|a, b| a.cmp_precedence(b));
    floor.or_else(|| {
        facts
            .nodes
            .iter()
            .filter_map(|n| n.component_markers.present().and_then(|m| m.get("kubernetes")))
            .filter_map(|v| version::parse(v))
            .min_by(|a, b| a.cmp_precedence(b))
    })
}

/// Objects named one by one per removed API; beyond that, one finding counts the rest.
const OBJECTS_NAMED_PER_API: usize = 20;

fn removed_apis(out: &mut Out, facts: &Facts, release: &Release) {
    use crate::removed_api::{self, RemovedUse};
    let (Some(from), Some(to)) = (current_kubernetes_floor(facts), version::parse(&release.kubernetes)) else {
        return;
    };
    if from.major != to.major || to.minor <= from.minor {
        return;
    }
    let crossed: Vec<String> =
        removed_api::crossed(from.minor, to.minor).map(|r| format!("{} {}", r.api_version(), r.resource)).collect();
    if crossed.is_empty() {
        return;
    }
    let moving = format!("Kubernetes v{}.{} → v{}.{}", from.major, from.minor, to.major, to.minor);
    let unknown = |why: String| {
        format!(
            "{moving} removes {} API version(s) ({}), and {why}, so whether anything still uses them is unknown; \
             check with the API reachable, or acknowledge with --accept removed-api",
            crossed.len(),
            crossed.join(", ")
        )
    };
    // The release's own manifests: known without the cluster.
    let heads: Vec<removed_api::ManifestObject<'_>> = release
        .manifest_objects
        .iter()
        .map(|m| removed_api::ManifestObject {
            file: &m.file,
            api_version: &m.api_version,
            kind: &m.kind,
            namespace: m.namespace.as_deref(),
            name: &m.name,
        })
        .collect();
    let release_name = release.version.to_string();
    for u in removed_api::from_manifests(from.minor, to.minor, &release_name, &heads) {
        out.push(Code::RemovedApi, format!("{moving}: {}", u.message), Some(u.object));
    }
    let Some(kube) = &facts.kube else {
        out.push(Code::RemovedApi, unknown("the Kubernetes API could not be read".into()), None);
        return;
    };
    let mut push = |u: RemovedUse| out.push(Code::RemovedApi, format!("{moving}: {}", u.message), Some(u.object));
    // Servers whose metric was asked (each master directly); a facts document from before this was gathered has
    // none, and then nothing is known about calls.
    let asked: Vec<&crate::facts::ApiServerFacts> =
        kube.api_servers.iter().filter(|s| s.deprecated_api_requests.is_some() || s.metrics_error.is_some()).collect();
    if asked.is_empty() {
        push(RemovedUse {
            api: &removed_api::REMOVED_APIS[0],
            object: "API servers".into(),
            message: unknown("the facts hold no API server's deprecated-API metric".into()),
        });
    }
    for server in asked {
        match (&server.deprecated_api_requests, &server.metrics_error) {
            (Some(requests), _) => {
                let audit = facts
                    .nodes
                    .iter()
                    .find(|n| n.host == server.endpoint)
                    .and_then(|n| n.components.get("kube-apiserver"))
                    .and_then(|c| c.audit_log.as_ref());
                removed_api::from_calls(from.minor, to.minor, &server.endpoint, requests, audit)
                    .into_iter()
                    .for_each(&mut push)
            }
            (None, error) => push(RemovedUse {
                api: &removed_api::REMOVED_APIS[0],
                object: format!("API server {}", server.endpoint),
                message: unknown(format!(
                    "the deprecated-API metrics of API server {} were not read ({})",
                    server.endpoint,
                    error.as_deref().unwrap_or("no reason recorded")
                )),
            }),
        }
    }
    for e in &kube.object_use_errors {
        push(RemovedUse {
            api: &removed_api::REMOVED_APIS[0],
            object: e.list.clone(),
            message: unknown(format!("the stored objects could not be listed ({}: {})", e.list, e.error)),
        });
    }
    // Objects named one by one up to a bound per removed API, then counted.
    let mut named: FxHashMap<(&str, &str, &str), usize> = FxHashMap::default();
    let mut beyond: Vec<(&'static removed_api::RemovedApi, usize)> = Vec::new();
    for u in removed_api::from_objects(from.minor, to.minor, &kube.api_object_uses) {
        let n = named.entry((u.api.group, u.api.version, u.api.kind)).or_default();
        *n += 1;
        if *n <= OBJECTS_NAMED_PER_API {
            push(u);
        } else if let Some(b) = beyond.iter_mut().find(|(a, _)| *a == u.api) {
            b.1 += 1;
        } else {
            beyond.push((u.api, 1));
        }
    }
    for (api, n) in beyond {
        push(RemovedUse {
            api,
            object: format!("{} {}", api.api_version(), api.resource),
            message: format!(
                "{n} more {} object(s) were last written with {}, removed in v1.{} (the facts list them all)",
                api.kind,
                api.api_version(),
                api.removed_in
            ),
        });
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Cluster availability
// ---------------------------------------------------------------------------------------------------------------

fn availability(out: &mut Out, node: &Node, idx: usize, inv: &Inventory, etcd: &[EtcdClusterFacts], online: &Online) {
    if node.has_role(Role::Etcd) {
        etcd_quorum(out, etcd);
    }
    if node.has_role(Role::Master) {
        let masters = inv.nodes_with_role(Role::Master).count();
        if masters < 2 {
            out.push(
                Code::LastMaster,
                format!("the cluster has {masters} master(s): upgrading this one brings the control plane down"),
                None,
            );
        }
        if let Some(lb) = &inv.load_balancer
            && [&node.host, &node.ip, &node.internal_ip].iter().any(|a| a.eq_ignore_ascii_case(&lb.host))
        {
            out.push(
                Code::LoadBalancerNode,
                format!("node is the masters' load-balanced endpoint ({}:{})", lb.host, lb.port),
                Some(format!("load balancer {}:{}", lb.host, lb.port)),
            );
        }
    }
    if node.has_role(Role::Worker) {
        let me = usize::from(online.ready_worker[idx]);
        let others = online.ready_workers - me;
        if others < 1 {
            out.push(
                Code::LastWorker,
                format!(
                    "{} Ready worker(s) in the cluster; no other Ready worker can run the workloads of this one",
                    online.ready_workers
                ),
                None,
            );
        }
    }
    if node.has_role(Role::Ingress) {
        out.push(
            Code::IngressNode,
            "ingress node: we cannot ensure ingress points are load balanced; clients may reach services through it"
                .into(),
            None,
        );
    }
    if node.has_role(Role::Storage) {
        out.push(
            Code::StorageNode,
            "storage node: volumes (bricks) on it become unavailable during the upgrade".into(),
            None,
        );
    }
}

fn etcd_quorum(out: &mut Out, etcd: &[EtcdClusterFacts]) {
    if !etcd.iter().any(|c| c.cluster == "etcd") {
        out.push(
            Code::EtcdQuorum,
            "etcd cluster health is unknown (no etcd facts)".into(),
            Some("etcd cluster etcd".into()),
        );
    }
    for c in etcd {
        let obj = Some(format!("etcd cluster {}", c.cluster));
        if let Some(err) = &c.error {
            out.push(Code::EtcdQuorum, format!("etcd cluster {} could not be read: {err}", c.cluster), obj.clone());
            continue;
        }
        if c.members.len() < 3 {
            out.push(
                Code::EtcdQuorum,
                format!("etcd cluster {} has {} member(s): upgrading one loses quorum", c.cluster, c.members.len()),
                obj.clone(),
            );
        }
        let unhealthy: Vec<&str> =
            c.members.iter().filter(|m| m.healthy != Some(true)).map(|m| m.name.as_str()).collect();
        if !unhealthy.is_empty() {
            out.push(
                Code::EtcdQuorum,
                format!("etcd cluster {}: member(s) not healthy: {}", c.cluster, unhealthy.join(", ")),
                obj.clone(),
            );
        }
        if c.leader.is_none() && !c.members.is_empty() {
            out.push(Code::EtcdQuorum, format!("etcd cluster {} reports no leader", c.cluster), obj);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ReplicaSet,
    Deployment,
    StatefulSet,
    DaemonSet,
    Job,
    ReplicationController,
}

impl Kind {
    fn from_str(s: &str) -> Option<Kind> {
        Some(match s {
            "ReplicaSet" => Kind::ReplicaSet,
            "Deployment" => Kind::Deployment,
            "StatefulSet" => Kind::StatefulSet,
            "DaemonSet" => Kind::DaemonSet,
            "Job" => Kind::Job,
            "ReplicationController" => Kind::ReplicationController,
            _ => return None,
        })
    }
    fn as_str(self) -> &'static str {
        match self {
            Kind::ReplicaSet => "ReplicaSet",
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::DaemonSet => "DaemonSet",
            Kind::Job => "Job",
            Kind::ReplicationController => "ReplicationController",
        }
    }
}

/// What manages a pod, at the top of its owner chain.
#[derive(Debug, Clone, Copy)]
enum Manager<'a> {
    None,
    /// Index into `Online::ctrl_list`.
    Known(u32),
    /// Owner of a kind we cannot reason about, or whose object is missing.
    Unknown {
        kind: &'a str,
        name: &'a str,
        missing: bool,
    },
}

/// The object a workload finding is about, as a borrowed key: findings are reported once per (code, object) and
/// node, and deciding that must not allocate for each of the node's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Obj {
    /// Index into `kube.pods`.
    Pod(u32),
    /// Index into `Online::ctrl_list`.
    Ctrl(u32),
    /// Index into `kube.pdbs`.
    Pdb(u32),
}

/// `Online::managers` entries that are not a `ctrl_list` index.
const NO_MANAGER: u32 = u32::MAX;
const UNKNOWN_MANAGER: u32 = u32::MAX - 1;

struct Online<'a> {
    kube: &'a KubeFacts,
    /// Every controller, of every kind; indexes below point here (4 bytes per pod instead of a reference pair).
    ctrl_list: Vec<(Kind, &'a Controller)>,
    /// Controller uid -> index into `ctrl_list`.
    ctrls: FxHashMap<&'a str, u32>,
    /// Inventory index -> indexes of the active pods on that node (filled for nodes needing an upgrade only).
    pods_by_node: Vec<Vec<u32>>,
    /// Per pod of `kube.pods`: its top controller's index, or `NO_MANAGER` (also for inactive pods), or
    /// `UNKNOWN_MANAGER` (resolved again when reported: rare).
    managers: Vec<u32>,
    /// Per `ctrl_list` index: ready pods (all nodes).
    ready_by_ctrl: Vec<u32>,
    pvcs: FxHashMap<(&'a str, &'a str), &'a PersistentVolumeClaim>,
    pvs: FxHashMap<&'a str, &'a PersistentVolume>,
    /// PDB indexes by (namespace, label key, label value) of their first `matchLabels` entry: a pod only tests the
    /// PDBs one of its own labels points at, not every PDB of its namespace.
    pdbs_by_label: FxHashMap<(&'a str, &'a str, &'a str), Vec<u32>>,
    /// PDBs without `matchLabels` (expressions only, or empty), by namespace.
    pdbs_other: FxHashMap<&'a str, Vec<u32>>,
    /// Workers of the inventory that are Ready in the cluster.
    ready_workers: usize,
    /// Per inventory index: a worker Ready in the cluster.
    ready_worker: Vec<bool>,
    replaced_daemonsets: HashSet<String>,
}

fn is_active(p: &Pod) -> bool {
    !matches!(p.phase, PodPhase::Succeeded | PodPhase::Failed) && !p.mirror
}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

impl<'a> Online<'a> {
    fn new(kube: &'a KubeFacts, inv: &'a Inventory, release: &Release, needs: &[NodeNeed]) -> Self {
        let mut ctrl_list = Vec::new();
        for (kind, list) in [
            (Kind::ReplicaSet, &kube.replica_sets),
            (Kind::Deployment, &kube.deployments),
            (Kind::StatefulSet, &kube.stateful_sets),
            (Kind::DaemonSet, &kube.daemon_sets),
            (Kind::Job, &kube.jobs),
            (Kind::ReplicationController, &kube.replication_controllers),
        ] {
            ctrl_list.extend(list.iter().map(|c| (kind, c)));
        }
        let ctrls: FxHashMap<&str, u32> =
            ctrl_list.iter().enumerate().map(|(i, (_, c))| (c.uid.as_str(), i as u32)).collect();
        // Node names match case-insensitively. Only the pods of nodes needing an upgrade are examined one by one;
        // every pod counts for the replica totals.
        let wanted: FxHashMap<String, u32> = inv
            .nodes
            .iter()
            .zip(needs)
            .enumerate()
            .filter(|(_, (_, n))| n.needs_upgrade)
            .map(|(i, (n, _))| (lower(&n.host), i as u32))
            .collect();
        let mut me = Online {
            kube,
            ready_by_ctrl: vec![0; ctrl_list.len()],
            ctrl_list,
            ctrls,
            pods_by_node: vec![Vec::new(); inv.nodes.len()],
            managers: Vec::with_capacity(kube.pods.len()),
            pvcs: kube.pvcs.iter().map(|c| ((c.namespace.as_str(), c.name.as_str()), c)).collect(),
            pvs: kube.pvs.iter().map(|v| (v.name.as_str(), v)).collect(),
            pdbs_by_label: FxHashMap::default(),
            pdbs_other: FxHashMap::default(),
            ready_workers: 0,
            ready_worker: vec![false; inv.nodes.len()],
            replaced_daemonsets: release
                .components
                .iter()
                .map(|c| c.name.clone())
                .chain(["calico-node".to_string()])
                .collect(),
        };
        for (i, p) in kube.pdbs.iter().enumerate() {
            match p.selector.as_ref().and_then(|s| s.match_labels.iter().next()) {
                Some((k, v)) => me.pdbs_by_label.entry((p.namespace.as_str(), k, v)).or_default().push(i as u32),
                None => me.pdbs_other.entry(p.namespace.as_str()).or_default().push(i as u32),
            }
        }
        // Pod node name as written -> inventory index (lower-cased once per distinct name, not per pod).
        let mut node_index: FxHashMap<&'a str, Option<u32>> = FxHashMap::default();
        for (i, pod) in kube.pods.iter().enumerate() {
            if !is_active(pod) {
                me.managers.push(NO_MANAGER);
                continue;
            }
            me.managers.push(match me.manager(pod) {
                Manager::None => NO_MANAGER,
                Manager::Unknown { .. } => UNKNOWN_MANAGER,
                Manager::Known(c) => {
                    if pod.ready {
                        me.ready_by_ctrl[c as usize] += 1;
                    }
                    c
                }
            });
            if let Some(node) = pod.node.as_deref()
                && let Some(idx) = *node_index.entry(node).or_insert_with(|| wanted.get(&lower(node)).copied())
            {
                me.pods_by_node[idx as usize].push(i as u32);
            }
        }
        let ready: FxHashSet<String> = kube.nodes.iter().filter(|n| n.ready).map(|n| lower(&n.name)).collect();
        for (i, n) in inv.nodes.iter().enumerate() {
            if n.has_role(Role::Worker) && ready.contains(&lower(&n.host)) {
                me.ready_worker[i] = true;
                me.ready_workers += 1;
            }
        }
        me
    }

    /// Resolves the pod's controller through the owner chain (Pod → ReplicaSet → Deployment). Every owner reference
    /// is read: the controlling one first, then any other of a known kind.
    fn manager(&self, pod: &'a Pod) -> Manager<'a> {
        let controlling = pod.owners.iter().filter(|o| o.controller);
        let mut first_unknown = None;
        for o in controlling.chain(pod.owners.iter().filter(|o| !o.controller)) {
            match (Kind::from_str(&o.kind), self.ctrls.get(o.uid.as_str())) {
                (Some(_), Some(&c)) => return self.climb(c),
                (Some(_), None) => {
                    first_unknown.get_or_insert(Manager::Unknown { kind: &o.kind, name: &o.name, missing: true });
                }
                (None, _) => {
                    first_unknown.get_or_insert(Manager::Unknown { kind: &o.kind, name: &o.name, missing: false });
                }
            }
        }
        first_unknown.unwrap_or(Manager::None)
    }

    fn climb(&self, i: u32) -> Manager<'a> {
        // A ReplicaSet owned by a Deployment (or a ReplicationController by a DeploymentConfig-like owner we do not
        // know) is judged by the top controller we know; the desired replicas live there.
        let (kind, c) = self.ctrl_list[i as usize];
        if kind == Kind::ReplicaSet
            && let Some(d) = c
                .owners
                .iter()
                .filter(|o| o.kind == "Deployment")
                .find_map(|o| self.ctrls.get(o.uid.as_str()).copied())
                .filter(|&d| self.ctrl_list[d as usize].0 == Kind::Deployment)
        {
            return Manager::Known(d);
        }
        Manager::Known(i)
    }

    fn workloads(&self, out: &mut Out, node_idx: usize) {
        let pod_idx = &self.pods_by_node[node_idx];
        if pod_idx.is_empty() {
            return;
        }
        let mut seen: FxHashSet<(Code, Obj)> = FxHashSet::default();
        // Reports (code, object) once per node; the message and object text are built only then.
        let mut push = |out: &mut Out, code: Code, key: Obj, msg: &dyn Fn() -> String, obj: &dyn Fn() -> String| {
            if seen.insert((code, key)) {
                out.push(code, msg(), Some(obj()));
            }
        };
        // Per controller index: ready pods on this node. Per PDB index: (healthy here, replaceable here, first pod).
        let mut ready_here: FxHashMap<u32, u32> = FxHashMap::default();
        let mut pdb_here: FxHashMap<u32, (u32, u32, &'a Pod)> = FxHashMap::default();
        for &i in pod_idx {
            let pod = &self.kube.pods[i as usize];
            let manager = match self.managers[i as usize] {
                NO_MANAGER => Manager::None,
                UNKNOWN_MANAGER => self.manager(pod),
                c => Manager::Known(c),
            };
            if let Manager::Known(c) = manager
                && let (Kind::DaemonSet, ds) = self.ctrl_list[c as usize]
                && ds.namespace == "kube-system"
                && self.replaced_daemonsets.contains(ds.name.as_str())
            {
                continue;
            }
            let (ns, name) = (pod.namespace.as_str(), pod.name.as_str());
            let pod_obj = || format!("Pod {ns}/{name}");
            for v in &pod.volumes {
                match v.kind {
                    VolumeKind::EmptyDir => push(
                        out,
                        Code::EmptydirVolume,
                        Obj::Pod(i),
                        &|| {
                            format!(
                                "Pod \"{ns}/{name}\" uses emptyDir volume \"{}\": its data is lost when the pod moves",
                                v.name
                            )
                        },
                        &pod_obj,
                    ),
                    VolumeKind::HostPath => push(
                        out,
                        Code::HostpathVolume,
                        Obj::Pod(i),
                        &|| {
                            format!(
                                "Pod \"{ns}/{name}\" uses hostPath volume \"{}\" ({}): its data stays behind when the pod moves",
                                v.name,
                                v.path.as_deref().unwrap_or("?")
                            )
                        },
                        &pod_obj,
                    ),
                    VolumeKind::Pvc => {
                        let Some(claim) = v.claim.as_deref() else { continue };
                        let pv = self
                            .pvcs
                            .get(&(ns, claim))
                            .and_then(|c| c.volume.as_deref())
                            .and_then(|name| self.pvs.get(name));
                        let (code, what) = match pv.map(|p| p.kind) {
                            Some(PvKind::HostPath) => (Code::HostpathPersistentVolume, "hostPath"),
                            Some(PvKind::Local) => (Code::LocalPersistentVolume, "local"),
                            _ => continue,
                        };
                        let pv_name = pv.map_or("", |p| p.name.as_str());
                        push(
                            out,
                            code,
                            Obj::Pod(i),
                            &|| {
                                format!(
                                    "Pod \"{ns}/{name}\" uses claim \"{claim}\" bound to {what} PersistentVolume \"{pv_name}\": its data is tied to this node"
                                )
                            },
                            &pod_obj,
                        );
                    }
                    VolumeKind::Other => {}
                }
            }
            let mut replaceable = false;
            match manager {
                Manager::None => push(
                    out,
                    Code::UnmanagedPod,
                    Obj::Pod(i),
                    &|| format!("Pod \"{ns}/{name}\" is not managed by a controller: it will not be recreated"),
                    &pod_obj,
                ),
                Manager::Unknown { kind, name: owner, missing } => push(
                    out,
                    Code::UnknownController,
                    Obj::Pod(i),
                    &|| {
                        if missing {
                            format!(
                                "Pod \"{ns}/{name}\" is owned by {kind} \"{owner}\", which was not found: safety cannot be determined"
                            )
                        } else {
                            format!("Pod \"{ns}/{name}\" is managed by {kind} \"{owner}\": safety cannot be determined")
                        }
                    },
                    &pod_obj,
                ),
                Manager::Known(ci) => {
                    let (kind, c) = self.ctrl_list[ci as usize];
                    let ctrl_obj = || format!("{} {}/{}", kind.as_str(), c.namespace, c.name);
                    let key = Obj::Ctrl(ci);
                    let desired = c.desired_replicas.unwrap_or(1);
                    match kind {
                        Kind::DaemonSet => {
                            if desired < 2 {
                                push(
                                    out,
                                    Code::DaemonsetSingleNode,
                                    key,
                                    &|| {
                                        format!(
                                            "DaemonSet \"{}/{}\" runs on {desired} node(s): no other node can host this daemon",
                                            c.namespace, c.name
                                        )
                                    },
                                    &ctrl_obj,
                                );
                            }
                            // Drain leaves DaemonSet pods alone: PDBs and replica checks do not apply.
                            continue;
                        }
                        Kind::Job => push(
                            out,
                            Code::JobPod,
                            key,
                            &|| {
                                format!(
                                    "Pod \"{ns}/{name}\" of Job \"{}/{}\" is running on this node",
                                    c.namespace, c.name
                                )
                            },
                            &ctrl_obj,
                        ),
                        Kind::ReplicaSet | Kind::Deployment | Kind::StatefulSet | Kind::ReplicationController => {
                            replaceable = true;
                            if desired < 2 {
                                push(
                                    out,
                                    Code::SingleReplica,
                                    key,
                                    &|| {
                                        format!(
                                            "{} \"{}/{}\" wants {desired} replica(s): it is unavailable while this node is upgraded",
                                            kind.as_str(),
                                            c.namespace,
                                            c.name
                                        )
                                    },
                                    &ctrl_obj,
                                );
                            } else if pod.ready {
                                *ready_here.entry(ci).or_default() += 1;
                            }
                        }
                    }
                }
            }
            let candidates = pod
                .labels
                .iter()
                .filter_map(|(k, v)| self.pdbs_by_label.get(&(ns, k, v)))
                .chain(self.pdbs_other.get(ns));
            for &p in candidates.flatten() {
                let pdb = &self.kube.pdbs[p as usize];
                if pdb.selector.as_ref().is_some_and(|s| s.matches(&pod.labels)) {
                    let e = pdb_here.entry(p).or_insert((0, 0, pod));
                    if pod.ready {
                        e.0 += 1;
                    }
                    if replaceable {
                        e.1 += 1;
                    }
                }
            }
        }
        // All ready replicas of a controller on this node, in uid order.
        let mut here: Vec<(&str, u32, u32)> =
            ready_here.into_iter().map(|(ci, n)| (self.ctrl_list[ci as usize].1.uid.as_str(), ci, n)).collect();
        here.sort_unstable();
        for (_, ci, n) in here {
            let (kind, c) = self.ctrl_list[ci as usize];
            if self.ready_by_ctrl[ci as usize] == n {
                push(
                    out,
                    Code::ReplicasOnSingleNode,
                    Obj::Ctrl(ci),
                    &|| {
                        format!(
                            "all {n} ready replica(s) of {} \"{}/{}\" run on this node",
                            kind.as_str(),
                            c.namespace,
                            c.name
                        )
                    },
                    &|| format!("{} {}/{}", kind.as_str(), c.namespace, c.name),
                );
            }
        }
        let mut pdbs: Vec<_> = pdb_here.into_iter().map(|(p, e)| (p, &self.kube.pdbs[p as usize], e)).collect();
        pdbs.sort_by(|a, b| (&a.1.namespace, &a.1.name, a.0).cmp(&(&b.1.namespace, &b.1.name, b.0)));
        for (p, pdb, (healthy_here, replaceable_here, pod)) in pdbs {
            let obj = || format!("PodDisruptionBudget {}/{}", pdb.namespace, pdb.name);
            if pdb.disruptions_allowed <= 0 {
                push(
                    out,
                    Code::PdbBlocksDrain,
                    Obj::Pdb(p),
                    &|| {
                        format!(
                            "PodDisruptionBudget \"{}/{}\" allows 0 disruptions: evicting pod \"{}/{}\" would be refused",
                            pdb.namespace, pdb.name, pod.namespace, pod.name
                        )
                    },
                    &obj,
                );
                continue;
            }
            let required = match (&pdb.min_available, &pdb.max_unavailable) {
                (Some(min), _) => min.resolve(pdb.expected_pods),
                (None, Some(max)) => max.resolve(pdb.expected_pods).map(|m| pdb.expected_pods.saturating_sub(m)),
                (None, None) => None,
            };
            // Saturating: the counts come from a facts file (validated to 0..=i32::MAX, but analysis is also
            // reached by hand-built facts).
            let remain =
                pdb.current_healthy.saturating_sub(i64::from(healthy_here)).saturating_add(i64::from(replaceable_here));
            if let Some(required) = required
                && required > remain
            {
                push(
                    out,
                    Code::PdbBlocksDrain,
                    Obj::Pdb(p),
                    &|| {
                        format!(
                            "PodDisruptionBudget \"{}/{}\" needs {required} healthy pod(s) but only {remain} can remain once this node is drained",
                            pdb.namespace, pdb.name
                        )
                    },
                    &obj,
                );
            }
        }
    }
}
