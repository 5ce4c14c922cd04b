//! Applying an on-cluster service's manifest through the API and waiting for its rollout.
//! Apply is create-or-replace (not server-side apply) so it needs nothing beyond plain CRUD from the API server.

use crate::served::Served;
use crate::{KubeError, ops::POLL};
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use kube::{Client, ResourceExt};
use std::time::{Duration, Instant};

/// One object of a manifest, as applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Parses a multi-document YAML manifest into objects; `source` names it in errors.
pub fn parse_manifest(source: &str, text: &str) -> Result<Vec<DynamicObject>, KubeError> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| KubeError::Other(format!("manifest {source}: {e}")))?;
    docs.into_iter()
        .filter(|d| !d.is_null())
        .enumerate()
        .map(|(i, d)| {
            let obj: DynamicObject = serde_json::from_value(d)
                .map_err(|e| KubeError::Other(format!("manifest {source}: document {}: {e}", i + 1)))?;
            if obj.types.is_none() || obj.metadata.name.is_none() {
                return Err(KubeError::Other(format!(
                    "manifest {source}: document {} lacks apiVersion, kind or metadata.name",
                    i + 1
                )));
            }
            Ok(obj)
        })
        .collect()
}

/// A PodDisruptionBudget written in a policy version the server does not serve, rewritten to the one it serves
/// (`policy/v1` ↔ `policy/v1beta1`: the same fields) so one manifest applies from Kubernetes 1.20 to current
/// releases. An empty selector means all pods in v1 and none in v1beta1, so such a budget is refused instead.
/// Returns whether the object was rewritten. Pure.
pub fn adapt_pdb_version(obj: &mut DynamicObject, served: &Served, source: &str) -> Result<bool, KubeError> {
    let Some(types) = obj.types.as_mut() else { return Ok(false) };
    if types.kind != "PodDisruptionBudget" {
        return Ok(false);
    }
    let (group, version) = types.api_version.split_once('/').unwrap_or(("", types.api_version.as_str()));
    if group != "policy" || served.serves(group, version) {
        return Ok(false);
    }
    let target = served.policy()?.api_version();
    let selector = obj.data.pointer("/spec/selector");
    let empty = |p: &str| {
        selector.and_then(|s| s.get(p)).is_none_or(|v| {
            v.as_object().is_some_and(|o| o.is_empty()) || v.as_array().is_some_and(|a| a.is_empty()) || v.is_null()
        })
    };
    if selector.is_some_and(|s| s.is_object()) && empty("matchLabels") && empty("matchExpressions") {
        return Err(KubeError::Other(format!(
            "manifest {source}: PodDisruptionBudget {}: the server serves {target}, not {}, and an empty selector \
             means all pods in policy/v1 but none in policy/v1beta1; write it in {target} with an explicit selector",
            obj.metadata.name.as_deref().unwrap_or("?"),
            types.api_version
        )));
    }
    types.api_version = target.to_string();
    Ok(true)
}

/// Creates each object, or replaces it when it exists (keeping its resourceVersion so a concurrent change is a
/// conflict rather than lost).
pub async fn apply(client: &Client, source: &str, text: &str) -> Result<Vec<Applied>, KubeError> {
    let mut applied = Vec::new();
    let mut served: Option<Served> = None;
    for mut obj in parse_manifest(source, text)? {
        if obj.types.as_ref().is_some_and(|t| t.kind == "PodDisruptionBudget") {
            if served.is_none() {
                served = Some(crate::served::discover(client).await?);
            }
            if let Some(s) = &served
                && adapt_pdb_version(&mut obj, s, source)?
            {
                tracing::info!(
                    "manifest {source}: PodDisruptionBudget {} applied as {} (the version this server serves)",
                    obj.name_any(),
                    obj.types.as_ref().map(|t| t.api_version.as_str()).unwrap_or("")
                );
            }
        }
        let Some(types) = obj.types.clone() else { continue };
        let gvk =
            GroupVersionKind::try_from(&types).map_err(|e| KubeError::Other(format!("manifest {source}: {e}")))?;
        let (ar, caps) =
            discovery::pinned_kind(client, &gvk).await.map_err(KubeError::api(format!("discover {}", types.kind)))?;
        let name = obj.name_any();
        let namespace = match caps.scope {
            Scope::Namespaced => Some(obj.namespace().unwrap_or_else(|| "default".into())),
            Scope::Cluster => None,
        };
        let api: Api<DynamicObject> = match &namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        let what = Applied { kind: types.kind.clone(), namespace: namespace.clone(), name: name.clone() };
        match api.get_opt(&name).await.map_err(KubeError::api(format!("get {what}")))? {
            Some(existing) => {
                obj.metadata.resource_version = existing.resource_version();
                api.replace(&name, &PostParams::default(), &obj)
                    .await
                    .map_err(KubeError::api(format!("replace {what}")))?;
            }
            None => {
                api.create(&PostParams::default(), &obj).await.map_err(KubeError::api(format!("create {what}")))?;
            }
        }
        applied.push(what);
    }
    Ok(applied)
}

/// Rollout state of a workload object, `None` for kinds without a rollout. Pure, on the object's JSON.
pub fn rollout_pending(kind: &str, obj: &serde_json::Value) -> Option<String> {
    let n = |p: &str| obj.pointer(p).and_then(|v| v.as_i64()).unwrap_or(0);
    let generation = n("/metadata/generation");
    let observed = n("/status/observedGeneration");
    if matches!(kind, "Deployment" | "DaemonSet" | "StatefulSet") && observed < generation {
        return Some(format!("generation {generation} not yet observed (at {observed})"));
    }
    match kind {
        "Deployment" | "StatefulSet" => {
            let want = obj.pointer("/spec/replicas").and_then(|v| v.as_i64()).unwrap_or(1);
            let updated = n("/status/updatedReplicas");
            let ready = n("/status/readyReplicas");
            (updated < want || ready < want).then(|| format!("{updated} updated, {ready} ready of {want}"))
        }
        "DaemonSet" => {
            let want = n("/status/desiredNumberScheduled");
            let updated = n("/status/updatedNumberScheduled");
            let ready = n("/status/numberReady");
            (updated < want || ready < want).then(|| format!("{updated} updated, {ready} ready of {want}"))
        }
        _ => None,
    }
}

/// How long a rollout may go without progress. A rollout's length grows with its size (a DaemonSet on 40 nodes at
/// `maxUnavailable: 1` takes minutes), so the deadline is on progress, as Kubernetes' own `progressDeadlineSeconds`:
/// any change of the counts (observed generation, updated, ready) starts it again.
#[derive(Debug)]
pub struct ProgressDeadline {
    timeout: Duration,
    last: Option<String>,
    since: Instant,
}

impl ProgressDeadline {
    pub fn new(timeout: Duration, now: Instant) -> Self {
        ProgressDeadline { timeout, last: None, since: now }
    }

    /// `true` when `pending` has stayed the same for the whole timeout.
    pub fn stalled(&mut self, pending: &str, now: Instant) -> bool {
        if self.last.as_deref() != Some(pending) {
            self.last = Some(pending.to_string());
            self.since = now;
            return false;
        }
        now.saturating_duration_since(self.since) >= self.timeout
    }
}

/// Waits until every applied workload has rolled out; fails when one makes no progress for `timeout`.
pub async fn wait_rollout(client: &Client, applied: &[Applied], timeout: Duration) -> Result<(), KubeError> {
    for a in applied.iter().filter(|a| matches!(a.kind.as_str(), "Deployment" | "DaemonSet" | "StatefulSet")) {
        let gvk = GroupVersionKind::gvk("apps", "v1", &a.kind);
        let (ar, _) =
            discovery::pinned_kind(client, &gvk).await.map_err(KubeError::api(format!("discover {}", a.kind)))?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), a.namespace.as_deref().unwrap_or("default"), &ar);
        let mut progress = ProgressDeadline::new(timeout, Instant::now());
        loop {
            let obj = api.get(&a.name).await.map_err(KubeError::api(format!("get {a}")))?;
            let value = serde_json::to_value(&obj).map_err(|e| KubeError::Other(e.to_string()))?;
            let Some(pending) = rollout_pending(&a.kind, &value) else { break };
            if progress.stalled(&pending, Instant::now()) {
                return Err(KubeError::Timeout(format!(
                    "{a} did not roll out: no progress for {}s: {pending}",
                    timeout.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rollout_deadline_restarts_with_every_change_of_its_counts() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = ProgressDeadline::new(s(180), t0);
        assert!(!p.stalled("1 updated, 1 ready of 40", t0));
        assert!(!p.stalled("1 updated, 1 ready of 40", t0 + s(179)));
        // Progress at 179 s: another 180 s from there.
        assert!(!p.stalled("2 updated, 1 ready of 40", t0 + s(179)));
        assert!(!p.stalled("2 updated, 1 ready of 40", t0 + s(358)));
        assert!(p.stalled("2 updated, 1 ready of 40", t0 + s(359)));
        // A clock that goes backwards never panics.
        assert!(!ProgressDeadline::new(s(1), t0 + s(10)).stalled("x", t0));
    }

    #[test]
    fn manifests_parse_and_reject_incomplete_documents() {
        let objs = parse_manifest(
            "dns.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: dns, namespace: kube-system}\n---\n\
             apiVersion: v1\nkind: Service\nmetadata: {name: dns}\n",
        )
        .unwrap();
        assert_eq!(objs.len(), 2);
        let err = parse_manifest("x.yaml", "kind: Deployment\nmetadata: {name: a}\n").unwrap_err();
        assert!(err.to_string().contains("x.yaml: document 1 lacks apiVersion"), "{err}");
        assert!(parse_manifest("y.yaml", "a: [").unwrap_err().to_string().starts_with("manifest y.yaml:"));
    }

    #[test]
    fn rollout_states() {
        let done = json!({"metadata": {"generation": 2}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "updatedReplicas": 2, "readyReplicas": 2}});
        assert_eq!(rollout_pending("Deployment", &done), None);
        let stale = json!({"metadata": {"generation": 3}, "spec": {"replicas": 2},
            "status": {"observedGeneration": 2, "updatedReplicas": 2, "readyReplicas": 2}});
        assert!(rollout_pending("Deployment", &stale).unwrap().contains("not yet observed"));
        let ds = json!({"metadata": {"generation": 1}, "status": {"observedGeneration": 1,
            "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberReady": 2}});
        assert_eq!(rollout_pending("DaemonSet", &ds).as_deref(), Some("3 updated, 2 ready of 3"));
        assert_eq!(rollout_pending("Service", &json!({})), None);
    }

    #[test]
    fn budgets_are_applied_in_the_served_policy_version() {
        let doc = |v: &str, sel: &str| {
            parse_manifest(
                "pdb.yaml",
                &format!("apiVersion: {v}\nkind: PodDisruptionBudget\nmetadata: {{name: b, namespace: shop}}\nspec: {{minAvailable: 1{sel}}}\n"),
            )
            .unwrap()
            .remove(0)
        };
        let k120 = Served::from_groups([("policy", vec!["v1beta1"])]);
        let k133 = Served::from_groups([("policy", vec!["v1"])]);
        let mut o = doc("policy/v1", ", selector: {matchLabels: {app: web}}");
        assert!(adapt_pdb_version(&mut o, &k120, "pdb.yaml").unwrap());
        assert_eq!(o.types.as_ref().unwrap().api_version, "policy/v1beta1");
        let mut o = doc("policy/v1beta1", ", selector: {matchLabels: {app: web}}");
        assert!(adapt_pdb_version(&mut o, &k133, "pdb.yaml").unwrap());
        assert_eq!(o.types.as_ref().unwrap().api_version, "policy/v1");
        let mut o = doc("policy/v1beta1", ", selector: {matchLabels: {app: web}}");
        assert!(!adapt_pdb_version(&mut o, &k120, "pdb.yaml").unwrap(), "served as written");
        let mut o = doc("policy/v1", ", selector: {}");
        let err = adapt_pdb_version(&mut o, &k120, "pdb.yaml").unwrap_err().to_string();
        assert!(err.contains("pdb.yaml: PodDisruptionBudget b") && err.contains("empty selector"), "{err}");
        let mut o = doc("policy/v1", "");
        assert!(adapt_pdb_version(&mut o, &k120, "pdb.yaml").unwrap(), "no selector matches nothing in both");
        let neither = Served::from_groups([("apps", vec!["v1"])]);
        assert!(adapt_pdb_version(&mut doc("policy/v1", ""), &neither, "pdb.yaml").is_err());
    }
}
