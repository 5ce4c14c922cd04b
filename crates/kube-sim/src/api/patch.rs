//! PATCH bodies: JSON merge (RFC 7386), JSON patch (RFC 6902) and the subset of strategic merge patch that
//! kubectl sends (cordon, apply, label, annotate, scale, rollout restart).

use serde_json::{Map, Value};

use super::error::ApiError;

pub fn apply(target: &Value, content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let mut out = target.clone();
    match ct {
        "application/json-patch+json" => {
            let p: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut out, &p).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the server rejected our request due to an error in our request: {e}"),
                )
            })?;
        }
        "application/merge-patch+json" => {
            let p: Value =
                serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid merge patch: {e}")))?;
            json_patch::merge(&mut out, &p);
        }
        "application/strategic-merge-patch+json" => {
            let p: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid strategic merge patch: {e}")))?;
            strategic_merge(&mut out, &p);
        }
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
            return Err(ApiError::new(415, "UnsupportedMediaType", "server-side apply is not supported by kube-sim"));
        }
        other => {
            return Err(ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {other:?})"
                ),
            ));
        }
    }
    Ok(out)
}

/// The merge key of list fields Kubernetes declares with `patchStrategy: merge`.
fn merge_key(field: &str) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "containerStatuses"
        | "initContainerStatuses" => "name",
        "ports" => "containerPort",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "ownerReferences" => "uid",
        "taints" => "key",
        "addresses" => "type",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "readinessGates" => "conditionType",
        _ => return None,
    })
}

pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(pm) = patch.as_object() else {
        *target = clean(patch);
        return;
    };
    if pm.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut p = pm.clone();
        p.remove("$patch");
        *target = clean(&Value::Object(p));
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Some(t) = target.as_object_mut() else { return };
    for (k, pv) in pm {
        if k.starts_with("$setElementOrder/") || k == "$retainKeys" || k == "$patch" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Some(del)) = (t.get_mut(field), pv.as_array()) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        match pv {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(o) if o.get("$patch").and_then(Value::as_str) == Some("delete") => {
                t.remove(k);
            }
            Value::Object(_) => strategic_merge(t.entry(k.clone()).or_insert(Value::Null), pv),
            Value::Array(items) => {
                let entry = t.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                merge_list(k, entry, items);
            }
            _ => {
                t.insert(k.clone(), pv.clone());
            }
        }
    }
    if let Some(Value::Array(keep)) = pm.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
}

fn merge_list(field: &str, target: &mut Value, items: &[Value]) {
    let is_directive = |v: &Value| v.get("$patch").and_then(Value::as_str) == Some("replace");
    if items.iter().any(is_directive) {
        *target = Value::Array(items.iter().filter(|v| !is_directive(v)).map(clean).collect());
        return;
    }
    if field == "finalizers" {
        let mut cur = target.as_array().cloned().unwrap_or_default();
        for i in items {
            if !cur.contains(i) {
                cur.push(i.clone());
            }
        }
        *target = Value::Array(cur);
        return;
    }
    let Some(key) = merge_key(field).filter(|_| items.iter().all(Value::is_object)) else {
        *target = Value::Array(items.iter().map(clean).collect());
        return;
    };
    let mut cur = target.as_array().cloned().unwrap_or_default();
    for item in items {
        let k = item.get(key);
        let pos = cur.iter().position(|c| c.get(key) == k && k.is_some());
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(p) = pos {
                cur.remove(p);
            }
            continue;
        }
        match pos {
            Some(p) => strategic_merge(&mut cur[p], item),
            None => cur.push(clean(item)),
        }
    }
    *target = Value::Array(cur);
}

/// Drop patch directives from a value inserted as is.
fn clean(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(k, _)| !k.starts_with('$')).map(|(k, v)| (k.clone(), clean(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(clean).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cordon_patch() {
        let node = json!({"spec": {"podCIDR": "x"}});
        let out = apply(&node, "application/strategic-merge-patch+json", br#"{"spec":{"unschedulable":true}}"#)
            .expect("patch");
        assert_eq!(out, json!({"spec": {"podCIDR": "x", "unschedulable": true}}));
        let back = apply(&out, "application/strategic-merge-patch+json", br#"{"spec":{"unschedulable":null}}"#)
            .expect("patch");
        assert_eq!(back, node);
    }

    #[test]
    fn lists_merge_by_key_and_directives() {
        let d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}}}});
        let p = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
            "containers": [{"name": "a", "image": "2"}, {"name": "b", "$patch": "delete"}]}}}});
        let mut out = d.clone();
        strategic_merge(&mut out, &p);
        assert_eq!(out, json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "2"}]}}}}));
        let mut t = json!({"args": ["a"], "metadata": {"finalizers": ["x"]}});
        strategic_merge(&mut t, &json!({"args": ["b"], "metadata": {"finalizers": ["y"]}}));
        assert_eq!(t, json!({"args": ["b"], "metadata": {"finalizers": ["x", "y"]}}));
    }

    #[test]
    fn merge_and_json_patch() {
        let o = json!({"a": 1, "b": {"c": 2}});
        assert_eq!(
            apply(&o, "application/merge-patch+json", br#"{"b":{"c":null},"d":3}"#).expect("m"),
            json!({"a":1,"b":{},"d":3})
        );
        assert_eq!(
            apply(&o, "application/json-patch+json", br#"[{"op":"replace","path":"/a","value":5}]"#).expect("j")["a"],
            5
        );
        assert_eq!(apply(&o, "application/apply-patch+yaml", b"").expect_err("ssa").code, 415);
    }
}
