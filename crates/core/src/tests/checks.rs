use super::*;
use crate::checks::{AnalysisError, Class};

#[test]
fn clean_cluster_has_no_findings() {
    let fx = Fx::new();
    let a = fx.online();
    assert!(a.findings.is_empty(), "{:?}", a.findings);
    assert!(a.needs.iter().all(|n| n.needs_upgrade));
}

#[test]
fn every_code_has_its_architecture_class() {
    for code in Code::ALL {
        let expected = match code.as_str() {
            "unmanaged-pod"
            | "emptydir-volume"
            | "hostpath-volume"
            | "hostpath-persistent-volume"
            | "local-persistent-volume" => Class::Unsafe,
            "unreachable" | "disk-space" | "package-missing" | "version-policy" => Class::Unready,
            _ => Class::Unavailable,
        };
        assert_eq!(code.class(), expected, "{code}");
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
    }
}

// ----- readiness -----

#[test]
fn unreachable_node() {
    let mut fx = Fx::new();
    *fx.node_facts("worker01") = NodeFacts::unreachable("worker01", "connection refused");
    let a = fx.analyze(Mode::Offline);
    assert_eq!(all_codes(&a), vec![("worker01".to_string(), Code::Unreachable)]);
    assert!(a.findings[0].message.contains("connection refused"));
}

#[test]
fn node_without_facts_is_unreachable() {
    let mut fx = Fx::new();
    fx.facts.nodes.retain(|n| n.host != "worker02");
    assert_eq!(codes(&fx.analyze(Mode::Offline), "worker02"), vec![Code::Unreachable]);
}

#[test]
fn disk_space_minimum_plus_artifacts() {
    let mut fx = Fx::new();
    let artifacts = fx.release.artifact_bytes_for_roles(&[Role::Worker]);
    let needed = crate::checks::DEFAULT_MIN_FREE_BYTES + artifacts;
    fx.node_facts("worker00").disk_free.insert("/".into(), needed - 1);
    fx.node_facts("worker01").disk_free.insert("/".into(), needed);
    fx.node_facts("worker02").disk_free.clear();
    let a = fx.analyze(Mode::Offline);
    assert_eq!(codes(&a, "worker00"), vec![Code::DiskSpace]);
    assert_eq!(codes(&a, "worker01"), vec![]);
    assert_eq!(codes(&a, "worker02"), vec![Code::DiskSpace], "unknown free space");
    assert!(a.findings.iter().any(|f| f.message.contains("unknown")));
}

#[test]
fn disk_space_configurable_and_separate_opt() {
    let mut fx = Fx::new();
    fx.node_facts("worker00").disk_free.insert("/".into(), 600_000_000);
    fx.node_facts("worker01").disk_free.insert("/opt/kismatic".into(), 1_000);
    let opts = CheckOptions { min_free_bytes: 500_000_000, ..CheckOptions::new(Mode::Offline) };
    let a = fx.analyze_with(&opts);
    // 600 MB < 500 MB + artifacts on / ; worker01's /opt/kismatic is too small for its artifacts.
    assert_eq!(codes(&a, "worker00"), vec![Code::DiskSpace]);
    assert_eq!(codes(&a, "worker01"), vec![Code::DiskSpace]);
    assert_eq!(a.findings[1].object, "/opt/kismatic");
    let skip = CheckOptions { skip_preflight: true, ..opts };
    assert!(fx.analyze_with(&skip).findings.is_empty());
}

#[test]
fn package_missing_only_when_installation_disabled() {
    let mut fx = Fx::new();
    assert!(fx.analyze(Mode::Offline).findings.is_empty(), "installation enabled: the tool installs it");
    fx.facts.inventory.disable_package_installation = true;
    fx.node_facts("worker01").components.get_mut("container-runtime").unwrap().installed_version =
        Some("1.1.0-1".into());
    let a = fx.analyze(Mode::Offline);
    // Every master/worker lacks container-runtime 1.1.0, except worker01 (a Debian revision of it).
    for h in ["master00", "master01", "worker00", "worker02"] {
        assert_eq!(codes(&a, h), vec![Code::PackageMissing], "{h}");
    }
    assert_eq!(codes(&a, "worker01"), vec![]);
    assert_eq!(codes(&a, "etcd00"), vec![], "etcd nodes get no package");
    assert!(a.findings[0].message.contains("kismatic-container-runtime 1.1.0"));
}

#[test]
fn version_policy_downgrade_of_release() {
    let mut fx = Fx::new();
    fx.node_facts("worker00").kismatic_version = Marker::Present { value: semver::Version::new(1, 2, 0) };
    let a = fx.analyze(Mode::Offline);
    assert_eq!(codes(&a, "worker00"), vec![Code::VersionPolicy]);
    let f = a.findings.iter().find(|f| f.node == "worker00").unwrap();
    assert!(f.message.contains("downgrades"), "{f:?}");
    // The cluster is also part-way to 1.2.0, so 1.1.0 is refused as a whole.
    assert_eq!(codes(&a, crate::checks::CLUSTER), vec![Code::VersionPolicy]);
}

#[test]
fn version_policy_component_downgrade() {
    let mut fx = Fx::new();
    let obs = fx.node_facts("worker00").components.get_mut("kubelet").unwrap();
    obs.running_version = Some("1.35.0".into());
    let a = fx.analyze(Mode::Offline);
    assert_eq!(codes(&a, "worker00"), vec![Code::VersionPolicy]);
    assert!(a.findings[0].message.contains("kubelet would go from 1.35.0 down to 1.34.1"));
}

#[test]
fn version_policy_control_plane_one_minor() {
    let mut fx = Fx::new();
    for h in ["master00", "master01"] {
        let nf = fx.node_facts(h);
        nf.components.get_mut("kube-apiserver").unwrap().running_version = Some("1.32.9".into());
    }
    let a = fx.analyze(Mode::Offline);
    assert_eq!(codes(&a, "master00"), vec![Code::VersionPolicy]);
    assert!(a.findings[0].message.contains("2 minor versions"), "{}", a.findings[0].message);
    // Workers are one minor behind: fine.
    assert_eq!(codes(&a, "worker00"), vec![]);
}

#[test]
fn version_policy_kubernetes_marker_jump() {
    let mut fx = Fx::new();
    if let Marker::Present { value } = &mut fx.node_facts("worker02").component_markers {
        value.insert("kubernetes".into(), "v1.31.0".into());
    }
    assert_eq!(codes(&fx.analyze(Mode::Offline), "worker02"), vec![Code::VersionPolicy]);
}

#[test]
fn version_policy_etcd_one_minor() {
    let mut fx = Fx::new();
    fx.node_facts("etcd01").components.get_mut("etcd").unwrap().running_version = Some("3.3.9".into());
    let a = fx.analyze(Mode::Offline);
    assert_eq!(codes(&a, "etcd01"), vec![Code::VersionPolicy]);
    assert_eq!(codes(&a, "etcd00"), vec![]);
}

#[test]
fn version_policy_major_change() {
    let mut fx = Fx::new();
    fx.node_facts("etcd01").components.get_mut("etcd").unwrap().running_version = Some("2.3.8".into());
    let a = fx.analyze(Mode::Offline);
    assert!(a.findings[0].message.contains("major"), "{:?}", a.findings);
}

#[test]
fn version_policy_kubelet_never_newer_than_api_servers() {
    let mut fx = Fx::new();
    for c in &mut fx.release.components {
        if c.name == "kubelet" {
            c.version = "1.35.0".into();
        }
    }
    let a = fx.analyze(Mode::Offline);
    for h in ["master00", "worker00", "worker01", "worker02"] {
        assert_eq!(codes(&a, h), vec![Code::VersionPolicy], "{h}");
    }
    assert!(a.findings[0].message.contains("newer than the API servers (v1.34.1)"));
    assert_eq!(codes(&a, "etcd00"), vec![]);
}

#[test]
fn kubelet_floor_from_live_api_servers_when_release_lacks_apiserver() {
    let mut fx = Fx::new();
    fx.release.components.retain(|c| !c.name.starts_with("kube-") || c.name == "kube-proxy");
    // Masters keep running 1.33.2; the kubelet target 1.34.1 would be newer.
    let a = fx.analyze(Mode::Offline);
    assert_eq!(codes(&a, "worker00"), vec![Code::VersionPolicy]);
}

#[test]
fn version_policy_holds_with_skip_preflight() {
    let mut fx = Fx::new();
    fx.node_facts("worker00").kismatic_version = Marker::Present { value: semver::Version::new(2, 0, 0) };
    let opts = CheckOptions { skip_preflight: true, ..CheckOptions::new(Mode::Offline) };
    assert_eq!(codes(&fx.analyze_with(&opts), "worker00"), vec![Code::VersionPolicy]);
}

// ----- cluster availability -----

#[test]
fn etcd_quorum_too_few_members() {
    let mut fx = Fx::new();
    fx.facts.etcd = vec![synth::healthy_etcd(&["etcd00", "etcd01"])];
    let a = fx.online();
    assert_eq!(codes(&a, "etcd00"), vec![Code::EtcdQuorum]);
    assert_eq!(codes(&a, "master00"), vec![]);
}

#[test]
fn etcd_quorum_unhealthy_member_and_no_leader() {
    let mut fx = Fx::new();
    fx.facts.etcd[0].members[2].healthy = Some(false);
    fx.facts.etcd[0].leader = None;
    let a = fx.online();
    assert_eq!(codes(&a, "etcd00"), vec![Code::EtcdQuorum, Code::EtcdQuorum]);
    assert!(a.findings[0].message.contains("etcd02"));
}

#[test]
fn etcd_quorum_unknown_without_facts() {
    let mut fx = Fx::new();
    fx.facts.etcd.clear();
    assert_eq!(codes(&fx.online(), "etcd01"), vec![Code::EtcdQuorum]);
}

#[test]
fn etcd_networking_cluster_is_checked_too() {
    let mut fx = Fx::new();
    let mut net = synth::healthy_etcd(&["etcd00"]);
    net.cluster = "etcd-networking".into();
    fx.facts.etcd.push(net);
    let a = fx.online();
    assert_eq!(codes(&a, "etcd00"), vec![Code::EtcdQuorum]);
    assert!(a.findings[0].message.contains("etcd-networking"));
}

#[test]
fn last_master() {
    let mut fx = Fx::new();
    fx.facts.inventory.nodes.retain(|n| n.host != "master01");
    let a = fx.online();
    assert_eq!(codes(&a, "master00"), vec![Code::LastMaster]);
    assert!(codes(&Fx::new().online(), "master00").is_empty());
}

#[test]
fn load_balancer_node_by_host_ip_or_internal_ip_case_insensitive() {
    for pick in 0..3 {
        let mut fx = Fx::new();
        let m = fx.node("master01").clone();
        let lb_host = match pick {
            0 => m.host.to_uppercase(),
            1 => m.ip.clone(),
            _ => m.internal_ip.clone(),
        };
        fx.facts.inventory.load_balancer.as_mut().unwrap().host = lb_host;
        let a = fx.online();
        assert_eq!(codes(&a, "master01"), vec![Code::LoadBalancerNode], "pick {pick}");
        assert_eq!(codes(&a, "master00"), vec![]);
    }
}

#[test]
fn last_worker_counts_ready_workers_in_the_cluster() {
    let mut fx = Fx::new();
    // Three workers in the plan, but only worker00 is Ready.
    for n in &mut fx.kube().nodes {
        if n.name == "worker01" || n.name == "worker02" {
            n.ready = false;
        }
    }
    let a = fx.online();
    assert_eq!(codes(&a, "worker00"), vec![Code::LastWorker]);
    assert_eq!(codes(&a, "worker01"), vec![], "one other Ready worker remains");
}

#[test]
fn last_worker_single_worker_and_case() {
    let mut fx = Fx::new();
    fx.facts.inventory.nodes.retain(|n| n.host != "worker01" && n.host != "worker02");
    for n in &mut fx.kube().nodes {
        n.name = n.name.to_uppercase();
    }
    assert_eq!(codes(&fx.online(), "worker00"), vec![Code::LastWorker]);
}

#[test]
fn ingress_and_storage_nodes() {
    let mut fx = Fx::new();
    fx.node("worker01").roles.push(Role::Ingress);
    fx.node("worker02").roles.push(Role::Storage);
    let a = fx.online();
    assert_eq!(codes(&a, "worker01"), vec![Code::IngressNode]);
    assert_eq!(codes(&a, "worker02"), vec![Code::StorageNode]);
    assert_eq!(codes(&a, "worker00"), vec![]);
}

#[test]
fn offline_runs_only_readiness() {
    let mut fx = Fx::new();
    fx.node("worker01").roles.push(Role::Ingress);
    fx.facts.etcd.clear();
    fx.kube().pods.push(pod("default", "bare", "worker00", vec![], "bare"));
    assert!(fx.analyze(Mode::Offline).findings.is_empty());
}

#[test]
fn online_needs_kube_facts() {
    let mut fx = Fx::new();
    fx.facts.kube = None;
    let err = analyze(&fx.facts, &fx.release, &CheckOptions::new(Mode::Online)).unwrap_err();
    assert_eq!(err, AnalysisError::KubeFactsMissing);
    assert!(analyze(&fx.facts, &fx.release, &CheckOptions::new(Mode::Offline)).is_ok());
}

// ----- workloads -----

#[test]
fn unmanaged_pod_on_any_role() {
    let mut fx = Fx::new();
    fx.kube().pods.push(pod("default", "bare", "worker00", vec![], "bare"));
    fx.kube().pods.push(pod("kube-system", "debug", "master00", vec![], "debug"));
    let a = fx.online();
    assert_eq!(codes(&a, "worker00"), vec![Code::UnmanagedPod]);
    assert_eq!(codes(&a, "master00"), vec![Code::UnmanagedPod], "masters and kube-system are checked");
    let f = a.findings.iter().find(|f| f.node == "worker00").unwrap();
    assert_eq!(f.object, "Pod default/bare");
    assert_eq!(f.class, Class::Unsafe);
}

#[test]
fn finished_and_mirror_pods_are_ignored() {
    let mut fx = Fx::new();
    let mut done = pod("default", "done", "worker00", vec![], "x");
    done.phase = PodPhase::Succeeded;
    let mut failed = pod("default", "failed", "worker00", vec![], "x");
    failed.phase = PodPhase::Failed;
    let mut mirror = pod("kube-system", "etcd-static", "worker00", vec![owner("Node", "worker00", "n1")], "x");
    mirror.mirror = true;
    fx.kube().pods.extend([done, failed, mirror]);
    assert!(fx.online().findings.is_empty());
}

#[test]
fn pods_on_nodes_at_target_are_not_checked() {
    let mut fx = Fx::new();
    fx.at_target("worker00");
    fx.kube().pods.push(pod("default", "bare", "worker00", vec![], "bare"));
    let a = fx.online();
    assert!(a.findings.is_empty(), "{:?}", a.findings);
    assert!(!a.needs[5].needs_upgrade);
}

#[test]
fn node_names_match_case_insensitively() {
    let mut fx = Fx::new();
    fx.kube().pods.push(pod("default", "bare", "Worker00", vec![], "bare"));
    assert_eq!(codes(&fx.online(), "worker00"), vec![Code::UnmanagedPod]);
}

fn with_volume(kind: VolumeKind, claim: Option<&str>) -> Pod {
    let mut p = pod("default", "vol", "worker00", vec![], "vol");
    p.owners = vec![owner("StatefulSet", "vol", "ss-vol")];
    p.volumes.push(PodVolume {
        name: "v".into(),
        kind,
        path: (kind == VolumeKind::HostPath).then(|| "/data".into()),
        claim: claim.map(Into::into),
    });
    p
}

fn fx_with_statefulset() -> Fx {
    let mut fx = Fx::new();
    fx.kube().stateful_sets.push(controller("default", "vol", "ss-vol", 3, vec![]));
    // Two more ready replicas elsewhere, so only the volume matters.
    fx.kube().pods.push(pod("default", "vol-1", "worker01", vec![owner("StatefulSet", "vol", "ss-vol")], "vol"));
    fx.kube().pods.push(pod("default", "vol-2", "worker02", vec![owner("StatefulSet", "vol", "ss-vol")], "vol"));
    fx
}

#[test]
fn emptydir_volume() {
    let mut fx = fx_with_statefulset();
    fx.kube().pods.push(with_volume(VolumeKind::EmptyDir, None));
    let a = fx.online();
    assert_eq!(codes(&a, "worker00"), vec![Code::EmptydirVolume]);
    assert_eq!(codes(&a, "worker01"), vec![]);
}

#[test]
fn hostpath_volume() {
    let mut fx = fx_with_statefulset();
    fx.kube().pods.push(with_volume(VolumeKind::HostPath, None));
    let a = fx.online();
    assert_eq!(codes(&a, "worker00"), vec![Code::HostpathVolume]);
    assert!(a.findings[0].message.contains("/data"));
}

fn claim_to(fx: &mut Fx, kind: PvKind) {
    fx.kube().pvcs.push(PersistentVolumeClaim {
        namespace: "default".into(),
        name: "c".into(),
        volume: Some("pv1".into()),
    });
    fx.kube().pvs.push(PersistentVolume { name: "pv1".into(), kind, path: Some("/mnt/pv1".into()) });
    fx.kube().pods.push(with_volume(VolumeKind::Pvc, Some("c")));
}

#[test]
fn hostpath_persistent_volume() {
    let mut fx = fx_with_statefulset();
    claim_to(&mut fx, PvKind::HostPath);
    assert_eq!(codes(&fx.online(), "worker00"), vec![Code::HostpathPersistentVolume]);
}

#[test]
fn local_persistent_volume() {
    let mut fx = fx_with_statefulset();
    claim_to(&mut fx, PvKind::Local);
    assert_eq!(codes(&fx.online(), "worker00"), vec![Code::LocalPersistentVolume]);
}

#[test]
fn network_persistent_volume_is_fine() {
    let mut fx = fx_with_statefulset();
    claim_to(&mut fx, PvKind::Other);
    assert!(fx.online().findings.is_empty());
    // A claim in another namespace with the same name does not count.
    let mut fx = fx_with_statefulset();
    claim_to(&mut fx, PvKind::HostPath);
    fx.kube().pvcs[0].namespace = "other".into();
    assert!(fx.online().findings.is_empty());
}

#[test]
fn single_replica_through_owner_chain() {
    let mut fx = Fx::new();
    fx.deployment("default", "db", 1, &["worker00"]);
    let a = fx.online();
    assert_eq!(codes(&a, "worker00"), vec![Code::SingleReplica]);
    assert_eq!(a.findings[0].object, "Deployment default/db");
}

#[test]
fn single_replica_uses_desired_not_observed() {
    let mut fx = Fx::new();
    // Desired 3 but only one pod exists right now (rolling): not single-replica, but all ready replicas are here.
    fx.deployment("default", "web", 3, &["worker00"]);
    assert_eq!(codes(&fx.online(), "worker00"), vec![Code::ReplicasOnSingleNode]);
}

#[test]
fn spread_replicas_are_fine() {
    let mut fx = Fx::new();
    fx.deployment("default", "web", 3, &["worker00", "worker01", "worker02"]);
    assert!(fx.online().findings.is_empty());
}

#[test]
fn replicas_on_single_node() {
    let mut fx = Fx::new();
    fx.deployment("default", "web", 2, &["worker01", "worker01"]);
    let a = fx.online();
    assert_eq!(codes(&a, "worker01"), vec![Code::ReplicasOnSingleNode]);
    assert!(a.findings[0].message.contains("all 2 ready replica(s) of Deployment \"default/web\""));
}

#[test]
fn replicas_on_single_node_statefulset() {
    let mut fx = Fx::new();
    fx.kube().stateful_sets.push(controller("db", "pg", "ss-pg", 2, vec![]));
    for i in 0..2 {
        fx.kube().pods.push(pod("db", &format!("pg-{i}"), "worker02", vec![owner("StatefulSet", "pg", "ss-pg")], "pg"));
    }
    assert_eq!(codes(&fx.online(), "worker02"), vec![Code::ReplicasOnSingleNode]);
}

#[test]
fn replicas_not_ready_elsewhere_count_as_absent() {
    let mut fx = Fx::new();
    fx.deployment("default", "web", 2, &["worker00", "worker01"]);
    fx.kube().pods[1].ready = false;
    let a = fx.online();
    assert_eq!(codes(&a, "worker00"), vec![Code::ReplicasOnSingleNode]);
    assert_eq!(codes(&a, "worker01"), vec![]);
}

#[test]
fn replication_controller_single_replica() {
    let mut fx = Fx::new();
    fx.kube().replication_controllers.push(controller("default", "old", "rc-old", 1, vec![]));
    fx.kube().pods.push(pod(
        "default",
        "old-x",
        "worker00",
        vec![owner("ReplicationController", "old", "rc-old")],
        "old",
    ));
    assert_eq!(codes(&fx.online(), "worker00"), vec![Code::SingleReplica]);
}

#[test]
fn daemonset_single_node() {
    let mut fx = Fx::new();
    fx.kube().daemon_sets.push(controller("monitoring", "gpu-agent", "ds-gpu", 1, vec![]));
    fx.kube().pods.push(pod(
        "monitoring",
        "gpu-agent-x",
        "worker00",
        vec![owner("DaemonSet", "gpu-agent", "ds-gpu")],
        "g",
    ));
    fx.kube().daemon_sets.push(controller("monitoring", "exporter", "ds-exp", 5, vec![]));
    fx.kube().pods.push(pod(
        "monitoring",
        "exporter-x",
        "worker00",
        vec![owner("DaemonSet", "exporter", "ds-exp")],
        "e",
    ));
    let a = fx.online();
    assert_eq!(codes(&a, "worker00"), vec![Code::DaemonsetSingleNode]);
    assert_eq!(a.findings[0].object, "DaemonSet monitoring/gpu-agent");
}

#[test]
fn daemonsets_the_upgrade_replaces_are_exempt_only_in_kube_system() {
    let mut fx = Fx::new();
    fx.kube().daemon_sets.push(controller("kube-system", "kube-proxy", "ds-kp", 1, vec![]));
    fx.kube().pods.push(pod(
        "kube-system",
        "kube-proxy-x",
        "worker00",
        vec![owner("DaemonSet", "kube-proxy", "ds-kp")],
        "kp",
    ));
    assert!(fx.online().findings.is_empty());
    fx.kube().daemon_sets.push(controller("tenant", "kube-proxy", "ds-kp2", 1, vec![]));
    fx.kube().pods.push(pod(
        "tenant",
        "kube-proxy-y",
        "worker00",
        vec![owner("DaemonSet", "kube-proxy", "ds-kp2")],
        "kp",
    ));
    fx.kube().daemon_sets.push(controller("kube-system", "log-shipper", "ds-log", 1, vec![]));
    fx.kube().pods.push(pod(
        "kube-system",
        "log-x",
        "worker00",
        vec![owner("DaemonSet", "log-shipper", "ds-log")],
        "l",
    ));
    assert_eq!(codes(&fx.online(), "worker00"), vec![Code::DaemonsetSingleNode, Code::DaemonsetSingleNode]);
}

#[test]
fn job_pod() {
    let mut fx = Fx::new();
    fx.kube().jobs.push(controller("batch", "report", "job-r", 1, vec![]));
    fx.kube().pods.push(pod("batch", "report-x", "worker01", vec![owner("Job", "report", "job-r")], "r"));
    let mut done = pod("batch", "report-y", "worker02", vec![owner("Job", "report", "job-r")], "r");
    done.phase = PodPhase::Succeeded;
    fx.kube().pods.push(done);
    let a = fx.online();
    assert_eq!(all_codes(&a), vec![("worker01".to_string(), Code::JobPod)]);
}

#[test]
fn unknown_controller_kind_and_missing_owner() {
    let mut fx = Fx::new();
    fx.kube().pods.push(pod("default", "r1", "worker00", vec![owner("Rollout", "canary", "ro-1")], "r"));
    fx.kube().pods.push(pod("default", "r2", "worker01", vec![owner("ReplicaSet", "gone", "rs-gone")], "r"));
    let a = fx.online();
    assert_eq!(codes(&a, "worker00"), vec![Code::UnknownController]);
    assert_eq!(codes(&a, "worker01"), vec![Code::UnknownController]);
    assert!(a.findings[1].message.contains("not found"));
}

#[test]
fn every_owner_reference_is_read() {
    let mut fx = Fx::new();
    fx.deployment("default", "web", 3, &["worker00", "worker01", "worker02"]);
    // First owner an unknown kind that is not the controller: the ReplicaSet still decides.
    for p in &mut fx.kube().pods {
        let mut extra = owner("Sidecar", "x", "sc-1");
        extra.controller = false;
        p.owners.insert(0, extra);
    }
    assert!(fx.online().findings.is_empty());
}

#[test]
fn replicaset_without_deployment_is_judged_itself() {
    let mut fx = Fx::new();
    fx.kube().replica_sets.push(controller("default", "rs", "rs-1", 1, vec![]));
    fx.kube().pods.push(pod("default", "rs-x", "worker00", vec![owner("ReplicaSet", "rs", "rs-1")], "rs"));
    let a = fx.online();
    assert_eq!(a.findings[0].object, "ReplicaSet default/rs");
}

fn pdb(min: Option<IntOrPercent>, allowed: i64, healthy: i64, expected: i64) -> PodDisruptionBudget {
    PodDisruptionBudget {
        namespace: "default".into(),
        name: "web-pdb".into(),
        selector: Some(LabelSelector {
            match_labels: [("app".to_string(), "web".to_string())].into(),
            ..Default::default()
        }),
        min_available: min,
        max_unavailable: None,
        disruptions_allowed: allowed,
        current_healthy: healthy,
        desired_healthy: 0,
        expected_pods: expected,
    }
}

#[test]
fn pdb_with_no_disruptions_allowed_blocks_drain() {
    let mut fx = Fx::new();
    fx.deployment("default", "web", 3, &["worker00", "worker01", "worker02"]);
    fx.kube().pdbs.push(pdb(Some(IntOrPercent::Int(3)), 0, 3, 3));
    let a = fx.online();
    for h in ["worker00", "worker01", "worker02"] {
        assert_eq!(codes(&a, h), vec![Code::PdbBlocksDrain], "{h}");
    }
    assert!(a.findings[0].message.contains("allows 0 disruptions"));
}

#[test]
fn pdb_min_available_unsatisfiable_by_remaining_nodes() {
    let mut fx = Fx::new();
    // Job pods are not recreated elsewhere: 2 of 3 healthy are here, 2 must stay available.
    fx.kube().jobs.push(controller("default", "web", "job-w", 3, vec![]));
    for (i, n) in ["worker00", "worker00", "worker01"].iter().enumerate() {
        fx.kube().pods.push(pod("default", &format!("w{i}"), n, vec![owner("Job", "web", "job-w")], "web"));
    }
    fx.kube().pdbs.push(pdb(Some(IntOrPercent::Str("60%".into())), 1, 3, 3));
    let a = fx.online();
    assert_eq!(codes(&a, "worker00"), vec![Code::JobPod, Code::PdbBlocksDrain]);
    assert!(a.findings[1].message.contains("needs 2 healthy pod(s) but only 1 can remain"));
    assert_eq!(codes(&a, "worker01"), vec![Code::JobPod], "2 stay healthy when worker01 drains");
}

#[test]
fn pdb_satisfiable_when_pods_are_recreated_elsewhere() {
    let mut fx = Fx::new();
    fx.deployment("default", "web", 3, &["worker00", "worker00", "worker01"]);
    fx.kube().pdbs.push(pdb(Some(IntOrPercent::Int(2)), 1, 3, 3));
    assert!(fx.online().findings.is_empty());
}

#[test]
fn pdb_in_other_namespace_or_not_matching_is_ignored() {
    let mut fx = Fx::new();
    fx.deployment("default", "web", 3, &["worker00", "worker01", "worker02"]);
    let mut p = pdb(None, 0, 3, 3);
    p.namespace = "other".into();
    fx.kube().pdbs.push(p);
    let mut q = pdb(None, 0, 3, 3);
    q.selector.as_mut().unwrap().match_labels.insert("app".into(), "api".into());
    fx.kube().pdbs.push(q);
    assert!(fx.online().findings.is_empty());
}

#[test]
fn findings_are_deduplicated_per_object() {
    let mut fx = Fx::new();
    fx.deployment("default", "db", 1, &["worker00"]);
    fx.deployment("default", "cache", 1, &["worker00"]);
    let a = fx.online();
    assert_eq!(codes(&a, "worker00"), vec![Code::SingleReplica, Code::SingleReplica]);
}

#[test]
fn unreachable_node_still_gets_online_checks() {
    let mut fx = Fx::new();
    *fx.node_facts("worker00") = NodeFacts::unreachable("worker00", "timeout");
    fx.kube().pods.push(pod("default", "bare", "worker00", vec![], "bare"));
    assert_eq!(codes(&fx.online(), "worker00"), vec![Code::Unreachable, Code::UnmanagedPod]);
}

// ----- version-skew policy, one target at a time, removed APIs -----

mod skew_and_removed_apis {
    use super::*;
    use crate::checks::CLUSTER;
    use crate::facts::{ApiObjectUse, DeprecatedApiRequest, UseSource};

    /// The fixture's cluster, with its Kubernetes release moved to `minor` (API servers and kubelets alike).
    fn to_minor(fx: &mut Fx, minor: u64) {
        for c in &mut fx.release.components {
            if c.name.starts_with("kube") {
                c.version = format!("1.{minor}.0");
            }
        }
        fx.release.kubernetes = format!("v1.{minor}.0");
    }

    fn request(group: &str, version: &str, resource: &str) -> DeprecatedApiRequest {
        DeprecatedApiRequest {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
            subresource: String::new(),
            removed_release: String::new(),
        }
    }

    fn with_metrics(fx: &mut Fx, requests: Vec<DeprecatedApiRequest>) {
        for a in &mut fx.kube().api_servers {
            a.deprecated_api_requests = Some(requests.clone());
        }
    }

    fn cluster_findings(a: &Analysis) -> Vec<&crate::checks::Finding> {
        a.findings.iter().filter(|f| f.node == CLUSTER).collect()
    }

    #[test]
    fn a_minor_that_removes_nothing_needs_no_metrics() {
        // The fixture moves 1.33 → 1.34: nothing listed is removed, so unread metrics do not matter.
        let fx = Fx::new();
        assert!(cluster_findings(&fx.online()).is_empty());
    }

    #[test]
    fn calls_seen_by_an_api_server_are_named() {
        let mut fx = Fx::new();
        // 1.33 → 1.34 removes nothing; the cluster runs 1.31 and moves to 1.32 (flowcontrol v1beta3 goes).
        running(&mut fx, "1.31.4");
        to_minor(&mut fx, 32);
        with_metrics(&mut fx, vec![request("flowcontrol.apiserver.k8s.io", "v1beta3", "flowschemas")]);
        for mode in [Mode::Online, Mode::Offline] {
            let a = fx.analyze(mode);
            let found = cluster_findings(&a);
            assert_eq!(found.len(), 1, "{mode}: {found:?}");
            assert_eq!(found[0].code, Code::RemovedApi);
            assert_eq!(found[0].object, "flowcontrol.apiserver.k8s.io/v1beta3 flowschemas");
            assert!(found[0].message.contains("master00") && found[0].message.contains("removed in v1.32"));
            assert!(found[0].message.contains("flowcontrol.apiserver.k8s.io/v1"), "{}", found[0].message);
        }
        // Calls to an API that stays are not findings.
        with_metrics(&mut fx, vec![request("batch", "v1beta1", "cronjobs")]);
        assert!(cluster_findings(&fx.online()).is_empty());
    }

    #[test]
    fn the_api_servers_audit_log_names_callers_and_leaves_the_control_plane_out() {
        use crate::facts::{AuditLog, AuditedCall};
        let mut fx = Fx::new();
        running(&mut fx, "1.31.4");
        to_minor(&mut fx, 32);
        with_metrics(&mut fx, vec![request("flowcontrol.apiserver.k8s.io", "v1beta3", "flowschemas")]);
        let audited = |user: &str| AuditedCall {
            user: user.into(),
            user_agent: "agent/1".into(),
            group: "flowcontrol.apiserver.k8s.io".into(),
            version: "v1beta3".into(),
            resource: "flowschemas".into(),
            subresource: String::new(),
            removed_release: "1.32".into(),
            count: 4,
            first: "t0".into(),
            last: "t1".into(),
        };
        let set_audit = |fx: &mut Fx, calls: Vec<AuditedCall>| {
            let master = fx.facts.nodes.iter_mut().find(|n| n.host == "master00").expect("master00 in the fixture");
            let api = master.components.get_mut("kube-apiserver").expect("master00 runs an API server");
            api.audit_log = Some(AuditLog::Read { path: "/a.log".into(), since: None, calls, truncated: false });
        };
        // Only the control plane calls it: the metric's count is explained, nothing to report.
        set_audit(&mut fx, vec![audited("system:kube-controller-manager")]);
        assert!(cluster_findings(&fx.online()).is_empty(), "{:?}", cluster_findings(&fx.online()));
        // A client calls it too: named, once.
        set_audit(&mut fx, vec![audited("system:kube-controller-manager"), audited("ci-bot")]);
        let a = fx.online();
        let found = cluster_findings(&a);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].message.contains("master00's audit log (/a.log) records requests")
                && found[0].message.contains("ci-bot")
        );
    }

    /// The fixture's Kubernetes 1.33.2 replaced by `version` everywhere the nodes and the API report it.
    fn running(fx: &mut Fx, version: &str) {
        for nf in &mut fx.facts.nodes {
            for c in nf.components.values_mut() {
                for v in [&mut c.running_version, &mut c.installed_version].into_iter().flatten() {
                    if v.as_str() == "1.33.2" {
                        *v = version.into();
                    }
                }
            }
            if let crate::facts::Marker::Present { value } = &mut nf.component_markers {
                for v in value.values_mut() {
                    *v = v.replace("1.33.2", version);
                }
            }
        }
        fx.kube().api_servers[0].version = Some(format!("v{version}"));
    }

    /// The fixture at Kubernetes 1.21 moving to 1.22.
    fn fx_21_to_22() -> Fx {
        let mut fx = Fx::new();
        running(&mut fx, "1.21.9");
        to_minor(&mut fx, 22);
        fx
    }

    #[test]
    fn stored_objects_written_with_a_removed_version_are_named() {
        let mut fx = fx_21_to_22();
        with_metrics(&mut fx, vec![]);
        fx.kube().api_object_uses = vec![
            ApiObjectUse {
                group: "networking.k8s.io".into(),
                version: "v1beta1".into(),
                kind: "Ingress".into(),
                namespace: Some("default".into()),
                name: "legacy".into(),
                source: UseSource::LastApplied,
            },
            ApiObjectUse {
                group: "networking.k8s.io".into(),
                version: "v1".into(),
                kind: "Ingress".into(),
                namespace: Some("default".into()),
                name: "current".into(),
                source: UseSource::LastApplied,
            },
        ];
        let a = fx.online();
        let found = cluster_findings(&a);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].object, "Ingress default/legacy");
        assert!(found[0].message.contains("use networking.k8s.io/v1"));
    }

    #[test]
    fn objects_beyond_the_bound_are_counted() {
        let mut fx = fx_21_to_22();
        with_metrics(&mut fx, vec![]);
        fx.kube().api_object_uses = (0..25)
            .map(|i| ApiObjectUse {
                group: "rbac.authorization.k8s.io".into(),
                version: "v1beta1".into(),
                kind: "Role".into(),
                namespace: Some("default".into()),
                name: format!("r{i}"),
                source: UseSource::ManagedFields { manager: "helm".into() },
            })
            .collect();
        let a = fx.online();
        let found = cluster_findings(&a);
        assert_eq!(found.len(), 21, "20 named and one counting the rest");
        assert!(found[20].message.contains("5 more Role object(s)"), "{}", found[20].message);
    }

    #[test]
    fn unread_metrics_make_the_answer_unknown_not_clean() {
        let mut fx = fx_21_to_22();
        fx.kube().api_servers[0].metrics_error = Some("403 Forbidden".into());
        let a = fx.online();
        let found = cluster_findings(&a);
        assert_eq!(found.len(), 1);
        assert!(found[0].message.contains("403 Forbidden") && found[0].message.contains("unknown"));
        assert!(found[0].message.contains("--accept removed-api"));
        // Offline, with no API facts at all, the same.
        fx.facts.kube = None;
        let a = fx.analyze(Mode::Offline);
        assert!(cluster_findings(&a)[0].message.contains("could not be read"));
    }

    #[test]
    fn the_releases_own_manifests_are_judged_without_the_cluster() {
        let mut fx = fx_21_to_22();
        with_metrics(&mut fx, vec![]);
        let head = |api_version: &str, name: &str| kismatic_release::ManifestHead {
            file: "manifests/ingress.yaml".into(),
            api_version: api_version.into(),
            kind: "Ingress".into(),
            namespace: Some("kube-system".into()),
            name: name.into(),
        };
        fx.release.manifest_objects = vec![head("extensions/v1beta1", "old"), head("networking.k8s.io/v1", "new")];
        let a = fx.online();
        let found = cluster_findings(&a);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].object, "Ingress kube-system/old");
        assert!(found[0].message.contains("manifests/ingress.yaml"), "{}", found[0].message);
        // Known without any Kubernetes facts too (offline, API unreachable): the manifest finding stays.
        fx.facts.kube = None;
        let a = fx.analyze(Mode::Offline);
        assert!(cluster_findings(&a).iter().any(|f| f.object == "Ingress kube-system/old"));
    }

    #[test]
    fn failed_object_lists_and_unasked_servers_make_the_answer_unknown() {
        let mut fx = fx_21_to_22();
        with_metrics(&mut fx, vec![]);
        fx.kube().object_use_errors =
            vec![crate::facts::ListError { list: "ingresses (networking.k8s.io/v1)".into(), error: "403".into() }];
        let a = fx.online();
        let found = cluster_findings(&a);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("could not be listed") && found[0].message.contains("unknown"));
        // Facts that never asked any API server for its metric.
        let mut fx = fx_21_to_22();
        let a = fx.online();
        let found = cluster_findings(&a);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("no API server's deprecated-API metric"), "{}", found[0].message);
        fx.kube().api_servers.clear();
        assert_eq!(cluster_findings(&fx.online()).len(), 1);
    }

    #[test]
    fn removed_api_gates_offline_and_can_be_accepted() {
        use crate::planner::{Acceptance, PlanOptions, plan};
        let mut fx = fx_21_to_22();
        with_metrics(&mut fx, vec![request("networking.k8s.io", "v1beta1", "ingresses")]);
        let a = fx.analyze(Mode::Offline);
        let mut opts = PlanOptions::new(Mode::Offline);
        assert!(plan(&fx.facts, &a, &fx.release, &opts).is_blocked());
        opts.accepted.push("removed-api".parse::<Acceptance>().unwrap());
        let p = plan(&fx.facts, &a, &fx.release, &opts);
        assert!(!p.is_blocked(), "{:?}", p.status);
        assert!(p.findings.iter().any(|f| f.code == Code::RemovedApi), "still reported");
    }

    #[test]
    fn transition_to_another_release_is_refused_and_finishing_it_is_not() {
        let mut fx = Fx::new();
        // A finished partial upgrade: the workers are at 1.1.0, the rest at 1.0.0.
        for w in ["worker00", "worker01", "worker02"] {
            fx.at_target(w);
        }
        assert!(cluster_findings(&fx.online()).is_empty(), "1.1.0 finishes the transition");
        fx.release.version = semver::Version::new(1, 2, 0);
        let a = fx.analyze(Mode::Offline);
        let found = cluster_findings(&a);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].code, Code::VersionPolicy);
        let m = &found[0].message;
        assert!(m.contains("transitioning from release 1.0.0 to 1.1.0"), "{m}");
        assert!(m.contains("at 1.1.0: worker00, worker01, worker02"), "{m}");
        assert!(m.contains("release 1.2.0 cannot be applied"), "{m}");
        assert!(m.contains("kismatic upgrade online"), "names the command that finishes it: {m}");
    }

    #[test]
    fn etcd_needs_its_documented_minimum_patch_before_3_6() {
        let mut fx = Fx::new();
        for c in &mut fx.release.components {
            if c.name == "etcd" {
                c.version = "3.6.1".into();
            }
        }
        for e in ["etcd00", "etcd01", "etcd02"] {
            let o = fx.node_facts(e).components.get_mut("etcd").unwrap();
            o.running_version = Some("3.5.21".into());
            o.installed_version = Some("3.5.21".into());
        }
        let o = fx.node_facts("etcd02").components.get_mut("etcd").unwrap();
        o.running_version = Some("3.5.26".into());
        o.installed_version = Some("3.5.26".into());
        let a = fx.analyze(Mode::Offline);
        assert_eq!(codes(&a, "etcd00"), vec![Code::VersionPolicy]);
        assert_eq!(codes(&a, "etcd02"), vec![], "3.5.26 may move to 3.6");
        let m = &a.findings.iter().find(|f| f.node == "etcd00").unwrap().message;
        assert!(m.contains("3.5.26 or later") && m.contains("etcd.io"), "{m}");
    }

    #[test]
    fn offline_kubelet_minor_change_in_place_is_flagged_and_acceptable() {
        use crate::planner::{Acceptance, PlanOptions, plan};
        let fx = Fx::new();
        let a = crate::checks::analyze(&fx.facts, &fx.release, &CheckOptions::new(Mode::Offline)).unwrap();
        let flagged: Vec<&str> =
            a.findings.iter().filter(|f| f.code == Code::InPlaceKubeletMinor).map(|f| f.node.as_str()).collect();
        assert_eq!(flagged, vec!["master00", "master01", "worker00", "worker01", "worker02"]);
        let online = crate::checks::analyze(&fx.facts, &fx.release, &CheckOptions::new(Mode::Online)).unwrap();
        assert!(online.findings.iter().all(|f| f.code != Code::InPlaceKubeletMinor), "online drains first");
        let mut opts = PlanOptions::new(Mode::Offline);
        assert!(plan(&fx.facts, &a, &fx.release, &opts).is_blocked());
        opts.accepted.push("in-place-kubelet-minor".parse::<Acceptance>().unwrap());
        assert!(!plan(&fx.facts, &a, &fx.release, &opts).is_blocked());
        // A patch-only kubelet change is not flagged.
        let mut fx = Fx::new();
        for nf in &mut fx.facts.nodes {
            if let Some(k) = nf.components.get_mut("kubelet") {
                k.running_version = Some("1.34.0".into());
                k.installed_version = Some("1.34.0".into());
            }
        }
        let a = crate::checks::analyze(&fx.facts, &fx.release, &CheckOptions::new(Mode::Offline)).unwrap();
        assert!(a.findings.iter().all(|f| f.code != Code::InPlaceKubeletMinor));
    }
}
