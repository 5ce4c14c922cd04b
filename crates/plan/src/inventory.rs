//! The checked, derived view of a plan that the rest of the tool works from.
//! The raw plan-file model lives beside it; `Inventory` is what remains after defaults, migration and validation.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A node's role. The declaration order is Kismatic's role order (master, etcd, worker, ingress, storage),
/// which is also how roles are listed in output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Etcd,
    Worker,
    Ingress,
    Storage,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Master, Role::Etcd, Role::Worker, Role::Ingress, Role::Storage];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Etcd => "etcd",
            Role::Worker => "worker",
            Role::Ingress => "ingress",
            Role::Storage => "storage",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

/// One machine of the cluster, once, with every role it has (sorted in `Role` order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The host name; also the Kubernetes node name (compared case-insensitively).
    pub host: String,
    /// The address used for SSH.
    pub ip: String,
    /// The address used for cluster traffic; defaults to `ip`.
    pub internal_ip: String,
    pub roles: Vec<Role>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

impl Node {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshSettings {
    pub user: String,
    /// Absolute path of the private key (relative paths are resolved against the plan file's folder).
    pub key: PathBuf,
    pub port: u16,
    /// known_hosts file to verify host keys against; `None` means the user's own (`~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
}

/// The masters' load-balanced endpoint, `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub host: String,
    pub port: u16,
}

/// Declared size of each node group (Kismatic's `expected_count`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedCounts {
    pub etcd: usize,
    pub master: usize,
    pub worker: usize,
    pub ingress: usize,
    pub storage: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub cluster_name: String,
    /// The plan file this inventory came from.
    pub plan_path: PathBuf,
    pub ssh: SshSettings,
    pub load_balancer: Option<LoadBalancer>,
    pub disable_package_installation: bool,
    pub disconnected_installation: bool,
    pub expected: ExpectedCounts,
    /// Unique nodes, in first-occurrence order over the groups master, etcd, worker, ingress, storage.
    pub nodes: Vec<Node>,
}

impl Inventory {
    pub fn nodes_with_role(&self, role: Role) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(move |n| n.has_role(role))
    }
}
