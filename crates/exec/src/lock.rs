//! The cluster's run lock. The local lock (`runs/kismatic.lock`) keeps two runs from one folder apart; two copies
//! of a plan (another folder, another machine) upgrading one cluster are kept apart by a lock on the cluster
//! itself: an `flock` on `/var/lib/kismatic/run.lock` on the first etcd node (the first master when there is no
//! etcd node), held by a command that runs for the whole run. The node's kernel releases it when that command ends,
//! and the command ends when its input does: when the run releases it, or when the run's process dies and its SSH
//! channel closes. So a lock of a dead run is never left behind to be removed by hand; the holder file beside it
//! only says who holds a lock that is held.

use kismatic_fleet::{Fleet, Held, Target};
use kismatic_plan::{Inventory, Role};

pub use kismatic_ops::contract::CLUSTER_LOCK;
use kismatic_ops::contract::scripts::LOCK_SCRIPT;

/// Exit status of [`LOCK_SCRIPT`](kismatic_ops::contract::scripts::LOCK_SCRIPT) when another run holds the lock.
const BUSY: i32 = 75;

/// Held for the whole run; [`release`](ClusterLock::release) at the end.
pub struct ClusterLock {
    held: Held,
}

impl ClusterLock {
    pub async fn release(self) {
        self.held.release().await;
    }
}

/// The node that carries the cluster's lock.
pub fn lock_node(inventory: &Inventory) -> Option<&kismatic_plan::Node> {
    inventory.nodes_with_role(Role::Etcd).next().or_else(|| inventory.nodes_with_role(Role::Master).next())
}

/// Takes the cluster's lock, or says who holds it.
pub async fn take(fleet: &Fleet, inventory: &Inventory, holder: &str) -> Result<Option<ClusterLock>, String> {
    let Some(node) = lock_node(inventory) else { return Ok(None) };
    take_on(fleet, &Target::new(&node.host, &node.ip), holder).await.map(Some)
}

/// Takes the cluster's lock on this node, or says who holds it.
pub async fn take_on(fleet: &Fleet, target: &Target, holder: &str) -> Result<ClusterLock, String> {
    let node = target;
    let args = ["-c", LOCK_SCRIPT.text(), "kismatic-lock", CLUSTER_LOCK, holder];
    match fleet.hold(target, "sh", &args).await {
        Ok(Ok((held, _))) => Ok(ClusterLock { held }),
        Ok(Err(out)) if out.code == Some(BUSY) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let who = text.lines().skip(1).collect::<Vec<_>>().join(" ");
            Err(format!(
                "another kismatic run holds the cluster's lock ({}:{CLUSTER_LOCK}; {}); wait for it to finish (the \
                 lock ends with that run, even if it crashes)",
                node.name,
                if who.trim().is_empty() { "holder unknown".to_string() } else { who.trim().to_string() }
            ))
        }
        Ok(Err(out)) => Err(format!(
            "{}: taking the cluster's lock {CLUSTER_LOCK} failed (exit {:?}): {}",
            node.name,
            out.code,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("taking the cluster's lock: {e}")),
    }
}
