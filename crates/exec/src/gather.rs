//! Gathering every fact the analysis needs, concurrently: nodes over SSH (one round trip each), the Kubernetes API
//! (paginated cluster-wide lists), and each etcd cluster through `etcdctl` on one of its members.

use crate::etcd;
use crate::run::ETCD_CLUSTERS;
use kismatic_core::facts::{EtcdClusterFacts, Facts, KubeFacts};
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

pub async fn gather(fleet: &Fleet, inventory: &Inventory, release: &Release, kubeconfig: Option<&Path>) -> Gathered {
    let (nodes, kube, etcd) = tokio::join!(
        kismatic_ops::probe_nodes(fleet, inventory, Some(release)),
        kube_facts(kubeconfig),
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
            warnings.push(e);
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

async fn kube_facts(kubeconfig: Option<&Path>) -> Result<Option<KubeFacts>, String> {
    let Some(path) = kubeconfig else { return Ok(None) };
    if !path.exists() {
        return Err(format!("kubeconfig {} does not exist: the cluster's workloads cannot be checked", path.display()));
    }
    let client = kismatic_kube::connect(path).await.map_err(|e| e.to_string())?;
    kismatic_kube::gather(&client, "kubeconfig").await.map(Some).map_err(|e| e.to_string())
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
