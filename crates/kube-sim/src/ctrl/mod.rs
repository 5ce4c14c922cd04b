//! The simulated controller-manager (leader-elected). Each tick takes a consistent snapshot through the API and
//! runs every controller over it; writes are visible to the next tick (etcd reads are linearizable), which stands
//! in for client-go's informer caches and expectations.

mod misc;
mod workloads;

use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::client::{Kube, KubeError};
use crate::config::ControllerManagerConfig;
use crate::leader::Leader;
use crate::meta::{self, res};

pub struct World {
    pub nodes: Vec<Value>,
    pub pods: Vec<Value>,
    pub rs: Vec<Value>,
    pub deploys: Vec<Value>,
    pub rcs: Vec<Value>,
    pub sts: Vec<Value>,
    pub ds: Vec<Value>,
    pub jobs: Vec<Value>,
    pub pdbs: Vec<Value>,
    pub namespaces: Vec<Value>,
    pub pvcs: Vec<Value>,
    pub pvs: Vec<Value>,
}

impl World {
    async fn load(kube: &Kube) -> Result<World, KubeError> {
        let l = |n: &'static str| kube.list(res(n), None);
        let (nodes, pods, rs, deploys, rcs, sts, ds) = tokio::try_join!(
            l("nodes"),
            l("pods"),
            l("replicasets"),
            l("deployments"),
            l("replicationcontrollers"),
            l("statefulsets"),
            l("daemonsets")
        )?;
        let (jobs, pdbs, namespaces, pvcs, pvs) = tokio::try_join!(
            l("jobs"),
            l("poddisruptionbudgets"),
            l("namespaces"),
            l("persistentvolumeclaims"),
            l("persistentvolumes")
        )?;
        Ok(World { nodes, pods, rs, deploys, rcs, sts, ds, jobs, pdbs, namespaces, pvcs, pvs })
    }

    /// Pods whose controller is `owner`.
    pub fn owned_pods(&self, owner: &Value) -> Vec<&Value> {
        let u = meta::uid(owner);
        self.pods.iter().filter(|p| meta::controller_uid(p) == Some(u)).collect()
    }
}

pub struct Ctx {
    pub kube: Kube,
    pub cfg: ControllerManagerConfig,
}

pub async fn run(cfg: ControllerManagerConfig) -> anyhow::Result<()> {
    let kube = Kube::new(&cfg.api)?;
    crate::health::spawn(cfg.healthz_address, "controller-manager");
    let mut leader = Leader::new(kube.clone(), "kube-controller-manager", &cfg.leader_election);
    tracing::info!(version = crate::version::current(), identity = %leader.identity, "kube-sim controller-manager starting");
    let ctx = Ctx { kube, cfg: cfg.clone() };
    let mut last_elect = Instant::now() - Duration::from_secs(3600);
    let mut leading = false;
    let mut tick: u64 = 0;
    // Workload controllers run when a watched kind changed, when the nodes' scheduling-relevant state changed, or
    // every RESYNC; node lifecycle (a time-based check) looks at nodes and leases every sync interval.
    let trigger = std::sync::Arc::new(crate::client::Trigger::default());
    for r in [
        "pods",
        "replicasets",
        "deployments",
        "replicationcontrollers",
        "statefulsets",
        "daemonsets",
        "jobs",
        "poddisruptionbudgets",
        "persistentvolumeclaims",
        "persistentvolumes",
        "namespaces",
    ] {
        ctx.kube.watch_trigger(res(r), Vec::new(), trigger.clone());
    }
    let mut last_full = Instant::now() - Duration::from_secs(3600);
    let mut node_print = String::new();
    let mut last_nodes = Instant::now() - Duration::from_secs(3600);
    loop {
        if last_elect.elapsed() >= Duration::from_millis(cfg.leader_election.retry_period_ms) {
            leading = leader.tick().await;
            last_elect = Instant::now();
        }
        if leading {
            let mut due = trigger.take() || last_full.elapsed() >= Duration::from_secs(RESYNC_SECS);
            if last_nodes.elapsed() >= Duration::from_millis(cfg.node_monitor_period_ms) {
                last_nodes = Instant::now();
                let lists = tokio::try_join!(
                    ctx.kube.list(res("nodes"), None),
                    ctx.kube.list(res("leases"), Some("kube-node-lease"))
                );
                match lists {
                    Ok((nodes, leases)) => {
                        if let Err(e) = misc::node_lifecycle(&ctx, &nodes, &leases).await {
                            tracing::warn!(controller = "node-lifecycle", "{e}");
                        }
                        let print = node_fingerprint(&nodes);
                        due |= print != node_print;
                        node_print = print;
                    }
                    Err(e) => tracing::warn!("listing nodes: {e}"),
                }
            }
            if due {
                last_full = Instant::now();
                match World::load(&ctx.kube).await {
                    Ok(w) => {
                        reconcile(&ctx, &w, tick).await;
                        tick += 1;
                    }
                    Err(e) => {
                        tracing::warn!("loading cluster state: {e}");
                        trigger.fire();
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(cfg.sync_interval_ms)).await;
    }
}

const RESYNC_SECS: u64 = 10;

/// What of the nodes matters to controllers (DaemonSets, PDB health through pod readiness is watched anyway).
fn node_fingerprint(nodes: &[Value]) -> String {
    let mut parts: Vec<String> = nodes
        .iter()
        .map(|n| {
            format!(
                "{}|{:?}|{}|{}|{}",
                meta::name(n),
                meta::labels(n),
                n.pointer("/spec/taints").unwrap_or(&Value::Null),
                n.pointer("/spec/unschedulable").unwrap_or(&Value::Null),
                meta::node_ready(n)
            )
        })
        .collect();
    parts.sort();
    parts.join(";")
}

async fn reconcile(ctx: &Ctx, w: &World, tick: u64) {
    macro_rules! run {
        ($name:expr, $f:expr) => {
            if let Err(e) = $f.await {
                tracing::warn!(controller = $name, "{e}");
            }
        };
    }
    run!("deployment", workloads::deployments(ctx, w));
    run!("replicaset", workloads::replicasets(ctx, w, "replicasets"));
    run!("replicationcontroller", workloads::replicasets(ctx, w, "replicationcontrollers"));
    run!("statefulset", workloads::statefulsets(ctx, w));
    run!("daemonset", workloads::daemonsets(ctx, w));
    run!("job", workloads::jobs(ctx, w));
    run!("disruption", misc::disruption(ctx, w));
    run!("persistentvolume-binder", misc::pv_binder(ctx, w));
    run!("namespace", misc::namespaces(ctx, w));
    // The garbage collector lists every kind; every 3rd tick keeps an idle cluster cheap.
    if tick.is_multiple_of(3) {
        run!("garbage-collector", misc::garbage_collect(ctx, w));
    }
}

/// Write `status` through the status subresource if it differs from the object's.
pub async fn put_status(kube: &Kube, r: &meta::Resource, obj: &Value, status: Value) -> Result<(), KubeError> {
    let mut merged = obj.get("status").cloned().unwrap_or(json!({}));
    if let (Some(m), Some(s)) = (merged.as_object_mut(), status.as_object()) {
        for (k, v) in s {
            m.insert(k.clone(), v.clone());
        }
    }
    if obj.get("status") == Some(&merged) {
        return Ok(());
    }
    let mut o = obj.clone();
    o["status"] = merged;
    match kube.replace_status(r, &o).await {
        Err(e) if e.code() == 409 => Ok(()),
        other => other.map(|_| ()),
    }
}
