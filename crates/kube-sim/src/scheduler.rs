//! The simulated scheduler (leader-elected): binds pending pods to Ready, schedulable nodes, honouring nodeName,
//! nodeSelector, required node affinity, taints/tolerations, unschedulable and max pods, spreading a controller's
//! replicas across nodes (then least-loaded node).

use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

use crate::client::Kube;
use crate::config::SchedulerConfig;
use crate::leader::Leader;
use crate::meta::{self, res};

const RESYNC_SECS: u64 = 5;

pub async fn run(cfg: SchedulerConfig) -> anyhow::Result<()> {
    let kube = Kube::new(&cfg.api)?;
    crate::health::spawn(cfg.healthz_address, "scheduler");
    let mut leader = Leader::new(kube.clone(), "kube-scheduler", &cfg.leader_election);
    tracing::info!(version = crate::version::current(), identity = %leader.identity, "kube-sim scheduler starting");
    let mut last_elect = std::time::Instant::now() - Duration::from_secs(3600);
    let mut leading = false;
    let trigger = std::sync::Arc::new(crate::client::Trigger::default());
    kube.watch_trigger(res("pods"), vec![("fieldSelector".into(), "spec.nodeName=".into())], trigger.clone());
    kube.watch_trigger(res("nodes"), Vec::new(), trigger.clone());
    let mut last_run = std::time::Instant::now() - Duration::from_secs(3600);
    loop {
        if last_elect.elapsed() >= Duration::from_millis(cfg.leader_election.retry_period_ms) {
            leading = leader.tick().await;
            last_elect = std::time::Instant::now();
        }
        // Work only when pods or nodes changed (or every resync period).
        let due = trigger.take() || last_run.elapsed() >= Duration::from_secs(RESYNC_SECS);
        if leading && due {
            last_run = std::time::Instant::now();
            if let Err(e) = schedule_once(&kube).await {
                tracing::warn!("scheduling: {e}");
                trigger.fire();
            }
        }
        tokio::time::sleep(Duration::from_millis(cfg.sync_interval_ms)).await;
        trigger.wait(Duration::from_millis(cfg.leader_election.retry_period_ms)).await;
    }
}

/// Why `node` cannot take `pod`, or None if it can.
pub fn unfit(pod: &Value, node: &Value, pods_on_node: usize) -> Option<&'static str> {
    if !meta::node_ready(node) {
        return Some("node(s) were not ready");
    }
    let unsched = node.pointer("/spec/unschedulable").and_then(Value::as_bool).unwrap_or(false);
    if unsched && !meta::tolerates(pod, &json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})) {
        return Some("node(s) were unschedulable");
    }
    if !meta::untolerated_taints(pod, node).is_empty() {
        return Some("node(s) had untolerated taint(s)");
    }
    if !meta::node_matches_pod(pod, node) {
        return Some("node(s) didn't match Pod's node affinity/selector");
    }
    let max = meta::str_at(node, "/status/allocatable/pods").and_then(|p| p.parse::<usize>().ok()).unwrap_or(110);
    if pods_on_node >= max {
        return Some("Too many pods");
    }
    None
}

async fn schedule_once(kube: &Kube) -> Result<(), crate::client::KubeError> {
    let pods = res("pods");
    let nodes = kube.list(res("nodes"), None).await?;
    let all = kube.list(pods, None).await?;
    let mut per_node: HashMap<String, usize> = HashMap::new();
    let mut per_owner_node: HashMap<(String, String), usize> = HashMap::new();
    for p in all.iter().filter(|p| !meta::pod_terminal(p)) {
        if let Some(n) = meta::str_at(p, "/spec/nodeName").filter(|n| !n.is_empty()) {
            *per_node.entry(n.to_string()).or_default() += 1;
            if let Some(o) = meta::controller_uid(p) {
                *per_owner_node.entry((o.to_string(), n.to_string())).or_default() += 1;
            }
        }
    }
    for pod in all.iter().filter(|p| {
        meta::str_at(p, "/spec/nodeName").is_none_or(str::is_empty)
            && !meta::is_deleting(p)
            && meta::str_at(p, "/spec/schedulerName").is_none_or(|s| s == "default-scheduler")
            && meta::pod_phase(p) == "Pending"
    }) {
        let owner = meta::controller_uid(pod).unwrap_or("").to_string();
        let mut reasons: HashMap<&str, usize> = HashMap::new();
        let mut best: Option<(usize, usize, String)> = None;
        for n in &nodes {
            let nn = meta::name(n).to_string();
            let load = per_node.get(&nn).copied().unwrap_or(0);
            if let Some(why) = unfit(pod, n, load) {
                *reasons.entry(why).or_default() += 1;
                continue;
            }
            let same = if owner.is_empty() {
                0
            } else {
                per_owner_node.get(&(owner.clone(), nn.clone())).copied().unwrap_or(0)
            };
            let cand = (same, load, nn);
            if best.as_ref().is_none_or(|b| cand < *b) {
                best = Some(cand);
            }
        }
        let (ns, name) = (meta::namespace(pod), meta::name(pod));
        match best {
            Some((_, _, node)) => {
                let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
                match kube.post(&format!("{}/binding", pods.path(Some(ns), Some(name))), &binding).await {
                    Ok(_) => {
                        tracing::info!(pod = %format!("{ns}/{name}"), node = %node, "bound");
                        *per_node.entry(node.clone()).or_default() += 1;
                        if !owner.is_empty() {
                            *per_owner_node.entry((owner.clone(), node)).or_default() += 1;
                        }
                    }
                    Err(e) => tracing::debug!(pod = name, "binding failed: {e}"),
                }
            }
            None => {
                let mut parts: Vec<String> = reasons.iter().map(|(r, c)| format!("{c} {r}")).collect();
                parts.sort();
                let msg = format!("0/{} nodes are available: {}.", nodes.len(), parts.join(", "));
                let cur = meta::condition(pod, "PodScheduled");
                if cur.and_then(|c| c.get("message")).and_then(Value::as_str) != Some(msg.as_str()) {
                    let mut p = pod.clone();
                    crate::api::rest::set_condition(&mut p, "PodScheduled", "False", Some("Unschedulable"), Some(&msg));
                    let _ = kube
                        .merge_patch(
                            pods,
                            Some(ns),
                            name,
                            Some("status"),
                            &json!({"status": {"conditions": p["status"]["conditions"]}}),
                        )
                        .await;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: bool, unsched: bool) -> Value {
        json!({"metadata": {"name": "n", "labels": {"disk": "ssd"}}, "spec": {"unschedulable": unsched},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}], "allocatable": {"pods": "2"}}})
    }

    #[test]
    fn predicates() {
        let pod = json!({"spec": {"nodeSelector": {"disk": "ssd"}}});
        assert_eq!(unfit(&pod, &node(true, false), 0), None);
        assert!(unfit(&pod, &node(false, false), 0).is_some());
        assert!(unfit(&pod, &node(true, true), 0).is_some());
        assert!(unfit(&pod, &node(true, false), 2).is_some());
        assert!(unfit(&json!({"spec": {"nodeSelector": {"disk": "hdd"}}}), &node(true, false), 0).is_some());
        let tolerant = json!({"spec": {"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}});
        assert_eq!(unfit(&tolerant, &node(true, true), 0), None);
    }
}
