//! What the API server serves, from discovery: the tool reads and writes PodDisruptionBudgets in whichever of
//! `policy/v1` (Kubernetes ≥ 1.21, the only one from 1.25) and `policy/v1beta1` (≤ 1.24, the only one in 1.20)
//! the server offers, so one binary works from 1.20 to current releases.

use crate::{KubeError, convert};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Resource};
use std::collections::BTreeMap;

/// The API groups and versions a server serves (`GET /apis`; the core group `v1` is always there).
#[derive(Debug, Clone, Default)]
pub struct Served {
    groups: BTreeMap<String, Vec<String>>,
}

/// The PodDisruptionBudget API a server serves, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyVersion {
    V1,
    V1beta1,
}

impl PolicyVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            PolicyVersion::V1 => "policy/v1",
            PolicyVersion::V1beta1 => "policy/v1beta1",
        }
    }
}

impl Served {
    /// From `(group, versions)` pairs, as discovery lists them.
    pub fn from_groups<'a>(groups: impl IntoIterator<Item = (&'a str, Vec<&'a str>)>) -> Served {
        Served {
            groups: groups
                .into_iter()
                .map(|(g, vs)| (g.to_string(), vs.into_iter().map(str::to_string).collect()))
                .collect(),
        }
    }

    pub fn serves(&self, group: &str, version: &str) -> bool {
        (group.is_empty() && version == "v1")
            || self.groups.get(group).is_some_and(|vs| vs.iter().any(|v| v == version))
    }

    /// The PodDisruptionBudget API to use: `policy/v1` when served, else `policy/v1beta1`.
    pub fn policy(&self) -> Result<PolicyVersion, KubeError> {
        if self.serves("policy", "v1") {
            Ok(PolicyVersion::V1)
        } else if self.serves("policy", "v1beta1") {
            Ok(PolicyVersion::V1beta1)
        } else {
            Err(KubeError::Other(format!(
                "the API server serves neither policy/v1 nor policy/v1beta1 (policy versions served: {})",
                self.groups.get("policy").map(|v| v.join(", ")).unwrap_or_else(|| "none".into())
            )))
        }
    }
}

/// Asks the server which API groups and versions it serves.
pub async fn discover(client: &Client) -> Result<Served, KubeError> {
    let list = client.list_api_groups().await.map_err(KubeError::api("discover the served API groups (GET /apis)"))?;
    Ok(Served::from_groups(
        list.groups.iter().map(|g| (g.name.as_str(), g.versions.iter().map(|v| v.version.as_str()).collect())),
    ))
}

/// Lists PodDisruptionBudgets (in `namespace`, or all) in the served `version`, following `continue` tokens; a
/// `policy/v1beta1` budget comes back as the `policy/v1` type with v1beta1's selector meaning kept
/// ([`convert::pdb_from_v1beta1`]).
pub async fn list_pdbs(
    client: &Client,
    version: PolicyVersion,
    namespace: Option<&str>,
) -> Result<Vec<PodDisruptionBudget>, kube::Error> {
    match version {
        PolicyVersion::V1 => {
            let api: Api<PodDisruptionBudget> = match namespace {
                Some(ns) => Api::namespaced(client.clone(), ns),
                None => Api::all(client.clone()),
            };
            crate::gather::list_pages(&api).await
        }
        PolicyVersion::V1beta1 => {
            let ar = ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("policy", "v1beta1", "PodDisruptionBudget"),
                PodDisruptionBudget::plural(&()).as_ref(),
            );
            let api: Api<DynamicObject> = match namespace {
                Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                None => Api::all_with(client.clone(), &ar),
            };
            let objs = crate::gather::list_pages(&api).await?;
            objs.into_iter()
                .map(|o| {
                    let v = serde_json::to_value(&o).map_err(kube::Error::SerdeError)?;
                    convert::pdb_from_v1beta1(v).map_err(kube::Error::SerdeError)
                })
                .collect()
        }
    }
}

/// Lists budgets with a fresh discovery; for callers outside a gather (the drain's refusal message).
pub async fn list_pdbs_served(client: &Client, namespace: Option<&str>) -> Result<Vec<PodDisruptionBudget>, KubeError> {
    let version = discover(client).await?.policy()?;
    list_pdbs(client, version, namespace)
        .await
        .map_err(KubeError::api(format!("list poddisruptionbudgets ({})", version.api_version())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_version_prefers_v1_and_falls_back_to_v1beta1() {
        let both = Served::from_groups([("policy", vec!["v1", "v1beta1"]), ("apps", vec!["v1"])]);
        assert_eq!(both.policy().unwrap(), PolicyVersion::V1);
        let k120 = Served::from_groups([("policy", vec!["v1beta1"])]);
        assert_eq!(k120.policy().unwrap(), PolicyVersion::V1beta1);
        assert_eq!(k120.policy().unwrap().api_version(), "policy/v1beta1");
        let none = Served::from_groups([("apps", vec!["v1"])]);
        let err = none.policy().unwrap_err().to_string();
        assert!(err.contains("neither policy/v1 nor policy/v1beta1") && err.contains("served: none"), "{err}");
        assert!(none.serves("", "v1") && none.serves("apps", "v1") && !none.serves("apps", "v1beta2"));
    }
}
