//! Node lifecycle, disruption (PodDisruptionBudget status), PV binding, namespace deletion and garbage collection.

use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

use super::{Ctx, World, put_status};
use crate::client::KubeError;
use crate::meta::{self, RESOURCES, Selector, res};

// ---------------- node lifecycle ----------------

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Nodes whose kubelet stopped renewing its Lease (and posting status) for `node_monitor_grace` turn NotReady
/// (Ready=Unknown), get the unreachable taints, and their pods are marked not ready; the pods stay bound.
/// Also keeps the not-ready and unschedulable taints in line with conditions and `spec.unschedulable`.
pub async fn node_lifecycle(ctx: &Ctx, all_nodes: &[Value], leases: &[Value]) -> Result<(), KubeError> {
    let nodes = res("nodes");
    let grace = ctx.cfg.node_monitor_grace_ms as f64 / 1000.0;
    for n in all_nodes {
        let name = meta::name(n);
        let lease_age =
            leases.iter().find(|l| meta::name(l) == name).and_then(|l| meta::age_secs(l, "/spec/renewTime"));
        let status_age = meta::condition(n, "Ready")
            .and_then(|c| c.get("lastHeartbeatTime"))
            .and_then(Value::as_str)
            .and_then(meta::parse_time)
            .map(|t| (chrono::Utc::now() - t).num_milliseconds() as f64 / 1000.0);
        let last = match (lease_age, status_age) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(f64::MAX),
        };
        let ready_status = meta::condition(n, "Ready")
            .and_then(|c| c.get("status"))
            .and_then(Value::as_str)
            .unwrap_or("Unknown")
            .to_string();
        if last > grace && ready_status != "Unknown" {
            let mut o = n.clone();
            let now = meta::now();
            if let Some(cs) = o["status"]["conditions"].as_array_mut() {
                for c in cs.iter_mut() {
                    c["status"] = json!("Unknown");
                    c["reason"] = json!("NodeStatusUnknown");
                    c["message"] = json!("Kubelet stopped posting node status.");
                    c["lastTransitionTime"] = json!(now);
                }
            }
            tracing::info!(node = name, "node stopped posting status: NotReady");
            put_status(&ctx.kube, nodes, n, json!({"conditions": o["status"]["conditions"]})).await?;
            // Pods stay bound (no taint eviction is simulated) but are no longer Ready.
            let sel = format!("spec.nodeName={name}");
            let (on_node, _) = ctx.kube.list_q(res("pods"), None, &[("fieldSelector", sel.as_str())]).await?;
            for p in on_node.iter().filter(|p| meta::pod_ready(p)) {
                let mut q = (*p).clone();
                crate::api::rest::set_condition(&mut q, "Ready", "False", Some("NodeNotReady"), None);
                crate::api::rest::set_condition(&mut q, "ContainersReady", "False", Some("NodeNotReady"), None);
                let _ = ctx
                    .kube
                    .merge_patch(
                        res("pods"),
                        Some(meta::namespace(p)),
                        meta::name(p),
                        Some("status"),
                        &json!({"status": {"conditions": q["status"]["conditions"]}}),
                    )
                    .await;
            }
            continue;
        }
        // Taints that mirror the node's state.
        let taints: Vec<Value> = n.pointer("/spec/taints").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut want: Vec<Value> = taints
            .iter()
            .filter(|t| !matches!(t["key"].as_str(), Some(UNREACHABLE | NOT_READY | UNSCHEDULABLE)))
            .cloned()
            .collect();
        let now = meta::now();
        let keep_or_new = |key: &str, effect: &str| {
            taints.iter().find(|t| t["key"] == key && t["effect"] == effect).cloned().unwrap_or_else(|| {
                let mut t = json!({"key": key, "effect": effect});
                if effect == "NoExecute" {
                    t["timeAdded"] = json!(now);
                }
                t
            })
        };
        match ready_status.as_str() {
            "Unknown" => {
                want.push(keep_or_new(UNREACHABLE, "NoSchedule"));
                want.push(keep_or_new(UNREACHABLE, "NoExecute"));
            }
            "False" => {
                want.push(keep_or_new(NOT_READY, "NoSchedule"));
                want.push(keep_or_new(NOT_READY, "NoExecute"));
            }
            _ => {}
        }
        if n.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
            want.push(keep_or_new(UNSCHEDULABLE, "NoSchedule"));
        }
        let key = |v: &Vec<Value>| {
            let mut k: Vec<String> = v.iter().map(|t| format!("{}:{}", t["key"], t["effect"])).collect();
            k.sort();
            k
        };
        if key(&want) != key(&taints) {
            let patch =
                if want.is_empty() { json!({"spec": {"taints": null}}) } else { json!({"spec": {"taints": want}}) };
            ctx.kube.merge_patch(nodes, None, name, None, &patch).await?;
        }
    }
    Ok(())
}

// ---------------- disruption ----------------

/// The scale of the controller owning `pod` (following ReplicaSet → Deployment), keyed by controller uid.
fn controller_scale(w: &World, pod: &Value) -> Option<(String, i64)> {
    let r = meta::controller_of(pod)?;
    let uid = r.get("uid")?.as_str()?;
    let kind = r.get("kind")?.as_str()?;
    let find = |list: &Vec<Value>| list.iter().find(|o| meta::uid(o) == uid).cloned();
    let owner = match kind {
        "ReplicaSet" => {
            let rs = find(&w.rs)?;
            if let Some(d) = meta::controller_uid(&rs).and_then(|du| w.deploys.iter().find(|d| meta::uid(d) == du)) {
                return Some((meta::uid(d).to_string(), meta::i64_at(d, "/spec/replicas").unwrap_or(1)));
            }
            rs
        }
        "ReplicationController" => find(&w.rcs)?,
        "StatefulSet" => find(&w.sts)?,
        "Deployment" => find(&w.deploys)?,
        _ => return None,
    };
    Some((uid.to_string(), meta::i64_at(&owner, "/spec/replicas").unwrap_or(1)))
}

pub async fn disruption(ctx: &Ctx, w: &World) -> Result<(), KubeError> {
    let pr = res("poddisruptionbudgets");
    for pdb in &w.pdbs {
        let ns = meta::namespace(pdb);
        let sel = Selector::from_label_selector(pdb.pointer("/spec/selector"));
        let pods: Vec<&Value> =
            w.pods.iter().filter(|p| meta::namespace(p) == ns && sel.matches(&meta::labels(p))).collect();
        let min_avail = pdb.pointer("/spec/minAvailable");
        let max_unav = pdb.pointer("/spec/maxUnavailable");
        let mut unmanaged = false;
        let (expected, desired) = match (min_avail, max_unav) {
            (Some(Value::Number(n)), _) => (pods.len() as i64, n.as_i64().unwrap_or(0)),
            (m, u) => {
                let mut scales: HashMap<String, i64> = HashMap::new();
                for p in &pods {
                    match controller_scale(w, p) {
                        Some((k, s)) => {
                            scales.insert(k, s);
                        }
                        None => unmanaged = true,
                    }
                }
                let expected: i64 = scales.values().sum();
                match (m, u) {
                    (Some(m), _) => (expected, meta::int_or_percent(Some(m), expected, true, 0)),
                    (None, Some(u)) => (expected, (expected - meta::int_or_percent(Some(u), expected, true, 0)).max(0)),
                    (None, None) => (expected, expected),
                }
            }
        };
        let disrupted: HashMap<String, String> = meta::map_at(pdb, "/status/disruptedPods").into_iter().collect();
        let now = chrono::Utc::now();
        // Entries expire when the pod is gone/deleting or after 2 minutes (Kubernetes' DeletionTimeout).
        let still: serde_json::Map<String, Value> = disrupted
            .iter()
            .filter(|(name, t)| {
                let alive = pods.iter().any(|p| meta::name(p) == name.as_str() && !meta::is_deleting(p));
                let fresh = meta::parse_time(t).is_some_and(|t| (now - t).num_seconds() < 120);
                alive && fresh
            })
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let healthy = pods
            .iter()
            .filter(|p| meta::pod_ready(p) && !meta::is_deleting(p) && !still.contains_key(meta::name(p)))
            .count() as i64;
        let allowed = if unmanaged || expected == 0 && min_avail.is_none() { 0 } else { (healthy - desired).max(0) };
        let mut obj = pdb.clone();
        if allowed > 0 {
            crate::api::rest::set_condition(&mut obj, "DisruptionAllowed", "True", Some("SufficientPods"), Some(""));
        } else {
            crate::api::rest::set_condition(&mut obj, "DisruptionAllowed", "False", Some("InsufficientPods"), Some(""));
        }
        let mut conds = obj["status"]["conditions"].clone();
        if let (Some(new), Some(old)) =
            (conds.as_array_mut(), pdb.pointer("/status/conditions").and_then(Value::as_array))
        {
            for c in new.iter_mut() {
                if let Some(o) = old.iter().find(|o| o["type"] == c["type"] && o["status"] == c["status"]) {
                    *c = o.clone();
                }
            }
        }
        let status = json!({"observedGeneration": meta::i64_at(pdb, "/metadata/generation").unwrap_or(1),
            "disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected,
            "disruptedPods": still, "conditions": conds});
        put_status(&ctx.kube, pr, pdb, status).await?;
    }
    Ok(())
}

// ---------------- persistent volume binding ----------------

fn quantity(q: Option<&str>) -> f64 {
    let Some(q) = q else { return 0.0 };
    let units = [
        ("Ki", 1024f64),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    for (u, m) in units {
        if let Some(n) = q.strip_suffix(u) {
            return n.parse::<f64>().unwrap_or(0.0) * m;
        }
    }
    q.parse().unwrap_or(0.0)
}

/// Binds Pending claims to Available volumes of the same class with enough capacity and the access modes asked.
/// No dynamic provisioning.
pub async fn pv_binder(ctx: &Ctx, w: &World) -> Result<(), KubeError> {
    let (pvr, pvcr) = (res("persistentvolumes"), res("persistentvolumeclaims"));
    let mut taken: HashSet<String> = HashSet::new();
    for pvc in w.pvcs.iter().filter(|c| meta::str_at(c, "/status/phase") == Some("Pending") && !meta::is_deleting(c)) {
        let class = meta::str_at(pvc, "/spec/storageClassName").unwrap_or("");
        let want = quantity(meta::str_at(pvc, "/spec/resources/requests/storage"));
        let modes: Vec<Value> = pvc.pointer("/spec/accessModes").and_then(Value::as_array).cloned().unwrap_or_default();
        let named = meta::str_at(pvc, "/spec/volumeName").filter(|v| !v.is_empty());
        let pv = w.pvs.iter().find(|pv| {
            let free = meta::str_at(pv, "/status/phase") == Some("Available") && !taken.contains(meta::name(pv));
            let pv_modes = pv.pointer("/spec/accessModes").and_then(Value::as_array).cloned().unwrap_or_default();
            match named {
                Some(n) => meta::name(pv) == n && free,
                None => {
                    free && meta::str_at(pv, "/spec/storageClassName").unwrap_or("") == class
                        && quantity(meta::str_at(pv, "/spec/capacity/storage")) >= want
                        && modes.iter().all(|m| pv_modes.contains(m))
                }
            }
        });
        let Some(pv) = pv else { continue };
        taken.insert(meta::name(pv).to_string());
        let claim_ref = json!({"kind": "PersistentVolumeClaim", "namespace": meta::namespace(pvc), "name": meta::name(pvc), "uid": meta::uid(pvc), "apiVersion": "v1"});
        ctx.kube.merge_patch(pvr, None, meta::name(pv), None, &json!({"spec": {"claimRef": claim_ref}})).await?;
        ctx.kube.merge_patch(pvr, None, meta::name(pv), Some("status"), &json!({"status": {"phase": "Bound"}})).await?;
        ctx.kube
            .merge_patch(
                pvcr,
                Some(meta::namespace(pvc)),
                meta::name(pvc),
                None,
                &json!({"spec": {"volumeName": meta::name(pv)}}),
            )
            .await?;
        ctx.kube
            .merge_patch(
                pvcr,
                Some(meta::namespace(pvc)),
                meta::name(pvc),
                Some("status"),
                &json!({"status": {"phase": "Bound",
                "accessModes": pv.pointer("/spec/accessModes"), "capacity": pv.pointer("/spec/capacity")}}),
            )
            .await?;
        tracing::info!(claim = %format!("{}/{}", meta::namespace(pvc), meta::name(pvc)), volume = meta::name(pv), "bound");
    }
    // Volumes whose claim is gone are Released (Retain) as in Kubernetes.
    for pv in w.pvs.iter().filter(|pv| meta::str_at(pv, "/status/phase") == Some("Bound")) {
        let (cns, cname) = (
            meta::str_at(pv, "/spec/claimRef/namespace").unwrap_or(""),
            meta::str_at(pv, "/spec/claimRef/name").unwrap_or(""),
        );
        if !w.pvcs.iter().any(|c| meta::namespace(c) == cns && meta::name(c) == cname) {
            ctx.kube
                .merge_patch(pvr, None, meta::name(pv), Some("status"), &json!({"status": {"phase": "Released"}}))
                .await?;
        }
    }
    Ok(())
}

// ---------------- namespaces ----------------

pub async fn namespaces(ctx: &Ctx, w: &World) -> Result<(), KubeError> {
    for n in w.namespaces.iter().filter(|n| meta::is_deleting(n)) {
        let name = meta::name(n);
        let mut left = 0usize;
        for r in RESOURCES.iter().filter(|r| r.namespaced) {
            let items = ctx.kube.list(r, Some(name)).await?;
            left += items.len();
            for i in items.iter().filter(|i| !meta::is_deleting(i)) {
                ctx.kube.delete(r, Some(name), meta::name(i), None, None).await?;
            }
        }
        if left == 0 {
            let mut o = n.clone();
            o["spec"]["finalizers"] = json!([]);
            ctx.kube.post_put(&format!("/api/v1/namespaces/{name}/finalize"), &o).await?;
            tracing::info!(namespace = name, "namespace finalized");
        }
    }
    Ok(())
}

// ---------------- garbage collector ----------------

/// Dependents whose owners are all gone are deleted (background); dangling references next to live owners are
/// removed. Owners deleted with `foregroundDeletion` wait for their dependents; with `orphan`, dependents lose the
/// reference. Owners are matched by uid, as Kubernetes does.
pub async fn garbage_collect(ctx: &Ctx, _w: &World) -> Result<(), KubeError> {
    let mut all: Vec<(&'static meta::Resource, Value)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !matches!(r.name, "events")) {
        for o in ctx.kube.list(r, None).await? {
            all.push((r, o));
        }
    }
    let live: HashMap<String, (&'static meta::Resource, &Value)> =
        all.iter().map(|(r, o)| (meta::uid(o).to_string(), (*r, o))).collect();
    let refs_of =
        |o: &Value| o.pointer("/metadata/ownerReferences").and_then(Value::as_array).cloned().unwrap_or_default();
    for (r, o) in &all {
        let refs = refs_of(o);
        if refs.is_empty() {
            continue;
        }
        let mut alive = Vec::new();
        let mut orphan_from: Vec<String> = Vec::new();
        let mut blocking_owner_foreground = false;
        for rf in &refs {
            let uid = rf["uid"].as_str().unwrap_or("");
            match live.get(uid) {
                None => {}
                Some((_, owner)) => {
                    let fins = crate::api::store::finalizers(owner);
                    if meta::is_deleting(owner) && fins.iter().any(|f| f == "orphan") {
                        orphan_from.push(uid.to_string());
                    } else if meta::is_deleting(owner) && fins.iter().any(|f| f == "foregroundDeletion") {
                        blocking_owner_foreground = true;
                    } else {
                        alive.push(rf.clone());
                    }
                }
            }
        }
        let ns = if r.namespaced { Some(meta::namespace(o)) } else { None };
        if alive.is_empty() && orphan_from.is_empty() {
            if !meta::is_deleting(o) {
                tracing::info!(
                    kind = r.kind,
                    name = meta::name(o),
                    foreground = blocking_owner_foreground,
                    "garbage collecting dependent"
                );
                ctx.kube.delete(r, ns, meta::name(o), None, Some(meta::uid(o))).await?;
            }
        } else if alive.len() + orphan_from.len() < refs.len() || !orphan_from.is_empty() {
            let keep: Vec<Value> = refs
                .iter()
                .filter(|rf| {
                    live.contains_key(rf["uid"].as_str().unwrap_or(""))
                        && !orphan_from.iter().any(|u| rf["uid"] == json!(u))
                })
                .cloned()
                .collect();
            let patch = if keep.is_empty() {
                json!({"metadata": {"ownerReferences": null}})
            } else {
                json!({"metadata": {"ownerReferences": keep}})
            };
            ctx.kube.merge_patch(r, ns, meta::name(o), None, &patch).await?;
        }
    }
    // Owners waiting on dependents: drop the finalizer once none remain (or once orphaned).
    for (r, o) in all.iter().filter(|(_, o)| meta::is_deleting(o)) {
        let fins = crate::api::store::finalizers(o);
        let uid = meta::uid(o);
        let has_dependents = all.iter().any(|(_, d)| refs_of(d).iter().any(|rf| rf["uid"] == json!(uid)));
        let mut keep = fins.clone();
        if fins.iter().any(|f| f == "orphan") || (fins.iter().any(|f| f == "foregroundDeletion") && !has_dependents) {
            keep.retain(|f| f != "orphan" && (f != "foregroundDeletion" || has_dependents));
        }
        if keep != fins && !(fins.iter().any(|f| f == "orphan") && has_dependents) {
            let ns = if r.namespaced { Some(meta::namespace(o)) } else { None };
            ctx.kube.merge_patch(r, ns, meta::name(o), None, &json!({"metadata": {"finalizers": keep}})).await?;
        }
    }
    Ok(())
}
