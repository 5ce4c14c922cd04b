//! Operations the executor performs through the API: cordon, drain through the Eviction API, and the waits that
//! gate progress from one node to the next. Every wait polls with a deadline; none sleeps a fixed time and hopes.

use crate::{KubeError, convert};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod, ReplicationController};
use kismatic_core::facts;
use kube::api::{Api, EvictParams, ListParams};
use kube::{Client, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// How often a drain retries an eviction refused by a PodDisruptionBudget (`kubectl drain` uses 5 s).
pub const EVICTION_RETRY: Duration = Duration::from_secs(5);
/// How often waits poll the API.
pub const POLL: Duration = Duration::from_millis(500);
/// How often the workload wait re-reads which replicas are stuck on Nodes that are not Ready.
const STRANDED_REFRESH: Duration = Duration::from_secs(10);

pub async fn cordon(client: &Client, node: &str) -> Result<(), KubeError> {
    let api: Api<Node> = Api::all(client.clone());
    api.cordon(node).await.map_err(KubeError::api(format!("cordon node {node}")))?;
    Ok(())
}

pub async fn uncordon(client: &Client, node: &str) -> Result<(), KubeError> {
    let api: Api<Node> = Api::all(client.clone());
    api.uncordon(node).await.map_err(KubeError::api(format!("uncordon node {node}")))?;
    Ok(())
}

/// The node's taints with `key:effect` added (`add`) or every taint of `key` removed; `None` when that changes
/// nothing. Returned as the merge patch that sets the whole list, guarded by the Node's `resourceVersion` (a
/// merge patch replaces a list: the guard turns a concurrent change of the taints into a conflict that is
/// retried, instead of a lost update).
pub fn taint_patch(
    taints: &[serde_json::Value],
    resource_version: Option<&str>,
    key: &str,
    add: Option<&str>,
) -> Option<serde_json::Value> {
    let has_key = |t: &serde_json::Value| t.get("key").and_then(|k| k.as_str()) == Some(key);
    let mut out: Vec<serde_json::Value> = taints.iter().filter(|t| !has_key(t)).cloned().collect();
    match add {
        Some(effect) => {
            let wanted = serde_json::json!({"key": key, "effect": effect});
            let present = taints.iter().any(|t| has_key(t) && t.get("effect").and_then(|e| e.as_str()) == Some(effect));
            if present && taints.iter().filter(|t| has_key(t)).count() == 1 {
                return None;
            }
            out.push(wanted);
        }
        None if out.len() == taints.len() => return None,
        None => {}
    }
    let mut patch = serde_json::json!({"spec": {"taints": out}});
    if let Some(rv) = resource_version {
        patch["metadata"] = serde_json::json!({"resourceVersion": rv});
    }
    Some(patch)
}

/// Adds the taint `key:effect` to the node (`add`), or removes every taint of `key`. Idempotent; a conflicting
/// concurrent update of the Node is retried.
pub async fn set_taint(client: &Client, node: &str, key: &str, add: Option<&str>) -> Result<(), KubeError> {
    let api: Api<Node> = Api::all(client.clone());
    let what = if add.is_some() { "taint" } else { "untaint" };
    for _ in 0..5 {
        let n = api.get(node).await.map_err(KubeError::api(format!("get node {node}")))?;
        let taints: Vec<serde_json::Value> = n
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .map(|ts| ts.iter().filter_map(|t| serde_json::to_value(t).ok()).collect())
            .unwrap_or_default();
        let Some(patch) = taint_patch(&taints, n.metadata.resource_version.as_deref(), key, add) else {
            return Ok(());
        };
        match api.patch(node, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(KubeError::api(format!("{what} node {node} ({key})"))(e)),
        }
    }
    Err(KubeError::Other(format!("{what} node {node} ({key}): the Node kept changing under five attempts")))
}

/// A workload whose pods a drain moved, to be waited for until it is back at its ready count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Workload {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Pods a drain leaves alone: DaemonSet pods (the DaemonSet would put them straight back) and mirror pods (the
/// kubelet owns them), as `kubectl drain --ignore-daemonsets` does.
pub fn drain_skips(pod: &facts::Pod) -> bool {
    pod.mirror || pod.owners.iter().any(|o| o.kind == "DaemonSet")
}

/// Evicts every pod on `node` through the Eviction API. A refusal by a PodDisruptionBudget (429) is retried every
/// [`EVICTION_RETRY`] until `timeout`; then the drain stops, naming the pod and the budget. `before_evicting` gets
/// the workloads whose pods will move, before the first eviction (the caller records them durably). Returns them.
pub async fn drain(
    client: &Client,
    node: &str,
    timeout: Duration,
    before_evicting: impl FnOnce(&BTreeSet<Workload>) -> Result<(), crate::HookError>,
) -> Result<BTreeSet<Workload>, KubeError> {
    let deadline = Instant::now() + timeout;
    let pods_api: Api<Pod> = Api::all(client.clone());
    let on_node = ListParams::default().fields(&format!("spec.nodeName={node}"));
    let pods = pods_api.list(&on_node).await.map_err(KubeError::api(format!("list pods on {node}")))?;
    let mut moved = BTreeSet::new();
    let mut to_evict = Vec::new();
    for p in &pods.items {
        let f = convert::pod(p);
        if drain_skips(&f) {
            continue;
        }
        if let Some(w) = top_workload(client, &f).await? {
            moved.insert(w);
        }
        to_evict.push(f);
    }
    before_evicting(&moved).map_err(KubeError::Hook)?;
    let mut evicted: Vec<(String, String, String)> = Vec::new();
    for f in to_evict {
        let ns_api: Api<Pod> = Api::namespaced(client.clone(), &f.namespace);
        loop {
            match ns_api.evict(&f.name, &EvictParams::default()).await {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 404 => break,
                Err(kube::Error::Api(s)) if s.code == 429 => {
                    if Instant::now() >= deadline {
                        let budget =
                            blocking_budget(client, &f).await.unwrap_or_else(|| "a PodDisruptionBudget".into());
                        return Err(KubeError::Timeout(format!(
                            "drain of {node} timed out after {}s: evicting pod {}/{} is refused by {budget} ({})",
                            timeout.as_secs(),
                            f.namespace,
                            f.name,
                            s.message
                        )));
                    }
                    tokio::time::sleep(EVICTION_RETRY.min(deadline.saturating_duration_since(Instant::now()))).await;
                }
                Err(e) => return Err(KubeError::api(format!("evict pod {}/{}", f.namespace, f.name))(e)),
            }
        }
        evicted.push((f.namespace.to_string(), f.name.to_string(), f.uid.to_string()));
    }
    // Evicted pods terminate gracefully; the node is drained once they are gone (or replaced by a new uid).
    for (ns, name, uid) in evicted {
        let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
        loop {
            match api.get_opt(&name).await.map_err(KubeError::api(format!("get pod {ns}/{name}")))? {
                Some(p) if p.uid().as_deref() == Some(uid.as_str()) => {}
                _ => break,
            }
            if Instant::now() >= deadline {
                return Err(KubeError::Timeout(format!(
                    "drain of {node} timed out after {}s: pod {ns}/{name} was evicted but has not terminated",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(moved)
}

/// The PodDisruptionBudget in the pod's namespace whose selector matches it, named for the error message (in the
/// policy version the server serves, with that version's selector meaning).
async fn blocking_budget(client: &Client, pod: &facts::Pod) -> Option<String> {
    let list = crate::served::list_pdbs_served(client, Some(&pod.namespace)).await.ok()?;
    list.iter().map(convert::pdb).find(|b| b.selector.as_ref().is_some_and(|s| s.matches(&pod.labels))).map(|b| {
        format!(
            "PodDisruptionBudget {}/{} (disruptions allowed {}, healthy {}/{})",
            b.namespace, b.name, b.disruptions_allowed, b.current_healthy, b.expected_pods
        )
    })
}

/// Resolves the pod's controller up the owner chain (Pod → ReplicaSet → Deployment).
async fn top_workload(client: &Client, pod: &facts::Pod) -> Result<Option<Workload>, KubeError> {
    let Some(owner) = pod.owners.iter().find(|o| o.controller).or(pod.owners.first()) else { return Ok(None) };
    let mut w =
        Workload { kind: owner.kind.to_string(), namespace: pod.namespace.to_string(), name: owner.name.to_string() };
    if w.kind == "ReplicaSet" {
        let api: Api<ReplicaSet> = Api::namespaced(client.clone(), &w.namespace);
        if let Some(rs) = api.get_opt(&w.name).await.map_err(KubeError::api(format!("get {w}")))?
            && let Some(d) = rs.owner_references().iter().find(|o| o.kind == "Deployment")
        {
            w = Workload { kind: "Deployment".into(), namespace: w.namespace, name: d.name.clone() };
        }
    }
    Ok(Some(w))
}

/// Desired and ready replicas of a workload; `None` when it no longer exists or its kind is not tracked.
pub async fn workload_readiness(client: &Client, w: &Workload) -> Result<Option<(i64, i64)>, KubeError> {
    let ctx = format!("get {w}");
    let c = match w.kind.as_str() {
        "Deployment" => Api::<Deployment>::namespaced(client.clone(), &w.namespace)
            .get_opt(&w.name)
            .await
            .map_err(KubeError::api(ctx))?
            .map(|d| convert::deployment(&d)),
        "ReplicaSet" => Api::<ReplicaSet>::namespaced(client.clone(), &w.namespace)
            .get_opt(&w.name)
            .await
            .map_err(KubeError::api(ctx))?
            .map(|d| convert::replica_set(&d)),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), &w.namespace)
            .get_opt(&w.name)
            .await
            .map_err(KubeError::api(ctx))?
            .map(|d| convert::stateful_set(&d)),
        "ReplicationController" => Api::<ReplicationController>::namespaced(client.clone(), &w.namespace)
            .get_opt(&w.name)
            .await
            .map_err(KubeError::api(ctx))?
            .map(|d| convert::replication_controller(&d)),
        _ => None,
    };
    Ok(c.map(|c| (c.desired_replicas.unwrap_or(0), c.ready_replicas.unwrap_or(0))))
}

/// Waits until every workload has at least its desired number of ready replicas, and stays so for `stable`
/// (a single good look can be a pod about to crash).
pub async fn wait_workloads_ready(
    client: &Client,
    workloads: &BTreeSet<Workload>,
    stable: Duration,
    timeout: Duration,
) -> Result<(), KubeError> {
    let deadline = Instant::now() + timeout;
    let mut good_since: Option<Instant> = None;
    // Replicas stuck on Nodes that are not Ready: read only when something lags, and at most every
    // STRANDED_REFRESH (it lists every Node).
    let mut stranded: Option<(Instant, BTreeMap<Workload, i64>)> = None;
    loop {
        let mut lagging = None;
        for w in workloads {
            if let Some((desired, ready)) = workload_readiness(client, w).await?
                && ready < desired
            {
                if stranded.as_ref().is_none_or(|(at, _)| at.elapsed() >= STRANDED_REFRESH) {
                    stranded = Some((Instant::now(), stranded_replicas(client).await?));
                }
                let stuck = stranded.as_ref().and_then(|(_, m)| m.get(w).copied()).unwrap_or(0);
                if !recovered(desired, ready, stuck) {
                    lagging = Some(if stuck > 0 {
                        format!("{w} has {ready}/{desired} ready replicas ({stuck} on nodes that are not Ready)")
                    } else {
                        format!("{w} has {ready}/{desired} ready replicas")
                    });
                    break;
                }
            }
        }
        match lagging {
            None => {
                let since = *good_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= stable {
                    return Ok(());
                }
            }
            Some(why) => {
                good_since = None;
                if Instant::now() >= deadline {
                    return Err(KubeError::Timeout(format!(
                        "workloads did not recover within {}s: {why}",
                        timeout.as_secs()
                    )));
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A moved workload has recovered when its ready replicas, together with those whose pods sit (not ready) on a
/// Node that is not Ready, reach its desired count. A node that is down — left out of a `--partial-ok` run as
/// `unreachable`, say — cannot run its pods, and until the cluster replaces them (taint-based eviction, 5 minutes by
/// default) no wait sees them ready: waiting for them waits for that node, not for the workload the drain moved.
/// Availability stays guarded by the Eviction API, which still refuses what a PodDisruptionBudget does not allow.
fn recovered(desired: i64, ready: i64, stranded: i64) -> bool {
    ready.saturating_add(stranded) >= desired
}

/// Per workload, its pods that are not ready and bound to a Node that is not Ready.
async fn stranded_replicas(client: &Client) -> Result<BTreeMap<Workload, i64>, KubeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await.map_err(KubeError::api("list nodes".to_string()))?;
    let mut out = BTreeMap::new();
    for n in list.items.iter().map(convert::node).filter(|n| !n.ready) {
        let pods: Api<Pod> = Api::all(client.clone());
        let on_node = ListParams::default().fields(&format!("spec.nodeName={}", n.name));
        let pods = pods.list(&on_node).await.map_err(KubeError::api(format!("list pods on node {}", n.name)))?;
        for p in pods.items.iter().map(convert::pod).filter(|p| !p.ready) {
            if let Some(w) = top_workload(client, &p).await? {
                *out.entry(w).or_insert(0) += 1;
            }
        }
    }
    Ok(out)
}

/// Whether a Node is Ready with its kubelet at `version` (`v1.34.1` and `1.34.1` are the same version).
pub fn ready_at(node: &facts::KubeNode, version: &str) -> bool {
    node.ready && kismatic_core::version::same(&node.kubelet_version, version)
}

/// Waits until the Node is Ready and its kubelet reports `version`.
pub async fn wait_node_ready(client: &Client, node: &str, version: &str, timeout: Duration) -> Result<(), KubeError> {
    let api: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let last = match api.get_opt(node).await {
            Ok(Some(n)) => {
                let f = convert::node(&n);
                if ready_at(&f, version) {
                    return Ok(());
                }
                format!("ready={} kubelet {}", f.ready, f.kubelet_version)
            }
            Ok(None) => "not registered".to_string(),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(KubeError::Timeout(format!(
                "node {node} not Ready at kubelet {version} within {}s (last seen: {last})",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod ready_tests {
    use super::*;

    fn node(ready: bool, kubelet: &str) -> facts::KubeNode {
        serde_json::from_value(serde_json::json!({"name": "w1", "ready": ready, "kubelet_version": kubelet}))
            .expect("node")
    }

    #[test]
    fn replicas_stuck_on_a_down_node_do_not_hold_the_wait() {
        assert!(recovered(2, 2, 0));
        assert!(!recovered(2, 1, 0), "a moved replica not yet ready");
        assert!(recovered(2, 1, 1), "the missing replica is on a Node that is not Ready");
        assert!(!recovered(3, 1, 1), "one stuck, one still moving");
        assert!(recovered(i64::MAX, i64::MAX, i64::MAX), "no overflow");
    }

    #[test]
    fn kubelet_versions_compare_with_or_without_v() {
        assert!(ready_at(&node(true, "v1.34.1"), "1.34.1"));
        assert!(ready_at(&node(true, "v1.34.1"), "v1.34.1"));
        assert!(!ready_at(&node(true, "v1.34.0"), "1.34.1"));
        assert!(!ready_at(&node(false, "v1.34.1"), "1.34.1"));
    }
}

#[cfg(test)]
mod taint_tests {
    use super::taint_patch;
    use serde_json::json;

    #[test]
    fn adding_keeps_the_other_taints_and_guards_the_version() {
        let other = json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"});
        let p = taint_patch(std::slice::from_ref(&other), Some("42"), "drain-soon", Some("PreferNoSchedule")).unwrap();
        assert_eq!(
            p,
            json!({"metadata": {"resourceVersion": "42"},
                   "spec": {"taints": [other, {"key": "drain-soon", "effect": "PreferNoSchedule"}]}})
        );
    }

    #[test]
    fn adding_twice_and_removing_what_is_absent_change_nothing() {
        let t = json!({"key": "drain-soon", "effect": "PreferNoSchedule"});
        assert_eq!(taint_patch(std::slice::from_ref(&t), None, "drain-soon", Some("PreferNoSchedule")), None);
        assert_eq!(taint_patch(&[], None, "drain-soon", None), None);
    }

    #[test]
    fn removing_takes_every_taint_of_the_key_and_only_those() {
        let other = json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"});
        let ours = json!({"key": "drain-soon", "effect": "PreferNoSchedule"});
        let p = taint_patch(&[other.clone(), ours], None, "drain-soon", None).unwrap();
        assert_eq!(p, json!({"spec": {"taints": [other]}}));
        // The last taint removed: an empty list, not an absent one (a merge patch ignores nothing it is given).
        let ours = json!({"key": "drain-soon", "effect": "NoSchedule"});
        assert_eq!(taint_patch(&[ours], None, "drain-soon", None).unwrap(), json!({"spec": {"taints": []}}));
    }
}
