//! Resource table, selectors and small helpers over `serde_json::Value` objects.

use serde_json::{Value, json};
use std::collections::BTreeMap;

#[derive(Debug)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub name: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short: &'static [&'static str],
    /// Has a `/status` subresource (status is ignored on main-resource writes).
    pub status: bool,
    /// Field selectors accepted besides metadata.name / metadata.namespace.
    pub fields: &'static [&'static str],
}

macro_rules! r {
    ($g:expr, $v:expr, $n:expr, $s:expr, $k:expr, $ns:expr, [$($sh:expr),*], $st:expr, [$($f:expr),*]) => {
        Resource { group: $g, version: $v, name: $n, singular: $s, kind: $k, namespaced: $ns, short: &[$($sh),*], status: $st, fields: &[$($f),*] }
    };
}

pub static RESOURCES: &[Resource] = &[
    r!("", "v1", "namespaces", "namespace", "Namespace", false, ["ns"], true, ["status.phase"]),
    r!("", "v1", "nodes", "node", "Node", false, ["no"], true, ["spec.unschedulable"]),
    r!(
        "",
        "v1",
        "pods",
        "pod",
        "Pod",
        true,
        ["po"],
        true,
        ["spec.nodeName", "status.phase", "spec.schedulerName", "spec.restartPolicy", "status.podIP"]
    ),
    r!("", "v1", "services", "service", "Service", true, ["svc"], true, []),
    r!("", "v1", "endpoints", "endpoints", "Endpoints", true, ["ep"], false, []),
    r!("", "v1", "configmaps", "configmap", "ConfigMap", true, ["cm"], false, []),
    r!("", "v1", "secrets", "secret", "Secret", true, [], false, ["type"]),
    r!("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, ["sa"], false, []),
    r!("", "v1", "persistentvolumes", "persistentvolume", "PersistentVolume", false, ["pv"], true, []),
    r!("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", true, ["pvc"], true, []),
    r!("", "v1", "replicationcontrollers", "replicationcontroller", "ReplicationController", true, ["rc"], true, []),
    r!(
        "",
        "v1",
        "events",
        "event",
        "Event",
        true,
        ["ev"],
        false,
        [
            "involvedObject.name",
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.uid",
            "reason",
            "type"
        ]
    ),
    r!("apps", "v1", "deployments", "deployment", "Deployment", true, ["deploy"], true, []),
    r!("apps", "v1", "replicasets", "replicaset", "ReplicaSet", true, ["rs"], true, []),
    r!("apps", "v1", "statefulsets", "statefulset", "StatefulSet", true, ["sts"], true, []),
    r!("apps", "v1", "daemonsets", "daemonset", "DaemonSet", true, ["ds"], true, []),
    r!("apps", "v1", "controllerrevisions", "controllerrevision", "ControllerRevision", true, [], false, []),
    r!("batch", "v1", "jobs", "job", "Job", true, [], true, ["status.successful"]),
    r!("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", true, ["pdb"], true, []),
    r!("coordination.k8s.io", "v1", "leases", "lease", "Lease", true, [], false, []),
];

pub fn find(group: &str, version: &str, name: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.name == name)
}

/// Look a resource up by plural name (unique across this table).
pub fn res(name: &str) -> &'static Resource {
    RESOURCES.iter().find(|r| r.name == name).unwrap_or(&RESOURCES[0])
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `deployments.apps` style name used in error messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.name.to_string() } else { format!("{}.{}", self.name, self.group) }
    }

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
pub fn labels(o: &Value) -> BTreeMap<String, String> {
    map_at(o, "/metadata/labels")
}
pub fn map_at(o: &Value, ptr: &str) -> BTreeMap<String, String> {
    o.pointer(ptr)
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string()))).collect())
        .unwrap_or_default()
}
pub fn is_deleting(o: &Value) -> bool {
    o.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(o: &Value) -> Option<&Value> {
    o.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}
pub fn controller_uid(o: &Value) -> Option<&str> {
    controller_of(o).and_then(|r| r.get("uid")).and_then(Value::as_str)
}

pub fn owner_ref(owner: &Value, controller: bool) -> Value {
    json!({
        "apiVersion": owner.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": owner.get("kind").cloned().unwrap_or(Value::Null),
        "name": name(owner),
        "uid": uid(owner),
        "controller": controller,
        "blockOwnerDeletion": true,
    })
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
/// Counted by controllers: not terminal and not being deleted.
pub fn pod_active(p: &Value) -> bool {
    !pod_terminal(p) && !is_deleting(p)
}

/// Resolve an int-or-percent against `total`, rounding up or down.
pub fn int_or_percent(v: Option<&Value>, total: i64, round_up: bool, default: i64) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(default),
        Some(Value::String(s)) => {
            if let Some(p) = s.strip_suffix('%') {
                let p: i64 = p.trim().parse().unwrap_or(0);
                if round_up { (p * total + 99) / 100 } else { p * total / 100 }
            } else {
                s.parse().unwrap_or(default)
            }
        }
        _ => default,
    }
}

// ---------- label selectors ----------

#[derive(Debug, Clone, PartialEq)]
pub enum Req {
    Eq(String, String),
    Ne(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
    /// Matches nothing (an empty `matchLabels`-less selector is "everything"; this is for unparseable expressions).
    Never,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector(pub Vec<Req>);

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => labels.get(k) == Some(v),
            Req::Ne(k, v) => labels.get(k) != Some(v),
            Req::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Req::Exists(k) => labels.contains_key(k),
            Req::NotExists(k) => !labels.contains_key(k),
            Req::Never => false,
        })
    }

    /// Parse the string form used in `?labelSelector=`.
    pub fn parse(s: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for term in split_top(s) {
            let t = term.trim();
            if t.is_empty() {
                continue;
            }
            let bad = || format!("unable to parse requirement: {t:?}");
            if let Some(k) = t.strip_prefix('!') {
                reqs.push(Req::NotExists(check_key(k.trim()).map_err(|_| bad())?));
            } else if let Some((k, v)) = t.split_once("!=") {
                reqs.push(Req::Ne(check_key(k.trim())?, v.trim().to_string()));
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                reqs.push(Req::Eq(check_key(k.trim())?, v.trim().to_string()));
            } else if let Some((k, rest)) = split_set_op(t, " notin ") {
                reqs.push(Req::NotIn(check_key(k)?, parse_set(rest).ok_or_else(bad)?));
            } else if let Some((k, rest)) = split_set_op(t, " in ") {
                reqs.push(Req::In(check_key(k)?, parse_set(rest).ok_or_else(bad)?));
            } else {
                reqs.push(Req::Exists(check_key(t)?));
            }
        }
        Ok(Selector(reqs))
    }

    /// From a `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`). A null selector matches nothing.
    pub fn from_label_selector(v: Option<&Value>) -> Selector {
        let Some(v) = v.filter(|v| v.is_object()) else {
            return Selector(vec![Req::Never]);
        };
        let mut reqs: Vec<Req> = map_at(v, "/matchLabels").into_iter().map(|(k, v)| Req::Eq(k, v)).collect();
        for e in v.get("matchExpressions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("").to_string();
            let vals: Vec<String> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                .unwrap_or_default();
            reqs.push(match e.get("operator").and_then(Value::as_str) {
                Some("In") => Req::In(key, vals),
                Some("NotIn") => Req::NotIn(key, vals),
                Some("Exists") => Req::Exists(key),
                Some("DoesNotExist") => Req::NotExists(key),
                _ => Req::Never,
            });
        }
        Selector(reqs)
    }
}

fn check_key(k: &str) -> Result<String, String> {
    if k.is_empty() || k.contains(char::is_whitespace) {
        return Err(format!("invalid label key {k:?}"));
    }
    Ok(k.to_string())
}

fn split_set_op<'a>(t: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    t.find(op).map(|i| (t[..i].trim(), t[i + op.len()..].trim()))
}

fn parse_set(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(inner.split(',').map(|x| x.trim().to_string()).filter(|x| !x.is_empty()).collect())
}

/// Split on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

// ---------- field selectors ----------

#[derive(Debug, Clone, Default)]
pub struct FieldSelector(pub Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str, r: &Resource) -> Result<FieldSelector, String> {
        let mut out = Vec::new();
        for t in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (k, eq, v) = if let Some((k, v)) = t.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                (k, true, v)
            } else {
                return Err(format!("invalid selector: '{t}'; can't understand '{t}'"));
            };
            let k = k.trim();
            if k != "metadata.name" && k != "metadata.namespace" && !r.fields.contains(&k) {
                return Err(format!("field label not supported: {k}"));
            }
            out.push((k.to_string(), eq, v.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub fn matches(&self, o: &Value) -> bool {
        self.0.iter().all(|(k, eq, v)| {
            let ptr = format!("/{}", k.replace('.', "/"));
            let actual = match o.pointer(&ptr) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Number(n)) => n.to_string(),
                _ if k == "spec.unschedulable" => "false".to_string(),
                _ => String::new(),
            };
            (actual == *v) == *eq
        })
    }
}

// ---------- scheduling predicates shared by scheduler and DaemonSet controller ----------

pub fn tolerates(pod: &Value, taint: &Value) -> bool {
    let tk = taint.get("key").and_then(Value::as_str).unwrap_or("");
    let tv = taint.get("value").and_then(Value::as_str).unwrap_or("");
    let te = taint.get("effect").and_then(Value::as_str).unwrap_or("");
    pod.pointer("/spec/tolerations").and_then(Value::as_array).is_some_and(|ts| {
        ts.iter().any(|t| {
            let key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            let eff = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let val = t.get("value").and_then(Value::as_str).unwrap_or("");
            (eff.is_empty() || eff == te)
                && (key.is_empty() && op == "Exists" || key == tk)
                && (op == "Exists" || val == tv)
        })
    })
}

/// Taints with effect NoSchedule/NoExecute that the pod does not tolerate.
pub fn untolerated_taints(pod: &Value, node: &Value) -> Vec<String> {
    node.pointer("/spec/taints")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .filter(|t| matches!(t.get("effect").and_then(Value::as_str), Some("NoSchedule" | "NoExecute")))
                .filter(|t| !tolerates(pod, t))
                .map(|t| t.get("key").and_then(Value::as_str).unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// nodeSelector and required node affinity.
pub fn node_matches_pod(pod: &Value, node: &Value) -> bool {
    let nl = labels(node);
    let sel = map_at(pod, "/spec/nodeSelector");
    if sel.iter().any(|(k, v)| nl.get(k) != Some(v)) {
        return false;
    }
    let terms = pod
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array);
    let Some(terms) = terms else { return true };
    if terms.is_empty() {
        return true;
    }
    terms.iter().any(|term| {
        let exprs = Selector::from_label_selector(Some(
            &json!({"matchExpressions": term.get("matchExpressions").cloned().unwrap_or(json!([]))}),
        ));
        let mut fields = BTreeMap::new();
        fields.insert("metadata.name".to_string(), name(node).to_string());
        let fsel = Selector::from_label_selector(Some(
            &json!({"matchExpressions": term.get("matchFields").cloned().unwrap_or(json!([]))}),
        ));
        exprs.matches(&nl) && fsel.matches(&fields)
    })
}

pub fn node_ready(node: &Value) -> bool {
    condition_true(node, "Ready")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn label_selectors() {
        let s = Selector::parse("app=web,tier in (a, b),!legacy,env!=prod").expect("parse");
        assert!(s.matches(&l(&[("app", "web"), ("tier", "a")])));
        assert!(!s.matches(&l(&[("app", "web"), ("tier", "c")])));
        assert!(!s.matches(&l(&[("app", "web"), ("tier", "a"), ("legacy", "")])));
        assert!(!s.matches(&l(&[("app", "web"), ("tier", "a"), ("env", "prod")])));
        assert!(Selector::parse("x notin (y)").expect("parse").matches(&l(&[])));
        assert!(Selector::parse("").expect("parse").0.is_empty());
        assert!(!Selector::from_label_selector(None).matches(&l(&[])));
        assert!(Selector::from_label_selector(Some(&json!({}))).matches(&l(&[])));
    }

    #[test]
    fn field_selectors() {
        let pods = res("pods");
        let f = FieldSelector::parse("spec.nodeName=n1,status.phase!=Succeeded", pods).expect("parse");
        assert!(f.matches(&json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}})));
        assert!(!f.matches(&json!({"spec": {"nodeName": "n2"}})));
        assert!(FieldSelector::parse("spec.foo=1", pods).is_err());
    }

    #[test]
    fn tolerations_and_affinity() {
        let pod = json!({"spec": {"tolerations": [{"key": "a", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}});
        let node = json!({"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoExecute"}]}});
        assert_eq!(untolerated_taints(&pod, &node), vec!["b"]);
        assert!(node_matches_pod(&pod, &node));
        assert!(!node_matches_pod(&pod, &json!({"metadata": {"name": "n2"}})));
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, true, 0), 1);
        assert_eq!(int_or_percent(Some(&json!("25%")), 3, false, 0), 0);
    }
}
