//! What the API server fills in on create and keeps on update (a subset of Kubernetes' defaulting and strategies).

use serde_json::{Value, json};

use super::error::ApiError;
use crate::meta::{self, Resource};

fn set_default(o: &mut Value, ptr: &str, v: Value) {
    if o.pointer(ptr).is_none_or(Value::is_null) {
        let (parent, key) = ptr.rsplit_once('/').unwrap_or(("", ptr));
        let mut cur = &mut *o;
        for seg in parent.split('/').filter(|s| !s.is_empty()) {
            if !cur.get(seg).is_some_and(Value::is_object) {
                cur[seg] = json!({});
            }
            cur = &mut cur[seg];
        }
        cur[key] = v;
    }
}

fn pod_spec_defaults(spec_ptr: &str, o: &mut Value) {
    set_default(o, &format!("{spec_ptr}/restartPolicy"), json!("Always"));
    set_default(o, &format!("{spec_ptr}/terminationGracePeriodSeconds"), json!(30));
    set_default(o, &format!("{spec_ptr}/dnsPolicy"), json!("ClusterFirst"));
    set_default(o, &format!("{spec_ptr}/schedulerName"), json!("default-scheduler"));
    set_default(o, &format!("{spec_ptr}/securityContext"), json!({}));
}

/// Defaults and server-set fields for a new object of resource `r`.
pub fn on_create(r: &Resource, o: &mut Value) -> Result<(), ApiError> {
    let name = meta::name(o).to_string();
    match r.kind {
        "Pod" => {
            pod_spec_defaults("/spec", o);
            if let Some(cs) = o.pointer_mut("/spec/containers").and_then(Value::as_array_mut) {
                for c in cs.iter_mut() {
                    set_default(c, "/imagePullPolicy", json!("IfNotPresent"));
                    set_default(c, "/terminationMessagePath", json!("/dev/termination-log"));
                    set_default(c, "/terminationMessagePolicy", json!("File"));
                    set_default(c, "/resources", json!({}));
                }
            } else {
                return Err(ApiError::invalid(r, &name, "spec.containers: Required value"));
            }
            // DefaultTolerationSeconds admission.
            let tol = o.pointer("/spec/tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
            let mut tol = tol;
            for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
                if !tol.iter().any(|t| t.get("key").and_then(Value::as_str) == Some(key)) {
                    tol.push(
                        json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}),
                    );
                }
            }
            o["spec"]["tolerations"] = Value::Array(tol);
            o["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        "Namespace" => {
            set_default(o, "/spec/finalizers", json!(["kubernetes"]));
            o["status"] = json!({"phase": "Active"});
            if !o.pointer("/metadata/labels").is_some_and(Value::is_object) {
                o["metadata"]["labels"] = json!({});
            }
            o["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        }
        "Deployment" => {
            set_default(o, "/spec/replicas", json!(1));
            set_default(o, "/spec/strategy/type", json!("RollingUpdate"));
            if meta::str_at(o, "/spec/strategy/type") == Some("RollingUpdate") {
                set_default(o, "/spec/strategy/rollingUpdate/maxSurge", json!("25%"));
                set_default(o, "/spec/strategy/rollingUpdate/maxUnavailable", json!("25%"));
            }
            set_default(o, "/spec/revisionHistoryLimit", json!(10));
            set_default(o, "/spec/progressDeadlineSeconds", json!(600));
            pod_spec_defaults("/spec/template/spec", o);
            require_selector(r, o, &name)?;
            o["status"] = json!({});
        }
        "ReplicaSet" => {
            set_default(o, "/spec/replicas", json!(1));
            pod_spec_defaults("/spec/template/spec", o);
            require_selector(r, o, &name)?;
            o["status"] = json!({"replicas": 0});
        }
        "ReplicationController" => {
            set_default(o, "/spec/replicas", json!(1));
            if o.pointer("/spec/selector").is_none_or(Value::is_null) {
                let l = o.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}));
                o["spec"]["selector"] = l;
            }
            pod_spec_defaults("/spec/template/spec", o);
            o["status"] = json!({"replicas": 0});
        }
        "StatefulSet" => {
            set_default(o, "/spec/replicas", json!(1));
            set_default(o, "/spec/podManagementPolicy", json!("OrderedReady"));
            set_default(o, "/spec/updateStrategy/type", json!("RollingUpdate"));
            if meta::str_at(o, "/spec/updateStrategy/type") == Some("RollingUpdate") {
                set_default(o, "/spec/updateStrategy/rollingUpdate/partition", json!(0));
            }
            set_default(o, "/spec/revisionHistoryLimit", json!(10));
            pod_spec_defaults("/spec/template/spec", o);
            require_selector(r, o, &name)?;
            o["status"] = json!({"replicas": 0, "availableReplicas": 0});
        }
        "DaemonSet" => {
            set_default(o, "/spec/updateStrategy/type", json!("RollingUpdate"));
            if meta::str_at(o, "/spec/updateStrategy/type") == Some("RollingUpdate") {
                set_default(o, "/spec/updateStrategy/rollingUpdate/maxUnavailable", json!(1));
                set_default(o, "/spec/updateStrategy/rollingUpdate/maxSurge", json!(0));
            }
            set_default(o, "/spec/revisionHistoryLimit", json!(10));
            pod_spec_defaults("/spec/template/spec", o);
            require_selector(r, o, &name)?;
            o["status"] = json!({"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0});
        }
        "Job" => {
            let uid = meta::uid(o).to_string();
            set_default(o, "/spec/parallelism", json!(1));
            set_default(o, "/spec/completions", json!(1));
            set_default(o, "/spec/backoffLimit", json!(6));
            set_default(o, "/spec/completionMode", json!("NonIndexed"));
            set_default(o, "/spec/suspend", json!(false));
            pod_spec_defaults("/spec/template/spec", o);
            if meta::str_at(o, "/spec/template/spec/restartPolicy") == Some("Always") {
                return Err(ApiError::invalid(
                    r,
                    &name,
                    "spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
                ));
            }
            if o.pointer("/spec/manualSelector").and_then(Value::as_bool) != Some(true) {
                o["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
                set_default(o, "/spec/template/metadata/labels", json!({}));
                if let Some(l) = o.pointer_mut("/spec/template/metadata/labels").and_then(Value::as_object_mut) {
                    l.insert("batch.kubernetes.io/controller-uid".into(), json!(uid));
                    l.insert("controller-uid".into(), json!(uid));
                    l.insert("batch.kubernetes.io/job-name".into(), json!(name));
                    l.insert("job-name".into(), json!(name));
                }
            }
            o["status"] = json!({});
        }
        "PodDisruptionBudget" => {
            if o.pointer("/spec/minAvailable").is_some() && o.pointer("/spec/maxUnavailable").is_some() {
                return Err(ApiError::invalid(
                    r,
                    &name,
                    "spec: Invalid value: minAvailable and maxUnavailable cannot be both set",
                ));
            }
            o["status"] = json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0});
        }
        "Service" => {
            set_default(o, "/spec/type", json!("ClusterIP"));
            set_default(o, "/spec/sessionAffinity", json!("None"));
            if o.pointer("/spec/clusterIP").is_none_or(Value::is_null) {
                let ip = format!("10.96.{}.{}", fastrand::u8(0..=255), fastrand::u8(1..=254));
                o["spec"]["clusterIP"] = json!(ip);
                o["spec"]["clusterIPs"] = json!([ip]);
            }
            if let Some(ps) = o.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ps.iter_mut() {
                    set_default(p, "/protocol", json!("TCP"));
                    if p.get("targetPort").is_none() {
                        p["targetPort"] = p.get("port").cloned().unwrap_or(Value::Null);
                    }
                }
            }
            o["status"] = json!({"loadBalancer": {}});
        }
        "PersistentVolume" => {
            set_default(o, "/spec/persistentVolumeReclaimPolicy", json!("Retain"));
            set_default(o, "/spec/volumeMode", json!("Filesystem"));
            o["status"] = json!({"phase": "Available"});
        }
        "PersistentVolumeClaim" => {
            set_default(o, "/spec/volumeMode", json!("Filesystem"));
            o["status"] = json!({"phase": "Pending"});
        }
        "Secret" => set_default(o, "/type", json!("Opaque")),
        _ => {}
    }
    Ok(())
}

fn require_selector(r: &Resource, o: &Value, name: &str) -> Result<(), ApiError> {
    let sel = crate::meta::Selector::from_label_selector(o.pointer("/spec/selector"));
    if o.pointer("/spec/selector").is_none_or(Value::is_null) {
        return Err(ApiError::invalid(r, name, "spec.selector: Required value"));
    }
    let l = meta::map_at(o, "/spec/template/metadata/labels");
    if !sel.matches(&l) {
        return Err(ApiError::invalid(
            r,
            name,
            "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`",
        ));
    }
    Ok(())
}

/// The part of an object whose change bumps `metadata.generation`.
pub fn spec_of(o: &Value) -> Value {
    match o.as_object() {
        Some(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "metadata" | "status" | "kind" | "apiVersion"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => Value::Null,
    }
}
