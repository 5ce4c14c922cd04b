//! Need: whether a node must be upgraded to reach the target release, and which components change.
//!
//! A node needs an upgrade when any of its components or markers is not at the target release: the release version
//! in `/etc/kismatic-version`, `kubernetes` and each component in `/etc/component-versions`, and for each component
//! the node's roles call for, the installed and the running version (a node whose markers claim the target while
//! an old binary still runs is *not* at the target).

use crate::facts::{Marker, NodeFacts, NodeRead};
use crate::version;
use kismatic_plan::Node;
use kismatic_release::{Component, Delivery, Release};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeNeed {
    pub host: String,
    /// Needs an upgrade. Also true for unreadable nodes: their state is unknown (they are flagged `unreachable`).
    pub needs_upgrade: bool,
    /// The node could not be read.
    pub unknown: bool,
    /// Components that change, in release order.
    pub changes: Vec<ComponentChange>,
    /// The markers must be rewritten (even if no component changes).
    pub markers_behind: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentChange {
    pub component: String,
    pub delivery: Delivery,
    /// Best knowledge of the current version: running, else installed, else the marker; `None` when absent.
    pub from: Option<String>,
    pub to: String,
}

/// The current version of a component on a node: running, else installed, else marker.
pub fn current_version(facts: &NodeFacts, component: &str) -> Option<String> {
    let obs = facts.components.get(component);
    obs.and_then(|o| o.running_version.clone())
        .or_else(|| obs.and_then(|o| o.installed_version.clone()))
        .or_else(|| facts.component_markers.present().and_then(|m| m.get(component).cloned()))
}

fn component_at(facts: &NodeFacts, markers: Option<&BTreeMap<String, String>>, c: &Component) -> bool {
    let marker_ok = markers.and_then(|m| m.get(&c.name)).is_some_and(|v| version::same(v, &c.version));
    let Some(obs) = facts.components.get(&c.name) else { return false };
    let installed_ok = obs.installed_version.as_deref().is_some_and(|v| version::same(v, &c.version));
    let running_ok = match c.delivery {
        Delivery::Binary => obs.running_version.as_deref().is_some_and(|v| version::same(v, &c.version)),
        // Package rule: running = installed while the service is active (a package without a unit is just installed).
        Delivery::Package => obs.service_active != Some(false),
        Delivery::Manifest => true,
    };
    marker_ok && installed_ok && running_ok
}

fn markers_at(facts: &NodeFacts, release: &Release) -> bool {
    let version_ok =
        matches!(&facts.kismatic_version, Marker::Present { value } if value.cmp_precedence(&release.version).is_eq());
    let kube_ok = facts
        .component_markers
        .present()
        .and_then(|m| m.get("kubernetes"))
        .is_some_and(|v| version::same(v, &release.kubernetes));
    version_ok && kube_ok
}

/// What `node` needs to reach `release`. `facts` is `None` when nothing was gathered for the node.
pub fn node_need(node: &Node, facts: Option<&NodeFacts>, release: &Release) -> NodeNeed {
    let components: Vec<&Component> = release.components_for_roles(&node.roles).collect();
    let Some(facts) = facts.filter(|f| matches!(f.read, NodeRead::Ok)) else {
        return NodeNeed {
            host: node.host.clone(),
            needs_upgrade: true,
            unknown: true,
            changes: components
                .iter()
                .map(|c| ComponentChange {
                    component: c.name.clone(),
                    delivery: c.delivery,
                    from: facts.and_then(|f| current_version(f, &c.name)),
                    to: c.version.clone(),
                })
                .collect(),
            markers_behind: true,
        };
    };
    let markers = facts.component_markers.present();
    let changes: Vec<ComponentChange> = components
        .iter()
        .filter(|c| !component_at(facts, markers, c))
        .map(|c| ComponentChange {
            component: c.name.clone(),
            delivery: c.delivery,
            from: current_version(facts, &c.name),
            to: c.version.clone(),
        })
        .collect();
    let markers_behind = !markers_at(facts, release);
    NodeNeed {
        host: node.host.clone(),
        needs_upgrade: markers_behind || !changes.is_empty(),
        unknown: false,
        changes,
        markers_behind,
    }
}

/// Whether a node is at the release, judged from what it reports (used where roles are not known: `info`): its
/// markers, and every release component it has, are at the target.
pub fn node_at_release(facts: &NodeFacts, release: &Release) -> bool {
    if !facts.is_reachable() || !markers_at(facts, release) {
        return false;
    }
    let markers = facts.component_markers.present();
    release
        .components
        .iter()
        .filter(|c| c.delivery != Delivery::Manifest && facts.components.contains_key(&c.name))
        .all(|c| component_at(facts, markers, c))
}
