//! Cluster facts from the Kubernetes API: one paginated, cluster-wide list per resource, all concurrently.

use crate::{KubeError, convert};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kismatic_core::facts::{ApiServerFacts, KubeFacts};
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Page size for lists: large enough to need few round trips, small enough to keep each response modest.
const PAGE: u32 = 500;

/// Lists every object of a kind across all namespaces, following `continue` tokens.
pub async fn list_all<K>(client: &Client) -> Result<Vec<K>, KubeError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await.map_err(KubeError::api(format!("list {}", K::plural(&()))))?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// Reads everything the checks need. `endpoint` names where `client` points (shown in the facts).
pub async fn gather(client: &Client, endpoint: &str) -> Result<KubeFacts, KubeError> {
    let version = client.apiserver_version().await;
    let api_server = match version {
        Ok(v) => ApiServerFacts { endpoint: endpoint.to_string(), version: Some(v.git_version), ..Default::default() },
        Err(e) => return Err(KubeError::api("GET /version")(e)),
    };
    let (nodes, pods, rs, deploy, sts, ds, jobs, rcs, pvcs, pvs, pdbs) = futures::try_join!(
        list_all::<Node>(client),
        list_all::<Pod>(client),
        list_all::<ReplicaSet>(client),
        list_all::<Deployment>(client),
        list_all::<StatefulSet>(client),
        list_all::<DaemonSet>(client),
        list_all::<Job>(client),
        list_all::<ReplicationController>(client),
        list_all::<PersistentVolumeClaim>(client),
        list_all::<PersistentVolume>(client),
        list_all::<PodDisruptionBudget>(client),
    )?;
    Ok(KubeFacts {
        api_servers: vec![api_server],
        nodes: nodes.iter().map(convert::node).collect(),
        pods: pods.iter().map(convert::pod).collect(),
        replica_sets: rs.iter().map(convert::replica_set).collect(),
        deployments: deploy.iter().map(convert::deployment).collect(),
        stateful_sets: sts.iter().map(convert::stateful_set).collect(),
        daemon_sets: ds.iter().map(convert::daemon_set).collect(),
        jobs: jobs.iter().map(convert::job).collect(),
        replication_controllers: rcs.iter().map(convert::replication_controller).collect(),
        pvcs: pvcs.iter().map(convert::pvc).collect(),
        pvs: pvs.iter().map(convert::pv).collect(),
        pdbs: pdbs.iter().map(convert::pdb).collect(),
        ..Default::default()
    })
}
