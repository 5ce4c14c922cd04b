//! The executor's two narrow I/O interfaces and their real implementations. The interpreter (`run`) decides what to
//! do and in which order, journals it and gates on it; these do it:
//! - [`NodeOps`]: work on one node over SSH (the fleet): staging, installs, restarts, node-local gates, rollback,
//!   markers. Real: [`FleetNodes`], one kept session per node.
//! - [`ClusterOps`]: the cluster as a whole: the Kubernetes API (cordon, drain, uncordon, Node and API server
//!   gates, manifests) and etcd (asked through `etcdctl` on a member's node). Real: [`KubeCluster`].
//!
//! Unit tests drive the interpreter with fakes of both (no root, SSH or cluster).

use crate::error::StepError;
use crate::etcd::{self, EtcdAccess, SnapshotInfo};
use crate::install;
use crate::poll::{self, PollError, Seen};
use kismatic_core::facts::EtcdClusterFacts;
use kismatic_core::gates::Gate;
use kismatic_fleet::{Fleet, NodeError, NodeSession, RoundTrips, Target};
use kismatic_kube::apply::Applied;
use kismatic_kube::ops::Workload;
use kismatic_ops::contract;
use kismatic_plan::{Inventory, Node, Role};
use kismatic_release::{Component, Delivery, Release};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What installing a component changed on the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Installed {
    /// Files, links or packages changed (its service must be restarted).
    pub changed: bool,
    /// The files are at the target but the running process is not (a run died between switching and restarting).
    pub stale: bool,
}

/// Work on one node. Every operation has a deadline (the fleet's, per command kind) and names the node in errors.
pub trait NodeOps {
    /// Makes sure the node can be reached (opens its session), before a node's turn touches anything.
    async fn connect(&self, node: &Node) -> Result<(), StepError>;
    /// Stages the components' artifacts without touching what runs; returns a note for the log.
    async fn stage(&self, node: &Node, components: &[&Component]) -> Result<String, StepError>;
    /// Installs the staged component (switches it in); does not restart.
    async fn install(&self, node: &Node, c: &Component) -> Result<Installed, StepError>;
    async fn restart(&self, node: &Node, c: &Component) -> Result<(), StepError>;
    /// A node-local gate ([`Gate::Running`], [`Gate::Healthz`]), polled until it passes or its deadline.
    async fn gate(&self, node: &Node, c: &Component, gate: Gate) -> Result<(), StepError>;
    /// Switches a binary component back to its previous version and restarts it; returns that version.
    async fn rollback(&self, node: &Node, c: &Component) -> Result<String, StepError>;
    /// Writes the node's version markers for the release (a master keeps its on-cluster service entries).
    async fn write_markers(&self, node: &Node, kismatic_version: &str) -> Result<(), StepError>;
    /// Records an on-cluster service at its version in the node's component-versions marker.
    async fn record_service(&self, node: &Node, c: &Component) -> Result<(), StepError>;
    /// SSH connections and commands per node so far.
    fn round_trips(&self) -> BTreeMap<String, RoundTrips>;
    /// Stops what is left running on nodes and closes the connections.
    async fn close(&self);
}

/// Work on the cluster as a whole.
pub trait ClusterOps {
    async fn cordon(&self, node: &str) -> Result<(), StepError>;
    async fn uncordon(&self, node: &str) -> Result<(), StepError>;
    /// Evicts every pod on the node; `before_evicting` records the workloads that will move, first.
    async fn drain(
        &self,
        node: &str,
        before_evicting: &dyn Fn(&BTreeSet<Workload>) -> Result<(), kismatic_kube::HookError>,
    ) -> Result<BTreeSet<Workload>, StepError>;
    /// [`Gate::WorkloadsBack`] for these workloads.
    async fn workloads_back(&self, moved: &BTreeSet<Workload>) -> Result<(), StepError>;
    /// A cluster-side gate after a component's upgrade ([`Gate::ApiServer`], [`Gate::NodeReady`]); `kube_name` is
    /// the node's Kubernetes Node name.
    async fn gate(&self, node: &Node, kube_name: &str, c: &Component, gate: Gate) -> Result<(), StepError>;
    /// Applies an on-cluster service's manifest (create or replace).
    async fn apply(&self, c: &Component) -> Result<Vec<Applied>, StepError>;
    /// [`Gate::Rollout`] of what was applied.
    async fn rollout(&self, applied: &[Applied]) -> Result<(), StepError>;
    /// The etcd cluster as its member on `via` sees it: members, health, versions, leader.
    async fn etcd_cluster(&self, via: &Node, cluster: &str) -> Result<EtcdClusterFacts, StepError>;
    /// A verified snapshot of the cluster, kept on `via`; returns its path and status.
    async fn snapshot(&self, via: &Node, cluster: &str, run_id: &str) -> Result<(String, SnapshotInfo), StepError>;
    /// Copies a snapshot off `via` into a local folder; returns the local file.
    async fn copy_snapshot(&self, via: &Node, path: &str, dir: &Path) -> Result<PathBuf, StepError>;
    /// The cluster as it is now (budgets, controllers, pods, nodes), for the live re-check before an online worker
    /// batch. `None`: not known (the batch runs as planned). The default is for fakes that run no batches.
    async fn live_facts(&self) -> Result<Option<kismatic_core::facts::KubeFacts>, StepError> {
        Ok(None)
    }
    /// Adds (`add`: the effect) or removes the taint `key` on the node; idempotent. The default is for fakes that
    /// run no batches.
    async fn set_taint(&self, _node: &str, _key: &str, _add: Option<&str>) -> Result<(), StepError> {
        Ok(())
    }
}

type SessionCell = Arc<tokio::sync::OnceCell<Arc<NodeSession>>>;

/// [`NodeOps`] over the fleet: one SSH session per node, opened when first needed and kept for the run (checked
/// before each reuse and reopened if it died): a connection costs a key exchange, a command on an open one a few
/// milliseconds.
pub struct FleetNodes<'a> {
    fleet: &'a Fleet,
    release: &'a Release,
    inventory: &'a Inventory,
    /// Deadline of the node-local gates.
    node_timeout: Duration,
    sessions: Mutex<HashMap<String, SessionCell>>,
    artifacts: install::ArtifactCache,
}

impl<'a> FleetNodes<'a> {
    pub fn new(fleet: &'a Fleet, release: &'a Release, inventory: &'a Inventory, node_timeout: Duration) -> Self {
        FleetNodes {
            fleet,
            release,
            inventory,
            node_timeout,
            sessions: Mutex::new(HashMap::new()),
            artifacts: install::ArtifactCache::default(),
        }
    }

    /// The node's session for this run, connecting on first use and reconnecting when the kept one died.
    pub async fn session(&self, node: &Node) -> Result<Arc<NodeSession>, NodeError> {
        let poisoned = || NodeError::Session { node: node.host.clone(), reason: "session table poisoned".into() };
        for _ in 0..2 {
            let cell = self.sessions.lock().map_err(|_| poisoned())?.entry(node.host.clone()).or_default().clone();
            let session = cell
                .get_or_try_init(|| async {
                    self.fleet.connect(&Target::new(&node.host, &node.ip)).await.map(Arc::new)
                })
                .await?
                .clone();
            if session.is_alive().await {
                return Ok(session);
            }
            self.sessions.lock().map(|mut m| m.remove(&node.host)).ok();
        }
        Err(NodeError::Session { node: node.host.clone(), reason: "the SSH connection keeps dying".into() })
    }
}

impl NodeOps for FleetNodes<'_> {
    async fn connect(&self, node: &Node) -> Result<(), StepError> {
        self.session(node).await.map(|_| ())?;
        Ok(())
    }

    async fn stage(&self, node: &Node, components: &[&Component]) -> Result<String, StepError> {
        let s = self.session(node).await?;
        let disabled = self.inventory.disable_package_installation;
        let staged = install::stage(&s, self.release, &self.artifacts, components, disabled).await?;
        Ok(format!(
            "{} artifact(s) uploaded, {:.1} MB, {} already in place",
            staged.uploads,
            staged.bytes as f64 / 1e6,
            staged.already
        ))
    }

    async fn install(&self, node: &Node, c: &Component) -> Result<Installed, StepError> {
        let s = self.session(node).await?;
        Ok(match c.delivery {
            Delivery::Binary => {
                let out = install::install_binary(&s, self.release, c).await?;
                Installed { changed: out.changed, stale: out.running.as_deref() != Some(c.version.as_str()) }
            }
            Delivery::Package => {
                let disabled = self.inventory.disable_package_installation;
                let out = install::install_package(&s, self.release, c, disabled).await?;
                Installed { changed: out.changed, stale: false }
            }
            Delivery::Manifest => Installed::default(),
        })
    }

    async fn restart(&self, node: &Node, c: &Component) -> Result<(), StepError> {
        Ok(install::restart(&*self.session(node).await?, c).await?)
    }

    async fn gate(&self, node: &Node, c: &Component, gate: Gate) -> Result<(), StepError> {
        let s = self.session(node).await?;
        match gate {
            Gate::Running => Ok(install::wait_running(&s, c, self.node_timeout).await?),
            Gate::Healthz { port } => {
                Ok(install::wait_healthz(&s, c, &node.internal_ip, port, self.node_timeout).await?)
            }
            other => Err(StepError::Refused(format!("gate {other:?} is not checked on a node"))),
        }
    }

    async fn rollback(&self, node: &Node, c: &Component) -> Result<String, StepError> {
        Ok(install::rollback_binary(&*self.session(node).await?, c).await?)
    }

    async fn write_markers(&self, node: &Node, kismatic_version: &str) -> Result<(), StepError> {
        let s = self.session(node).await?;
        let on_node = self.release.components_for_roles(&node.roles).filter(|c| c.delivery != Delivery::Manifest);
        let (_, mut versions) = contract::marker_texts(self.release, on_node);
        // On-cluster services are recorded in the masters' markers; keep those entries.
        if node.has_role(Role::Master) {
            let existing = contract::read_component_versions(&s).await?;
            versions = contract::with_service_entries(&versions, &existing, self.release);
        }
        Ok(contract::write_markers(&s, kismatic_version, &versions).await?)
    }

    async fn record_service(&self, node: &Node, c: &Component) -> Result<(), StepError> {
        let s = self.session(node).await?;
        Ok(contract::set_component_versions(&s, &[(c.name.as_str(), c.version.as_str())]).await?)
    }

    fn round_trips(&self) -> BTreeMap<String, RoundTrips> {
        self.fleet.round_trips()
    }

    async fn close(&self) {
        let cells: Vec<SessionCell> =
            self.sessions.lock().map(|mut m| std::mem::take(&mut *m).into_values().collect()).unwrap_or_default();
        for cell in cells {
            if let Some(session) = Arc::into_inner(cell).and_then(|c| c.into_inner()).and_then(Arc::into_inner) {
                session.close().await;
            }
        }
    }
}

/// [`ClusterOps`] over the Kubernetes API and, for etcd, `etcdctl` on the member nodes (through [`FleetNodes`]'s
/// sessions).
pub struct KubeCluster<'a> {
    kube: kube::Client,
    kubeconfig: PathBuf,
    nodes: &'a FleetNodes<'a>,
    release: &'a Release,
    /// Plan host → address of every etcd node, to tie members to nodes.
    etcd_hosts: BTreeMap<String, String>,
    drain_timeout: Duration,
    node_timeout: Duration,
    workload_timeout: Duration,
    stable_for: Duration,
    /// How to reach each cluster from each node, read once (host, cluster) → access.
    access: Mutex<HashMap<(String, String), EtcdAccess>>,
}

/// The deadlines of the cluster-side waits.
pub struct ClusterTimeouts {
    pub drain: Duration,
    pub node: Duration,
    pub workload: Duration,
    pub stable_for: Duration,
}

impl<'a> KubeCluster<'a> {
    pub fn new(
        kube: kube::Client,
        kubeconfig: &Path,
        nodes: &'a FleetNodes<'a>,
        release: &'a Release,
        inventory: &Inventory,
        t: ClusterTimeouts,
    ) -> Self {
        KubeCluster {
            kube,
            kubeconfig: kubeconfig.to_path_buf(),
            nodes,
            release,
            etcd_hosts: inventory.nodes_with_role(Role::Etcd).map(|n| (n.host.clone(), n.ip.clone())).collect(),
            drain_timeout: t.drain,
            node_timeout: t.node,
            workload_timeout: t.workload,
            stable_for: t.stable_for,
            access: Mutex::new(HashMap::new()),
        }
    }

    async fn etcd_access(&self, s: &NodeSession, via: &Node, cluster: &str) -> Result<EtcdAccess, StepError> {
        let key = (via.host.clone(), cluster.to_string());
        if let Some(a) = self.access.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(a);
        }
        let a = etcd::access(s, cluster).await?;
        self.access.lock().map(|mut m| m.insert(key, a.clone())).ok();
        Ok(a)
    }

    /// The master's own API server must answer `/readyz` and report the target in `/version`. Polled every 100 ms
    /// (two cheap GETs) so the gate adds little over the server's own ready time.
    async fn wait_apiserver(&self, url: &str, version: &str) -> Result<(), StepError> {
        let client = kismatic_kube::connect_to(&self.kubeconfig, url).await?;
        poll::until(self.node_timeout, Duration::from_millis(100), || async {
            Ok::<_, String>(match kismatic_kube::ready_version(&client).await {
                Ok(v) if kismatic_core::version::same(&v, version) => Seen::Ready(()),
                Ok(v) => Seen::NotYet(format!("ready at {v}")),
                Err(e) => Seen::NotYet(e.to_string()),
            })
        })
        .await
        .map_err(|e| {
            StepError::NotReady(match e {
                PollError::Failed(e) => e,
                PollError::TimedOut { last } => format!(
                    "API server {url} not ready at {version} within {}s (last: {last})",
                    self.node_timeout.as_secs()
                ),
            })
        })
    }
}

impl ClusterOps for KubeCluster<'_> {
    async fn cordon(&self, node: &str) -> Result<(), StepError> {
        Ok(kismatic_kube::ops::cordon(&self.kube, node).await?)
    }

    async fn uncordon(&self, node: &str) -> Result<(), StepError> {
        Ok(kismatic_kube::ops::uncordon(&self.kube, node).await?)
    }

    async fn drain(
        &self,
        node: &str,
        before_evicting: &dyn Fn(&BTreeSet<Workload>) -> Result<(), kismatic_kube::HookError>,
    ) -> Result<BTreeSet<Workload>, StepError> {
        Ok(kismatic_kube::ops::drain(&self.kube, node, self.drain_timeout, before_evicting).await?)
    }

    async fn workloads_back(&self, moved: &BTreeSet<Workload>) -> Result<(), StepError> {
        Ok(kismatic_kube::ops::wait_workloads_ready(&self.kube, moved, self.stable_for, self.workload_timeout).await?)
    }

    async fn gate(&self, node: &Node, kube_name: &str, c: &Component, gate: Gate) -> Result<(), StepError> {
        match gate {
            Gate::ApiServer { port } => {
                self.wait_apiserver(&format!("https://{}:{port}", node.internal_ip), &c.version).await
            }
            Gate::NodeReady => {
                Ok(kismatic_kube::ops::wait_node_ready(&self.kube, kube_name, &c.version, self.node_timeout).await?)
            }
            other => Err(StepError::Refused(format!("gate {other:?} is not checked through the cluster"))),
        }
    }

    async fn apply(&self, c: &Component) -> Result<Vec<Applied>, StepError> {
        let path = self.release.dir.join(&c.artifact.file);
        let bytes = install::read_verified(self.release, &c.artifact)?;
        let text =
            String::from_utf8(bytes).map_err(|_| StepError::Refused(format!("{}: not UTF-8 text", path.display())))?;
        Ok(kismatic_kube::apply::apply(&self.kube, &path.display().to_string(), &text).await?)
    }

    async fn rollout(&self, applied: &[Applied]) -> Result<(), StepError> {
        Ok(kismatic_kube::apply::wait_rollout(&self.kube, applied, self.workload_timeout).await?)
    }

    async fn etcd_cluster(&self, via: &Node, cluster: &str) -> Result<EtcdClusterFacts, StepError> {
        let s = self.nodes.session(via).await?;
        let access = self.etcd_access(&s, via, cluster).await?;
        Ok(etcd::cluster_facts(&s, &access, &self.etcd_hosts).await?)
    }

    async fn snapshot(&self, via: &Node, cluster: &str, run_id: &str) -> Result<(String, SnapshotInfo), StepError> {
        let s = self.nodes.session(via).await?;
        let access = self.etcd_access(&s, via, cluster).await?;
        Ok(etcd::snapshot(&s, &access, contract::SNAPSHOT_DIR, run_id).await?)
    }

    async fn copy_snapshot(&self, via: &Node, path: &str, dir: &Path) -> Result<PathBuf, StepError> {
        let s = self.nodes.session(via).await?;
        Ok(etcd::copy_snapshot(&s, path, dir).await?)
    }

    async fn live_facts(&self) -> Result<Option<kismatic_core::facts::KubeFacts>, StepError> {
        let facts = kismatic_kube::gather(&self.kube, "kubeconfig").await?;
        // A list that failed (budgets, pods) would make the re-check prove too much: refuse rather than guess.
        if let Some(e) = facts.list_errors.first() {
            return Err(StepError::NotReady(format!("live re-check: listing {} failed: {}", e.list, e.error)));
        }
        Ok(Some(facts))
    }

    async fn set_taint(&self, node: &str, key: &str, add: Option<&str>) -> Result<(), StepError> {
        Ok(kismatic_kube::ops::set_taint(&self.kube, node, key, add).await?)
    }
}
