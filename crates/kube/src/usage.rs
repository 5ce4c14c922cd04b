//! The live part of the `removed-api` gate: each API server's deprecated-API metric, and the stored objects of the
//! kinds a Kubernetes move removes, read for their last-applied configuration and managed fields. The answers are
//! read by the pure functions of [`crate::deprecated`].

use crate::served::Served;
use crate::{KubeError, deprecated};
use kismatic_core::facts::{ApiObjectUse, DeprecatedApiRequest, ListError};
use kismatic_core::removed_api::{RemovedApi, split_api_version};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};

/// Page size of the metadata lists (metadata only: small objects).
const PAGE: u32 = 500;

/// The deprecated APIs the server `client` points at has served since it started (`GET /metrics`).
pub async fn deprecated_requests(client: &Client) -> Result<Vec<DeprecatedApiRequest>, KubeError> {
    let req = http::Request::get("/metrics").body(Vec::new()).map_err(|e| KubeError::Other(e.to_string()))?;
    let text = client.request_text(req).await.map_err(KubeError::api("GET /metrics"))?;
    Ok(deprecated::parse_metric(&text))
}

/// The `group/version`s to list a removed API's objects with, in order: its replacement, then the removed version
/// itself, each when the server serves that group/version. Stored objects are the same whatever version lists
/// them; their last-applied configuration and managed fields keep the version each client wrote with.
pub fn list_versions(api: &RemovedApi, served: &Served) -> Vec<String> {
    api.replacement
        .map(str::to_string)
        .into_iter()
        .chain(std::iter::once(api.api_version()))
        .filter(|av| {
            let (group, version) = split_api_version(av);
            served.serves(group, version)
        })
        .collect()
}

/// The objects of the `apis`' kinds that were last written with a removed API version, and the lists that failed.
/// Review kinds (TokenReview, ...) are never stored: only the metric sees them. A served group/version that does
/// not have the kind (batch/v1 CronJobs before 1.21) is passed over for the next; a kind no version has cannot
/// have objects.
pub async fn object_uses(
    client: &Client,
    served: &Served,
    apis: &[&RemovedApi],
) -> (Vec<ApiObjectUse>, Vec<ListError>) {
    let mut lists: Vec<(Vec<String>, &str, &str)> = Vec::new();
    for api in apis.iter().filter(|a| !a.kind.ends_with("Review")) {
        let key = (list_versions(api, served), api.resource, api.kind);
        if !key.0.is_empty() && !lists.contains(&key) {
            lists.push(key);
        }
    }
    let listed = futures::future::join_all(lists.iter().map(|(versions, resource, kind)| async move {
        for av in versions {
            match list_metadata(client, av, resource, kind).await {
                Err(kube::Error::Api(e)) if e.code == 404 => continue,
                other => {
                    return other.map_err(|e| ListError { list: format!("{resource} ({av})"), error: e.to_string() });
                }
            }
        }
        Ok(Vec::new())
    }))
    .await;
    let mut uses: Vec<ApiObjectUse> = Vec::new();
    let mut errors = Vec::new();
    for ((_, _, kind), result) in lists.iter().zip(listed) {
        match result {
            Ok(objects) => {
                for o in &objects {
                    for u in deprecated::object_uses(kind, o) {
                        if !uses.contains(&u) {
                            uses.push(u);
                        }
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    (uses, errors)
}

/// Every object's metadata (as `{"metadata": ...}`) of one kind across all namespaces, following `continue`.
async fn list_metadata(
    client: &Client,
    api_version: &str,
    resource: &str,
    kind: &str,
) -> Result<Vec<serde_json::Value>, kube::Error> {
    let (group, version) = split_api_version(api_version);
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), resource);
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list_metadata(&params).await?;
        for item in page.items {
            out.push(serde_json::json!({ "metadata": item.metadata }));
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kismatic_core::removed_api::REMOVED_APIS;

    fn api(group: &str, version: &str, kind: &str) -> &'static RemovedApi {
        REMOVED_APIS.iter().find(|r| r.group == group && r.version == version && r.kind == kind).expect("listed")
    }

    #[test]
    fn lists_with_the_replacement_when_served_else_the_removed_version() {
        let ingress = api("networking.k8s.io", "v1beta1", "Ingress");
        let k120 = Served::from_groups([("networking.k8s.io", vec!["v1", "v1beta1"])]);
        assert_eq!(list_versions(ingress, &k120), ["networking.k8s.io/v1", "networking.k8s.io/v1beta1"]);
        let k118 = Served::from_groups([("networking.k8s.io", vec!["v1beta1"])]);
        assert_eq!(list_versions(ingress, &k118), ["networking.k8s.io/v1beta1"]);
        assert!(list_versions(ingress, &Served::default()).is_empty());
    }
}
