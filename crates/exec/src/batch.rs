//! Online worker batches at run time (docs/checks.md, "Worker batches"): the batch's planned steps, then its nodes.
//! - `batch/<first>/recheck`: the budgets and controllers re-read live; when they no longer permit draining the
//!   batch whole it is split into parts that they do ([`kismatic_core::batching::split_live`]), run one after
//!   another — never forced. The split is journaled (`batch_split`) so a resumed run follows it exactly.
//! - `batch/<first>/prefer-no-schedule`: the next batch's nodes get the drain-soon `PreferNoSchedule` taint, so
//!   the pods this batch evicts prefer nodes that are not about to be drained too. Each of those nodes removes it
//!   at its `untaint` step, just before its uncordon; the clean-up of an aborted run removes what is left.
//! - Each part: every node cordoned first, then drained and upgraded concurrently.
//! - Quarantine (`--on-drain-timeout skip`): a node whose drain is still refused at `--drain-timeout` is
//!   uncordoned (its capacity stays usable for the pods the other drains move, and nothing of it was changed yet:
//!   the drain comes before any install) and untainted, left at its old version and journaled `left_out` with the
//!   pod and budget that refused; the run goes on, skips the on-cluster services (like a partial upgrade) and ends
//!   unfinished (exit 1). Rerunning the same command redoes that node's cordon and drain.

use super::*;
use kismatic_core::batching;
use kismatic_core::planner::{Batch, BatchAction, DRAIN_SOON_TAINT, Phase};

/// `--on-drain-timeout`: what a drain still refused at `--drain-timeout` does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDrainTimeout {
    /// The run stops there (the node is uncordoned on the way out); the rerun resumes at its drain.
    #[default]
    Stop,
    /// The node is uncordoned and left at its old version; the run goes on and ends unfinished.
    Skip,
}

impl std::str::FromStr for OnDrainTimeout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "stop" => Ok(OnDrainTimeout::Stop),
            "skip" => Ok(OnDrainTimeout::Skip),
            other => Err(format!("{other:?}: expected stop or skip")),
        }
    }
}

/// The batches' run-time state: what the journal says and what this run did.
#[derive(Debug, Default)]
pub(super) struct BatchState {
    /// Kubernetes Node names carrying the drain-soon taint.
    tainted: Mutex<BTreeSet<String>>,
    /// Plan host → why it was left out.
    left_out: Mutex<BTreeMap<String, String>>,
    /// Batch id → its parts (journaled splits, and this run's).
    splits: Mutex<BTreeMap<String, Vec<Vec<String>>>>,
}

impl BatchState {
    pub(super) fn from_journal(state: &kismatic_journal::JournalState) -> Self {
        BatchState {
            tainted: Mutex::new(state.tainted.clone()),
            // A rerun retries the nodes left out: they are not left out until their drain times out again.
            left_out: Mutex::new(BTreeMap::new()),
            splits: Mutex::new(state.splits.clone()),
        }
    }
}

/// The end of a run that left nodes out: the error it ends with, or `None` when it left none out.
fn left_out_error(left: &BTreeMap<String, String>) -> Option<ExecError> {
    if left.is_empty() {
        return None;
    }
    let list: Vec<String> = left.iter().map(|(h, why)| format!("{h} ({why})")).collect();
    Some(ExecError::Step(format!(
        "{} node(s) left out at their old version, their drain still refused at --drain-timeout (uncordoned, \
         --on-drain-timeout skip); the on-cluster services were not upgraded: {}",
        left.len(),
        list.join("; ")
    )))
}

/// A drain that timed out (a budget still refusing, or evicted pods not gone): what `skip` quarantines.
fn is_drain_timeout(np: &NodePlan, e: &ExecError) -> bool {
    let ExecError::Failed { step, error } = e else { return false };
    let drain = np.steps.iter().any(|s| s.id == *step && matches!(s.action, Action::Drain));
    drain && matches!(**error, StepError::Kube(kismatic_kube::KubeError::Timeout(_)))
}

impl<N: NodeOps, C: ClusterOps> Ctx<'_, N, C> {
    /// Whether `batch` runs here rather than as a plain batch: it has planned batch steps, or drain timeouts
    /// are quarantined.
    pub(super) fn runs_as_online_batch(&self, phase: &Phase, batch: &Batch) -> bool {
        phase.kind == PhaseKind::Worker
            && (!batch.steps.is_empty() || self.cfg.on_drain_timeout == OnDrainTimeout::Skip)
    }

    /// Nodes left out so far, for the end of the run (and the services, which a run that left nodes out skips).
    pub(super) fn left_out(&self) -> BTreeMap<String, String> {
        self.batches.left_out.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub(super) fn left_out_error(&self) -> Option<ExecError> {
        left_out_error(&self.left_out())
    }

    /// One online worker batch: its re-check, the next batch's taint, then its parts one after another.
    pub(super) async fn online_batch(
        &self,
        phase: &Phase,
        batch: &Batch,
        staged: &StagingBoard,
        nodes: &mut Vec<(String, Duration, String)>,
    ) -> Result<(), ExecError> {
        for np in &batch.nodes {
            self.staged(staged, &np.host).await?;
        }
        let mut parts: Vec<Vec<String>> = vec![batch.nodes.iter().map(|n| n.host.clone()).collect()];
        for bs in &batch.steps {
            match &bs.action {
                BatchAction::Recheck => parts = self.recheck(batch, &bs.id).await?,
                BatchAction::PreferNoSchedule { nodes } => self.taint_next(&bs.id, nodes).await?,
            }
        }
        for part in parts {
            let part: Vec<&NodePlan> = part.iter().filter_map(|h| batch.nodes.iter().find(|n| n.host == *h)).collect();
            self.part(phase, &part, nodes).await?;
        }
        Ok(())
    }

    /// The live re-check: the parts the batch runs as (itself when the live state permits it whole). A split
    /// journaled by an earlier run is followed as it is.
    async fn recheck(&self, batch: &Batch, id: &str) -> Result<Vec<Vec<String>>, ExecError> {
        let whole: Vec<String> = batch.nodes.iter().map(|n| n.host.clone()).collect();
        // A resumed run re-plans from the cluster's state, so its batch of this id may hold other nodes: the
        // journaled split is followed only when it is a split of this very batch.
        let draining: BTreeSet<&str> = batch.nodes.iter().filter(|n| n.drain).map(|n| n.host.as_str()).collect();
        let split_of_this_batch = || {
            let parts = self.batches.splits.lock().ok().and_then(|s| s.get(&batch.id).cloned())?;
            split_of(parts, &draining, &whole)
        };
        if let Some(parts) = split_of_this_batch() {
            return Ok(parts);
        }
        let first = whole.first().map(String::as_str);
        self.step("worker", first, id, "re-check the live budgets", async |w: &mut Waited| {
            let Some(live) = w.on(WaitKind::Health, self.cluster.live_facts()).await? else {
                return Ok("live state not known: the batch runs as planned".into());
            };
            // The facts name Nodes as Kubernetes spells them.
            let draining: Vec<&str> = batch.nodes.iter().filter(|n| n.drain).map(|n| self.kube_name(&n.host)).collect();
            let (parts, why) = batching::split_live(&live, &draining);
            if parts.len() <= 1 {
                return Ok("the live state permits the batch".into());
            }
            let to_host = |name: &String| {
                batch.nodes.iter().find(|n| self.kube_name(&n.host) == name).map_or(name.clone(), |n| n.host.clone())
            };
            let parts: Vec<Vec<String>> = parts.iter().map(|p| p.iter().map(to_host).collect()).collect();
            let reason = why.map(|b| b.describe()).unwrap_or_else(|| "the live state".into());
            self.record(Event::BatchSplit { batch: batch.id.clone(), parts: parts.clone(), reason: reason.clone() })?;
            self.batches.splits.lock().map(|mut s| s.insert(batch.id.clone(), parts.clone())).ok();
            let shown: Vec<String> = parts.iter().map(|p| p.join("+")).collect();
            Ok(format!("split into {} parts ({}): {reason}", parts.len(), shown.join(", ")))
        })
        .await?;
        Ok(split_of_this_batch().unwrap_or_else(|| vec![whole.clone()]))
    }

    /// The drain-soon taint on the next batch's nodes.
    async fn taint_next(&self, id: &str, hosts: &[String]) -> Result<(), ExecError> {
        let label = format!("taint the next batch {DRAIN_SOON_TAINT}:PreferNoSchedule");
        self.step("worker", hosts.first().map(String::as_str), id, &label, async |_: &mut Waited| {
            for h in hosts {
                let name = self.kube_name(h);
                self.cluster.set_taint(name, DRAIN_SOON_TAINT, Some("PreferNoSchedule")).await?;
                self.batches.tainted.lock().map(|mut t| t.insert(name.to_string())).ok();
                self.record(Event::Tainted { node: name.to_string() })?;
            }
            Ok(hosts.join(", "))
        })
        .await
    }

    /// A node's `untaint` step (just before its uncordon).
    pub(super) async fn untaint_step(&self, host: &str, id: &str) -> Result<(), ExecError> {
        let label = format!("untaint {DRAIN_SOON_TAINT}");
        self.step("worker", Some(host), id, &label, async |_: &mut Waited| {
            self.untaint(self.kube_name(host)).await?;
            Ok(String::new())
        })
        .await
    }

    async fn untaint(&self, name: &str) -> Result<(), StepError> {
        self.cluster.set_taint(name, DRAIN_SOON_TAINT, None).await?;
        self.batches.tainted.lock().map(|mut t| t.remove(name)).ok();
        self.record(Event::Untainted { node: name.to_string() })?;
        Ok(())
    }

    /// The clean-up's part: every node still carrying the run's taint is untainted; a sentence for the message.
    pub(super) async fn untaint_all(&self) -> String {
        let nodes: Vec<String> = self.batches.tainted.lock().map(|t| t.iter().cloned().collect()).unwrap_or_default();
        let mut failed = Vec::new();
        for n in &nodes {
            if let Err(e) = self.untaint(n).await {
                failed.push(format!("{n} ({e})"));
            }
        }
        if failed.is_empty() {
            return String::new();
        }
        format!(
            "Could NOT remove the {DRAIN_SOON_TAINT} taint from {}: run `kubectl taint nodes NODE {DRAIN_SOON_TAINT}-` \
             for them.\n",
            failed.join(", ")
        )
    }

    /// One part of a batch: every node cordoned first, then drained and upgraded concurrently; with
    /// `--on-drain-timeout skip`, a node whose drain timed out is quarantined and the part goes on.
    async fn part(
        &self,
        phase: &Phase,
        part: &[&NodePlan],
        nodes: &mut Vec<(String, Duration, String)>,
    ) -> Result<(), ExecError> {
        let started = Instant::now();
        if part.len() > 1 {
            for np in part {
                for step in np.steps.iter().filter(|s| matches!(s.action, Action::Cordon)) {
                    self.cordon(phase.kind.as_str(), &np.host, &step.id).await?;
                    self.cordoned_ahead.lock().map(|mut c| c.insert(step.id.clone())).ok();
                }
            }
        }
        let results = futures::future::join_all(part.iter().map(|np| self.upgrade_node(phase.kind, np))).await;
        let mut first_err = None;
        for (np, r) in part.iter().zip(results) {
            let outcome = match r {
                Ok(()) => "upgraded".to_string(),
                Err(e) if self.cfg.on_drain_timeout == OnDrainTimeout::Skip && is_drain_timeout(np, &e) => {
                    self.quarantine(np, &e).await?
                }
                Err(e) => {
                    let text = format!("failed: {e}");
                    first_err.get_or_insert(e);
                    text
                }
            };
            nodes.push((np.host.clone(), started.elapsed(), outcome));
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Leaves the node out: uncordoned, untainted, journaled with why. Returns its outcome for the summary.
    async fn quarantine(&self, np: &NodePlan, e: &ExecError) -> Result<String, ExecError> {
        let ExecError::Failed { error, .. } = e else { return Err(ExecError::Step(e.to_string())) };
        let reason = error.to_string();
        let name = self.kube_name(&np.host);
        // Untainted before the uncordon, as a node's own untaint step is: the uncordon makes the node lifecycle
        // controller drop its `unschedulable` taint with an unguarded patch of the whole taint list computed from
        // its cached Node, which put the drain-soon taint back when removed 18 ms after the uncordon (seen in CI).
        if self.batches.tainted.lock().map(|t| t.contains(name)).unwrap_or(false) {
            self.untaint(name)
                .await
                .map_err(|error| ExecError::Failed { step: np.id.clone(), error: Box::new(error) })?;
        }
        self.cluster
            .uncordon(name)
            .await
            .map_err(|error| ExecError::Failed { step: np.id.clone(), error: Box::new(error) })?;
        self.cordoned.lock().map(|mut c| c.remove(name)).ok();
        self.record(Event::Uncordoned { node: name.to_string() })?;
        self.record(Event::LeftOut { node: np.host.clone(), reason: reason.clone() })?;
        self.batches.left_out.lock().map(|mut l| l.insert(np.host.clone(), reason.clone())).ok();
        self.line(&format!(
            "worker   {:<12} left out at its old version (uncordoned; --on-drain-timeout skip): {reason}",
            np.host
        ));
        Ok(format!("left out: {reason}"))
    }
}

/// A journaled split, when it splits exactly the batch's draining hosts: with the batch's other hosts added.
fn split_of(parts: Vec<Vec<String>>, draining: &BTreeSet<&str>, whole: &[String]) -> Option<Vec<Vec<String>>> {
    let hosts: BTreeSet<&str> = parts.iter().flatten().map(String::as_str).collect();
    if hosts != *draining {
        return None;
    }
    Some(complete(parts, whole))
}

/// A split's parts with the batch's other hosts (those that drain nothing) added to the first part, so that every
/// host of the batch runs exactly once.
fn complete(mut parts: Vec<Vec<String>>, whole: &[String]) -> Vec<Vec<String>> {
    let missing: Vec<String> = whole.iter().filter(|h| !parts.iter().flatten().any(|p| p == *h)).cloned().collect();
    match parts.first_mut() {
        Some(first) => first.extend(missing),
        None => parts.push(missing),
    }
    parts.retain(|p| !p.is_empty());
    parts
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod batch_tests;
