//! Synthetic clusters and releases for tests and benchmarks (pure data, deterministic).
#![allow(missing_docs)]

use crate::facts::*;
use kismatic_plan::{ExpectedCounts, Inventory, LoadBalancer, Node, Role, SshSettings};
use kismatic_release::{Artifact, Component, Delivery, Release, ServicePhase};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const OLD_RELEASE: &str = "1.0.0";
pub const OLD_KUBE: &str = "1.33.2";
pub const OLD_ETCD: &str = "3.4.23";
pub const OLD_RUNTIME: &str = "1.0.0";

fn artifact(name: &str, size: u64) -> Artifact {
    Artifact { file: PathBuf::from(format!("artifacts/{name}.tar.gz")), sha256: "0".repeat(64), size }
}

fn comp(name: &str, version: &str, delivery: Delivery, roles: &[Role]) -> Component {
    Component {
        name: name.into(),
        version: version.into(),
        delivery,
        roles: roles.to_vec(),
        service: (delivery != Delivery::Manifest).then(|| name.to_string()),
        artifact: artifact(name, 40_000_000),
        unit: (delivery == Delivery::Binary).then(|| artifact(&format!("{name}-unit"), 1_000)),
        package: (delivery == Delivery::Package).then(|| format!("kismatic-{name}")),
        phase: match (delivery, name) {
            (Delivery::Manifest, "registry") => Some(ServicePhase::Registry),
            (Delivery::Manifest, _) => Some(ServicePhase::Services),
            _ => None,
        },
    }
}

/// The target release: 1.1.0, Kubernetes v1.34.1, etcd 3.5.1.
pub fn release() -> Release {
    use Role::*;
    let kube = "1.34.1";
    let nodes = [Master, Worker, Ingress, Storage];
    Release {
        dir: PathBuf::from("/releases/1.1.0"),
        version: semver::Version::new(1, 1, 0),
        kubernetes: format!("v{kube}"),
        components: vec![
            comp("etcd", "3.5.1", Delivery::Binary, &[Etcd]),
            comp("container-runtime", "1.1.0", Delivery::Package, &nodes),
            comp("kube-apiserver", kube, Delivery::Binary, &[Master]),
            comp("kube-controller-manager", kube, Delivery::Binary, &[Master]),
            comp("kube-scheduler", kube, Delivery::Binary, &[Master]),
            comp("kubelet", kube, Delivery::Binary, &nodes),
            comp("kube-proxy", kube, Delivery::Binary, &nodes),
            comp("registry", "2.8.3", Delivery::Manifest, &[]),
            comp("dns", "1.11.1", Delivery::Manifest, &[]),
        ],
        manifest_objects: Vec::new(),
    }
}

/// Facts of a reachable node whose markers and components are all at `release` (or at the old release when
/// `release` is `None`).
pub fn node_facts(host: &str, roles: &[Role], release: Option<&Release>) -> NodeFacts {
    let target = release.cloned().unwrap_or_else(self::release);
    let mut markers = BTreeMap::new();
    let mut components = BTreeMap::new();
    for c in target.components_for_roles(roles) {
        let v = match (release, c.name.as_str()) {
            (Some(_), _) => c.version.clone(),
            (None, "etcd") => OLD_ETCD.to_string(),
            (None, "container-runtime") => OLD_RUNTIME.to_string(),
            (None, _) => OLD_KUBE.to_string(),
        };
        markers.insert(c.name.clone(), v.clone());
        components.insert(
            c.name.clone(),
            ComponentObservation {
                installed_version: Some(v.clone()),
                running_version: Some(v),
                service_active: Some(true),
                ..Default::default()
            },
        );
    }
    let (version, kube) = match release {
        Some(r) => (r.version.clone(), r.kubernetes.clone()),
        None => (semver::Version::parse(OLD_RELEASE).unwrap_or(semver::Version::new(1, 0, 0)), format!("v{OLD_KUBE}")),
    };
    markers.insert("kubernetes".into(), kube);
    NodeFacts {
        host: host.into(),
        read: NodeRead::Ok,
        kismatic_version: Marker::Present { value: version },
        component_markers: Marker::Present { value: markers },
        components,
        disk_free: [("/".to_string(), 20_000_000_000u64)].into(),
    }
}

pub fn node(host: &str, n: usize, roles: &[Role]) -> Node {
    Node {
        host: host.into(),
        ip: format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255),
        internal_ip: format!("192.168.{}.{}", (n >> 8) & 255, n & 255),
        roles: roles.to_vec(),
        labels: BTreeMap::new(),
        taints: Vec::new(),
    }
}

pub fn inventory(nodes: Vec<Node>) -> Inventory {
    let count = |r: Role| nodes.iter().filter(|n| n.has_role(r)).count();
    Inventory {
        cluster_name: "synth".into(),
        plan_path: PathBuf::from("kismatic-cluster.yaml"),
        ssh: SshSettings { user: "root".into(), key: PathBuf::from("/root/.ssh/id"), port: 22, known_hosts: None },
        load_balancer: Some(LoadBalancer { host: "lb.example".into(), port: 6443 }),
        disable_package_installation: false,
        disconnected_installation: false,
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

pub fn healthy_etcd(hosts: &[&str]) -> EtcdClusterFacts {
    EtcdClusterFacts {
        cluster: "etcd".into(),
        members: hosts
            .iter()
            .enumerate()
            .map(|(i, h)| EtcdMember {
                id: format!("{:016x}", i + 1),
                name: h.to_string(),
                node: Some(h.to_string()),
                client_urls: vec![format!("https://{h}:2379")],
                healthy: Some(true),
                version: Some(OLD_ETCD.into()),
                error: None,
            })
            .collect(),
        leader: Some(format!("{:016x}", 1)),
        error: None,
    }
}

pub fn kube_node(name: &str) -> KubeNode {
    KubeNode {
        name: name.into(),
        ready: true,
        unschedulable: false,
        kubelet_version: format!("v{OLD_KUBE}"),
        labels: Labels::new(),
        taints: Vec::new(),
        allocatable: None,
    }
}

pub fn owner(kind: &str, name: &str, uid: &str) -> OwnerRef {
    OwnerRef { kind: kind.into(), name: name.into(), uid: uid.into(), controller: true }
}

pub fn controller(ns: &str, name: &str, uid: &str, desired: i64, owners: Vec<OwnerRef>) -> Controller {
    Controller {
        namespace: ns.into(),
        name: name.into(),
        uid: uid.into(),
        owners,
        selector: Some(LabelSelector {
            match_labels: [("app".to_string(), name.to_string())].into(),
            ..Default::default()
        }),
        desired_replicas: Some(desired),
        ready_replicas: Some(desired),
    }
}

pub fn pod(ns: &str, name: &str, node: &str, owners: Vec<OwnerRef>, app: &str) -> Pod {
    Pod {
        namespace: ns.into(),
        name: name.into(),
        uid: format!("pod-{ns}-{name}").into(),
        node: Some(node.into()),
        phase: PodPhase::Running,
        ready: true,
        owners,
        volumes: Vec::new(),
        mirror: false,
        labels: [("app".to_string(), app.to_string())].into(),
        requests: None,
    }
}

/// A generated cluster: 3 etcd, 3 masters, the rest workers (1 in 500 also ingress, 1 in 500 storage); every
/// node at the old release. About `pods` pods: 5 cluster DaemonSets on every worker, the rest in 3-replica
/// Deployments (RS → Deployment), 3-replica StatefulSets with PVCs, Jobs, and a sprinkling of unmanaged pods,
/// emptyDir and hostPath volumes; a PDB for every fourth Deployment.
pub fn generate(nodes: usize, pods: usize) -> Facts {
    let release = release();
    let nodes = nodes.max(8);
    let mut inv_nodes = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let (host, roles): (String, Vec<Role>) = match i {
            0..3 => (format!("etcd{i:02}"), vec![Role::Etcd]),
            3..6 => (format!("master{:02}", i - 3), vec![Role::Master]),
            _ if i % 500 == 7 => (format!("worker{i:05}"), vec![Role::Worker, Role::Ingress]),
            _ if i % 500 == 8 => (format!("worker{i:05}"), vec![Role::Worker, Role::Storage]),
            _ => (format!("worker{i:05}"), vec![Role::Worker]),
        };
        inv_nodes.push(node(&host, i, &roles));
    }
    let inventory = inventory(inv_nodes);
    let node_facts: Vec<NodeFacts> = inventory.nodes.iter().map(|n| node_facts(&n.host, &n.roles, None)).collect();
    let _ = &release;
    let workers: Vec<&str> =
        inventory.nodes.iter().filter(|n| n.has_role(Role::Worker)).map(|n| n.host.as_str()).collect();
    let mut kube = KubeFacts {
        api_servers: (0..3)
            .map(|i| ApiServerFacts {
                endpoint: format!("master{i:02}"),
                version: Some(format!("v{OLD_KUBE}")),
                ..Default::default()
            })
            .collect(),
        nodes: inventory
            .nodes
            .iter()
            .filter(|n| !n.roles.iter().all(|r| *r == Role::Etcd))
            .map(|n| kube_node(&n.host))
            .collect(),
        ..Default::default()
    };
    let mut next_node = 0usize;
    let mut pick = || {
        next_node = (next_node + 7919) % workers.len();
        workers[next_node]
    };
    // DaemonSets on every worker.
    let ds_names = ["kube-proxy", "calico-node", "node-exporter", "fluent-bit", "csi-node"];
    let mut remaining = pods;
    for (d, name) in ds_names.iter().enumerate() {
        let ns = if d < 2 { "kube-system" } else { "monitoring" };
        let uid = format!("ds-{name}");
        kube.daemon_sets.push(controller(ns, name, &uid, workers.len() as i64, vec![]));
        for w in &workers {
            if remaining == 0 {
                break;
            }
            remaining -= 1;
            kube.pods.push(pod(ns, &format!("{name}-{w}"), w, vec![owner("DaemonSet", name, &uid)], name));
        }
    }
    let mut i = 0usize;
    while remaining > 0 {
        let ns = format!("team-{}", i % 200);
        match i % 10 {
            // Jobs: one pod.
            0 => {
                let name = format!("job-{i}");
                let uid = format!("job-{i}");
                kube.jobs.push(controller(&ns, &name, &uid, 1, vec![]));
                kube.pods.push(pod(&ns, &format!("{name}-x"), pick(), vec![owner("Job", &name, &uid)], &name));
                remaining -= 1;
            }
            // Unmanaged pod.
            1 if i % 100 == 1 => {
                let mut p = pod(&ns, &format!("bare-{i}"), pick(), vec![], "bare");
                p.volumes.push(PodVolume {
                    name: "scratch".into(),
                    kind: VolumeKind::EmptyDir,
                    path: None,
                    claim: None,
                });
                kube.pods.push(p);
                remaining -= 1;
            }
            // StatefulSet with claims on local or network PVs.
            2 | 3 => {
                let name = format!("db-{i}");
                let uid = format!("ss-{i}");
                kube.stateful_sets.push(controller(&ns, &name, &uid, 3, vec![]));
                for r in 0..3.min(remaining) {
                    let claim = format!("data-{name}-{r}");
                    let pv = format!("pv-{i}-{r}");
                    kube.pvcs.push(PersistentVolumeClaim {
                        namespace: ns.as_str().into(),
                        name: claim.as_str().into(),
                        volume: Some(pv.as_str().into()),
                    });
                    kube.pvs.push(PersistentVolume {
                        name: pv.into(),
                        kind: if i % 20 == 2 { PvKind::Local } else { PvKind::Other },
                        path: None,
                    });
                    let mut p =
                        pod(&ns, &format!("{name}-{r}"), pick(), vec![owner("StatefulSet", &name, &uid)], &name);
                    p.volumes.push(PodVolume {
                        name: "data".into(),
                        kind: VolumeKind::Pvc,
                        path: None,
                        claim: Some(claim.into()),
                    });
                    p.volumes.push(PodVolume {
                        name: "token".into(),
                        kind: VolumeKind::Other,
                        path: None,
                        claim: None,
                    });
                    kube.pods.push(p);
                    remaining -= 1;
                }
            }
            // Deployment → ReplicaSet → pods.
            _ => {
                let name = format!("web-{i}");
                let duid = format!("deploy-{i}");
                let rsuid = format!("rs-{i}");
                let replicas = if i % 50 == 4 { 1 } else { 3 };
                kube.deployments.push(controller(&ns, &name, &duid, replicas, vec![]));
                kube.replica_sets.push(controller(
                    &ns,
                    &format!("{name}-5d9f"),
                    &rsuid,
                    replicas,
                    vec![owner("Deployment", &name, &duid)],
                ));
                if i.is_multiple_of(4) {
                    kube.pdbs.push(PodDisruptionBudget {
                        namespace: ns.as_str().into(),
                        name: name.as_str().into(),
                        selector: Some(LabelSelector {
                            match_labels: [("app", name.as_str())].into(),
                            ..Default::default()
                        }),
                        min_available: Some(IntOrPercent::Str("50%".into())),
                        max_unavailable: None,
                        disruptions_allowed: 1,
                        current_healthy: replicas,
                        desired_healthy: (replicas + 1) / 2,
                        expected_pods: replicas,
                    });
                }
                for r in 0..(replicas as usize).min(remaining) {
                    let mut p = pod(
                        &ns,
                        &format!("{name}-5d9f-{r}"),
                        pick(),
                        vec![owner("ReplicaSet", &format!("{name}-5d9f"), &rsuid)],
                        &name,
                    );
                    if i % 40 == 5 {
                        p.volumes.push(PodVolume {
                            name: "cache".into(),
                            kind: VolumeKind::EmptyDir,
                            path: None,
                            claim: None,
                        });
                    }
                    if i % 300 == 6 {
                        p.volumes.push(PodVolume {
                            name: "logs".into(),
                            kind: VolumeKind::HostPath,
                            path: Some("/var/log".into()),
                            claim: None,
                        });
                    }
                    p.volumes.push(PodVolume {
                        name: "config".into(),
                        kind: VolumeKind::Other,
                        path: None,
                        claim: None,
                    });
                    kube.pods.push(p);
                    remaining -= 1;
                }
            }
        }
        i += 1;
    }
    let etcd = vec![healthy_etcd(&["etcd00", "etcd01", "etcd02"])];
    Facts::new(inventory, node_facts, Some(kube), etcd, "2026-01-01T00:00:00Z")
}
