//! Plan → Inventory: unique nodes with their roles, SSH settings with resolved paths.

use crate::model::{LocMap, Plan, PlanNode, s};
use crate::validate::{node_key, resolve_path};
use crate::{ExpectedCounts, Inventory, LoadBalancer, Node, Role, SshSettings, Taint, groups, names};
use std::collections::{BTreeMap, HashMap};

/// Kismatic's precedence when a node's labels or taints differ between groups: later wins in
/// etcd, master, worker, ingress, storage order.
const MERGE_ORDER: [Role; 5] = [Role::Etcd, Role::Master, Role::Worker, Role::Ingress, Role::Storage];

pub(crate) fn inventory(plan: &Plan) -> Inventory {
    let gs = groups(plan);
    // Unique nodes in first-occurrence order over the groups in Role order; first occurrence wins.
    let mut nodes: Vec<Node> = Vec::new();
    // Node identity → index in `nodes`: a map, so a 20,000-node plan is derived in linear time (a list searched per
    // node made it quadratic, seconds at that size; issue 12).
    let mut keys: HashMap<(String, String, String), usize> = HashMap::new();
    for g in &gs {
        for n in g.nodes.iter().flat_map(|n| n.value.iter()) {
            let key = node_key(&n.value);
            match keys.get(&key).copied() {
                Some(i) => {
                    if !nodes[i].roles.contains(&g.role) {
                        nodes[i].roles.push(g.role);
                    }
                }
                None => {
                    keys.insert(key, nodes.len());
                    nodes.push(Node {
                        host: s(&n.value.host).to_string(),
                        ip: s(&n.value.ip).to_string(),
                        internal_ip: s(&n.value.internalip).to_string(),
                        roles: vec![g.role],
                        labels: BTreeMap::new(),
                        taints: Vec::new(),
                    });
                }
            }
        }
    }
    for role in MERGE_ORDER {
        let Some(g) = gs.iter().find(|g| g.role == role) else { continue };
        for n in g.nodes.iter().flat_map(|n| n.value.iter()) {
            let key = node_key(&n.value);
            if let Some(&i) = keys.get(&key) {
                merge(&mut nodes[i], &n.value);
            }
        }
    }
    for n in &mut nodes {
        n.roles.sort();
    }

    let ssh = &plan.cluster.ssh;
    let count = |role: Role| {
        gs.iter()
            .find(|g| g.role == role)
            .and_then(|g| g.expected.as_ref())
            .map(|c| usize::try_from(c.value).unwrap_or(0))
            .unwrap_or(0)
    };
    let load_balancer = plan
        .master
        .as_ref()
        .and_then(|m| names::host_port(s(&m.value.load_balancer)).ok())
        .map(|(host, port)| LoadBalancer { host, port });
    Inventory {
        cluster_name: s(&plan.cluster.name).to_string(),
        plan_path: std::path::absolute(&plan.path).unwrap_or_else(|_| plan.path.clone()),
        ssh: SshSettings {
            user: s(&ssh.user).to_string(),
            key: resolve_path(&plan.path, s(&ssh.ssh_key)),
            port: ssh
                .ssh_port
                .as_ref()
                .and_then(|p| u16::try_from(p.value).ok())
                .unwrap_or(crate::DEFAULT_SSH_PORT as u16),
            known_hosts: Some(s(&ssh.known_hosts)).filter(|k| !k.is_empty()).map(|k| resolve_path(&plan.path, k)),
        },
        load_balancer,
        disable_package_installation: crate::model::b(&plan.cluster.disable_package_installation),
        disconnected_installation: crate::model::b(&plan.cluster.disconnected_installation),
        expected: ExpectedCounts {
            etcd: count(Role::Etcd),
            master: count(Role::Master),
            worker: count(Role::Worker),
            ingress: count(Role::Ingress),
            storage: count(Role::Storage),
        },
        nodes,
    }
}

fn merge(node: &mut Node, from: &PlanNode) {
    merge_labels(&mut node.labels, &from.labels);
    for t in &from.taints {
        let taint = Taint {
            key: s(&t.value.key).to_string(),
            value: s(&t.value.value).to_string(),
            effect: s(&t.value.effect).to_string(),
        };
        match node.taints.iter_mut().find(|x| x.key == taint.key && x.effect == taint.effect) {
            Some(x) => *x = taint,
            None => node.taints.push(taint),
        }
    }
}

fn merge_labels(into: &mut BTreeMap<String, String>, from: &LocMap) {
    for (k, v) in from.iter() {
        into.insert(k.to_string(), v.to_string());
    }
}
