//! Facts: everything the analysis knows about a cluster, gathered by I/O code elsewhere and handed to the pure core.
//!
//! `NodeFacts` and its parts are a shared contract with the fleet crate (filled over SSH); the Kubernetes and etcd
//! facts are slim types of our own (not k8s-openapi) holding only what the checks read, so that a facts document of
//! a 5,000-node cluster stays small and fast to load. [`Facts`] is one JSON document (`kismatic facts`), documented
//! in `docs/facts.md`, and is also the support-data format users attach to bug reports.

use kismatic_plan::Inventory;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;

/// String type of the Kubernetes facts: inline up to 24 bytes (most names, namespaces, kinds, label keys and
/// values), so the 100,000s of strings of a large cluster cost no allocation each; derefs to `str`.
pub type Str = compact_str::CompactString;

/// Version of the facts document format; bumped on incompatible changes.
pub const FACTS_FORMAT: u32 = 1;

// ---------------------------------------------------------------------------------------------------------------
// Node facts (shared contract, keep names exactly)
// ---------------------------------------------------------------------------------------------------------------

/// What one node told us over SSH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeFacts {
    /// Plan host name.
    pub host: String,
    /// Whether the node could be read at all.
    pub read: NodeRead,
    /// `/etc/kismatic-version`.
    pub kismatic_version: Marker<semver::Version>,
    /// `/etc/component-versions`.
    pub component_markers: Marker<BTreeMap<String, String>>,
    /// Key: component name.
    pub components: BTreeMap<String, ComponentObservation>,
    /// Path -> available bytes (statvfs f_bavail*f_frsize); "/" always.
    pub disk_free: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum NodeRead {
    Ok,
    Unreachable { error: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Marker<T> {
    NotInstalled,
    Invalid { raw: String, error: String },
    Present { value: T },
}

impl<T> Marker<T> {
    pub fn present(&self) -> Option<&T> {
        match self {
            Marker::Present { value } => Some(value),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentObservation {
    /// binary: `current` link target's version dir; package: dpkg version.
    pub installed_version: Option<String>,
    /// See the running-version rule in docs/release-format.md.
    pub running_version: Option<String>,
    /// `systemctl is-active` == active; None when no such unit.
    pub service_active: Option<bool>,
    /// kube-controller-manager and kube-scheduler: the API servers they talk to, from their kubeconfig; `None`
    /// when not read (the skew rules then assume the load balancer, the stricter case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<crate::skew::Upstream>,
    /// kube-controller-manager and kube-scheduler: the API server URLs their running process is configured with
    /// (`--master`, else the `server:` of the kubeconfig/config files on its command line), from which `upstream`
    /// was judged. Empty when not read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_servers: Vec<String>,
    /// kube-apiserver: the requests for deprecated APIs its audit log records, by caller; `None` when not read
    /// (a facts document from before this was gathered, or not an API server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<AuditLog>,
}

/// What an API server's audit log (`--audit-log-path`) says of requests for deprecated APIs: who made them. The
/// server marks each such request with the audit annotation `k8s.io/deprecated` (and `k8s.io/removed-release`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AuditLog {
    /// The server keeps no audit log file (no `--audit-log-path`, or `-`: its standard output).
    NotKept,
    /// The file named by `--audit-log-path` could not be read.
    Unreadable { path: String },
    Read {
        path: String,
        /// The first event's `requestReceivedTimestamp`: what the log covers (rotated files are not read).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<String>,
        calls: Vec<AuditedCall>,
        /// More distinct callers than the probe reports (it stops at 200); the rest are not listed.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
}

/// Requests of one caller for one deprecated API, completed (audit stage `ResponseComplete` or `Panic`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditedCall {
    /// The authenticated user, e.g. `system:kube-controller-manager`.
    pub user: String,
    #[serde(default)]
    pub user_agent: String,
    /// `""` for the core group.
    #[serde(default)]
    pub group: String,
    pub version: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
    /// The `k8s.io/removed-release` annotation, e.g. `1.22`; empty when the server set none.
    #[serde(default)]
    pub removed_release: String,
    pub count: u64,
    /// `requestReceivedTimestamp` of the first and the last of these requests.
    #[serde(default)]
    pub first: String,
    #[serde(default)]
    pub last: String,
}

impl NodeFacts {
    /// A node that could not be read: every other field empty.
    pub fn unreachable(host: impl Into<String>, error: impl Into<String>) -> Self {
        NodeFacts {
            host: host.into(),
            read: NodeRead::Unreachable { error: error.into() },
            kismatic_version: Marker::NotInstalled,
            component_markers: Marker::NotInstalled,
            components: BTreeMap::new(),
            disk_free: BTreeMap::new(),
        }
    }

    pub fn is_reachable(&self) -> bool {
        matches!(self.read, NodeRead::Ok)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The whole document
// ---------------------------------------------------------------------------------------------------------------

/// One facts document: the inventory it was gathered for, per-node facts, and the cluster's view (when the API was
/// reachable) and etcd's view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// [`FACTS_FORMAT`].
    pub format: u32,
    pub inventory: Inventory,
    /// One entry per inventory node (unreachable nodes included, with `read.state = unreachable`).
    pub nodes: Vec<NodeFacts>,
    /// `None` when the Kubernetes API could not be read; online checks then report it (see docs/checks.md).
    pub kube: Option<KubeFacts>,
    /// One entry per etcd cluster (`etcd` for Kubernetes, `etcd-networking` for the network plugin).
    #[serde(default)]
    pub etcd: Vec<EtcdClusterFacts>,
    /// RFC 3339 time the gathering finished, supplied by the gatherer (the core has no clock).
    pub gathered_at: String,
}

impl Facts {
    pub fn new(
        inventory: Inventory,
        nodes: Vec<NodeFacts>,
        kube: Option<KubeFacts>,
        etcd: Vec<EtcdClusterFacts>,
        gathered_at: impl Into<String>,
    ) -> Self {
        Facts { format: FACTS_FORMAT, inventory, nodes, kube, etcd, gathered_at: gathered_at.into() }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Kubernetes facts
// ---------------------------------------------------------------------------------------------------------------

/// The slice of the Kubernetes API the checks need, from paginated cluster-wide lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KubeFacts {
    /// `/version` of each API server, asked per master (and through the load balancer).
    #[serde(deserialize_with = "shrunk")]
    pub api_servers: Vec<ApiServerFacts>,
    #[serde(deserialize_with = "shrunk")]
    pub nodes: Vec<KubeNode>,
    #[serde(deserialize_with = "shrunk")]
    pub pods: Vec<Pod>,
    #[serde(deserialize_with = "shrunk")]
    pub replica_sets: Vec<Controller>,
    #[serde(deserialize_with = "shrunk")]
    pub deployments: Vec<Controller>,
    #[serde(deserialize_with = "shrunk")]
    pub stateful_sets: Vec<Controller>,
    #[serde(deserialize_with = "shrunk")]
    pub daemon_sets: Vec<Controller>,
    #[serde(deserialize_with = "shrunk")]
    pub jobs: Vec<Controller>,
    #[serde(deserialize_with = "shrunk")]
    pub replication_controllers: Vec<Controller>,
    #[serde(deserialize_with = "shrunk")]
    pub pvcs: Vec<PersistentVolumeClaim>,
    #[serde(deserialize_with = "shrunk")]
    pub pvs: Vec<PersistentVolume>,
    #[serde(deserialize_with = "shrunk")]
    pub pdbs: Vec<PodDisruptionBudget>,
    /// Stored objects whose last-applied configuration or managed fields name an API version that a later
    /// Kubernetes minor removes (the `removed-api` gate; only such objects are kept).
    #[serde(deserialize_with = "shrunk")]
    pub api_object_uses: Vec<ApiObjectUse>,
    /// The lists of removed kinds that failed while looking for `api_object_uses` (the gate then says it cannot
    /// tell).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub object_use_errors: Vec<ListError>,
    /// The group/version each list was read in, by resource (e.g. `poddisruptionbudgets: policy/v1beta1` on a
    /// server that serves no `policy/v1`): chosen from what the server's discovery serves.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub api_versions: BTreeMap<String, String>,
    /// Lists that failed, each with its reason. The other lists are still gathered; an online analysis refuses
    /// to judge availability from incomplete facts and names these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub list_errors: Vec<ListError>,
}

/// A Kubernetes list that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListError {
    /// The resource, with the group/version asked, e.g. `poddisruptionbudgets (policy/v1beta1)`.
    pub list: String,
    pub error: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiServerFacts {
    /// Plan host of the master, or the load balancer's `host:port`.
    pub endpoint: String,
    /// `gitVersion` from `/version`, e.g. `v1.34.1`; `None` when it did not answer.
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Deprecated APIs this server has served since it started (its `apiserver_requested_deprecated_apis`
    /// metric); `None` when the metrics were not read (see `metrics_error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated_api_requests: Option<Vec<DeprecatedApiRequest>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_error: Option<String>,
}

/// One sample of an API server's `apiserver_requested_deprecated_apis` gauge: the API was requested since that
/// server started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeprecatedApiRequest {
    /// `""` for the core group.
    #[serde(default)]
    pub group: String,
    pub version: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subresource: String,
    /// The `removed_release` label, e.g. `1.22`.
    #[serde(default)]
    pub removed_release: String,
}

/// A stored object written with a given API version, as its last-applied configuration or managed fields say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiObjectUse {
    #[serde(default)]
    pub group: String,
    pub version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub source: UseSource,
}

/// Where an object's API version was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "kebab-case")]
pub enum UseSource {
    /// The `kubectl.kubernetes.io/last-applied-configuration` annotation.
    LastApplied,
    /// A `metadata.managedFields` entry of this manager.
    ManagedFields { manager: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KubeNode {
    pub name: String,
    /// Condition `Ready` is `True`.
    pub ready: bool,
    #[serde(default)]
    pub unschedulable: bool,
    /// `status.nodeInfo.kubeletVersion`.
    pub kubelet_version: String,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<KubeTaint>,
    /// `status.allocatable` (CPU and memory); `None` when the node reports none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocatable: Option<Resources>,
}

/// CPU and memory, as requests or capacity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeTaint {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: String,
}

/// `metadata.ownerReferences[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRef {
    /// `Deployment`, `ReplicaSet`, `StatefulSet`, `DaemonSet`, `Job`, `ReplicationController`, `Node`, ... .
    pub kind: Str,
    pub name: Str,
    pub uid: Str,
    /// `controller: true`.
    #[serde(default)]
    pub controller: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodPhase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pod {
    pub namespace: Str,
    pub name: Str,
    pub uid: Str,
    /// `spec.nodeName`; `None` when not scheduled.
    #[serde(default)]
    pub node: Option<Str>,
    pub phase: PodPhase,
    /// Condition `Ready` is `True`.
    #[serde(default)]
    pub ready: bool,
    /// All owner references, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "shrunk")]
    pub owners: Vec<OwnerRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "shrunk")]
    pub volumes: Vec<PodVolume>,
    /// Has the `kubernetes.io/config.mirror` annotation (a static pod's mirror).
    #[serde(default)]
    pub mirror: bool,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// The sum of its containers' requests, when every container declares CPU and memory requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<Resources>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VolumeKind {
    EmptyDir,
    HostPath,
    /// `persistentVolumeClaim`; `claim` names the claim.
    Pvc,
    /// Anything else (configMap, secret, projected, ...): irrelevant to safety.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodVolume {
    pub name: Str,
    pub kind: VolumeKind,
    /// hostPath: the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Str>,
    /// pvc: the claim name (same namespace as the pod).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Str>,
}

/// `metav1.LabelSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelSelector {
    #[serde(skip_serializing_if = "Labels::is_empty")]
    pub match_labels: Labels,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "shrunk")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelectorRequirement {
    pub key: Str,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`.
    pub operator: Str,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "shrunk")]
    pub values: Vec<Str>,
}

impl LabelSelector {
    /// Kubernetes semantics: an empty selector matches everything; unknown operators match nothing.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let val = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => val.is_some_and(|v| e.values.iter().any(|x| x == v)),
                    "NotIn" => val.is_none_or(|v| !e.values.iter().any(|x| x == v)),
                    "Exists" => val.is_some(),
                    "DoesNotExist" => val.is_none(),
                    _ => false,
                }
            })
    }
}

/// A workload controller of any kind (the kind is the list it sits in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Controller {
    pub namespace: Str,
    pub name: Str,
    pub uid: Str,
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "shrunk")]
    pub owners: Vec<OwnerRef>,
    #[serde(default)]
    pub selector: Option<LabelSelector>,
    /// Desired replicas: `spec.replicas` (Deployment, ReplicaSet, StatefulSet, ReplicationController),
    /// `status.desiredNumberScheduled` (DaemonSet: the nodes it can run on), `spec.parallelism` (Job).
    #[serde(default)]
    pub desired_replicas: Option<i64>,
    /// `status.readyReplicas` / `status.numberReady`.
    #[serde(default)]
    pub ready_replicas: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistentVolumeClaim {
    pub namespace: Str,
    pub name: Str,
    /// `spec.volumeName` once bound.
    #[serde(default)]
    pub volume: Option<Str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PvKind {
    HostPath,
    Local,
    Other,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistentVolume {
    pub name: Str,
    pub kind: PvKind,
    /// hostPath / local: the path on the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Str>,
}

/// `intstr.IntOrString`: `3` or `"50%"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrPercent {
    Int(i64),
    Str(String),
}

impl IntOrPercent {
    /// Resolves against `total` like Kubernetes does for PDBs (percentages round up). `None` for garbage and for
    /// percentages outside 0..=100 (facts validation refuses those with their JSON path).
    pub fn resolve(&self, total: i64) -> Option<i64> {
        match self {
            IntOrPercent::Int(i) => Some(*i),
            IntOrPercent::Str(_) => {
                let pct = self.percent()?;
                // Computed in i128: `total` comes from a facts file and may be anything an i64 holds.
                let r = (i128::from(pct) * i128::from(total) + 99).div_euclid(100);
                i64::try_from(r).ok()
            }
        }
    }

    /// The percentage of a `"N%"` value, when it is one within 0..=100.
    pub fn percent(&self) -> Option<i64> {
        match self {
            IntOrPercent::Int(_) => None,
            IntOrPercent::Str(s) => s.strip_suffix('%')?.trim().parse().ok().filter(|p| (0..=100).contains(p)),
        }
    }
}

impl std::fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntOrPercent::Int(i) => write!(f, "{i}"),
            IntOrPercent::Str(s) => f.write_str(s),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodDisruptionBudget {
    pub namespace: Str,
    pub name: Str,
    #[serde(default)]
    pub selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<IntOrPercent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrPercent>,
    #[serde(default)]
    pub disruptions_allowed: i64,
    #[serde(default)]
    pub current_healthy: i64,
    #[serde(default)]
    pub desired_healthy: i64,
    #[serde(default)]
    pub expected_pods: i64,
}

/// Deserializes a list without spare capacity: a vector pushed one element holds room for four, and most lists here
/// (a pod's owners, volumes and labels) have one or two entries, 150,000 times over. Up to two elements are
/// allocated exactly (shrinking a larger allocation would leave a hole in the heap per list); longer lists are
/// shrunk when complete.
fn shrunk<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            exact_seq(|| seq.next_element())
        }
    }
    d.deserialize_seq(V(std::marker::PhantomData))
}

/// Collects `next()` until `None` into a vector whose capacity is its length.
fn exact_seq<T, E>(mut next: impl FnMut() -> Result<Option<T>, E>) -> Result<Vec<T>, E> {
    let Some(a) = next()? else { return Ok(Vec::new()) };
    let Some(b) = next()? else { return Ok(vec![a]) };
    let Some(c) = next()? else {
        let mut v = Vec::with_capacity(2);
        v.extend([a, b]);
        return Ok(v);
    };
    let mut v = Vec::with_capacity(8);
    v.extend([a, b, c]);
    while let Some(x) = next()? {
        v.push(x);
    }
    v.shrink_to_fit();
    Ok(v)
}

/// Labels (or `matchLabels`): a string map, kept as a vector sorted by key. Kubernetes objects carry a handful of
/// labels; a `BTreeMap` would cost a ~500-byte node per object, which for 150,000 pods is most of the facts'
/// memory. JSON: an object, keys in order (as a `BTreeMap` writes it); a repeated key keeps its last value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Vec<(Str, Str)>);

impl Labels {
    pub fn new() -> Self {
        Labels(Vec::new())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok().map(|i| self.0[i].1.as_str())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`, returning the previous value.
    pub fn insert(&mut self, key: Str, value: Str) -> Option<Str> {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(key.as_str())) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Pairs in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + Clone {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sorts by key, keeping the last value of a repeated key (map semantics), and drops spare capacity.
    fn from_unsorted(mut v: Vec<(Str, Str)>) -> Self {
        // Stable sort: among equal keys the last one read stays last, and `dedup_by` keeps the first of a run.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.reverse();
        v.dedup_by(|a, b| a.0 == b.0);
        v.reverse();
        v.shrink_to_fit();
        Labels(v)
    }
}

impl<K: Into<Str>, V: Into<Str>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Labels::from_unsorted(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl<K: Into<Str>, V: Into<Str>, const N: usize> From<[(K, V); N]> for Labels {
    fn from(a: [(K, V); N]) -> Self {
        a.into_iter().collect()
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(m: BTreeMap<String, String>) -> Self {
        // Already sorted and unique.
        Labels(m.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl std::ops::Index<&str> for Labels {
    type Output = Str;
    /// Panics when the key is absent, like `BTreeMap`'s indexing (tests only; use [`Labels::get`]).
    fn index(&self, key: &str) -> &Str {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(i) => &self.0[i].1,
            Err(_) => panic!("no label {key:?}"),
        }
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of label names to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Labels, A::Error> {
                Ok(Labels::from_unsorted(exact_seq(|| m.next_entry::<Str, Str>())?))
            }
        }
        d.deserialize_map(V)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// etcd facts
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdClusterFacts {
    /// Component name of the cluster: `etcd` or `etcd-networking`.
    pub cluster: String,
    pub members: Vec<EtcdMember>,
    /// Member id (hex) of the leader, when one was reported.
    #[serde(default)]
    pub leader: Option<String>,
    /// Set when the cluster could not be asked at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdMember {
    /// Member id, hex.
    pub id: String,
    pub name: String,
    /// Plan host this member runs on, when it could be matched (by name or client URL).
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub client_urls: Vec<String>,
    /// `etcdctl endpoint health`; `None` when not asked.
    #[serde(default)]
    pub healthy: Option<bool>,
    /// `etcdctl endpoint status` server version.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_facts_json_shape() {
        let mut nf = NodeFacts::unreachable("n1", "timeout");
        assert!(!nf.is_reachable());
        nf.read = NodeRead::Ok;
        nf.kismatic_version = Marker::Present { value: semver::Version::new(1, 1, 0) };
        nf.component_markers = Marker::Invalid { raw: "x".into(), error: "bad".into() };
        let json = serde_json::to_value(&nf).expect("serializes");
        assert_eq!(json["read"]["state"], "ok");
        assert_eq!(json["kismatic_version"]["state"], "present");
        assert_eq!(json["kismatic_version"]["value"], "1.1.0");
        assert_eq!(json["component_markers"]["state"], "invalid");
        let back: NodeFacts = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, nf);
    }

    #[test]
    fn selectors() {
        let labels: Labels = [("app".to_string(), "db".to_string())].into();
        assert!(LabelSelector::default().matches(&labels));
        let sel = LabelSelector {
            match_labels: labels.clone(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "DoesNotExist".into(),
                values: vec![],
            }],
        };
        assert!(sel.matches(&labels));
        let sel2 = LabelSelector {
            match_labels: Labels::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "app".into(),
                operator: "NotIn".into(),
                values: vec!["db".into()],
            }],
        };
        assert!(!sel2.matches(&labels));
    }

    #[test]
    fn labels_are_a_sorted_map() {
        let l: Labels = serde_json::from_str(r#"{"b":"1","a":"2","b":"3"}"#).expect("parses");
        assert_eq!(l.iter().collect::<Vec<_>>(), [("a", "2"), ("b", "3")], "sorted, last value wins");
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
        assert_eq!(serde_json::to_string(&l).expect("serializes"), r#"{"a":"2","b":"3"}"#);
        let mut m = Labels::new();
        assert_eq!(m.insert("z".into(), "1".into()), None);
        assert_eq!(m.insert("y".into(), "2".into()), None);
        assert_eq!(m.insert("z".into(), "3".into()).as_deref(), Some("1"));
        assert_eq!(m, Labels::from([("y", "2"), ("z", "3")]));
        assert!(serde_json::from_str::<Labels>("[1]").is_err());
    }

    #[test]
    fn int_or_percent() {
        assert_eq!(IntOrPercent::Str("50%".into()).resolve(3), Some(2));
        assert_eq!(IntOrPercent::Int(2).resolve(10), Some(2));
        assert_eq!(IntOrPercent::Str("x".into()).resolve(3), None);
        // Issue 12: used to overflow multiplying.
        assert_eq!(IntOrPercent::Str("9223372036854775807%".into()).resolve(3), None);
        assert_eq!(IntOrPercent::Str("100%".into()).resolve(i64::MAX), Some(i64::MAX));
        assert_eq!(IntOrPercent::Str("50%".into()).resolve(i64::MIN), Some(i64::MIN / 2));
        let v: IntOrPercent = serde_json::from_str("\"25%\"").expect("parses");
        assert_eq!(v, IntOrPercent::Str("25%".into()));
    }
}
