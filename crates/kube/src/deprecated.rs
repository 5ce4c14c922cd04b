//! What the `removed-api` gate reads, as pure functions over API answers: an API server's deprecated-API metric,
//! and the API versions stored objects were last written with (their last-applied configuration and managed
//! fields, as kubent and Pluto read them).

use kismatic_core::facts::{ApiObjectUse, DeprecatedApiRequest, UseSource};
use kismatic_core::removed_api::{REMOVED_APIS, split_api_version};

/// The metric every API server since 1.19 keeps: one sample per deprecated API requested since it started.
pub const METRIC: &str = "apiserver_requested_deprecated_apis";

/// The annotation `kubectl apply` keeps.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Samples of [`METRIC`] in a Prometheus text exposition (`GET /metrics`) whose value is not 0. Lines that do not
/// parse are skipped: the exposition is the server's, and one odd line must not hide the others.
pub fn parse_metric(text: &str) -> Vec<DeprecatedApiRequest> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(METRIC) else { continue };
        let Some(rest) = rest.strip_prefix('{') else { continue };
        let Some((labels, value)) = split_labels(rest) else { continue };
        let value: f64 = value.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
        if value == 0.0 {
            continue;
        }
        let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let req = DeprecatedApiRequest {
            group: get("group"),
            version: get("version"),
            resource: get("resource"),
            subresource: get("subresource"),
            removed_release: get("removed_release"),
        };
        if !req.version.is_empty() && !req.resource.is_empty() && !out.contains(&req) {
            out.push(req);
        }
    }
    out
}

/// Splits `a="x",b="y\"z"} 1` into the labels and what follows the closing brace.
fn split_labels(s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.push((name.trim().to_string(), value));
        rest = &after[end + 1..];
    }
}

/// Whether the table lists `api_version` of `kind` as removed in some release.
fn listed(api_version: &str, kind: &str) -> bool {
    let (group, version) = split_api_version(api_version);
    REMOVED_APIS.iter().any(|r| r.group == group && r.version == version && r.kind == kind)
}

/// The uses of listed (removed) API versions that one stored object shows: its last-applied configuration's
/// `apiVersion`, and every managed-fields entry's. `kind` is the object's kind (lists omit it per item).
pub fn object_uses(kind: &str, obj: &serde_json::Value) -> Vec<ApiObjectUse> {
    let meta = &obj["metadata"];
    let Some(name) = meta["name"].as_str() else { return Vec::new() };
    let namespace = meta["namespace"].as_str().filter(|n| !n.is_empty()).map(str::to_string);
    let mut found: Vec<(String, UseSource)> = Vec::new();
    if let Some(applied) = meta["annotations"][LAST_APPLIED].as_str()
        && let Ok(v) = serde_json::from_str::<serde_json::Value>(applied)
        && let Some(av) = v["apiVersion"].as_str()
    {
        found.push((av.to_string(), UseSource::LastApplied));
    }
    for entry in meta["managedFields"].as_array().into_iter().flatten() {
        if let Some(av) = entry["apiVersion"].as_str() {
            let manager = entry["manager"].as_str().unwrap_or("an unnamed manager").to_string();
            if control_plane_manager(&manager) {
                continue;
            }
            found.push((av.to_string(), UseSource::ManagedFields { manager }));
        }
    }
    let mut out: Vec<ApiObjectUse> = Vec::new();
    for (api_version, source) in found {
        if !listed(&api_version, kind) {
            continue;
        }
        let (group, version) = split_api_version(&api_version);
        let u = ApiObjectUse {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            namespace: namespace.clone(),
            name: name.to_string(),
            source,
        };
        if !out.contains(&u) {
            out.push(u);
        }
    }
    out
}

/// Field managers that are the control plane itself (the API server's own priority-and-fairness configuration,
/// the controller-manager, the scheduler): they are upgraded with the cluster and write in the new version from
/// then on, so an old version in their entry is not a client that will break.
fn control_plane_manager(manager: &str) -> bool {
    manager.starts_with("api-priority-and-fairness-config-")
        || ["kube-apiserver", "kube-controller-manager", "kube-scheduler"].contains(&manager)
}

/// The (group, kind) pairs worth listing: stored kinds the table lists with a removed version. Review kinds
/// (TokenReview, SubjectAccessReview, ...) are never stored; only the metric sees them.
pub fn stored_kinds() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in REMOVED_APIS {
        if r.kind.ends_with("Review") {
            continue;
        }
        if !out.contains(&(r.group, r.kind)) {
            out.push((r.group, r.kind));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_metric_and_nothing_else() {
        let text = r#"# HELP apiserver_requested_deprecated_apis [STABLE] Gauge of deprecated APIs that have been requested, broken out by API group, version, resource, subresource, and removed_release.
# TYPE apiserver_requested_deprecated_apis gauge
apiserver_requested_deprecated_apis{group="networking.k8s.io",removed_release="1.22",resource="ingresses",subresource="",version="v1beta1"} 1
apiserver_requested_deprecated_apis{group="extensions",removed_release="1.22",resource="ingresses",subresource="status",version="v1beta1"} 1
apiserver_requested_deprecated_apis{group="batch",removed_release="1.25",resource="cronjobs",subresource="",version="v1beta1"} 0
apiserver_requested_deprecated_apis_total{group="x"} 5
apiserver_request_total{code="200",verb="GET"} 12
apiserver_requested_deprecated_apis{group="a\"b",resource="r",version="v1"} 1
apiserver_requested_deprecated_apis{broken
"#;
        let got = parse_metric(text);
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!(got[0].group, "networking.k8s.io");
        assert_eq!(got[0].removed_release, "1.22");
        assert_eq!(got[1].subresource, "status");
        assert_eq!(got[2].group, "a\"b", "escaped quotes");
    }

    #[test]
    fn reads_last_applied_and_managed_fields() {
        let obj = json!({
            "metadata": {
                "name": "legacy", "namespace": "default",
                "annotations": {LAST_APPLIED: "{\"apiVersion\":\"networking.k8s.io/v1beta1\",\"kind\":\"Ingress\"}"},
                "managedFields": [
                    {"manager": "kubectl-client-side-apply", "apiVersion": "networking.k8s.io/v1beta1"},
                    {"manager": "ingress-controller", "apiVersion": "networking.k8s.io/v1"}
                ]
            }
        });
        let uses = object_uses("Ingress", &obj);
        assert_eq!(uses.len(), 2, "{uses:?}");
        assert_eq!(uses[0].source, UseSource::LastApplied);
        assert_eq!(uses[1].source, UseSource::ManagedFields { manager: "kubectl-client-side-apply".into() });
        assert_eq!(uses[0].namespace.as_deref(), Some("default"));
        // Current versions, other kinds, broken annotations: nothing.
        let clean = json!({"metadata": {"name": "x", "annotations": {LAST_APPLIED: "not json"},
                           "managedFields": [{"manager": "m", "apiVersion": "apps/v1"}]}});
        assert!(object_uses("Deployment", &clean).is_empty());
        assert!(object_uses("Ingress", &json!({"metadata": {}})).is_empty(), "no name");
    }

    #[test]
    fn stored_kinds_skip_reviews() {
        let kinds = stored_kinds();
        assert!(kinds.contains(&("networking.k8s.io", "Ingress")));
        assert!(kinds.contains(&("policy", "PodDisruptionBudget")));
        assert!(!kinds.iter().any(|(_, k)| k.ends_with("Review")));
    }

    #[test]
    fn the_control_planes_own_managers_are_not_clients_that_break() {
        let fs = json!({"metadata": {"name": "exempt", "managedFields": [
            {"manager": "api-priority-and-fairness-config-producer-v1", "apiVersion": "flowcontrol.apiserver.k8s.io/v1beta1"},
            {"manager": "kube-controller-manager", "apiVersion": "flowcontrol.apiserver.k8s.io/v1beta1"},
            {"manager": "helm", "apiVersion": "flowcontrol.apiserver.k8s.io/v1beta1"}]}});
        let uses = object_uses("FlowSchema", &fs);
        assert_eq!(uses.len(), 1, "{uses:?}");
        assert_eq!(uses[0].source, UseSource::ManagedFields { manager: "helm".into() });
    }
}
