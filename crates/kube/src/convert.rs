//! API objects → the core's slim fact types. Pure functions: missing fields become the Kubernetes defaults, never
//! a panic (an API server may omit anything optional).

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, Pod, PodCondition, ReplicationController,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kismatic_core::facts;

/// Annotation the kubelet puts on the API mirror of a static pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

fn name(m: &meta::ObjectMeta) -> String {
    m.name.clone().unwrap_or_default()
}
fn namespace(m: &meta::ObjectMeta) -> String {
    m.namespace.clone().unwrap_or_default()
}
fn uid(m: &meta::ObjectMeta) -> String {
    m.uid.clone().unwrap_or_default()
}
fn labels(m: &meta::ObjectMeta) -> facts::Labels {
    m.labels.iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn owners(m: &meta::ObjectMeta) -> Vec<facts::OwnerRef> {
    m.owner_references
        .iter()
        .flatten()
        .map(|o| facts::OwnerRef {
            kind: o.kind.as_str().into(),
            name: o.name.as_str().into(),
            uid: o.uid.as_str().into(),
            controller: o.controller.unwrap_or(false),
        })
        .collect()
}

fn selector(s: &meta::LabelSelector) -> facts::LabelSelector {
    facts::LabelSelector {
        match_labels: s.match_labels.iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        match_expressions: s
            .match_expressions
            .iter()
            .flatten()
            .map(|e| facts::LabelSelectorRequirement {
                key: e.key.as_str().into(),
                operator: e.operator.as_str().into(),
                values: e.values.iter().flatten().map(|v| v.as_str().into()).collect(),
            })
            .collect(),
    }
}

fn int_or_percent(v: &IntOrString) -> facts::IntOrPercent {
    match v {
        IntOrString::Int(i) => facts::IntOrPercent::Int(i64::from(*i)),
        IntOrString::String(s) => facts::IntOrPercent::Str(s.clone()),
    }
}

fn condition_true(conditions: Option<&Vec<PodCondition>>, kind: &str) -> bool {
    conditions.into_iter().flatten().any(|c| c.type_ == kind && c.status == "True")
}

pub fn node(n: &Node) -> facts::KubeNode {
    let status = n.status.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let spec = n.spec.as_ref();
    facts::KubeNode {
        name: name(&n.metadata),
        ready,
        unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
        kubelet_version: status
            .and_then(|s| s.node_info.as_ref())
            .map(|i| i.kubelet_version.clone())
            .unwrap_or_default(),
        labels: labels(&n.metadata),
        taints: spec
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .map(|t| facts::KubeTaint { key: t.key.clone(), value: t.value.clone(), effect: t.effect.clone() })
            .collect(),
        allocatable: status.and_then(|s| s.allocatable.as_ref()).and_then(|a| {
            Some(facts::Resources {
                cpu_millis: cpu_millis(&a.get("cpu")?.0)?,
                memory_bytes: bytes(&a.get("memory")?.0)?,
            })
        }),
    }
}

/// A Kubernetes quantity (`2`, `500m`, `1.5`, `2e3`) as millicores; `None` when it does not parse or overflows.
pub fn cpu_millis(q: &str) -> Option<i64> {
    let (num, suffix) = split_quantity(q)?;
    let scale: f64 = match suffix {
        "m" => 1.0,
        "" => 1000.0,
        "k" => 1e6,
        _ => return None,
    };
    to_i64((num * scale).ceil())
}

/// A Kubernetes quantity (`128Mi`, `1G`, `1e9`, `512`) as bytes; `None` when it does not parse or overflows.
pub fn bytes(q: &str) -> Option<i64> {
    let (num, suffix) = split_quantity(q)?;
    let scale: f64 = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    to_i64((num * scale).ceil())
}

fn split_quantity(q: &str) -> Option<(f64, &str)> {
    let q = q.trim();
    let at = q.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+')).unwrap_or(q.len());
    let (num, suffix) = q.split_at(at);
    // `2e3`: an exponent, not the `E` (exa) suffix.
    if let Some(exp) = suffix.strip_prefix(['e', 'E']).filter(|e| !e.is_empty() && e.parse::<i32>().is_ok()) {
        let v: f64 = format!("{num}e{exp}").parse().ok()?;
        return v.is_finite().then_some((v, ""));
    }
    let v: f64 = num.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some((v, suffix))
}

fn to_i64(v: f64) -> Option<i64> {
    (v.is_finite() && v >= 0.0 && v < i64::MAX as f64).then_some(v as i64)
}

pub fn pod(p: &Pod) -> facts::Pod {
    let status = p.status.as_ref();
    let phase = match status.and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => facts::PodPhase::Pending,
        Some("Running") => facts::PodPhase::Running,
        Some("Succeeded") => facts::PodPhase::Succeeded,
        Some("Failed") => facts::PodPhase::Failed,
        Some(_) => facts::PodPhase::Unknown,
    };
    let volumes = p
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .map(|v| {
            let (kind, path, claim) = if v.empty_dir.is_some() {
                (facts::VolumeKind::EmptyDir, None, None)
            } else if let Some(h) = &v.host_path {
                (facts::VolumeKind::HostPath, Some(h.path.as_str().into()), None)
            } else if let Some(c) = &v.persistent_volume_claim {
                (facts::VolumeKind::Pvc, None, Some(c.claim_name.as_str().into()))
            } else {
                (facts::VolumeKind::Other, None, None)
            };
            facts::PodVolume { name: v.name.as_str().into(), kind, path, claim }
        })
        .collect();
    facts::Pod {
        namespace: namespace(&p.metadata).into(),
        name: name(&p.metadata).into(),
        uid: uid(&p.metadata).into(),
        node: p.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty()).map(Into::into),
        phase,
        ready: condition_true(status.and_then(|s| s.conditions.as_ref()), "Ready"),
        owners: owners(&p.metadata),
        volumes,
        mirror: p.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(MIRROR_ANNOTATION)),
        labels: labels(&p.metadata),
        requests: p.spec.as_ref().map(pod_requests),
    }
}

/// What the scheduler reserves for a pod: the sum of its containers' requests, or an init container's when larger
/// (a container without a request reserves nothing).
fn pod_requests(spec: &k8s_openapi::api::core::v1::PodSpec) -> facts::Resources {
    let of = |c: &k8s_openapi::api::core::v1::Container| {
        let r = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        facts::Resources {
            cpu_millis: r.and_then(|r| r.get("cpu")).and_then(|q| cpu_millis(&q.0)).unwrap_or(0),
            memory_bytes: r.and_then(|r| r.get("memory")).and_then(|q| bytes(&q.0)).unwrap_or(0),
        }
    };
    let mut sum = facts::Resources::default();
    for c in &spec.containers {
        let r = of(c);
        sum.cpu_millis = sum.cpu_millis.saturating_add(r.cpu_millis);
        sum.memory_bytes = sum.memory_bytes.saturating_add(r.memory_bytes);
    }
    for c in spec.init_containers.iter().flatten() {
        let r = of(c);
        sum.cpu_millis = sum.cpu_millis.max(r.cpu_millis);
        sum.memory_bytes = sum.memory_bytes.max(r.memory_bytes);
    }
    sum
}

fn controller(
    m: &meta::ObjectMeta,
    sel: Option<facts::LabelSelector>,
    desired: Option<i64>,
    ready: Option<i64>,
) -> facts::Controller {
    facts::Controller {
        namespace: namespace(m).into(),
        name: name(m).into(),
        uid: uid(m).into(),
        owners: owners(m),
        selector: sel,
        desired_replicas: desired,
        ready_replicas: ready,
    }
}

// `spec.replicas` defaults to 1 when omitted, as the API server would default it.
pub fn deployment(d: &Deployment) -> facts::Controller {
    let spec = d.spec.as_ref();
    controller(
        &d.metadata,
        spec.map(|s| selector(&s.selector)),
        Some(i64::from(spec.and_then(|s| s.replicas).unwrap_or(1))),
        d.status.as_ref().map(|s| i64::from(s.ready_replicas.unwrap_or(0))),
    )
}

pub fn replica_set(r: &ReplicaSet) -> facts::Controller {
    let spec = r.spec.as_ref();
    controller(
        &r.metadata,
        spec.map(|s| selector(&s.selector)),
        Some(i64::from(spec.and_then(|s| s.replicas).unwrap_or(1))),
        r.status.as_ref().map(|s| i64::from(s.ready_replicas.unwrap_or(0))),
    )
}

pub fn stateful_set(s: &StatefulSet) -> facts::Controller {
    let spec = s.spec.as_ref();
    controller(
        &s.metadata,
        spec.map(|sp| selector(&sp.selector)),
        Some(i64::from(spec.and_then(|sp| sp.replicas).unwrap_or(1))),
        s.status.as_ref().map(|st| i64::from(st.ready_replicas.unwrap_or(0))),
    )
}

pub fn daemon_set(d: &DaemonSet) -> facts::Controller {
    controller(
        &d.metadata,
        d.spec.as_ref().map(|s| selector(&s.selector)),
        d.status.as_ref().map(|s| i64::from(s.desired_number_scheduled)),
        d.status.as_ref().map(|s| i64::from(s.number_ready)),
    )
}

pub fn job(j: &Job) -> facts::Controller {
    let spec = j.spec.as_ref();
    controller(
        &j.metadata,
        spec.and_then(|s| s.selector.as_ref()).map(selector),
        Some(i64::from(spec.and_then(|s| s.parallelism).unwrap_or(1))),
        j.status.as_ref().map(|s| i64::from(s.ready.unwrap_or(0))),
    )
}

pub fn replication_controller(r: &ReplicationController) -> facts::Controller {
    let spec = r.spec.as_ref();
    let sel = spec.and_then(|s| s.selector.as_ref()).map(|m| facts::LabelSelector {
        match_labels: m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
        match_expressions: Vec::new(),
    });
    controller(
        &r.metadata,
        sel,
        Some(i64::from(spec.and_then(|s| s.replicas).unwrap_or(1))),
        r.status.as_ref().map(|s| i64::from(s.ready_replicas.unwrap_or(0))),
    )
}

pub fn pvc(c: &PersistentVolumeClaim) -> facts::PersistentVolumeClaim {
    facts::PersistentVolumeClaim {
        namespace: namespace(&c.metadata).into(),
        name: name(&c.metadata).into(),
        volume: c.spec.as_ref().and_then(|s| s.volume_name.as_deref()).filter(|v| !v.is_empty()).map(Into::into),
    }
}

pub fn pv(v: &PersistentVolume) -> facts::PersistentVolume {
    let spec = v.spec.as_ref();
    let (kind, path) = if let Some(h) = spec.and_then(|s| s.host_path.as_ref()) {
        (facts::PvKind::HostPath, Some(h.path.as_str().into()))
    } else if let Some(l) = spec.and_then(|s| s.local.as_ref()) {
        (facts::PvKind::Local, Some(l.path.as_str().into()))
    } else {
        (facts::PvKind::Other, None)
    };
    facts::PersistentVolume { name: name(&v.metadata).into(), kind, path }
}

pub fn pdb(p: &PodDisruptionBudget) -> facts::PodDisruptionBudget {
    let spec = p.spec.as_ref();
    let status = p.status.as_ref();
    facts::PodDisruptionBudget {
        namespace: namespace(&p.metadata).into(),
        name: name(&p.metadata).into(),
        selector: spec.and_then(|s| s.selector.as_ref()).map(selector),
        min_available: spec.and_then(|s| s.min_available.as_ref()).map(int_or_percent),
        max_unavailable: spec.and_then(|s| s.max_unavailable.as_ref()).map(int_or_percent),
        disruptions_allowed: status.map(|s| i64::from(s.disruptions_allowed)).unwrap_or(0),
        current_healthy: status.map(|s| i64::from(s.current_healthy)).unwrap_or(0),
        desired_healthy: status.map(|s| i64::from(s.desired_healthy)).unwrap_or(0),
        expected_pods: status.map(|s| i64::from(s.expected_pods)).unwrap_or(0),
    }
}

/// A `policy/v1beta1` PodDisruptionBudget (as JSON) as the `policy/v1` type, keeping what it means: in v1beta1 an
/// empty selector (`{}`) matches no pods, in v1 every pod of the namespace, so an empty v1beta1 selector becomes
/// no selector (which matches nothing in both). The other fields are the same in both versions.
pub fn pdb_from_v1beta1(mut v: serde_json::Value) -> Result<PodDisruptionBudget, serde_json::Error> {
    if let Some(obj) = v.as_object_mut() {
        obj.insert("apiVersion".into(), "policy/v1".into());
        obj.insert("kind".into(), "PodDisruptionBudget".into());
    }
    if let Some(spec) = v.get_mut("spec").and_then(|s| s.as_object_mut()) {
        let empty = |x: Option<&serde_json::Value>| {
            x.is_none_or(|x| {
                x.is_null() || x.as_object().is_some_and(|o| o.is_empty()) || x.as_array().is_some_and(|a| a.is_empty())
            })
        };
        let selects_nothing = spec
            .get("selector")
            .is_some_and(|s| s.is_object() && empty(s.get("matchLabels")) && empty(s.get("matchExpressions")));
        if selects_nothing {
            spec.remove("selector");
        }
    }
    // 1.20 always writes these counters, but an object without them must still read (as 0, the default).
    if let Some(status) = v.get_mut("status").and_then(|s| s.as_object_mut()) {
        for k in ["currentHealthy", "desiredHealthy", "disruptionsAllowed", "expectedPods"] {
            status.entry(k).or_insert(0.into());
        }
    }
    serde_json::from_value(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pod_with_every_volume_kind_and_owner() {
        let p: Pod = from(json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1",
                "annotations": {"kubernetes.io/config.mirror": "x"},
                "ownerReferences": [
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "uid": "rs1", "controller": true},
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "cm1"}]},
            "spec": {"nodeName": "worker1", "containers": [],
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "logs", "hostPath": {"path": "/var/log"}},
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-0"}},
                    {"name": "cfg", "configMap": {"name": "c"}}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        }));
        let f = pod(&p);
        assert_eq!(f.node.as_deref(), Some("worker1"));
        assert_eq!(f.phase, facts::PodPhase::Running);
        assert!(f.ready && f.mirror);
        assert_eq!(f.owners.len(), 2);
        assert!(f.owners[0].controller && !f.owners[1].controller);
        let kinds: Vec<_> = f.volumes.iter().map(|v| v.kind).collect();
        use facts::VolumeKind::*;
        assert_eq!(kinds, vec![EmptyDir, HostPath, Pvc, Other]);
        assert_eq!(f.volumes[1].path.as_deref(), Some("/var/log"));
        assert_eq!(f.volumes[2].claim.as_deref(), Some("data-0"));
    }

    #[test]
    fn bare_pod_defaults() {
        let f = pod(&from(json!({"metadata": {"name": "p"}})));
        assert_eq!(f.phase, facts::PodPhase::Pending);
        assert!(f.node.is_none() && !f.ready && !f.mirror && f.owners.is_empty());
    }

    #[test]
    fn node_ready_cordoned_and_version() {
        let n: Node = from(json!({
            "metadata": {"name": "w1", "labels": {"a": "b"}},
            "spec": {"unschedulable": true, "taints": [{"key": "k", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.2", "architecture": "", "bootID": "", "containerRuntimeVersion": "",
                                    "kernelVersion": "", "kubeProxyVersion": "", "machineID": "", "operatingSystem": "",
                                    "osImage": "", "systemUUID": ""}}
        }));
        let f = node(&n);
        assert!(f.ready && f.unschedulable);
        assert_eq!(f.kubelet_version, "v1.33.2");
        assert_eq!(f.taints[0].effect, "NoSchedule");
        let not_ready = node(&from(json!({"metadata": {"name": "w2"},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}})));
        assert!(!not_ready.ready);
    }

    #[test]
    fn controllers_default_replicas_to_one() {
        let d: Deployment = from(json!({"metadata": {"name": "d", "namespace": "n", "uid": "u"},
            "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {}}}));
        let f = deployment(&d);
        assert_eq!(f.desired_replicas, Some(1));
        assert_eq!(f.selector.unwrap().match_labels["app"], "d");
        let ds: DaemonSet = from(json!({"metadata": {"name": "ds"},
            "spec": {"selector": {}, "template": {}},
            "status": {"desiredNumberScheduled": 1, "numberReady": 1, "currentNumberScheduled": 1, "numberMisscheduled": 0}}));
        assert_eq!(daemon_set(&ds).desired_replicas, Some(1));
        let rc: ReplicationController =
            from(json!({"metadata": {"name": "rc"}, "spec": {"replicas": 3, "selector": {"a": "b"}}}));
        let f = replication_controller(&rc);
        assert_eq!(f.desired_replicas, Some(3));
        assert_eq!(f.selector.unwrap().match_labels["a"], "b");
    }

    #[test]
    fn volumes_and_budgets() {
        let hp: PersistentVolume = from(json!({"metadata": {"name": "pv1"}, "spec": {"hostPath": {"path": "/data"}}}));
        assert_eq!(pv(&hp).kind, facts::PvKind::HostPath);
        let local: PersistentVolume =
            from(json!({"metadata": {"name": "pv2"}, "spec": {"local": {"path": "/mnt/disk"}}}));
        assert_eq!(pv(&local).kind, facts::PvKind::Local);
        let c: PersistentVolumeClaim =
            from(json!({"metadata": {"name": "c", "namespace": "n"}, "spec": {"volumeName": "pv1"}}));
        assert_eq!(pvc(&c).volume.as_deref(), Some("pv1"));
        let b: PodDisruptionBudget = from(json!({"metadata": {"name": "b", "namespace": "n"},
            "spec": {"minAvailable": "50%", "selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["x"]}]}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 2}}));
        let f = pdb(&b);
        assert_eq!(f.min_available, Some(facts::IntOrPercent::Str("50%".into())));
        assert_eq!(f.expected_pods, 2);
        assert_eq!(f.selector.unwrap().match_expressions[0].values, vec!["x".to_string()]);
    }

    #[test]
    fn v1beta1_budgets_keep_their_meaning() {
        // An empty selector: every pod in policy/v1, none in policy/v1beta1.
        let v1: PodDisruptionBudget = from(json!({"metadata": {"name": "all", "namespace": "n"},
            "spec": {"minAvailable": 1, "selector": {}}}));
        let all = pdb(&v1).selector.unwrap();
        assert!(all.matches(&facts::Labels::default()));
        let beta = pdb_from_v1beta1(json!({"apiVersion": "policy/v1beta1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "none", "namespace": "n"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {}}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}}))
        .unwrap();
        assert_eq!(pdb(&beta).selector, None, "matches nothing, as in v1beta1");
        assert_eq!(pdb(&beta).min_available, Some(facts::IntOrPercent::Int(1)));
        // A real selector and the status carry over; missing counters read as 0; no apiVersion is fine (list items).
        let sel = pdb_from_v1beta1(json!({"metadata": {"name": "web", "namespace": "n"},
            "spec": {"maxUnavailable": "25%", "selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": 2, "currentHealthy": 3, "expectedPods": 3}}))
        .unwrap();
        let f = pdb(&sel);
        assert_eq!(f.selector.unwrap().match_labels["app"], "web");
        assert_eq!((f.disruptions_allowed, f.current_healthy, f.desired_healthy, f.expected_pods), (2, 3, 0, 3));
        assert!(pdb_from_v1beta1(json!({"metadata": {"name": 3}})).is_err());
    }
}
