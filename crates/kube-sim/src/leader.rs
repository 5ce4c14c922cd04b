//! Leader election through a coordination.k8s.io/v1 Lease in kube-system, as client-go does: the holder renews
//! `renewTime`; others take over once they have seen the same record unchanged for `leaseDurationSeconds`
//! (measured on their own clock, so clock skew between hosts does not matter).

use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::client::Kube;
use crate::config::LeaderConfig;
use crate::meta::{self, res};

pub struct Leader {
    kube: Kube,
    name: String,
    pub identity: String,
    duration: Duration,
    observed: Option<(String, Instant)>,
    leading: bool,
}

impl Leader {
    pub fn new(kube: Kube, name: &str, cfg: &LeaderConfig) -> Leader {
        let identity =
            cfg.identity.clone().unwrap_or_else(|| format!("{}_{}", crate::config::hostname(), uuid::Uuid::new_v4()));
        Leader {
            kube,
            name: name.to_string(),
            identity,
            duration: Duration::from_millis(cfg.lease_duration_ms),
            observed: None,
            leading: false,
        }
    }

    /// Try to acquire or renew; returns whether this process leads now.
    pub async fn tick(&mut self) -> bool {
        let was = self.leading;
        self.leading = self.try_tick().await.unwrap_or_else(|e| {
            tracing::warn!(lease = %self.name, "leader election: {e}");
            false
        });
        if self.leading != was {
            tracing::info!(lease = %self.name, identity = %self.identity, leading = self.leading, "leadership changed");
        }
        self.leading
    }

    async fn try_tick(&mut self) -> Result<bool, crate::client::KubeError> {
        let leases = res("leases");
        let secs = self.duration.as_secs().max(1);
        let spec = |transitions: i64, acquire: Value| {
            json!({"holderIdentity": self.identity, "leaseDurationSeconds": secs, "acquireTime": acquire,
                "renewTime": meta::now_micro(), "leaseTransitions": transitions})
        };
        let Some(cur) = self.kube.get(leases, Some("kube-system"), &self.name).await? else {
            let obj = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": "kube-system"}, "spec": spec(0, json!(meta::now_micro()))});
            return match self.kube.create(leases, Some("kube-system"), &obj).await {
                Ok(_) => Ok(true),
                Err(e) if e.code() == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let holder = meta::str_at(&cur, "/spec/holderIdentity").unwrap_or("").to_string();
        let record = format!("{holder}|{}", meta::str_at(&cur, "/spec/renewTime").unwrap_or(""));
        let now = Instant::now();
        let changed = self.observed.as_ref().is_none_or(|(r, _)| *r != record);
        if changed {
            self.observed = Some((record, now));
        }
        let seen_at = self.observed.as_ref().map(|(_, t)| *t).unwrap_or(now);
        let mine = holder == self.identity;
        let expired = holder.is_empty() || now.duration_since(seen_at) > self.duration;
        if !mine && !expired {
            return Ok(false);
        }
        let transitions = meta::i64_at(&cur, "/spec/leaseTransitions").unwrap_or(0);
        let mut new = cur.clone();
        new["spec"] = if mine {
            spec(transitions, cur.pointer("/spec/acquireTime").cloned().unwrap_or(Value::Null))
        } else {
            spec(transitions + 1, json!(meta::now_micro()))
        };
        match self.kube.replace(leases, &new).await {
            Ok(_) => Ok(true),
            Err(e) if e.code() == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }
}
