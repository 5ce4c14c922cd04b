//! Workload controllers: Deployment, ReplicaSet, ReplicationController, StatefulSet, DaemonSet, Job.

use serde_json::{Value, json};
use sha2::Digest;
use std::collections::BTreeMap;

use super::{Ctx, World, put_status};
use crate::client::KubeError;
use crate::meta::{self, Selector, res};

const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A short, stable hash of a pod template (like pod-template-hash / controller-revision-hash).
pub fn template_hash(t: &Value) -> String {
    let digest = sha2::Sha256::digest(serde_json::to_vec(t).unwrap_or_default());
    digest.iter().take(10).map(|b| SAFE[*b as usize % SAFE.len()] as char).collect()
}

fn replicas(o: &Value) -> i64 {
    meta::i64_at(o, "/spec/replicas").unwrap_or(1)
}

fn generation(o: &Value) -> i64 {
    meta::i64_at(o, "/metadata/generation").unwrap_or(1)
}

/// Ready for at least minReadySeconds.
fn available(p: &Value, min_ready: i64) -> bool {
    if !meta::pod_ready(p) || meta::is_deleting(p) {
        return false;
    }
    if min_ready <= 0 {
        return true;
    }
    let since = meta::condition(p, "Ready")
        .and_then(|c| c.get("lastTransitionTime"))
        .and_then(Value::as_str)
        .and_then(meta::parse_time);
    since.is_some_and(|t| (chrono::Utc::now() - t).num_seconds() >= min_ready)
}

fn new_pod(owner: &Value, template: &Value, name: Option<String>, extra: &BTreeMap<String, String>) -> Value {
    let mut labels = meta::map_at(template, "/metadata/labels");
    labels.extend(extra.clone());
    let mut md = json!({"namespace": meta::namespace(owner), "labels": labels, "ownerReferences": [meta::owner_ref(owner, true)]});
    if let Some(a) = template.pointer("/metadata/annotations") {
        md["annotations"] = a.clone();
    }
    match name {
        Some(n) => md["name"] = json!(n),
        None => md["generateName"] = json!(format!("{}-", meta::name(owner))),
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": template.get("spec").cloned().unwrap_or(json!({}))})
}

/// Deletion preference like Kubernetes' ActivePods ordering: unscheduled, pending, not ready, newest first.
fn deletion_rank(p: &Value) -> (bool, bool, bool, std::cmp::Reverse<String>) {
    (
        meta::str_at(p, "/spec/nodeName").is_some_and(|n| !n.is_empty()),
        meta::pod_phase(p) != "Pending",
        meta::pod_ready(p),
        std::cmp::Reverse(meta::str_at(p, "/metadata/creationTimestamp").unwrap_or("").to_string()),
    )
}

async fn scale(ctx: &Ctx, r: &meta::Resource, o: &Value, n: i64) -> Result<(), KubeError> {
    if replicas(o) == n {
        return Ok(());
    }
    tracing::info!(kind = r.kind, name = meta::name(o), from = replicas(o), to = n, "scaling");
    ctx.kube
        .merge_patch(r, Some(meta::namespace(o)), meta::name(o), None, &json!({"spec": {"replicas": n}}))
        .await
        .map(|_| ())
}

// ---------------- ReplicaSet / ReplicationController ----------------

pub async fn replicasets(ctx: &Ctx, w: &World, which: &str) -> Result<(), KubeError> {
    let r = res(which);
    let list = if which == "replicasets" { &w.rs } else { &w.rcs };
    let pods = res("pods");
    for rs in list.iter().filter(|o| !meta::is_deleting(o)) {
        let ns = meta::namespace(rs);
        let want = replicas(rs);
        let min_ready = meta::i64_at(rs, "/spec/minReadySeconds").unwrap_or(0);
        let mut active: Vec<&Value> = w.owned_pods(rs).into_iter().filter(|p| meta::pod_active(p)).collect();
        let diff = want - active.len() as i64;
        let template = rs.pointer("/spec/template").cloned().unwrap_or(json!({}));
        if diff > 0 {
            for _ in 0..diff.min(100) {
                ctx.kube.create(pods, Some(ns), &new_pod(rs, &template, None, &BTreeMap::new())).await?;
            }
        } else if diff < 0 {
            active.sort_by_key(|p| deletion_rank(p));
            for p in active.iter().take((-diff) as usize) {
                ctx.kube.delete(pods, Some(ns), meta::name(p), None, None).await?;
            }
        }
        let ready = active.iter().filter(|p| meta::pod_ready(p)).count();
        let avail = active.iter().filter(|p| available(p, min_ready)).count();
        let status = json!({"replicas": active.len(), "fullyLabeledReplicas": active.len(), "readyReplicas": ready,
            "availableReplicas": avail, "observedGeneration": generation(rs)});
        put_status(&ctx.kube, r, rs, status).await?;
    }
    Ok(())
}

// ---------------- Deployment ----------------

fn revision(o: &Value) -> i64 {
    o.pointer("/metadata/annotations/deployment.kubernetes.io~1revision")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn st(o: &Value, f: &str) -> i64 {
    meta::i64_at(o, &format!("/status/{f}")).unwrap_or(0)
}

pub async fn deployments(ctx: &Ctx, w: &World) -> Result<(), KubeError> {
    let rsr = res("replicasets");
    let dr = res("deployments");
    for d in w.deploys.iter().filter(|o| !meta::is_deleting(o)) {
        let ns = meta::namespace(d);
        let dname = meta::name(d);
        let template = d.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let hash = template_hash(&template);
        let mut owned: Vec<&Value> = w.rs.iter().filter(|rs| meta::controller_uid(rs) == Some(meta::uid(d))).collect();
        owned.sort_by_key(|rs| meta::str_at(rs, "/metadata/creationTimestamp").unwrap_or("").to_string());
        let new_rs = owned.iter().find(|rs| meta::labels(rs).get("pod-template-hash") == Some(&hash)).copied();
        let olds: Vec<&Value> =
            owned.iter().filter(|rs| meta::labels(rs).get("pod-template-hash") != Some(&hash)).copied().collect();
        let want = replicas(d);
        let recreate = meta::str_at(d, "/spec/strategy/type") == Some("Recreate");
        let max_rev = owned.iter().map(|rs| revision(rs)).max().unwrap_or(0);
        let Some(new_rs) = new_rs else {
            let mut t = template.clone();
            t["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut sel = d.pointer("/spec/selector").cloned().unwrap_or(json!({}));
            sel["matchLabels"]["pod-template-hash"] = json!(hash);
            let olds_empty = olds.iter().all(|o| replicas(o) == 0);
            let initial = if olds_empty && !recreate { want } else { 0 };
            let mut labels = meta::map_at(&template, "/metadata/labels");
            labels.insert("pod-template-hash".into(), hash.clone());
            let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("{dname}-{hash}"), "namespace": ns, "labels": labels,
                    "annotations": {"deployment.kubernetes.io/revision": (max_rev + 1).to_string(),
                        "deployment.kubernetes.io/desired-replicas": want.to_string()},
                    "ownerReferences": [meta::owner_ref(d, true)]},
                "spec": {"replicas": initial, "minReadySeconds": d.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0)),
                    "selector": sel, "template": t}});
            match ctx.kube.create(rsr, Some(ns), &rs).await {
                Ok(_) => {
                    tracing::info!(deployment = %format!("{ns}/{dname}"), revision = max_rev + 1, "new replica set")
                }
                Err(e) if e.code() == 409 => {}
                Err(e) => return Err(e),
            }
            continue;
        };
        if revision(new_rs) < max_rev {
            // Rollback to an older template: it becomes the newest revision.
            let _ = ctx.kube.merge_patch(rsr, Some(ns), meta::name(new_rs), None,
                &json!({"metadata": {"annotations": {"deployment.kubernetes.io/revision": (max_rev + 1).to_string()}}})).await;
        }
        let paused = d.pointer("/spec/paused").and_then(Value::as_bool).unwrap_or(false);
        let max_surge = meta::int_or_percent(d.pointer("/spec/strategy/rollingUpdate/maxSurge"), want, true, 1);
        let mut max_unav =
            meta::int_or_percent(d.pointer("/spec/strategy/rollingUpdate/maxUnavailable"), want, false, 0);
        if max_surge == 0 && max_unav == 0 {
            max_unav = 1;
        }
        if !paused {
            let olds_spec: i64 = olds.iter().map(|o| replicas(o)).sum();
            if recreate {
                if olds_spec > 0 {
                    for o in &olds {
                        scale(ctx, rsr, o, 0).await?;
                    }
                } else if olds.iter().all(|o| w.owned_pods(o).is_empty()) {
                    scale(ctx, rsr, new_rs, want).await?;
                }
            } else if olds_spec == 0 {
                scale(ctx, rsr, new_rs, want).await?;
            } else {
                let new_spec = replicas(new_rs);
                let total_spec = new_spec + olds_spec;
                if new_spec < want {
                    let max_total = want + max_surge;
                    if total_spec < max_total {
                        scale(ctx, rsr, new_rs, (new_spec + max_total - total_spec).min(want)).await?;
                    }
                } else if new_spec > want {
                    scale(ctx, rsr, new_rs, want).await?;
                }
                let min_avail = want - max_unav;
                let avail_all: i64 = owned.iter().map(|o| st(o, "availableReplicas")).sum();
                let new_unavail = (new_spec - st(new_rs, "availableReplicas")).max(0);
                let mut remaining = total_spec - min_avail - new_unavail;
                let mut budget = avail_all - min_avail;
                for o in &olds {
                    if remaining <= 0 {
                        break;
                    }
                    let spec = replicas(o);
                    if spec == 0 {
                        continue;
                    }
                    let unhealthy = (spec - st(o, "availableReplicas")).max(0);
                    let by_unhealthy = unhealthy.min(remaining);
                    let by_avail = (spec - by_unhealthy).min(budget.max(0)).min(remaining - by_unhealthy);
                    budget -= by_avail;
                    remaining -= by_unhealthy + by_avail;
                    if by_unhealthy + by_avail > 0 {
                        scale(ctx, rsr, o, spec - by_unhealthy - by_avail).await?;
                    }
                }
            }
            // Old replica sets beyond revisionHistoryLimit.
            let limit = meta::i64_at(d, "/spec/revisionHistoryLimit").unwrap_or(10).max(0) as usize;
            let dead: Vec<&&Value> = olds.iter().filter(|o| replicas(o) == 0 && st(o, "replicas") == 0).collect();
            if dead.len() > limit {
                for o in dead.iter().take(dead.len() - limit) {
                    ctx.kube.delete(rsr, Some(ns), meta::name(o), None, None).await?;
                }
            }
        }
        let total: i64 = owned.iter().map(|o| st(o, "replicas")).sum();
        let ready: i64 = owned.iter().map(|o| st(o, "readyReplicas")).sum();
        let avail: i64 = owned.iter().map(|o| st(o, "availableReplicas")).sum();
        let updated = st(new_rs, "replicas");
        let complete =
            updated == want && total == want && avail == want && st(new_rs, "observedGeneration") >= generation(new_rs);
        let mut obj = d.clone();
        let (a_status, a_reason, a_msg) = if avail >= want - max_unav {
            ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.".to_string())
        } else {
            ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.".to_string())
        };
        let keep = |o: &mut Value, t: &str, s: &str, r: &str, m: &str| {
            if meta::condition(o, t).is_some_and(|c| c["status"] == s && c["reason"] == r && c["message"] == m) {
                return;
            }
            crate::api::rest::set_condition(o, t, s, Some(r), Some(m));
            if let Some(cs) = o["status"]["conditions"].as_array_mut() {
                for c in cs.iter_mut().filter(|c| c["type"] == t) {
                    c["lastUpdateTime"] = json!(meta::now());
                    if let Some(m) = c.as_object_mut() {
                        m.remove("lastProbeTime");
                    }
                }
            }
        };
        keep(&mut obj, "Available", a_status, a_reason, &a_msg);
        let rsn = meta::name(new_rs);
        if complete {
            keep(
                &mut obj,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{rsn}\" has successfully progressed."),
            );
        } else {
            keep(
                &mut obj,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{rsn}\" is progressing."),
            );
        }
        let status = json!({"observedGeneration": generation(d), "replicas": total, "updatedReplicas": updated,
            "readyReplicas": ready, "availableReplicas": avail, "unavailableReplicas": (want - avail).max(0),
            "conditions": obj["status"]["conditions"]});
        if d.pointer("/metadata/annotations/deployment.kubernetes.io~1revision").and_then(Value::as_str)
            != Some(&revision(new_rs).max(max_rev).to_string())
        {
            let rev = revision(new_rs).max(1).to_string();
            let _ = ctx
                .kube
                .merge_patch(
                    dr,
                    Some(ns),
                    dname,
                    None,
                    &json!({"metadata": {"annotations": {"deployment.kubernetes.io/revision": rev}}}),
                )
                .await;
            continue;
        }
        put_status(&ctx.kube, dr, d, status).await?;
    }
    Ok(())
}

// ---------------- StatefulSet ----------------

fn ordinal(sts: &str, pod: &str) -> Option<i64> {
    pod.strip_prefix(sts)?.strip_prefix('-')?.parse().ok()
}

pub async fn statefulsets(ctx: &Ctx, w: &World) -> Result<(), KubeError> {
    let (pods, pvcs, sr) = (res("pods"), res("persistentvolumeclaims"), res("statefulsets"));
    for s in w.sts.iter().filter(|o| !meta::is_deleting(o)) {
        let (ns, sname) = (meta::namespace(s), meta::name(s));
        let want = replicas(s);
        let template = s.pointer("/spec/template").cloned().unwrap_or(json!({}));
        let update_rev = format!("{sname}-{}", template_hash(&template));
        let parallel = meta::str_at(s, "/spec/podManagementPolicy") == Some("Parallel");
        let on_delete = meta::str_at(s, "/spec/updateStrategy/type") == Some("OnDelete");
        let partition = meta::i64_at(s, "/spec/updateStrategy/rollingUpdate/partition").unwrap_or(0);
        let mut by_ord: BTreeMap<i64, &Value> = BTreeMap::new();
        for p in w.owned_pods(s) {
            if let Some(o) = ordinal(sname, meta::name(p)) {
                by_ord.insert(o, p);
            }
        }
        let rev_of = |p: &Value| meta::labels(p).get("controller-revision-hash").cloned().unwrap_or_default();
        let healthy = |p: &Value| meta::pod_phase(p) == "Running" && meta::pod_ready(p) && !meta::is_deleting(p);
        let mut acted = false;
        // Create or wait, in ordinal order.
        for i in 0..want {
            match by_ord.get(&i) {
                None => {
                    let pname = format!("{sname}-{i}");
                    let mut extra = BTreeMap::new();
                    extra.insert("statefulset.kubernetes.io/pod-name".to_string(), pname.clone());
                    extra.insert("apps.kubernetes.io/pod-index".to_string(), i.to_string());
                    extra.insert("controller-revision-hash".to_string(), update_rev.clone());
                    let mut pod = new_pod(s, &template, Some(pname.clone()), &extra);
                    pod["spec"]["hostname"] = json!(pname);
                    if let Some(svc) = meta::str_at(s, "/spec/serviceName") {
                        pod["spec"]["subdomain"] = json!(svc);
                    }
                    for vct in
                        s.pointer("/spec/volumeClaimTemplates").and_then(Value::as_array).cloned().unwrap_or_default()
                    {
                        let vname = meta::name(&vct).to_string();
                        let claim = format!("{vname}-{pname}");
                        if !w.pvcs.iter().any(|c| meta::namespace(c) == ns && meta::name(c) == claim) {
                            let mut pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                "metadata": {"name": claim, "namespace": ns, "labels": meta::map_at(&template, "/metadata/labels")},
                                "spec": vct.get("spec").cloned().unwrap_or(json!({}))});
                            if meta::str_at(s, "/spec/persistentVolumeClaimRetentionPolicy/whenDeleted")
                                == Some("Delete")
                            {
                                pvc["metadata"]["ownerReferences"] = json!([meta::owner_ref(s, false)]);
                            }
                            match ctx.kube.create(pvcs, Some(ns), &pvc).await {
                                Ok(_) | Err(KubeError::Status { code: 409, .. }) => {}
                                Err(e) => return Err(e),
                            }
                        }
                        let vols = pod["spec"]["volumes"].as_array().cloned().unwrap_or_default();
                        let mut vols: Vec<Value> = vols.into_iter().filter(|v| v["name"] != json!(vname)).collect();
                        vols.push(json!({"name": vname, "persistentVolumeClaim": {"claimName": claim}}));
                        pod["spec"]["volumes"] = json!(vols);
                    }
                    ctx.kube.create(pods, Some(ns), &pod).await?;
                    acted = true;
                    if !parallel {
                        break;
                    }
                }
                Some(p) if !healthy(p) && !parallel => {
                    acted = true;
                    break;
                }
                Some(_) => {}
            }
        }
        // Scale down: highest ordinal first, one at a time, only when all others are healthy.
        if !acted {
            let condemned: Vec<(&i64, &&Value)> = by_ord.iter().filter(|(o, _)| **o >= want).collect();
            if let Some((_, p)) = condemned.last() {
                if !meta::is_deleting(p) && (parallel || by_ord.values().all(|p| healthy(p))) {
                    ctx.kube.delete(pods, Some(ns), meta::name(p), None, None).await?;
                }
                acted = true;
            }
        }
        // Rolling update: highest ordinal ≥ partition still at an old revision, one at a time.
        if !acted && !on_delete && by_ord.values().all(|p| healthy(p)) {
            let stale = by_ord.iter().rev().find(|(o, p)| **o >= partition && **o < want && rev_of(p) != update_rev);
            if let Some((_, p)) = stale {
                ctx.kube.delete(pods, Some(ns), meta::name(p), None, None).await?;
            }
        }
        let current: Vec<&&Value> = by_ord.values().collect();
        let count = current.iter().filter(|p| !meta::is_deleting(p)).count() as i64;
        let ready = current.iter().filter(|p| healthy(p)).count() as i64;
        let updated = current.iter().filter(|p| rev_of(p) == update_rev && !meta::is_deleting(p)).count() as i64;
        let cur_rev =
            meta::str_at(s, "/status/currentRevision").filter(|r| !r.is_empty()).unwrap_or(&update_rev).to_string();
        let cur_rev = if updated == want && ready == want && count == want { update_rev.clone() } else { cur_rev };
        let current_replicas = current.iter().filter(|p| rev_of(p) == cur_rev && !meta::is_deleting(p)).count() as i64;
        let status = json!({"observedGeneration": generation(s), "replicas": count, "readyReplicas": ready,
            "availableReplicas": ready, "currentReplicas": current_replicas, "updatedReplicas": updated,
            "currentRevision": cur_rev, "updateRevision": update_rev, "collisionCount": 0});
        put_status(&ctx.kube, sr, s, status).await?;
    }
    Ok(())
}

// ---------------- DaemonSet ----------------

fn daemon_pod_template(ds: &Value) -> Value {
    let mut t = ds.pointer("/spec/template").cloned().unwrap_or(json!({}));
    let mut tol = t.pointer("/spec/tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    let add = [
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    for (k, e) in add {
        if !tol.iter().any(|x| x["key"] == k && x["effect"] == e) {
            tol.push(json!({"key": k, "operator": "Exists", "effect": e}));
        }
    }
    t["spec"]["tolerations"] = json!(tol);
    t
}

pub async fn daemonsets(ctx: &Ctx, w: &World) -> Result<(), KubeError> {
    let (pods, dsr) = (res("pods"), res("daemonsets"));
    for ds in w.ds.iter().filter(|o| !meta::is_deleting(o)) {
        let ns = meta::namespace(ds);
        let template = daemon_pod_template(ds);
        let hash = template_hash(ds.pointer("/spec/template").unwrap_or(&Value::Null));
        let owned: Vec<&Value> = w.owned_pods(ds).into_iter().filter(|p| !meta::pod_terminal(p)).collect();
        let eligible: Vec<&Value> = w
            .nodes
            .iter()
            .filter(|n| {
                meta::node_matches_pod(&template, n) && {
                    // Only NoSchedule/NoExecute taints matter; unschedulable is tolerated as in Kubernetes.
                    meta::untolerated_taints(&template, n).is_empty()
                }
            })
            .collect();
        let on = |node: &str| {
            owned.iter().filter(|p| meta::str_at(p, "/spec/nodeName") == Some(node)).copied().collect::<Vec<_>>()
        };
        let max_unav = meta::int_or_percent(
            ds.pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable"),
            eligible.len() as i64,
            true,
            1,
        )
        .max(1);
        let on_delete = meta::str_at(ds, "/spec/updateStrategy/type") == Some("OnDelete");
        let mut unavailable = 0i64;
        let mut stale = Vec::new();
        let (mut scheduled, mut ready, mut updated) = (0, 0, 0);
        for n in &eligible {
            let nn = meta::name(n);
            let mine: Vec<&Value> = on(nn).into_iter().filter(|p| !meta::is_deleting(p)).collect();
            if mine.is_empty() {
                if on(nn).is_empty() {
                    let mut pod = new_pod(
                        ds,
                        &template,
                        None,
                        &BTreeMap::from([
                            ("controller-revision-hash".to_string(), hash.clone()),
                            ("pod-template-generation".to_string(), generation(ds).to_string()),
                        ]),
                    );
                    pod["spec"]["nodeName"] = json!(nn);
                    ctx.kube.create(pods, Some(ns), &pod).await?;
                }
                unavailable += 1;
                continue;
            }
            scheduled += 1;
            for extra in mine.iter().skip(1) {
                ctx.kube.delete(pods, Some(ns), meta::name(extra), None, None).await?;
            }
            let p = mine[0];
            if meta::pod_ready(p) {
                ready += 1;
            } else {
                unavailable += 1;
            }
            if meta::labels(p).get("controller-revision-hash") == Some(&hash) {
                updated += 1;
            } else {
                stale.push(p);
            }
        }
        let eligible_names: Vec<&str> = eligible.iter().map(|n| meta::name(n)).collect();
        let mut misscheduled = 0;
        for p in owned.iter().filter(|p| !meta::is_deleting(p)) {
            if !eligible_names.contains(&meta::str_at(p, "/spec/nodeName").unwrap_or("")) {
                misscheduled += 1;
                ctx.kube.delete(pods, Some(ns), meta::name(p), None, None).await?;
            }
        }
        if !on_delete {
            // Replace stale pods, not-ready ones first, keeping at most maxUnavailable down.
            stale.sort_by_key(|p| meta::pod_ready(p));
            let mut budget = max_unav - unavailable;
            for p in stale {
                if !meta::pod_ready(p) {
                    ctx.kube.delete(pods, Some(ns), meta::name(p), None, None).await?;
                } else if budget > 0 {
                    budget -= 1;
                    ctx.kube.delete(pods, Some(ns), meta::name(p), None, None).await?;
                }
            }
        }
        let desired = eligible.len() as i64;
        let status = json!({"observedGeneration": generation(ds), "desiredNumberScheduled": desired,
            "currentNumberScheduled": scheduled, "numberMisscheduled": misscheduled, "numberReady": ready,
            "numberAvailable": ready, "numberUnavailable": (desired - ready).max(0), "updatedNumberScheduled": updated});
        put_status(&ctx.kube, dsr, ds, status).await?;
    }
    Ok(())
}

// ---------------- Job ----------------

pub async fn jobs(ctx: &Ctx, w: &World) -> Result<(), KubeError> {
    let (pods, jr) = (res("pods"), res("jobs"));
    for j in w.jobs.iter().filter(|o| !meta::is_deleting(o)) {
        let ns = meta::namespace(j);
        let owned = w.owned_pods(j);
        let sel = Selector::from_label_selector(j.pointer("/spec/selector"));
        let owned: Vec<&Value> = owned.into_iter().filter(|p| sel.matches(&meta::labels(p))).collect();
        let succeeded = owned.iter().filter(|p| meta::pod_phase(p) == "Succeeded").count() as i64;
        let failed = owned.iter().filter(|p| meta::pod_phase(p) == "Failed").count() as i64;
        let active: Vec<&&Value> = owned.iter().filter(|p| meta::pod_active(p)).collect();
        let completions = meta::i64_at(j, "/spec/completions").unwrap_or(1);
        let parallelism = meta::i64_at(j, "/spec/parallelism").unwrap_or(1);
        let backoff = meta::i64_at(j, "/spec/backoffLimit").unwrap_or(6);
        let finished = meta::condition_true(j, "Complete") || meta::condition_true(j, "Failed");
        let suspended = j.pointer("/spec/suspend").and_then(Value::as_bool).unwrap_or(false);
        let mut obj = j.clone();
        if !finished && !suspended {
            if failed > backoff {
                crate::api::rest::set_condition(
                    &mut obj,
                    "FailureTarget",
                    "True",
                    Some("BackoffLimitExceeded"),
                    Some("Job has reached the specified backoff limit"),
                );
                crate::api::rest::set_condition(
                    &mut obj,
                    "Failed",
                    "True",
                    Some("BackoffLimitExceeded"),
                    Some("Job has reached the specified backoff limit"),
                );
                for p in &active {
                    ctx.kube.delete(pods, Some(ns), meta::name(p), None, None).await?;
                }
            } else if succeeded >= completions {
                crate::api::rest::set_condition(
                    &mut obj,
                    "SuccessCriteriaMet",
                    "True",
                    Some("CompletionsReached"),
                    Some("Reached expected number of succeeded pods"),
                );
                crate::api::rest::set_condition(
                    &mut obj,
                    "Complete",
                    "True",
                    Some("CompletionsReached"),
                    Some("Reached expected number of succeeded pods"),
                );
                obj["status"]["completionTime"] = json!(meta::now());
            } else {
                let need = (completions - succeeded - active.len() as i64).min(parallelism - active.len() as i64);
                let template = j.pointer("/spec/template").cloned().unwrap_or(json!({}));
                for _ in 0..need.max(0) {
                    ctx.kube.create(pods, Some(ns), &new_pod(j, &template, None, &BTreeMap::new())).await?;
                }
            }
        }
        let mut status = json!({"active": active.len(), "succeeded": succeeded, "failed": failed,
            "ready": active.iter().filter(|p| meta::pod_ready(p)).count(), "terminating": owned.iter().filter(|p| meta::is_deleting(p)).count()});
        if j.pointer("/status/startTime").is_none() {
            status["startTime"] = json!(meta::now());
        }
        if let Some(c) = obj.pointer("/status/conditions") {
            status["conditions"] = c.clone();
        }
        if let Some(c) = obj.pointer("/status/completionTime") {
            status["completionTime"] = c.clone();
        }
        put_status(&ctx.kube, jr, j, status).await?;
    }
    Ok(())
}
