//! Unit, property and snapshot tests of the pure core.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod batching;
mod checks;
mod planner;
mod props;
mod render;
mod summary;

use crate::checks::{Analysis, CheckOptions, Code, Mode, analyze};
use crate::facts::*;
use crate::synth::{self, controller, kube_node, owner, pod};
use kismatic_plan::Role;
use kismatic_release::Release;

/// A small cluster at the old release: 3 etcd, 2 masters, 3 workers, all Ready, etcd healthy, no pods.
pub struct Fx {
    pub facts: Facts,
    pub release: Release,
}

impl Fx {
    pub fn new() -> Fx {
        use Role::*;
        let spec: [(&str, &[Role]); 8] = [
            ("etcd00", &[Etcd]),
            ("etcd01", &[Etcd]),
            ("etcd02", &[Etcd]),
            ("master00", &[Master]),
            ("master01", &[Master]),
            ("worker00", &[Worker]),
            ("worker01", &[Worker]),
            ("worker02", &[Worker]),
        ];
        let nodes = spec.iter().enumerate().map(|(i, (h, r))| synth::node(h, i + 1, r)).collect();
        let inventory = synth::inventory(nodes);
        let node_facts = inventory.nodes.iter().map(|n| synth::node_facts(&n.host, &n.roles, None)).collect();
        let kube = KubeFacts {
            api_servers: vec![ApiServerFacts {
                endpoint: "master00".into(),
                version: Some("v1.33.2".into()),
                ..Default::default()
            }],
            nodes: ["master00", "master01", "worker00", "worker01", "worker02"].iter().map(|n| kube_node(n)).collect(),
            ..Default::default()
        };
        let facts = Facts::new(
            inventory,
            node_facts,
            Some(kube),
            vec![synth::healthy_etcd(&["etcd00", "etcd01", "etcd02"])],
            "2026-01-01T00:00:00Z",
        );
        Fx { facts, release: synth::release() }
    }

    pub fn kube(&mut self) -> &mut KubeFacts {
        self.facts.kube.as_mut().expect("kube facts")
    }

    pub fn node_facts(&mut self, host: &str) -> &mut NodeFacts {
        self.facts.nodes.iter_mut().find(|n| n.host == host).expect("node facts")
    }

    pub fn node(&mut self, host: &str) -> &mut kismatic_plan::Node {
        self.facts.inventory.nodes.iter_mut().find(|n| n.host == host).expect("node")
    }

    /// Puts a node at the target release.
    pub fn at_target(&mut self, host: &str) {
        let roles = self.node(host).roles.clone();
        let nf = synth::node_facts(host, &roles, Some(&self.release));
        *self.node_facts(host) = nf;
    }

    /// The analysis, without the `in-place-kubelet-minor` findings that the fixture's one-minor kubelet change
    /// raises offline on every kubelet node (tested on their own with [`analyze`] directly).
    pub fn analyze(&self, mode: Mode) -> Analysis {
        self.analyze_with(&CheckOptions::new(mode))
    }

    /// [`Fx::analyze`] with options.
    pub fn analyze_with(&self, opts: &CheckOptions) -> Analysis {
        let mut a = analyze(&self.facts, &self.release, opts).expect("analysis");
        a.findings.retain(|f| f.code != Code::InPlaceKubeletMinor);
        a
    }

    pub fn online(&self) -> Analysis {
        self.analyze(Mode::Online)
    }

    /// The three workers in one zone, a Deployment `web` with a replica on each and a PDB that allows 2
    /// disruptions: worker batching has something to bound it.
    pub fn zoned_with_budget() -> Fx {
        let mut fx = Fx::new();
        for n in fx.kube().nodes.iter_mut().filter(|n| n.name.starts_with("worker")) {
            n.labels = [("topology.kubernetes.io/zone", "a")].into();
        }
        fx.deployment("default", "web", 3, &["worker00", "worker01", "worker02"]);
        fx.kube().pdbs.push(PodDisruptionBudget {
            namespace: "default".into(),
            name: "web".into(),
            selector: Some(LabelSelector { match_labels: [("app", "web")].into(), ..Default::default() }),
            min_available: Some(IntOrPercent::Int(1)),
            max_unavailable: None,
            disruptions_allowed: 2,
            current_healthy: 3,
            desired_healthy: 1,
            expected_pods: 3,
        });
        fx
    }

    /// A Deployment with `replicas` desired, its ReplicaSet, and one pod per entry of `nodes`.
    pub fn deployment(&mut self, ns: &str, name: &str, replicas: i64, nodes: &[&str]) {
        let duid = format!("d-{ns}-{name}");
        let rsuid = format!("rs-{ns}-{name}");
        let rsname = format!("{name}-abc");
        let kube = self.kube();
        kube.deployments.push(controller(ns, name, &duid, replicas, vec![]));
        kube.replica_sets.push(controller(ns, &rsname, &rsuid, replicas, vec![owner("Deployment", name, &duid)]));
        for (i, n) in nodes.iter().enumerate() {
            kube.pods.push(pod(ns, &format!("{rsname}-{i}"), n, vec![owner("ReplicaSet", &rsname, &rsuid)], name));
        }
    }
}

pub fn codes(a: &Analysis, host: &str) -> Vec<Code> {
    a.findings.iter().filter(|f| f.node == host).map(|f| f.code).collect()
}

pub fn all_codes(a: &Analysis) -> Vec<(String, Code)> {
    a.findings.iter().map(|f| (f.node.clone(), f.code)).collect()
}
