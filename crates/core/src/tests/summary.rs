use super::*;
use crate::summary::{ClusterVersionState, DriftKind, NodeVersionStatus, summarize};

#[test]
fn at_one_version() {
    let fx = Fx::new();
    let s = summarize(&fx.facts.nodes, Some(&fx.release));
    assert_eq!(s.state, ClusterVersionState::At { version: semver::Version::new(1, 0, 0) });
    assert_eq!(s.at_target, Some(false));
    assert!(s.drift.is_empty());
    assert_eq!(s.nodes.len(), 8);
}

#[test]
fn transitioning_and_at_target_rows() {
    let mut fx = Fx::new();
    fx.at_target("worker00");
    let s = summarize(&fx.facts.nodes, Some(&fx.release));
    assert_eq!(
        s.state,
        ClusterVersionState::Transitioning { from: semver::Version::new(1, 0, 0), to: semver::Version::new(1, 1, 0) }
    );
    let row = s.nodes.iter().find(|r| r.host == "worker00").unwrap();
    assert_eq!(row.at_target, Some(true));
}

#[test]
fn statuses_and_drift() {
    let mut fx = Fx::new();
    *fx.node_facts("worker00") = NodeFacts::unreachable("worker00", "timeout");
    fx.node_facts("worker01").kismatic_version = Marker::Invalid { raw: "garbage".into(), error: "bad".into() };
    fx.node_facts("worker02").kismatic_version = Marker::NotInstalled;
    let kl = fx.node_facts("master00").components.get_mut("kubelet").unwrap();
    kl.running_version = Some("1.32.0".into());
    kl.service_active = Some(false);
    let s = summarize(&fx.facts.nodes, None);
    let st = |h: &str| s.nodes.iter().find(|r| r.host == h).unwrap().status.clone();
    assert!(matches!(st("worker00"), NodeVersionStatus::Unreachable { .. }));
    assert!(matches!(st("worker01"), NodeVersionStatus::Invalid { .. }));
    assert_eq!(st("worker02"), NodeVersionStatus::NotInstalled);
    // Readable markers all say 1.0.0 but some nodes have none: still "at" would be a lie.
    assert_eq!(
        s.state,
        ClusterVersionState::Transitioning { from: semver::Version::new(1, 0, 0), to: semver::Version::new(1, 0, 0) }
    );
    let kinds: Vec<DriftKind> = s.drift.iter().map(|d| d.kind).collect();
    assert_eq!(kinds, vec![DriftKind::InstalledVsRunning, DriftKind::NotRunning]);
    assert_eq!(s.drift[0].host, "master00");
}

#[test]
fn marker_claims_target_but_old_binary_runs() {
    let mut fx = Fx::new();
    fx.at_target("worker00");
    fx.node_facts("worker00").components.get_mut("kubelet").unwrap().running_version = Some("1.33.2".into());
    let s = summarize(&fx.facts.nodes, Some(&fx.release));
    assert_eq!(s.nodes.iter().find(|r| r.host == "worker00").unwrap().at_target, Some(false));
    assert_eq!(s.drift.len(), 1);
    // And the need analysis agrees: only kubelet changes.
    let a = fx.analyze(Mode::Offline);
    let need = a.needs.iter().find(|n| n.host == "worker00").unwrap();
    assert!(need.needs_upgrade && !need.markers_behind);
    assert_eq!(need.changes.len(), 1);
    assert_eq!(need.changes[0].component, "kubelet");
}

#[test]
fn unknown_without_markers() {
    let s = summarize(&[NodeFacts::unreachable("a", "x")], None);
    assert_eq!(s.state, ClusterVersionState::Unknown);
    assert_eq!(s.at_target, None);
}
