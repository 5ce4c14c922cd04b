//! Resource table and small helpers over `serde_json::Value` objects.

use serde_json::{Value, json};

#[derive(Debug)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub name: &'static str,
    pub namespaced: bool,
}

/// The resources the node agents use.
pub static RESOURCES: &[Resource] = &[
    Resource { group: "", version: "v1", name: "namespaces", namespaced: false },
    Resource { group: "", version: "v1", name: "nodes", namespaced: false },
    Resource { group: "", version: "v1", name: "pods", namespaced: true },
    Resource { group: "coordination.k8s.io", version: "v1", name: "leases", namespaced: true },
];

/// Look a resource up by plural name (unique across this table).
pub fn res(name: &str) -> &'static Resource {
    RESOURCES.iter().find(|r| r.name == name).unwrap_or(&RESOURCES[0])
}

impl Resource {
    /// REST path of a collection or an object.
    pub fn path(&self, ns: Option<&str>, name: Option<&str>) -> String {
        let mut p = if self.group.is_empty() {
            "/api/v1".to_string()
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if self.namespaced
            && let Some(ns) = ns
        {
            p.push_str("/namespaces/");
            p.push_str(ns);
        }
        p.push('/');
        p.push_str(self.name);
        if let Some(n) = name {
            p.push('/');
            p.push_str(n);
        }
        p
    }
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub fn now_micro() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub fn parse_time(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&chrono::Utc))
}

/// Seconds (fractional) since the timestamp at `ptr`, or None if absent.
pub fn age_secs(obj: &Value, ptr: &str) -> Option<f64> {
    let t = parse_time(obj.pointer(ptr)?.as_str()?)?;
    Some((chrono::Utc::now() - t).num_milliseconds() as f64 / 1000.0)
}

pub fn name(o: &Value) -> &str {
    o.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("")
}
pub fn namespace(o: &Value) -> &str {
    o.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("")
}
pub fn uid(o: &Value) -> &str {
    o.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("")
}
pub fn str_at<'a>(o: &'a Value, ptr: &str) -> Option<&'a str> {
    o.pointer(ptr).and_then(Value::as_str)
}
pub fn i64_at(o: &Value, ptr: &str) -> Option<i64> {
    o.pointer(ptr).and_then(Value::as_i64)
}
pub fn is_deleting(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// Pod condition `type` has status True.
pub fn condition_true(o: &Value, kind: &str) -> bool {
    condition(o, kind).and_then(|c| c.get("status")).and_then(Value::as_str) == Some("True")
}
pub fn condition<'a>(o: &'a Value, kind: &str) -> Option<&'a Value> {
    o.pointer("/status/conditions")?.as_array()?.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

pub fn pod_ready(p: &Value) -> bool {
    condition_true(p, "Ready")
}
pub fn pod_phase(p: &Value) -> &str {
    str_at(p, "/status/phase").unwrap_or("Pending")
}
pub fn pod_terminal(p: &Value) -> bool {
    matches!(pod_phase(p), "Succeeded" | "Failed")
}
// ---------- label selectors ----------

// ---------- field selectors ----------

// ---------- scheduling predicates shared by scheduler and DaemonSet controller ----------

pub fn set_condition(o: &mut Value, kind: &str, status: &str, reason: Option<&str>, message: Option<&str>) {
    let now = now();
    if !o["status"].is_object() {
        o["status"] = json!({});
    }
    let conds = o["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    let mut found = false;
    for c in conds {
        if c.get("type").and_then(Value::as_str) == Some(kind) {
            found = true;
            let mut n = c.clone();
            if c.get("status").and_then(Value::as_str) != Some(status) {
                n["lastTransitionTime"] = json!(now);
            }
            n["status"] = json!(status);
            set_opt(&mut n, "reason", reason);
            set_opt(&mut n, "message", message);
            out.push(n);
        } else {
            out.push(c);
        }
    }
    if !found {
        let mut n = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
        set_opt(&mut n, "reason", reason);
        set_opt(&mut n, "message", message);
        out.push(n);
    }
    o["status"]["conditions"] = Value::Array(out);
}

fn set_opt(v: &mut Value, k: &str, s: Option<&str>) {
    match s {
        Some(s) => v[k] = json!(s),
        None => {
            if let Some(m) = v.as_object_mut() {
                m.remove(k);
            }
        }
    }
}
