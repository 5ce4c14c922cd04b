//! Cluster version summary (what `kismatic info` shows): "at version X" or "transitioning from A to B", one row per
//! node, and drift between what the markers claim and what is installed and running.

use crate::facts::{Marker, NodeFacts, NodeRead};
use crate::version;
use kismatic_release::Release;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterVersionSummary {
    pub state: ClusterVersionState,
    /// The target release, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<semver::Version>,
    /// Every node at the target release (markers and running versions); `None` without a target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_target: Option<bool>,
    pub nodes: Vec<NodeVersionRow>,
    pub drift: Vec<Drift>,
    /// With a target release: the cluster is transitioning to another release, so the target cannot be applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition_conflict: Option<TransitionConflict>,
}

/// The seed's rule — a cluster "may be transitioning to exactly one target version" — broken by a target: the
/// cluster is part-way to `to` (a finished partial upgrade, or an interrupted one) and `target` is another release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionConflict {
    pub from: semver::Version,
    pub to: semver::Version,
    pub target: semver::Version,
    /// The hosts at each release, oldest release first.
    pub nodes_at: Vec<(semver::Version, Vec<String>)>,
}

/// How many hosts a message names before it says "and N more".
const NAMED_HOSTS: usize = 8;

fn host_list(hosts: &[String]) -> String {
    if hosts.len() <= NAMED_HOSTS {
        hosts.join(", ")
    } else {
        format!("{} and {} more", hosts[..NAMED_HOSTS].join(", "), hosts.len() - NAMED_HOSTS)
    }
}

impl TransitionConflict {
    pub fn message(&self) -> String {
        let at: Vec<String> = self.nodes_at.iter().map(|(v, hosts)| format!("at {v}: {}", host_list(hosts))).collect();
        format!(
            "the cluster is transitioning from release {} to {} ({}), so release {} cannot be applied: a cluster \
             moves to one target at a time; finish the transition first with `kismatic upgrade online` (or \
             `offline`) `--release` pointing at release {}",
            self.from,
            self.to,
            at.join("; "),
            self.target,
            self.to
        )
    }
}

/// The transition conflict of a cluster and a target release, if any (readable nodes with a valid marker only).
pub fn transition_conflict(nodes: &[NodeFacts], target: &semver::Version) -> Option<TransitionConflict> {
    let mut at: BTreeMap<semver::Version, Vec<String>> = BTreeMap::new();
    for n in nodes {
        if let (NodeRead::Ok, Marker::Present { value }) = (&n.read, &n.kismatic_version) {
            let mut key = value.clone();
            key.build = semver::BuildMetadata::EMPTY;
            at.entry(key).or_default().push(n.host.clone());
        }
    }
    if at.len() < 2 {
        return None;
    }
    let from = at.keys().next()?.clone();
    let to = at.keys().next_back()?.clone();
    if to.cmp_precedence(target).is_eq() {
        return None;
    }
    Some(TransitionConflict { from, to, target: target.clone(), nodes_at: at.into_iter().collect() })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ClusterVersionState {
    /// Every readable node's marker says `version` (and none is unreadable or unmarked).
    At { version: semver::Version },
    /// Nodes disagree: the earliest and latest versions found.
    Transitioning { from: semver::Version, to: semver::Version },
    /// No node has a valid marker.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeVersionRow {
    pub host: String,
    pub status: NodeVersionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kismatic_version: Option<semver::Version>,
    /// Marker of `/etc/component-versions` (as written), including `kubernetes`.
    pub component_markers: BTreeMap<String, String>,
    /// Per observed component: marker, installed and running versions.
    pub components: BTreeMap<String, ComponentVersions>,
    /// Whether this node is at the target release; `None` without a target or when unreadable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_target: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum NodeVersionStatus {
    Ok,
    Unreachable {
        error: String,
    },
    /// `/etc/kismatic-version` is missing.
    NotInstalled,
    /// `/etc/kismatic-version` is empty or garbage.
    Invalid {
        raw: String,
        error: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentVersions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_active: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DriftKind {
    /// The marker names a version other than the one installed.
    MarkerVsInstalled,
    /// What runs is not what is installed (a restart is pending, or a manual change).
    InstalledVsRunning,
    /// The marker names a version other than the one running.
    MarkerVsRunning,
    /// The service exists but is not active.
    NotRunning,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub host: String,
    pub component: String,
    pub kind: DriftKind,
    pub message: String,
}

/// Summarises node facts; with a release, also whether each node is at it.
pub fn summarize(nodes: &[NodeFacts], release: Option<&Release>) -> ClusterVersionSummary {
    let mut rows = Vec::with_capacity(nodes.len());
    let mut drift = Vec::new();
    let mut min: Option<&semver::Version> = None;
    let mut max: Option<&semver::Version> = None;
    let mut all_marked = true;
    for n in nodes {
        let status = match (&n.read, &n.kismatic_version) {
            (NodeRead::Unreachable { error }, _) => NodeVersionStatus::Unreachable { error: error.clone() },
            (NodeRead::Ok, Marker::NotInstalled) => NodeVersionStatus::NotInstalled,
            (NodeRead::Ok, Marker::Invalid { raw, error }) => {
                NodeVersionStatus::Invalid { raw: raw.clone(), error: error.clone() }
            }
            (NodeRead::Ok, Marker::Present { .. }) => NodeVersionStatus::Ok,
        };
        let kv = match (&n.read, &n.kismatic_version) {
            (NodeRead::Ok, Marker::Present { value }) => Some(value),
            _ => None,
        };
        match kv {
            Some(v) => {
                if min.is_none_or(|m| v.cmp_precedence(m).is_lt()) {
                    min = Some(v);
                }
                if max.is_none_or(|m| v.cmp_precedence(m).is_gt()) {
                    max = Some(v);
                }
            }
            None => all_marked = false,
        }
        let markers = n.component_markers.present().cloned().unwrap_or_default();
        let mut components: BTreeMap<String, ComponentVersions> = BTreeMap::new();
        for (name, obs) in &n.components {
            let cv = ComponentVersions {
                marker: markers.get(name).cloned(),
                installed: obs.installed_version.clone(),
                running: obs.running_version.clone(),
                service_active: obs.service_active,
            };
            drift.extend(component_drift(&n.host, name, &cv));
            components.insert(name.clone(), cv);
        }
        let at_target = match (release, n.is_reachable()) {
            (Some(r), true) => Some(crate::need::node_at_release(n, r)),
            _ => None,
        };
        rows.push(NodeVersionRow {
            host: n.host.clone(),
            status,
            kismatic_version: kv.cloned(),
            component_markers: markers,
            components,
            at_target,
        });
    }
    let state = match (min, max) {
        (Some(a), Some(b)) if a.cmp_precedence(b).is_eq() && all_marked => {
            ClusterVersionState::At { version: a.clone() }
        }
        (Some(a), Some(b)) => ClusterVersionState::Transitioning { from: a.clone(), to: b.clone() },
        _ => ClusterVersionState::Unknown,
    };
    let at_target = release.map(|_| !rows.is_empty() && rows.iter().all(|r| r.at_target == Some(true)));
    let transition_conflict = release.and_then(|r| transition_conflict(nodes, &r.version));
    ClusterVersionSummary {
        state,
        target: release.map(|r| r.version.clone()),
        at_target,
        nodes: rows,
        drift,
        transition_conflict,
    }
}

fn component_drift(host: &str, name: &str, cv: &ComponentVersions) -> Vec<Drift> {
    let mut out = Vec::new();
    let mut push = |kind, message: String| {
        out.push(Drift { host: host.to_string(), component: name.to_string(), kind, message });
    };
    if let (Some(m), Some(i)) = (&cv.marker, &cv.installed)
        && !version::same(m, i)
    {
        push(DriftKind::MarkerVsInstalled, format!("{name}: marker says {m}, installed is {i}"));
    }
    if let (Some(i), Some(r)) = (&cv.installed, &cv.running)
        && !version::same(i, r)
    {
        push(DriftKind::InstalledVsRunning, format!("{name}: installed {i}, running {r}"));
    }
    if let (Some(m), Some(r), None) = (&cv.marker, &cv.running, &cv.installed)
        && !version::same(m, r)
    {
        push(DriftKind::MarkerVsRunning, format!("{name}: marker says {m}, running is {r}"));
    }
    if cv.service_active == Some(false) {
        push(DriftKind::NotRunning, format!("{name}: service is not active"));
    }
    out
}
