//! The simulated kubelet: registers its Node, heartbeats (Lease + Ready condition), and runs the pods bound to it
//! through Pending → Running → Ready, completes run-to-completion pods, and honours deletion grace periods.

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

use crate::client::Kube;
use crate::config::KubeletConfig;
use crate::meta::{self, res};

pub async fn run(cfg: KubeletConfig) -> anyhow::Result<()> {
    let kube = Kube::new(&cfg.api)?;
    let node = cfg.node_name.clone().unwrap_or_else(crate::config::hostname);
    crate::health::spawn(cfg.healthz_address, "kubelet");
    tracing::info!(node = %node, version = crate::version::current(), "kube-sim kubelet starting");
    loop {
        match register(&kube, &cfg, &node).await {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(node = %node, "registering node: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let hb_kube = kube.clone();
    let hb_cfg = cfg.clone();
    let hb_node = node.clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) = heartbeat(&hb_kube, &hb_cfg, &hb_node).await {
                tracing::warn!(node = %hb_node, "heartbeat: {e}");
            }
            tokio::time::sleep(Duration::from_millis(hb_cfg.heartbeat_interval_ms)).await;
        }
    });
    // Pods are synced when a watch on this node's pods fires, when a simulated transition is due, or every
    // RESYNC; `sync_interval_ms` is the minimum spacing.
    let trigger = std::sync::Arc::new(crate::client::Trigger::default());
    kube.watch_trigger(res("pods"), vec![("fieldSelector".into(), format!("spec.nodeName={node}"))], trigger.clone());
    loop {
        trigger.take();
        let next = match sync_pods(&kube, &cfg, &node).await {
            Ok(next) => next.unwrap_or(RESYNC_MS),
            Err(e) => {
                tracing::warn!(node = %node, "syncing pods: {e}");
                0
            }
        };
        tokio::time::sleep(Duration::from_millis(cfg.sync_interval_ms)).await;
        trigger.wait(Duration::from_millis(next.min(RESYNC_MS))).await;
    }
}

const RESYNC_MS: u64 = 10_000;

fn node_labels(cfg: &KubeletConfig, node: &str) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("kubernetes.io/hostname".to_string(), node.to_string());
    l.insert("kubernetes.io/os".to_string(), "linux".to_string());
    l.insert("kubernetes.io/arch".to_string(), crate::version::go_arch().to_string());
    l.insert("beta.kubernetes.io/os".to_string(), "linux".to_string());
    l.insert("beta.kubernetes.io/arch".to_string(), crate::version::go_arch().to_string());
    for r in &cfg.roles {
        l.insert(format!("node-role.kubernetes.io/{r}"), String::new());
    }
    l.extend(cfg.labels.clone());
    l
}

fn node_status(cfg: &KubeletConfig, node: &str, ready: bool) -> Value {
    let now = meta::now();
    let cond = |t: &str, s: &str, reason: &str, msg: &str| json!({"type": t, "status": s, "reason": reason, "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": now});
    let mut addresses = vec![json!({"type": "Hostname", "address": node})];
    if let Some(a) = &cfg.address {
        addresses.insert(0, json!({"type": "InternalIP", "address": a}));
    }
    let cap = json!({"cpu": "2", "memory": "4027880Ki", "pods": cfg.max_pods.to_string(), "ephemeral-storage": "20Gi"});
    json!({
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            if ready { cond("Ready", "True", "KubeletReady", "kubelet is posting ready status") } else { cond("Ready", "False", "KubeletNotReady", "starting") },
        ],
        "addresses": addresses,
        "capacity": cap,
        "allocatable": cap,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "kubeletVersion": crate::version::current(),
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": crate::version::go_arch(),
            "containerRuntimeVersion": "kube-sim://simulated",
            "kernelVersion": kernel(),
            "osImage": "kube-sim simulated node",
            "machineID": "", "systemUUID": "", "bootID": "",
        },
    })
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Whether the NodeRestriction admission plugin lets a kubelet set this label on its own Node (Kubernetes 1.16+):
/// labels outside the `kubernetes.io` and `k8s.io` domains, the kubelet's well-known labels, and the
/// `kubelet.kubernetes.io` and `node.kubernetes.io` namespaces. Not `node-role.kubernetes.io/*`: roles are set by an
/// administrator (as kubeadm does), and a real API server refuses the whole registration otherwise.
pub fn kubelet_may_set(key: &str) -> bool {
    const WELL_KNOWN: &[&str] = &[
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
    ];
    let Some((prefix, _)) = key.split_once('/') else { return true };
    let under = |domain: &str| prefix == domain || prefix.ends_with(&format!(".{domain}"));
    if under("node-restriction.kubernetes.io") {
        return false;
    }
    WELL_KNOWN.contains(&key)
        || under("kubelet.kubernetes.io")
        || under("node.kubernetes.io")
        || !(under("kubernetes.io") || under("k8s.io"))
}

/// Labels a kubelet may not set (role labels): asked for once after registration, best effort. kube-sim's own API
/// server accepts them; a real one with NodeRestriction refuses them (403), and then an administrator sets them
/// (the testbed does). A refusal never stops registration or heartbeats.
async fn patch_restricted_labels(kube: &Kube, node: &str, restricted: &BTreeMap<String, String>) {
    if restricted.is_empty() {
        return;
    }
    let patch = json!({"metadata": {"labels": restricted}});
    match kube.merge_patch(res("nodes"), None, node, None, &patch).await {
        Ok(_) => tracing::info!(node, "role labels set"),
        Err(e) => tracing::warn!(
            node,
            "labels {:?} refused ({e}); an administrator must set them (NodeRestriction keeps them from kubelets)",
            restricted.keys().collect::<Vec<_>>()
        ),
    }
}

async fn register(kube: &Kube, cfg: &KubeletConfig, node: &str) -> Result<(), crate::client::KubeError> {
    let nodes = res("nodes");
    let (labels, restricted): (BTreeMap<String, String>, BTreeMap<String, String>) =
        node_labels(cfg, node).into_iter().partition(|(k, _)| kubelet_may_set(k));
    match kube.get(nodes, None, node).await? {
        None => {
            let taints: Vec<Value> = cfg
                .taints
                .iter()
                .map(|t| {
                    let mut v = json!({"key": t.key, "effect": t.effect});
                    if let Some(val) = &t.value {
                        v["value"] = json!(val);
                    }
                    v
                })
                .collect();
            let mut obj = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": labels,
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"}}, "spec": {}, "status": node_status(cfg, node, true)});
            if !taints.is_empty() {
                obj["spec"]["taints"] = json!(taints);
            }
            match kube.create(nodes, None, &obj).await {
                Ok(_) => tracing::info!(node, "node registered"),
                Err(e) if e.code() == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Some(_) => {
            // Re-registration: labels the kubelet owns are refreshed; the rest (cordon, user labels) is kept. A
            // refused refresh must not keep the node from heartbeating.
            match kube.merge_patch(nodes, None, node, None, &json!({"metadata": {"labels": labels}})).await {
                Ok(_) => tracing::info!(node, "node already registered; labels refreshed"),
                Err(e) => tracing::warn!(node, "node already registered; refreshing its labels refused: {e}"),
            }
        }
    }
    patch_restricted_labels(kube, node, &restricted).await;
    heartbeat(kube, cfg, node).await
}

async fn heartbeat(kube: &Kube, cfg: &KubeletConfig, node: &str) -> Result<(), crate::client::KubeError> {
    let leases = res("leases");
    let renew = meta::now_micro();
    match kube.get(leases, Some("kube-node-lease"), node).await? {
        Some(mut l) => {
            l["spec"]["renewTime"] = json!(renew);
            l["spec"]["holderIdentity"] = json!(node);
            l["spec"]["leaseDurationSeconds"] = json!(cfg.lease_duration_seconds);
            kube.replace(leases, &l).await?;
        }
        None => {
            let owner = kube.get(res("nodes"), None, node).await?;
            let mut l = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node, "leaseDurationSeconds": cfg.lease_duration_seconds, "renewTime": renew}});
            if let Some(o) = owner {
                l["metadata"]["ownerReferences"] =
                    json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": meta::uid(&o)}]);
            }
            kube.create(leases, Some("kube-node-lease"), &l).await?;
        }
    }
    // Node status: conditions with a fresh heartbeat, version info.
    let status = node_status(cfg, node, true);
    let nodes = res("nodes");
    if let Some(cur) = kube.get(nodes, None, node).await? {
        let mut st = cur.get("status").cloned().unwrap_or(json!({}));
        let mut conds = status["conditions"].as_array().cloned().unwrap_or_default();
        for c in conds.iter_mut() {
            if let Some(old) = meta::condition(&cur, c["type"].as_str().unwrap_or(""))
                && old.get("status") == c.get("status")
            {
                c["lastTransitionTime"] = old.get("lastTransitionTime").cloned().unwrap_or(Value::Null);
            }
        }
        st["conditions"] = json!(conds);
        for k in ["addresses", "capacity", "allocatable", "daemonEndpoints", "nodeInfo"] {
            st[k] = status[k].clone();
        }
        kube.merge_patch(nodes, None, node, Some("status"), &json!({"status": st})).await?;
    }
    Ok(())
}

fn ms_since(o: &Value, ptr: &str) -> Option<u64> {
    meta::age_secs(o, ptr).map(|s| (s.max(0.0) * 1000.0) as u64)
}

fn pod_ip(uid: &str) -> String {
    let h: u32 = uid.bytes().fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    format!("10.244.{}.{}", (h >> 8) % 256, (h % 253) + 1)
}

/// Returns the time until the next simulated transition, if any.
async fn sync_pods(kube: &Kube, cfg: &KubeletConfig, node: &str) -> Result<Option<u64>, crate::client::KubeError> {
    let pods = res("pods");
    let sel = format!("spec.nodeName={node}");
    let (items, _) = kube.list_q(pods, None, &[("fieldSelector", sel.as_str())]).await?;
    let mut next: Option<u64> = None;
    for pod in items {
        if let Err(e) = sync_pod(kube, cfg, node, &pod).await {
            tracing::debug!(pod = meta::name(&pod), "sync: {e}");
            next = Some(0);
        }
        if let Some(d) = due_in(cfg, &pod) {
            next = Some(next.map_or(d, |n| n.min(d)));
        }
    }
    Ok(next)
}

/// Milliseconds until this pod's next simulated transition (from the state it was listed in).
fn due_in(cfg: &KubeletConfig, pod: &Value) -> Option<u64> {
    if meta::is_deleting(pod) {
        let grace_ms = meta::i64_at(pod, "/metadata/deletionGracePeriodSeconds").unwrap_or(0).max(0) as u64 * 1000;
        let until_deadline = meta::age_secs(pod, "/metadata/deletionTimestamp").map(|s| -s * 1000.0).unwrap_or(0.0);
        let elapsed = (grace_ms as f64 - until_deadline).max(0.0) as u64;
        return Some(cfg.pod_stop_delay_ms.min(grace_ms).saturating_sub(elapsed) + 50);
    }
    if meta::pod_terminal(pod) {
        return None;
    }
    let Some(age) = ms_since(pod, "/status/startTime") else { return Some(0) };
    let mut marks = vec![cfg.pod_start_delay_ms, cfg.pod_start_delay_ms + cfg.pod_ready_delay_ms];
    if meta::str_at(pod, "/spec/restartPolicy").is_some_and(|p| p != "Always") {
        marks.push(cfg.pod_start_delay_ms + run_ms(cfg, pod));
    }
    marks.into_iter().filter(|m| *m > age).map(|m| m - age + 50).min()
}

fn run_ms(cfg: &KubeletConfig, pod: &Value) -> u64 {
    pod.pointer("/metadata/annotations/kube-sim.kismatic.io~1run-seconds")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<f64>().ok())
        .map(|s| (s * 1000.0) as u64)
        .unwrap_or(cfg.run_to_completion_ms)
}

/// Desired simulated state of a pod given the time since it started.
async fn sync_pod(kube: &Kube, cfg: &KubeletConfig, node: &str, pod: &Value) -> Result<(), crate::client::KubeError> {
    let pods = res("pods");
    let ns = meta::namespace(pod);
    let name = meta::name(pod);
    if meta::is_deleting(pod) {
        // deletionTimestamp = request time + grace; simulated containers stop after pod_stop_delay (capped by grace).
        let grace_ms = meta::i64_at(pod, "/metadata/deletionGracePeriodSeconds").unwrap_or(0).max(0) as u64 * 1000;
        let until_deadline = meta::age_secs(pod, "/metadata/deletionTimestamp").map(|s| -s * 1000.0).unwrap_or(0.0);
        let elapsed = grace_ms as f64 - until_deadline;
        if meta::pod_terminal(pod) || elapsed >= cfg.pod_stop_delay_ms.min(grace_ms) as f64 {
            kube.delete(pods, Some(ns), name, Some(0), Some(meta::uid(pod))).await?;
            tracing::info!(pod = %format!("{ns}/{name}"), "pod terminated and removed");
        }
        return Ok(());
    }
    if meta::pod_terminal(pod) {
        return Ok(());
    }
    let mut st = pod.get("status").cloned().unwrap_or(json!({}));
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let now = meta::now();
    let Some(_) = st.get("startTime") else {
        st["startTime"] = json!(now);
        st["phase"] = json!("Pending");
        st["hostIP"] = json!(cfg.address.clone().unwrap_or_else(|| "127.0.0.1".into()));
        st["podIP"] = json!(pod_ip(meta::uid(pod)));
        st["podIPs"] = json!([{"ip": st["podIP"]}]);
        st["containerStatuses"] = json!(containers.iter().map(|c| json!({"name": c["name"], "image": c["image"], "imageID": "",
            "ready": false, "started": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}})).collect::<Vec<_>>());
        let mut p = pod.clone();
        p["status"] = st;
        meta::set_condition(&mut p, "PodReadyToStartContainers", "False", None, None);
        meta::set_condition(&mut p, "Initialized", "True", None, None);
        meta::set_condition(
            &mut p,
            "Ready",
            "False",
            Some("ContainersNotReady"),
            Some("containers with unready status"),
        );
        meta::set_condition(
            &mut p,
            "ContainersReady",
            "False",
            Some("ContainersNotReady"),
            Some("containers with unready status"),
        );
        meta::set_condition(&mut p, "PodScheduled", "True", None, None);
        kube.merge_patch(pods, Some(ns), name, Some("status"), &json!({"status": p["status"]})).await?;
        return Ok(());
    };
    let age = ms_since(pod, "/status/startTime").unwrap_or(0);
    let run_to_completion = meta::str_at(pod, "/spec/restartPolicy").is_some_and(|p| p != "Always");
    let run_ms = run_ms(cfg, pod);
    let (phase, ready) = if age < cfg.pod_start_delay_ms {
        ("Pending", false)
    } else if run_to_completion && age >= cfg.pod_start_delay_ms + run_ms {
        ("Succeeded", false)
    } else {
        ("Running", age >= cfg.pod_start_delay_ms + cfg.pod_ready_delay_ms)
    };
    let cur_ready = meta::pod_ready(pod);
    if meta::pod_phase(pod) == phase && cur_ready == ready {
        return Ok(());
    }
    let started = meta::parse_time(meta::str_at(pod, "/status/startTime").unwrap_or(""))
        .map(|t| {
            (t + chrono::Duration::milliseconds(cfg.pod_start_delay_ms as i64))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or_else(|| now.clone());
    let cstatus: Vec<Value> = containers
        .iter()
        .map(|c| {
            let state = match phase {
                "Pending" => json!({"waiting": {"reason": "ContainerCreating"}}),
                "Succeeded" => json!({"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started, "finishedAt": now}}),
                _ => json!({"running": {"startedAt": started}}),
            };
            json!({"name": c["name"], "image": c["image"], "imageID": format!("sim://{}", c["image"].as_str().unwrap_or("")),
                "containerID": format!("sim://{}", uuid::Uuid::new_v4().simple()),
                "ready": ready, "started": phase == "Running", "restartCount": 0, "state": state, "lastState": {}})
        })
        .collect();
    let mut p = pod.clone();
    p["status"]["phase"] = json!(phase);
    p["status"]["containerStatuses"] = json!(cstatus);
    let (cs, reason) = match (phase, ready) {
        ("Succeeded", _) => ("False", Some("PodCompleted")),
        (_, true) => ("True", None),
        _ => ("False", Some("ContainersNotReady")),
    };
    meta::set_condition(
        &mut p,
        "PodReadyToStartContainers",
        if phase == "Pending" { "False" } else { "True" },
        None,
        None,
    );
    meta::set_condition(&mut p, "Ready", cs, reason, None);
    meta::set_condition(&mut p, "ContainersReady", cs, reason, None);
    kube.merge_patch(pods, Some(ns), name, Some("status"), &json!({"status": p["status"]})).await?;
    if phase != meta::pod_phase(pod) || ready != cur_ready {
        tracing::info!(node, pod = %format!("{ns}/{name}"), phase, ready, "pod status");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::kubelet_may_set;

    #[test]
    fn node_restriction_label_rules() {
        for ok in [
            "kubernetes.io/hostname",
            "beta.kubernetes.io/os",
            "topology.kubernetes.io/zone",
            "node.kubernetes.io/instance-type",
            "node.kubernetes.io/anything",
            "x.kubelet.kubernetes.io/y",
            "kismatic/test",
            "plain",
            "example.com/team",
        ] {
            assert!(kubelet_may_set(ok), "{ok}");
        }
        for refused in [
            "node-role.kubernetes.io/worker",
            "node-role.kubernetes.io/master",
            "node-restriction.kubernetes.io/pool",
            "kubernetes.io/role",
            "foo.k8s.io/bar",
        ] {
            assert!(!kubelet_may_set(refused), "{refused}");
        }
    }
}
