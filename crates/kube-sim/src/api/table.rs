//! Server-side printing (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`) for the columns kubectl shows.

use serde_json::{Value, json};

use crate::meta::{self, Resource};

pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        return if s % 60 == 0 { format!("{m}m") } else { format!("{m}m{}s", s % 60) };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        return if m % 60 == 0 { format!("{h}h") } else { format!("{h}h{}m", m % 60) };
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 24 * 8 {
        return if h % 24 == 0 { format!("{}d", h / 24) } else { format!("{}d{}h", h / 24, h % 24) };
    }
    if h < 24 * 365 * 2 {
        return format!("{}d", h / 24);
    }
    format!("{}y", h / 24 / 365)
}

fn age(o: &Value) -> String {
    meta::age_secs(o, "/metadata/creationTimestamp")
        .map(|s| human_duration(s as i64))
        .unwrap_or_else(|| "<unknown>".into())
}

fn s(o: &Value, p: &str) -> String {
    match o.pointer(p) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn n(o: &Value, p: &str) -> i64 {
    meta::i64_at(o, p).unwrap_or(0)
}

fn or_none(x: String) -> String {
    if x.is_empty() { "<none>".into() } else { x }
}

fn containers(o: &Value, spec: &str) -> (String, String) {
    let cs = o.pointer(&format!("{spec}/containers")).and_then(Value::as_array).cloned().unwrap_or_default();
    (
        cs.iter().map(|c| s(c, "/name")).collect::<Vec<_>>().join(","),
        cs.iter().map(|c| s(c, "/image")).collect::<Vec<_>>().join(","),
    )
}

fn selector(o: &Value) -> String {
    let mut parts: Vec<String> =
        meta::map_at(o, "/spec/selector/matchLabels").iter().map(|(k, v)| format!("{k}={v}")).collect();
    if parts.is_empty() {
        parts = meta::map_at(o, "/spec/selector").iter().map(|(k, v)| format!("{k}={v}")).collect();
    }
    or_none(parts.join(","))
}

type Col = (&'static str, &'static str, u8);

fn pod_status(p: &Value) -> String {
    if meta::is_deleting(p) {
        return "Terminating".into();
    }
    let phase = meta::pod_phase(p).to_string();
    if phase == "Succeeded" {
        return "Completed".into();
    }
    let waiting = p
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find_map(|c| c.pointer("/state/waiting/reason").and_then(Value::as_str)));
    match waiting {
        Some(w) => w.to_string(),
        None => phase,
    }
}

fn columns_and_cells(r: &Resource, o: &Value) -> (Vec<Col>, Vec<Value>) {
    match r.kind {
        "Pod" => {
            let cs = o.pointer("/status/containerStatuses").and_then(Value::as_array).cloned().unwrap_or_default();
            let total = o.pointer("/spec/containers").and_then(Value::as_array).map(Vec::len).unwrap_or(0);
            let ready = cs.iter().filter(|c| c["ready"] == true).count();
            (
                vec![
                    ("Name", "string", 0),
                    ("Ready", "string", 0),
                    ("Status", "string", 0),
                    ("Restarts", "string", 0),
                    ("Age", "string", 0),
                    ("IP", "string", 1),
                    ("Node", "string", 1),
                    ("Nominated Node", "string", 1),
                    ("Readiness Gates", "string", 1),
                ],
                vec![
                    json!(meta::name(o)),
                    json!(format!("{ready}/{total}")),
                    json!(pod_status(o)),
                    json!("0"),
                    json!(age(o)),
                    json!(or_none(s(o, "/status/podIP"))),
                    json!(or_none(s(o, "/spec/nodeName"))),
                    json!("<none>"),
                    json!("<none>"),
                ],
            )
        }
        "Node" => {
            let ready = meta::condition(o, "Ready").and_then(|c| c.get("status")).and_then(Value::as_str);
            let mut status = if ready == Some("True") { "Ready".to_string() } else { "NotReady".to_string() };
            if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
                status.push_str(",SchedulingDisabled");
            }
            let roles: Vec<String> = meta::labels(o)
                .keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/").map(String::from))
                .collect();
            let ip = o
                .pointer("/status/addresses")
                .and_then(Value::as_array)
                .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
                .map(|x| s(x, "/address"))
                .unwrap_or_default();
            (
                vec![
                    ("Name", "string", 0),
                    ("Status", "string", 0),
                    ("Roles", "string", 0),
                    ("Age", "string", 0),
                    ("Version", "string", 0),
                    ("Internal-IP", "string", 1),
                    ("External-IP", "string", 1),
                    ("OS-Image", "string", 1),
                    ("Kernel-Version", "string", 1),
                    ("Container-Runtime", "string", 1),
                ],
                vec![
                    json!(meta::name(o)),
                    json!(status),
                    json!(or_none(roles.join(","))),
                    json!(age(o)),
                    json!(s(o, "/status/nodeInfo/kubeletVersion")),
                    json!(or_none(ip)),
                    json!("<none>"),
                    json!(s(o, "/status/nodeInfo/osImage")),
                    json!(s(o, "/status/nodeInfo/kernelVersion")),
                    json!(s(o, "/status/nodeInfo/containerRuntimeVersion")),
                ],
            )
        }
        "Deployment" => {
            let (c, i) = containers(o, "/spec/template/spec");
            (
                vec![
                    ("Name", "string", 0),
                    ("Ready", "string", 0),
                    ("Up-to-date", "string", 0),
                    ("Available", "string", 0),
                    ("Age", "string", 0),
                    ("Containers", "string", 1),
                    ("Images", "string", 1),
                    ("Selector", "string", 1),
                ],
                vec![
                    json!(meta::name(o)),
                    json!(format!(
                        "{}/{}",
                        n(o, "/status/readyReplicas"),
                        meta::i64_at(o, "/spec/replicas").unwrap_or(1)
                    )),
                    json!(n(o, "/status/updatedReplicas")),
                    json!(n(o, "/status/availableReplicas")),
                    json!(age(o)),
                    json!(c),
                    json!(i),
                    json!(selector(o)),
                ],
            )
        }
        "ReplicaSet" | "ReplicationController" => {
            let (c, i) = containers(o, "/spec/template/spec");
            (
                vec![
                    ("Name", "string", 0),
                    ("Desired", "integer", 0),
                    ("Current", "integer", 0),
                    ("Ready", "integer", 0),
                    ("Age", "string", 0),
                    ("Containers", "string", 1),
                    ("Images", "string", 1),
                    ("Selector", "string", 1),
                ],
                vec![
                    json!(meta::name(o)),
                    json!(meta::i64_at(o, "/spec/replicas").unwrap_or(1)),
                    json!(n(o, "/status/replicas")),
                    json!(n(o, "/status/readyReplicas")),
                    json!(age(o)),
                    json!(c),
                    json!(i),
                    json!(selector(o)),
                ],
            )
        }
        "StatefulSet" => {
            let (c, i) = containers(o, "/spec/template/spec");
            (
                vec![
                    ("Name", "string", 0),
                    ("Ready", "string", 0),
                    ("Age", "string", 0),
                    ("Containers", "string", 1),
                    ("Images", "string", 1),
                ],
                vec![
                    json!(meta::name(o)),
                    json!(format!(
                        "{}/{}",
                        n(o, "/status/readyReplicas"),
                        meta::i64_at(o, "/spec/replicas").unwrap_or(1)
                    )),
                    json!(age(o)),
                    json!(c),
                    json!(i),
                ],
            )
        }
        "DaemonSet" => {
            let (c, i) = containers(o, "/spec/template/spec");
            let ns: Vec<String> =
                meta::map_at(o, "/spec/template/spec/nodeSelector").iter().map(|(k, v)| format!("{k}={v}")).collect();
            (
                vec![
                    ("Name", "string", 0),
                    ("Desired", "integer", 0),
                    ("Current", "integer", 0),
                    ("Ready", "integer", 0),
                    ("Up-to-date", "integer", 0),
                    ("Available", "integer", 0),
                    ("Node Selector", "string", 0),
                    ("Age", "string", 0),
                    ("Containers", "string", 1),
                    ("Images", "string", 1),
                    ("Selector", "string", 1),
                ],
                vec![
                    json!(meta::name(o)),
                    json!(n(o, "/status/desiredNumberScheduled")),
                    json!(n(o, "/status/currentNumberScheduled")),
                    json!(n(o, "/status/numberReady")),
                    json!(n(o, "/status/updatedNumberScheduled")),
                    json!(n(o, "/status/numberAvailable")),
                    json!(or_none(ns.join(","))),
                    json!(age(o)),
                    json!(c),
                    json!(i),
                    json!(selector(o)),
                ],
            )
        }
        "Job" => {
            let status = if meta::condition_true(o, "Complete") {
                "Complete"
            } else if meta::condition_true(o, "Failed") {
                "Failed"
            } else {
                "Running"
            };
            let dur =
                match (meta::parse_time(&s(o, "/status/startTime")), meta::parse_time(&s(o, "/status/completionTime")))
                {
                    (Some(a), Some(b)) => human_duration((b - a).num_seconds()),
                    (Some(a), None) => human_duration((chrono::Utc::now() - a).num_seconds()),
                    _ => String::new(),
                };
            (
                vec![
                    ("Name", "string", 0),
                    ("Status", "string", 0),
                    ("Completions", "string", 0),
                    ("Duration", "string", 0),
                    ("Age", "string", 0),
                ],
                vec![
                    json!(meta::name(o)),
                    json!(status),
                    json!(format!(
                        "{}/{}",
                        n(o, "/status/succeeded"),
                        meta::i64_at(o, "/spec/completions").unwrap_or(1)
                    )),
                    json!(dur),
                    json!(age(o)),
                ],
            )
        }
        "PodDisruptionBudget" => (
            vec![
                ("Name", "string", 0),
                ("Min Available", "string", 0),
                ("Max Unavailable", "string", 0),
                ("Allowed Disruptions", "integer", 0),
                ("Age", "string", 0),
            ],
            vec![
                json!(meta::name(o)),
                json!(if o.pointer("/spec/minAvailable").is_some() {
                    s(o, "/spec/minAvailable")
                } else {
                    "N/A".into()
                }),
                json!(if o.pointer("/spec/maxUnavailable").is_some() {
                    s(o, "/spec/maxUnavailable")
                } else {
                    "N/A".into()
                }),
                json!(n(o, "/status/disruptionsAllowed")),
                json!(age(o)),
            ],
        ),
        "Namespace" => (
            vec![("Name", "string", 0), ("Status", "string", 0), ("Age", "string", 0)],
            vec![json!(meta::name(o)), json!(s(o, "/status/phase")), json!(age(o))],
        ),
        "Service" => {
            let ports: Vec<String> = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|p| format!("{}/{}", s(p, "/port"), s(p, "/protocol")))
                .collect();
            (
                vec![
                    ("Name", "string", 0),
                    ("Type", "string", 0),
                    ("Cluster-IP", "string", 0),
                    ("External-IP", "string", 0),
                    ("Port(s)", "string", 0),
                    ("Age", "string", 0),
                    ("Selector", "string", 1),
                ],
                vec![
                    json!(meta::name(o)),
                    json!(s(o, "/spec/type")),
                    json!(s(o, "/spec/clusterIP")),
                    json!("<none>"),
                    json!(or_none(ports.join(","))),
                    json!(age(o)),
                    json!(selector(o)),
                ],
            )
        }
        "PersistentVolume" => {
            let claim = if o.pointer("/spec/claimRef").is_some() {
                format!("{}/{}", s(o, "/spec/claimRef/namespace"), s(o, "/spec/claimRef/name"))
            } else {
                String::new()
            };
            (
                vec![
                    ("Name", "string", 0),
                    ("Capacity", "string", 0),
                    ("Access Modes", "string", 0),
                    ("Reclaim Policy", "string", 0),
                    ("Status", "string", 0),
                    ("Claim", "string", 0),
                    ("StorageClass", "string", 0),
                    ("Age", "string", 0),
                ],
                vec![
                    json!(meta::name(o)),
                    json!(s(o, "/spec/capacity/storage")),
                    json!(access_modes(o, "/spec/accessModes")),
                    json!(s(o, "/spec/persistentVolumeReclaimPolicy")),
                    json!(s(o, "/status/phase")),
                    json!(claim),
                    json!(s(o, "/spec/storageClassName")),
                    json!(age(o)),
                ],
            )
        }
        "PersistentVolumeClaim" => (
            vec![
                ("Name", "string", 0),
                ("Status", "string", 0),
                ("Volume", "string", 0),
                ("Capacity", "string", 0),
                ("Access Modes", "string", 0),
                ("StorageClass", "string", 0),
                ("Age", "string", 0),
            ],
            vec![
                json!(meta::name(o)),
                json!(s(o, "/status/phase")),
                json!(s(o, "/spec/volumeName")),
                json!(s(o, "/status/capacity/storage")),
                json!(access_modes(o, "/status/accessModes")),
                json!(s(o, "/spec/storageClassName")),
                json!(age(o)),
            ],
        ),
        "Lease" => (
            vec![("Name", "string", 0), ("Holder", "string", 0), ("Age", "string", 0)],
            vec![json!(meta::name(o)), json!(s(o, "/spec/holderIdentity")), json!(age(o))],
        ),
        "ConfigMap" => (
            vec![("Name", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
            vec![
                json!(meta::name(o)),
                json!(
                    o.get("data").and_then(Value::as_object).map(|m| m.len()).unwrap_or(0)
                        + o.get("binaryData").and_then(Value::as_object).map(|m| m.len()).unwrap_or(0)
                ),
                json!(age(o)),
            ],
        ),
        _ => (vec![("Name", "string", 0), ("Age", "string", 0)], vec![json!(meta::name(o)), json!(age(o))]),
    }
}

fn access_modes(o: &Value, p: &str) -> String {
    o.pointer(p)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|m| match m {
                    "ReadWriteOnce" => "RWO",
                    "ReadOnlyMany" => "ROX",
                    "ReadWriteMany" => "RWX",
                    "ReadWriteOncePod" => "RWOP",
                    other => other,
                })
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// Whether the client asked for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

pub fn table(r: &Resource, items: &[Value], resource_version: &str, cont: Option<&str>, include_object: &str) -> Value {
    let (cols, _) = columns_and_cells(r, &json!({}));
    let defs: Vec<Value> = cols
        .iter()
        .map(|(name, ty, prio)| {
            let mut d = json!({"name": name, "type": ty, "format": "", "description": "", "priority": prio});
            if *name == "Name" {
                d["format"] = json!("name");
            }
            d
        })
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let (_, cells) = columns_and_cells(r, o);
            let object = match include_object {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let mut md = json!({"resourceVersion": resource_version});
    if let Some(c) = cont {
        md["continue"] = json!(c);
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": md, "columnDefinitions": defs, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(700), "11m");
        assert_eq!(human_duration(3 * 3600 + 60), "3h1m");
        assert_eq!(human_duration(30 * 3600), "30h");
        assert_eq!(human_duration(3 * 86400 + 3600), "3d1h");
        assert!(wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"));
        assert!(!wants_table("application/json"));
    }
}
