//! Gathering every fact the analysis needs, concurrently: nodes over SSH (one round trip each), the Kubernetes API
//! (paginated cluster-wide lists), and each etcd cluster through `etcdctl` on one of its members.

use crate::etcd;
use kismatic_core::facts::{ApiServerFacts, EtcdClusterFacts, Facts, KubeFacts, ListError};
use kismatic_core::gates::ETCD_CLUSTERS;
use kismatic_fleet::{Fleet, Target};
use kismatic_plan::{Inventory, Role};
use kismatic_release::Release;
use std::collections::BTreeMap;
use std::path::Path;

/// Facts plus what could not be read (shown to the operator; the checks see the gaps as missing facts).
pub struct Gathered {
    pub facts: Facts,
    pub warnings: Vec<String>,
}

/// `apiserver_port` is where each master's own API server listens (asked directly, not through the load balancer,
/// for its version and deprecated-API metric).
pub async fn gather(
    fleet: &Fleet,
    inventory: &Inventory,
    release: &Release,
    kubeconfig: Option<&Path>,
    apiserver_port: u16,
) -> Gathered {
    let (nodes, kube, etcd) = tokio::join!(
        kismatic_ops::probe_nodes(fleet, inventory, Some(release)),
        kube_facts(kubeconfig, inventory, apiserver_port),
        etcd_facts(fleet, inventory, release)
    );
    let mut warnings = Vec::new();
    let kube = match kube {
        Ok(k) => {
            for e in k.iter().flat_map(|k| &k.list_errors) {
                warnings.push(format!("Kubernetes list {}: {}", e.list, e.error));
            }
            k
        }
        Err(e) => {
            warnings.push(e.to_string());
            None
        }
    };
    for c in &etcd {
        if let Some(e) = &c.error {
            warnings.push(format!("{}: {e}", c.cluster));
        }
    }
    Gathered { facts: Facts::new(inventory.clone(), nodes, kube, etcd, crate::time::rfc3339_now()), warnings }
}

async fn kube_facts(
    kubeconfig: Option<&Path>,
    inventory: &Inventory,
    apiserver_port: u16,
) -> Result<Option<KubeFacts>, kismatic_kube::KubeError> {
    let Some(path) = kubeconfig else { return Ok(None) };
    if !path.exists() {
        return Err(kismatic_kube::KubeError::Kubeconfig {
            path: path.to_path_buf(),
            error: "does not exist: the cluster's workloads cannot be checked".into(),
        });
    }
    let client = kismatic_kube::connect(path).await?;
    let mut kube = kismatic_kube::gather(&client, "kubeconfig").await?;
    removed_api_facts(&mut kube, &client, path, inventory, apiserver_port).await;
    Ok(Some(kube))
}

/// What the `removed-api` gate reads: each master's own API server (its version and its deprecated-API metric,
/// whose counters start with that server) and the stored objects of every kind whose API version a later minor
/// removes.
async fn removed_api_facts(
    kube: &mut KubeFacts,
    client: &kube::Client,
    kubeconfig: &Path,
    inventory: &Inventory,
    apiserver_port: u16,
) {
    let masters: Vec<&kismatic_plan::Node> = inventory.nodes_with_role(Role::Master).collect();
    let servers = futures::future::join_all(masters.iter().map(|m| async move {
        let mut f = ApiServerFacts { endpoint: m.host.clone(), ..Default::default() };
        let url = format!("https://{}:{apiserver_port}", m.internal_ip);
        match kismatic_kube::connect_to(kubeconfig, &url).await {
            Ok(c) => {
                match c.apiserver_version().await {
                    Ok(v) => f.version = Some(v.git_version),
                    Err(e) => f.error = Some(format!("GET {url}/version: {e}")),
                }
                match kismatic_kube::usage::deprecated_requests(&c).await {
                    Ok(r) => f.deprecated_api_requests = Some(r),
                    Err(e) => f.metrics_error = Some(format!("{url}: {e}")),
                }
            }
            Err(e) => {
                f.error = Some(e.to_string());
                f.metrics_error = Some(e.to_string());
            }
        }
        f
    }))
    .await;
    kube.api_servers.extend(servers);
    let floor = kube
        .api_servers
        .iter()
        .filter_map(|a| a.version.as_deref().and_then(kismatic_core::version::parse))
        .min_by(|a, b| a.cmp_precedence(b));
    // Every removal after the cluster's minor, whatever this release's target: the facts then answer for any
    // later release (`--facts` analysis of another one).
    let Some(from) = floor else { return };
    let later: Vec<&kismatic_core::removed_api::RemovedApi> =
        kismatic_core::removed_api::crossed(from.minor, u64::MAX).collect();
    if later.is_empty() {
        return;
    }
    match kismatic_kube::served::discover(client).await {
        Ok(served) => {
            let (uses, errors) = kismatic_kube::usage::object_uses(client, &served, &later).await;
            kube.api_object_uses = uses;
            kube.object_use_errors = errors;
        }
        Err(e) => {
            kube.object_use_errors = vec![ListError { list: "API discovery (GET /apis)".into(), error: e.to_string() }];
        }
    }
}

/// Asks each etcd cluster of the release through the first etcd node that answers.
async fn etcd_facts(fleet: &Fleet, inventory: &Inventory, release: &Release) -> Vec<EtcdClusterFacts> {
    let hosts: BTreeMap<String, String> =
        inventory.nodes_with_role(Role::Etcd).map(|n| (n.host.clone(), n.ip.clone())).collect();
    let mut out = Vec::new();
    for cluster in ETCD_CLUSTERS.iter().filter(|c| release.component(c).is_some()) {
        let mut last_error = String::from("no etcd node in the plan");
        let mut got = None;
        for n in inventory.nodes_with_role(Role::Etcd) {
            let session = match fleet.connect(&Target::new(&n.host, &n.ip)).await {
                Ok(s) => s,
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            };
            let r = match etcd::access(&session, cluster).await {
                Ok(access) => etcd::cluster_facts(&session, &access, &hosts).await,
                Err(e) => Err(e),
            };
            session.close().await;
            match r {
                Ok(f) => {
                    got = Some(f);
                    break;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        out.push(got.unwrap_or_else(|| EtcdClusterFacts {
            cluster: cluster.to_string(),
            members: Vec::new(),
            leader: None,
            error: Some(last_error),
        }));
    }
    out
}
