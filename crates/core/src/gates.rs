//! What the tool knows about each kind of component, in one place: which components are etcd clusters, which health
//! gate proves each one back after its upgrade, and on which port. The planner writes the gates into the plan; the
//! executor only interprets them.

use kismatic_release::{Component, Delivery};
use serde::{Deserialize, Serialize};

/// Components that are etcd clusters, in upgrade (and snapshot) order: upgraded member by member under quorum gates,
/// each snapshotted before its first member changes.
pub const ETCD_CLUSTERS: [&str; 2] = ["etcd", "etcd-networking"];

/// Whether the component is one of the [`ETCD_CLUSTERS`].
pub fn is_etcd(component: &str) -> bool {
    ETCD_CLUSTERS.contains(&component)
}

/// Where the controller-manager serves `/healthz` on its node (Kubernetes' secure port).
pub const CONTROLLER_MANAGER_HEALTH_PORT: u16 = 10257;
/// Where the scheduler serves `/healthz` on its node (Kubernetes' secure port).
pub const SCHEDULER_HEALTH_PORT: u16 = 10259;

/// A health gate: what must be seen, polled with a deadline, before the run goes on. Never a fixed sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "gate", rename_all = "snake_case")]
pub enum Gate {
    /// The etcd member is healthy at the target version and the cluster has a leader (and before the member is
    /// touched, the cluster is healthy with a leader); a member that does not come back is rolled back.
    EtcdMember,
    /// The node runs the target executable (binary delivery: the running process's file is the installed one).
    Running,
    /// The component answers `/healthz` on its own node at this port.
    Healthz { port: u16 },
    /// The master's own API server (not the load balancer) answers `/readyz` and reports the target in `/version`.
    ApiServer { port: u16 },
    /// The Kubernetes Node is Ready with the target kubelet version.
    NodeReady,
    /// The workloads the drain moved are back at their ready counts for a stability window.
    WorkloadsBack,
    /// Every object applied has rolled out.
    Rollout,
}

impl Gate {
    /// How the gate reads in a plan (`--dry-run`).
    pub fn describe(&self) -> String {
        match self {
            Gate::EtcdMember => "member healthy at target with a leader".into(),
            Gate::Running => "running the target".into(),
            Gate::Healthz { port } => format!("/healthz on :{port}"),
            Gate::ApiServer { port } => format!("/readyz and /version on :{port}"),
            Gate::NodeReady => "Node Ready at target".into(),
            Gate::WorkloadsBack => "moved workloads ready".into(),
            Gate::Rollout => "rollout complete".into(),
        }
    }
}

/// The gates after upgrading a component on a node, in the order they are checked. `apiserver_port` is where each
/// master's own API server listens.
pub fn component_gates(name: &str, delivery: Delivery, apiserver_port: u16) -> Vec<Gate> {
    if is_etcd(name) {
        return vec![Gate::EtcdMember];
    }
    let mut gates = Vec::new();
    // A package's installed version is checked by its install; a binary's running executable is polled.
    if delivery == Delivery::Binary {
        gates.push(Gate::Running);
    }
    match name {
        "kube-controller-manager" => gates.push(Gate::Healthz { port: CONTROLLER_MANAGER_HEALTH_PORT }),
        "kube-scheduler" => gates.push(Gate::Healthz { port: SCHEDULER_HEALTH_PORT }),
        "kube-apiserver" => gates.push(Gate::ApiServer { port: apiserver_port }),
        "kubelet" => gates.push(Gate::NodeReady),
        _ => {}
    }
    gates
}

/// Whether upgrading the component restarts a service on the node (when its files changed, or they are at the target
/// but the running process is not): binaries always run as a systemd unit, packages when the release names one.
pub fn restarts(c: &Component) -> bool {
    c.delivery == Delivery::Binary || (c.delivery == Delivery::Package && c.service.is_some())
}
