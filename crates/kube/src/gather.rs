//! Cluster facts from the Kubernetes API: one paginated, cluster-wide list per resource, all concurrently, each in
//! the group/version the server serves. A list that fails is recorded (which list, why) and the others are kept.

use crate::served::{self, PolicyVersion};
use crate::{KubeError, convert};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kismatic_core::facts::{ApiServerFacts, KubeFacts, ListError};
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::fmt::Debug;

/// Page size for lists: large enough to need few round trips, small enough to keep each response modest.
const PAGE: u32 = 500;

/// Lists every object `api` reaches, following `continue` tokens.
pub(crate) async fn list_pages<K>(api: &Api<K>) -> Result<Vec<K>, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = api.list(&params).await?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// What one list produced, for the facts' `api_versions` and `list_errors`.
struct Listed<T> {
    resource: String,
    api_version: String,
    result: Result<Vec<T>, kube::Error>,
}

async fn typed<K>(client: &Client) -> Listed<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    Listed {
        resource: K::plural(&()).to_string(),
        api_version: K::api_version(&()).to_string(),
        result: list_pages(&Api::<K>::all(client.clone())).await,
    }
}

async fn pdbs(client: &Client, version: PolicyVersion) -> Listed<PodDisruptionBudget> {
    Listed {
        resource: PodDisruptionBudget::plural(&()).to_string(),
        api_version: version.api_version().to_string(),
        result: served::list_pdbs(client, version, None).await,
    }
}

/// Collects one list into the facts: its items converted, its version recorded, or its failure.
struct Sink {
    api_versions: BTreeMap<String, String>,
    list_errors: Vec<ListError>,
}

impl Sink {
    fn take<T, F>(&mut self, l: Listed<T>, conv: impl Fn(&T) -> F) -> Vec<F> {
        match l.result {
            Ok(items) => {
                self.api_versions.insert(l.resource, l.api_version);
                items.iter().map(conv).collect()
            }
            Err(e) => {
                self.list_errors
                    .push(ListError { list: format!("{} ({})", l.resource, l.api_version), error: reason(&e) });
                Vec::new()
            }
        }
    }
}

/// The API's own status message when there is one (`404 the server could not find the requested resource`).
fn reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.message),
        other => other.to_string(),
    }
}

/// Reads everything the checks need. `endpoint` names where `client` points (shown in the facts). Fails only when
/// the server does not answer `/version` or discovery; a failed list is in the facts' `list_errors`.
pub async fn gather(client: &Client, endpoint: &str) -> Result<KubeFacts, KubeError> {
    let version = client.apiserver_version().await.map_err(KubeError::api("GET /version"))?;
    let api_server =
        ApiServerFacts { endpoint: endpoint.to_string(), version: Some(version.git_version), ..Default::default() };
    let served = served::discover(client).await?;
    let mut sink = Sink { api_versions: BTreeMap::new(), list_errors: Vec::new() };
    let policy = match served.policy() {
        Ok(p) => Some(p),
        Err(e) => {
            sink.list_errors.push(ListError { list: "poddisruptionbudgets".into(), error: e.to_string() });
            None
        }
    };
    let pdb_list = async {
        match policy {
            Some(p) => Some(pdbs(client, p).await),
            None => None,
        }
    };
    let (nodes, pods, rs, deploy, sts, ds, jobs, rcs, pvcs, pvs, pdb_list) = futures::join!(
        typed::<Node>(client),
        typed::<Pod>(client),
        typed::<ReplicaSet>(client),
        typed::<Deployment>(client),
        typed::<StatefulSet>(client),
        typed::<DaemonSet>(client),
        typed::<Job>(client),
        typed::<ReplicationController>(client),
        typed::<PersistentVolumeClaim>(client),
        typed::<PersistentVolume>(client),
        pdb_list,
    );
    Ok(KubeFacts {
        api_servers: vec![api_server],
        nodes: sink.take(nodes, convert::node),
        pods: sink.take(pods, convert::pod),
        replica_sets: sink.take(rs, convert::replica_set),
        deployments: sink.take(deploy, convert::deployment),
        stateful_sets: sink.take(sts, convert::stateful_set),
        daemon_sets: sink.take(ds, convert::daemon_set),
        jobs: sink.take(jobs, convert::job),
        replication_controllers: sink.take(rcs, convert::replication_controller),
        pvcs: sink.take(pvcs, convert::pvc),
        pvs: sink.take(pvs, convert::pv),
        pdbs: pdb_list.map(|l| sink.take(l, convert::pdb)).unwrap_or_default(),
        api_versions: sink.api_versions,
        list_errors: sink.list_errors,
        ..Default::default()
    })
}
