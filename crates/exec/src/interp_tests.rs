//! The interpreter driven by fakes of both I/O interfaces: a real plan (core's planner on a synthetic cluster), a
//! real journal in a temporary folder, no root, SSH or cluster. Each test injects a failure or an interrupt at one
//! operation and checks what the run did, what the journal says, and what a rerun does.

use super::*;
use crate::etcd::SnapshotInfo;
use crate::ops::{ClusterOps, Installed, NodeOps};
use kismatic_core::checks::{CheckOptions, Mode};
use kismatic_core::facts::{EtcdClusterFacts, EtcdMember};
use kismatic_core::planner::PlanOptions;
use kismatic_fleet::RoundTrips;
use kismatic_kube::apply::Applied;
use std::path::Path;
use std::sync::Arc;

const OLD_ETCD: &str = kismatic_core::synth::OLD_ETCD;

/// What the fake does at one operation (named like `install etcd01 etcd`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Fault {
    /// Fails with a "try again" error.
    Fail,
    /// Never returns; the run gets SIGTERM.
    Hang,
    /// The drain's deadline passed with a budget still refusing (only at `drain NODE`).
    DrainTimeout,
}

/// Both fakes in one: every operation is logged by name; `faults` decide what happens at a name. Shared with the
/// batch tests (`batch_tests.rs`).
pub(super) struct Fake {
    calls: Mutex<Vec<String>>,
    faults: BTreeMap<String, Fault>,
    pub(super) interrupt: Arc<tokio::sync::Notify>,
    /// What the live re-check of a worker batch reads (`None`: not known).
    live: Option<kismatic_core::facts::KubeFacts>,
    /// etcd member versions per host (what `etcd_cluster` reports).
    etcd: Mutex<BTreeMap<String, String>>,
    /// etcd members that never come back healthy at the target.
    etcd_stuck: BTreeSet<String>,
    /// etcd members unhealthy from the start.
    etcd_down: BTreeSet<String>,
}

impl Fake {
    fn new(faults: &[(&str, Fault)]) -> Self {
        Self::with_live(faults, None)
    }

    pub(super) fn with_live(faults: &[(&str, Fault)], live: Option<kismatic_core::facts::KubeFacts>) -> Self {
        Fake {
            calls: Mutex::new(Vec::new()),
            faults: faults.iter().map(|(k, f)| (k.to_string(), *f)).collect(),
            interrupt: Arc::new(tokio::sync::Notify::new()),
            live,
            etcd: Mutex::new(["etcd00", "etcd01", "etcd02"].map(|h| (h.to_string(), OLD_ETCD.to_string())).into()),
            etcd_stuck: BTreeSet::new(),
            etcd_down: BTreeSet::new(),
        }
    }

    async fn call(&self, name: String) -> Result<(), StepError> {
        self.calls.lock().unwrap().push(name.clone());
        match self.faults.get(&name) {
            Some(Fault::Fail) => Err(StepError::NotReady(format!("injected failure at {name}"))),
            Some(Fault::Hang) => {
                self.interrupt.notify_one();
                std::future::pending().await
            }
            Some(Fault::DrainTimeout) => Err(StepError::Kube(kismatic_kube::KubeError::Timeout(format!(
                "drain of {} timed out after 1s: evicting pod default/web-0 is refused by PodDisruptionBudget \
                 default/web (disruptions allowed 0, healthy 2/3)",
                name.trim_start_matches("drain ")
            )))),
            None => Ok(()),
        }
    }

    pub(super) fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    pub(super) fn called(&self, name: &str) -> bool {
        self.calls().iter().any(|c| c == name)
    }

    pub(super) fn pos(&self, name: &str) -> usize {
        let calls = self.calls();
        calls.iter().position(|c| c == name).unwrap_or_else(|| panic!("{name} not called: {calls:?}"))
    }
}

impl NodeOps for Fake {
    async fn connect(&self, node: &Node) -> Result<(), StepError> {
        self.call(format!("connect {}", node.host)).await
    }
    async fn stage(&self, node: &Node, _: &[&Component]) -> Result<String, StepError> {
        self.call(format!("stage {}", node.host)).await.map(|()| String::new())
    }
    async fn install(&self, node: &Node, c: &Component) -> Result<Installed, StepError> {
        self.call(format!("install {} {}", node.host, c.name)).await?;
        if c.name == "etcd" {
            self.etcd.lock().unwrap().insert(node.host.clone(), c.version.clone());
        }
        Ok(Installed { changed: true, stale: false })
    }
    async fn restart(&self, node: &Node, c: &Component) -> Result<(), StepError> {
        self.call(format!("restart {} {}", node.host, c.name)).await
    }
    async fn gate(&self, node: &Node, c: &Component, gate: Gate) -> Result<(), StepError> {
        self.call(format!("gate {} {} {gate:?}", node.host, c.name)).await
    }
    async fn rollback(&self, node: &Node, c: &Component) -> Result<String, StepError> {
        self.call(format!("rollback {} {}", node.host, c.name)).await?;
        self.etcd.lock().unwrap().insert(node.host.clone(), OLD_ETCD.to_string());
        Ok(OLD_ETCD.to_string())
    }
    async fn write_markers(&self, node: &Node, _: &str) -> Result<(), StepError> {
        self.call(format!("markers {}", node.host)).await
    }
    async fn record_service(&self, node: &Node, c: &Component) -> Result<(), StepError> {
        self.call(format!("record {} {}", node.host, c.name)).await
    }
    fn round_trips(&self) -> BTreeMap<String, RoundTrips> {
        BTreeMap::new()
    }
    async fn close(&self) {
        self.calls.lock().unwrap().push("close".into());
    }
}

impl ClusterOps for Fake {
    async fn cordon(&self, node: &str) -> Result<(), StepError> {
        self.call(format!("cordon {node}")).await
    }
    async fn uncordon(&self, node: &str) -> Result<(), StepError> {
        self.call(format!("uncordon {node}")).await
    }
    async fn drain(
        &self,
        node: &str,
        before_evicting: &dyn Fn(&BTreeSet<Workload>) -> Result<(), kismatic_kube::HookError>,
    ) -> Result<BTreeSet<Workload>, StepError> {
        let moved: BTreeSet<Workload> =
            [Workload { kind: "Deployment".into(), namespace: "default".into(), name: format!("web-{node}") }].into();
        before_evicting(&moved).map_err(|e| StepError::Kube(kismatic_kube::KubeError::Hook(e)))?;
        self.call(format!("drain {node}")).await?;
        Ok(moved)
    }
    async fn workloads_back(&self, moved: &BTreeSet<Workload>) -> Result<(), StepError> {
        let names: Vec<&str> = moved.iter().map(|w| w.name.as_str()).collect();
        self.call(format!("workloads {}", names.join(","))).await
    }
    async fn gate(&self, _: &Node, kube_name: &str, c: &Component, gate: Gate) -> Result<(), StepError> {
        // Logged with the name the API is asked for.
        self.call(format!("gate {kube_name} {} {gate:?}", c.name)).await
    }
    async fn apply(&self, c: &Component) -> Result<Vec<Applied>, StepError> {
        self.call(format!("apply {}", c.name)).await?;
        Ok(vec![Applied { kind: "Deployment".into(), namespace: Some("kube-system".into()), name: c.name.clone() }])
    }
    async fn rollout(&self, applied: &[Applied]) -> Result<(), StepError> {
        self.call(format!("rollout {}", applied.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(","))).await
    }
    async fn etcd_cluster(&self, via: &Node, cluster: &str) -> Result<EtcdClusterFacts, StepError> {
        // Polled by the member gates: logged without the caller, once per call.
        self.call(format!("etcd {cluster} via {}", via.host)).await?;
        let versions = self.etcd.lock().unwrap().clone();
        let members = versions
            .iter()
            .map(|(host, v)| EtcdMember {
                id: host.clone(),
                name: host.clone(),
                node: Some(host.clone()),
                client_urls: Vec::new(),
                healthy: Some(!(self.etcd_down.contains(host) || self.etcd_stuck.contains(host) && v != OLD_ETCD)),
                version: Some(v.clone()),
                error: None,
            })
            .collect();
        Ok(EtcdClusterFacts { cluster: cluster.into(), members, leader: Some("etcd00".into()), error: None })
    }
    async fn snapshot(&self, via: &Node, cluster: &str, run_id: &str) -> Result<(String, SnapshotInfo), StepError> {
        self.call(format!("snapshot {cluster} on {}", via.host)).await?;
        let info = SnapshotInfo { hash: 1, revision: 7, total_key: 42, total_size: 4096 };
        Ok((format!("{SNAPSHOT_DIR}/{cluster}-{run_id}.db"), info))
    }
    async fn copy_snapshot(&self, via: &Node, path: &str, dir: &Path) -> Result<PathBuf, StepError> {
        self.call(format!("copy {path} from {}", via.host)).await?;
        Ok(dir.join("copy.db"))
    }
    async fn live_facts(&self) -> Result<Option<kismatic_core::facts::KubeFacts>, StepError> {
        self.call("live facts".into()).await?;
        Ok(self.live.clone())
    }
    async fn set_taint(&self, node: &str, key: &str, add: Option<&str>) -> Result<(), StepError> {
        assert_eq!(key, kismatic_core::planner::DRAIN_SOON_TAINT);
        match add {
            Some(effect) => self.call(format!("taint {node} {effect}")).await,
            None => self.call(format!("untaint {node}")).await,
        }
    }
}

pub(super) struct Interrupt(pub(super) Arc<tokio::sync::Notify>);

impl Interrupts for Interrupt {
    async fn next(&mut self) -> String {
        self.0.notified().await;
        "SIGTERM".into()
    }
}

/// A synthetic cluster at the old release (3 etcd, 3 masters, 2 workers), its online plan and a run folder.
struct Harness {
    _dir: tempfile::TempDir,
    plan: UpgradePlan,
    inventory: Inventory,
    release: Release,
    cfg: ExecConfig,
}

fn harness() -> Harness {
    harness_with(PlanOptions { ignore_safety_checks: true, ..PlanOptions::new(Mode::Online) }, |_| {})
}

fn harness_with(opts: PlanOptions, adjust: impl FnOnce(&mut kismatic_core::facts::Facts)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut release = kismatic_core::synth::release();
    release.dir = dir.path().join("release");
    std::fs::create_dir_all(&release.dir).unwrap();
    std::fs::write(release.dir.join(kismatic_release::RELEASE_FILE), "synthetic\n").unwrap();
    let mut facts = kismatic_core::synth::generate(8, 0);
    adjust(&mut facts);
    let analysis = kismatic_core::checks::analyze(&facts, &release, &CheckOptions::new(Mode::Online)).unwrap();
    let plan = kismatic_core::planner::plan(&facts, &analysis, &release, &opts);
    assert!(!plan.is_blocked(), "{:?}", plan.status);
    let cfg = test_config(dir.path(), kube_names(&facts), Default::default());
    Harness { _dir: dir, plan, inventory: facts.inventory, release, cfg }
}

/// The executor's configuration for these tests: deadlines short enough that a fault fails within about a second,
/// no stability wait, everything under `dir`.
pub(crate) fn test_config(
    dir: &std::path::Path,
    kube_names: BTreeMap<String, String>,
    on_drain_timeout: OnDrainTimeout,
) -> ExecConfig {
    ExecConfig {
        kubeconfig: dir.join("kubeconfig"),
        runs_dir: dir.join("runs"),
        mode: "online".into(),
        partial_ok: false,
        drain_timeout: Duration::from_secs(1),
        // The etcd member gate polls every 0.5 s: a member that never comes back fails within about a second.
        node_timeout: Duration::from_millis(1200),
        workload_timeout: Duration::from_secs(1),
        stable_for: Duration::ZERO,
        restart_services: false,
        events: None,
        discard_previous: false,
        quiet: true,
        command: vec!["kismatic".into(), "upgrade".into(), "online".into()],
        snapshot_dir: None,
        kube_names,
        on_drain_timeout,
    }
}

impl Harness {
    async fn run(&self, fake: &Fake) -> Outcome {
        let runs = RunsDir::new(&self.cfg.runs_dir);
        let mut interrupts = Interrupt(fake.interrupt.clone());
        interpret(&self.plan, &self.inventory, &self.release, &self.cfg, &runs, fake, fake, &mut interrupts)
            .await
            .expect("the run ends with an outcome")
    }

    fn journal(&self) -> kismatic_journal::JournalState {
        RunsDir::new(&self.cfg.runs_dir).latest_journal().unwrap().expect("a journal").1
    }

    /// A journal step's status after the run.
    fn status(&self, step: &str) -> kismatic_journal::StepStatus {
        self.journal().steps.get(step).copied().unwrap_or(kismatic_journal::StepStatus::NotStarted)
    }
}

/// One operation of each step kind (and of each gate kind and delivery an upgrade step has) and the journal step it
/// belongs to: the table the succeeds / fails / interrupted tests below run through.
const KINDS: [(&str, &str); 19] = [
    ("stage master01", "stage/master01"),
    ("snapshot etcd on etcd00", "etcd/snapshot/etcd"),
    ("install etcd01 etcd", "etcd/etcd01/upgrade/etcd"),
    ("restart etcd01 etcd", "etcd/etcd01/upgrade/etcd"),
    ("etcd etcd via etcd01", "etcd/etcd01/upgrade/etcd"),
    ("markers etcd01", "etcd/etcd01/markers"),
    ("gate master00 kube-apiserver Running", "apiservers/master00/upgrade/kube-apiserver"),
    ("gate master00 kube-apiserver ApiServer { port: 6443 }", "apiservers/master00/upgrade/kube-apiserver"),
    ("install master00 container-runtime", "master/master00/upgrade/container-runtime"),
    ("gate master00 kube-scheduler Healthz { port: 10259 }", "master/master00/upgrade/kube-scheduler"),
    ("cordon worker00006", "worker/worker00006/cordon"),
    ("drain worker00006", "worker/worker00006/drain"),
    ("gate worker00006 kubelet NodeReady", "worker/worker00006/upgrade/kubelet"),
    ("restart worker00006 kube-proxy", "worker/worker00006/upgrade/kube-proxy"),
    ("uncordon worker00006", "worker/worker00006/uncordon"),
    ("workloads web-worker00006", "worker/worker00006/uncordon"),
    ("apply registry", "registry/registry"),
    ("rollout dns", "services/dns"),
    ("record master00 dns", "services/dns"),
];

/// How often a successful run makes the call: once, but an etcd member is read twice (the quorum check before it is
/// touched, the member gate after its restart).
fn expected_calls(call: &str) -> usize {
    if call.starts_with("etcd ") { 2 } else { 1 }
}

/// Each step kind succeeds: its operation runs (once; an etcd member's read twice), its step is journaled done and
/// the run ends with its `ended` record and nothing cordoned.
#[tokio::test]
async fn each_step_kind_succeeds_and_is_journaled_done() {
    let h = harness();
    let fake = Fake::new(&[]);
    let out = h.run(&fake).await;
    assert!(out.completed, "{}", out.message);
    for (call, step) in KINDS {
        assert_eq!(fake.calls().iter().filter(|c| **c == call).count(), expected_calls(call), "{call}");
        assert_eq!(h.status(step), kismatic_journal::StepStatus::Done, "{call}");
    }
    let j = h.journal();
    assert_eq!(j.ended, Some(true));
    assert!(j.cordoned.is_empty(), "{:?}", j.cordoned);
}

#[tokio::test]
async fn a_whole_plan_runs_every_step_once_in_order_and_cleans_up() {
    let h = harness();
    let fake = Fake::new(&[]);
    let out = h.run(&fake).await;
    assert!(out.completed, "{}", out.message);
    let j = h.journal();
    assert_eq!(j.ended, Some(true));
    assert!(h.plan.journal_steps().iter().all(|s| j.steps.get(s) == Some(&kismatic_journal::StepStatus::Done)));
    assert!(j.cordoned.is_empty());
    let calls = fake.calls();
    let pos = |c: &str| calls.iter().position(|x| x == c).unwrap_or_else(|| panic!("{c} not called: {calls:?}"));
    // The snapshot before any member; etcd members one by one, each after a quorum check; every API server before
    // the masters' other components; a worker cordoned, drained, upgraded, uncordoned, its workloads awaited.
    assert!(pos("snapshot etcd on etcd00") < pos("install etcd00 etcd"));
    assert!(pos("install etcd00 etcd") < pos("install etcd01 etcd"));
    assert!(pos("gate master02 kube-apiserver ApiServer { port: 6443 }") < pos("install master00 kubelet"));
    let w = [
        "cordon worker00006",
        "drain worker00006",
        "install worker00006 kubelet",
        "gate worker00006 kubelet Running",
        "gate worker00006 kubelet NodeReady",
        "markers worker00006",
        "uncordon worker00006",
        "workloads web-worker00006",
    ];
    assert!(w.windows(2).all(|p| pos(p[0]) < pos(p[1])), "{calls:?}");
    assert!(pos("uncordon worker00006") < pos("cordon worker00007"), "one worker at a time");
    assert!(pos("rollout dns") < pos("record master00 dns"), "services recorded once rolled out");
    for (call, _) in KINDS {
        assert_eq!(calls.iter().filter(|c| **c == call).count(), expected_calls(call), "{call}");
    }
    assert_eq!(calls.last().map(String::as_str), Some("close"));
}

/// A failure at each step kind: the run stops there with the step failed in the journal, nodes it cordoned are
/// uncordoned, and a rerun resumes at that step without redoing what finished.
#[tokio::test]
async fn a_failure_at_each_step_kind_stops_there_and_the_rerun_resumes_at_it() {
    for (call, step) in KINDS {
        let h = harness();
        let fake = Fake::new(&[(call, Fault::Fail)]);
        let out = h.run(&fake).await;
        assert!(!out.completed, "{call}");
        assert!(out.message.contains(&format!("injected failure at {call}")), "{call}: {}", out.message);
        if call.starts_with("restart etcd01") {
            // A member restarted but not back is rolled back: a human must look before the rerun.
            assert!(out.message.contains("rolled back to 3.4.23"), "{call}: {}", out.message);
            assert!(out.message.contains("Retrying alone will not help"), "{call}: {}", out.message);
        } else {
            assert!(out.message.contains("This may pass when retried"), "{call}: {}", out.message);
        }
        assert_eq!(h.status(step), kismatic_journal::StepStatus::Failed, "{call}");
        let j = h.journal();
        assert_eq!(j.ended, Some(false), "{call}");
        let cordon_failed = call.starts_with("cordon");
        if !cordon_failed && call.contains("worker00006") && call != "stage master01" {
            // Cordoned by this run: uncordoned on the way out, unless the failing call is the uncordon itself.
            let uncordons = fake.calls().iter().filter(|c| *c == "uncordon worker00006").count();
            assert!(uncordons >= 1, "{call}: {:?}", fake.calls());
        }
        if call != "uncordon worker00006" {
            assert!(j.cordoned.is_empty(), "{call}: left cordoned {:?}", j.cordoned);
        }
        let done_before: BTreeSet<String> = j.done_steps().map(str::to_string).collect();
        // The rerun: finished steps are skipped, the failed one redone, the run completes.
        let again = Fake::new(&[]);
        let out = h.run(&again).await;
        assert!(out.completed && out.resumed, "{call}: {}", out.message);
        assert!(again.called(call), "{call} redone");
        for (done_step, op) in [("stage/etcd00", "stage etcd00"), ("etcd/etcd00/upgrade/etcd", "install etcd00 etcd")] {
            if done_before.contains(done_step) {
                assert!(!again.called(op), "{call}: {done_step} finished before, not redone");
            }
        }
        assert_eq!(h.journal().ended, Some(true), "{call}");
    }
}

/// An interrupt (SIGTERM) while each step kind runs: the run ends with the step interrupted in the journal and an
/// `ended` record, cordoned nodes uncordoned, and a rerun redoes the step.
#[tokio::test]
async fn an_interrupt_at_each_step_kind_ends_the_run_cleanly_and_the_rerun_redoes_it() {
    for (call, step) in KINDS {
        let h = harness();
        let fake = Fake::new(&[(call, Fault::Hang)]);
        let out = h.run(&fake).await;
        assert!(!out.completed, "{call}");
        assert!(out.message.contains("interrupted (SIGTERM)"), "{call}: {}", out.message);
        assert_eq!(h.status(step), kismatic_journal::StepStatus::Interrupted, "{call}");
        let j = h.journal();
        assert_eq!(j.ended, Some(false), "{call}");
        if call != "uncordon worker00006" && call != "cordon worker00006" {
            assert!(j.cordoned.is_empty(), "{call}: left cordoned {:?}", j.cordoned);
        }
        assert!(fake.called("close"), "{call}: commands left on nodes are stopped");
        let again = Fake::new(&[]);
        let out = h.run(&again).await;
        assert!(out.completed, "{call}: {}", out.message);
        assert!(again.called(call), "{call} redone after the interrupt");
    }
}

/// Staging fails on one node: the run stops at the next node boundary, so no node is left half-done.
#[tokio::test]
async fn a_staging_failure_stops_the_run_at_a_node_boundary() {
    let h = harness();
    let fake = Fake::new(&[("stage worker00007", Fault::Fail)]);
    let out = h.run(&fake).await;
    assert!(!out.completed);
    assert!(
        out.message.contains("staging artifacts on worker00007 failed, so the run stops before"),
        "{}",
        out.message
    );
    let j = h.journal();
    for (_, np) in h.plan.node_plans() {
        let done = np.steps.iter().filter(|s| j.steps.get(&s.id) == Some(&kismatic_journal::StepStatus::Done)).count();
        assert!(done == 0 || done == np.steps.len(), "{} left half-done ({done}/{})", np.id, np.steps.len());
    }
    assert!(!fake.called("cordon worker00007"));
}

/// An etcd member that does not come back healthy at the target is rolled back and the run stops (a human must
/// look); the members after it are not touched.
#[tokio::test]
async fn an_etcd_member_that_does_not_come_back_is_rolled_back_and_the_run_stops() {
    let h = harness();
    let mut fake = Fake::new(&[]);
    fake.etcd_stuck.insert("etcd01".into());
    let out = h.run(&fake).await;
    assert!(!out.completed);
    assert!(out.message.contains("did not come back healthy at 3.5.1"), "{}", out.message);
    assert!(out.message.contains("rolled back to 3.4.23; the cluster is healthy"), "{}", out.message);
    assert!(out.message.contains("Retrying alone will not help"), "{}", out.message);
    assert!(out.message.contains("snapshot taken before the upgrade"), "{}", out.message);
    assert!(fake.called("rollback etcd01 etcd"));
    assert!(!fake.called("rollback etcd00 etcd"), "a healthy member is kept");
    assert!(!fake.called("install etcd02 etcd"), "no further member");
    assert_eq!(h.status("etcd/etcd01/upgrade/etcd"), kismatic_journal::StepStatus::Failed);
}

/// A node that cannot be reached at its turn is neither cordoned nor drained; the run stops naming it.
#[tokio::test]
async fn an_unreachable_node_is_not_cordoned() {
    let h = harness();
    let fake = Fake::new(&[("connect worker00006", Fault::Fail)]);
    let out = h.run(&fake).await;
    assert!(!out.completed);
    assert!(out.message.contains("worker/worker00006: injected failure at connect worker00006"), "{}", out.message);
    assert!(!fake.called("cordon worker00006"));
    assert!(fake.called("uncordon master02"), "earlier nodes finished: {:?}", fake.calls());
}

/// An unhealthy etcd cluster is not snapshotted and no member is touched.
#[tokio::test]
async fn an_unhealthy_etcd_cluster_is_neither_snapshotted_nor_upgraded() {
    let h = harness();
    let mut fake = Fake::new(&[]);
    fake.etcd_down.insert("etcd02".into());
    let out = h.run(&fake).await;
    assert!(!out.completed);
    assert!(out.message.contains("not taking a snapshot of an unhealthy cluster"), "{}", out.message);
    assert!(!fake.calls().iter().any(|c| c.starts_with("install") || c.starts_with("snapshot")));
}

/// A resumed run whose earlier abort uncordoned a node after its drain redoes the cordon and the drain before
/// upgrading it.
#[tokio::test]
async fn a_resume_after_an_abort_that_uncordoned_redoes_cordon_and_drain() {
    let h = harness();
    let fake = Fake::new(&[("install worker00006 kubelet", Fault::Fail)]);
    let out = h.run(&fake).await;
    assert!(!out.completed);
    assert!(fake.called("uncordon worker00006"), "uncordoned on abort");
    let again = Fake::new(&[]);
    let out = h.run(&again).await;
    assert!(out.completed, "{}", out.message);
    let calls = again.calls();
    let pos = |c: &str| calls.iter().position(|x| x == c).unwrap();
    assert!(pos("cordon worker00006") < pos("drain worker00006"));
    assert!(pos("drain worker00006") < pos("install worker00006 kubelet"));
}

/// A batch of workers (`--max-unavailable`): every node of it is cordoned before any is drained, and each cordon
/// is journaled once.
#[tokio::test]
async fn a_batch_is_cordoned_whole_before_any_drain() {
    let opts = PlanOptions {
        ignore_safety_checks: true,
        max_unavailable: "100%".parse().unwrap(),
        ..PlanOptions::new(Mode::Online)
    };
    let h = harness_with(opts, |facts| {
        for n in facts.kube.as_mut().unwrap().nodes.iter_mut().filter(|n| n.name.starts_with("worker")) {
            n.labels.insert(kismatic_core::batching::DEFAULT_TOPOLOGY_KEY.into(), "zone-a".into());
        }
    });
    let batch = h.plan.phases.iter().find(|p| p.kind == PhaseKind::Worker).unwrap();
    assert_eq!(batch.batches.len(), 1, "{:?}", batch.batches);
    let fake = Fake::new(&[]);
    let out = h.run(&fake).await;
    assert!(out.completed, "{}", out.message);
    let calls = fake.calls();
    let pos = |c: &str| calls.iter().position(|x| x == c).unwrap();
    assert!(pos("cordon worker00007") < pos("drain worker00006"), "{calls:?}");
    assert!(pos("cordon worker00006") < pos("drain worker00007"), "{calls:?}");
    assert_eq!(calls.iter().filter(|c| c.starts_with("cordon worker")).count(), 2, "each cordon once");
}

/// The plan spells a host `WORKER00006`, its Kubernetes Node is `worker00006`: the facts matched them, and cordon,
/// drain, the Node gate and uncordon ask the API for the Node's own name, while node work keeps the plan's host.
#[tokio::test]
async fn cordon_drain_and_node_gate_use_the_kubernetes_node_name() {
    let opts = PlanOptions { ignore_safety_checks: true, ..PlanOptions::new(Mode::Online) };
    let h = harness_with(opts, |facts| {
        for n in facts.inventory.nodes.iter_mut().filter(|n| n.host == "worker00006") {
            n.host = "WORKER00006".into();
        }
        for n in facts.nodes.iter_mut().filter(|n| n.host == "worker00006") {
            n.host = "WORKER00006".into();
        }
    });
    assert_eq!(h.cfg.kube_names.get("WORKER00006").map(String::as_str), Some("worker00006"));
    let fake = Fake::new(&[]);
    let out = h.run(&fake).await;
    assert!(out.completed, "{}", out.message);
    for call in [
        "cordon worker00006",
        "drain worker00006",
        "install WORKER00006 kubelet",
        "gate worker00006 kubelet NodeReady",
        "uncordon worker00006",
    ] {
        assert!(fake.called(call), "{call}: {:?}", fake.calls());
    }
    let api_calls_with_plan_spelling: Vec<String> = fake
        .calls()
        .into_iter()
        .filter(|c| c.contains("WORKER00006") && !c.starts_with("install") && !c.starts_with("restart"))
        .filter(|c| !c.starts_with("stage") && !c.starts_with("connect") && !c.starts_with("markers"))
        .filter(|c| !c.ends_with("Running"))
        .collect();
    assert!(api_calls_with_plan_spelling.is_empty(), "{api_calls_with_plan_spelling:?}");
    assert!(h.journal().cordoned.is_empty());
}

/// A run that died after a node reached its target but before its uncordon leaves it cordoned; the next run, with
/// nothing left to do, uncordons it, says so and records the run's end. An uncordon that fails is said, with the
/// command to run by hand, and the node stays in the journal's cordoned set for the next run.
#[tokio::test]
async fn a_run_with_nothing_to_do_uncordons_what_the_journal_holds_cordoned() {
    let h = harness();
    let fake = Fake::new(&[("uncordon worker00006", Fault::Fail)]);
    assert!(!h.run(&fake).await.completed);
    assert!(h.journal().cordoned.contains("worker00006"), "{:?}", h.journal().cordoned);

    let refused = close_previous_with(&h.release, &h.cfg, async |node: &str| {
        Ok(Err(kismatic_kube::KubeError::Other(format!("{node}: API says no"))))
    })
    .await
    .expect("tidied");
    assert!(refused.contains("Could NOT uncordon worker00006 (worker00006: API says no)"), "{refused}");
    assert!(refused.contains("`kubectl uncordon worker00006`"), "{refused}");
    assert!(h.journal().cordoned.contains("worker00006"), "still cordoned for the next run");

    let asked = Mutex::new(Vec::new());
    let note = close_previous_with(&h.release, &h.cfg, async |node: &str| {
        asked.lock().unwrap().push(node.to_string());
        Ok(Ok(()))
    })
    .await
    .expect("tidied");
    assert_eq!(*asked.lock().unwrap(), ["worker00006"]);
    assert!(note.starts_with("Uncordoned worker00006 (left cordoned by run "), "{note}");
    let j = h.journal();
    assert!(j.cordoned.is_empty(), "{:?}", j.cordoned);
    assert_eq!(j.ended, Some(true), "the run's end recorded");

    // Nothing cordoned and the run ended: nothing to tidy, and the uncordon is not asked for.
    let idle = close_previous_with(
        &h.release,
        &h.cfg,
        async |_: &str| -> Result<Result<(), kismatic_kube::KubeError>, ExecError> { panic!("nothing to uncordon") },
    )
    .await
    .expect("nothing to tidy");
    assert_eq!(idle, "");
}
