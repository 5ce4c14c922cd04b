//! The interpreter of an [`UpgradePlan`]: for each planned step, journal its start, apply it through the two I/O
//! interfaces ([`NodeOps`], [`ClusterOps`] in [`crate::ops`]), pass its gates, journal its end. The sequence, in one
//! place ([`Ctx::walk`]): staging in the background; the etcd snapshots; node by node (etcd → masters → workers,
//! batches together) with each step; the on-cluster services. Clean-up, whatever the end: commands left running
//! on nodes are stopped and nodes this run cordoned are uncordoned.

use crate::error::StepError;
use crate::etcd;
use crate::events::{Reporter, StepEvent, WaitKind, WaitSpan};
use crate::install::InstallError;
use crate::ops::{ClusterOps, ClusterTimeouts, FleetNodes, KubeCluster, NodeOps};
use crate::poll::{self, PollError, Seen};
use kismatic_core::gates::Gate;
use kismatic_core::planner::{Action, NodePlan, PhaseKind, ServiceStep, SnapshotStep, StageStep, UpgradePlan};
use kismatic_fleet::{Fleet, NodeError};
use kismatic_journal::store::{self, JournalWriter, RunsDir, StoreError};
use kismatic_journal::{Event, Header, MovedWorkload, Record, ResumeDecision, RunIdentity};
use kismatic_kube::ops::Workload;
use kismatic_plan::{Inventory, Node, Role};
use kismatic_release::{Component, Release};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use kismatic_ops::contract::SNAPSHOT_DIR;

#[path = "batch.rs"]
mod batch;
pub use batch::OnDrainTimeout;

#[derive(Debug, Clone)]
pub struct ExecConfig {
    pub kubeconfig: PathBuf,
    pub runs_dir: PathBuf,
    pub mode: String,
    pub partial_ok: bool,
    pub drain_timeout: Duration,
    /// Deadline for a component to come back at its target version, and for a node to turn Ready.
    pub node_timeout: Duration,
    /// Deadline for drained workloads to be back at their ready counts, and for service rollouts.
    pub workload_timeout: Duration,
    /// How long drained workloads must stay at their ready counts before the next node.
    pub stable_for: Duration,
    pub restart_services: bool,
    pub events: Option<PathBuf>,
    /// Start a new journal even if the previous run is unfinished.
    pub discard_previous: bool,
    pub quiet: bool,
    /// The command line, recorded in the journal so that `kismatic status` can print the command that resumes.
    pub command: Vec<String>,
    /// A local folder to copy each etcd snapshot into (0700 folder, 0600 files), off the cluster.
    pub snapshot_dir: Option<PathBuf>,
    /// Plan host → Kubernetes Node name, where they are spelled differently (see [`kube_names`]).
    pub kube_names: BTreeMap<String, String>,
    /// `--on-drain-timeout` (online workers).
    pub on_drain_timeout: OnDrainTimeout,
}

/// Plan host → Kubernetes Node name for the hosts whose Node is spelled differently (host names are
/// case-insensitive; the API is not).
pub fn kube_names(facts: &kismatic_core::facts::Facts) -> BTreeMap<String, String> {
    let Some(kube) = &facts.kube else { return BTreeMap::new() };
    let nodes: Vec<&str> = kube.nodes.iter().map(|k| k.name.as_str()).collect();
    differently_spelled(facts.nodes.iter().map(|n| n.host.as_str()), &nodes)
}

fn differently_spelled<'a>(hosts: impl Iterator<Item = &'a str>, nodes: &[&str]) -> BTreeMap<String, String> {
    hosts
        .filter_map(|host| {
            let name = nodes.iter().find(|k| k.eq_ignore_ascii_case(host))?;
            (*name != host).then(|| (host.to_string(), name.to_string()))
        })
        .collect()
}

/// The upgrade plan (JSON, with its findings) as the run started it, in the run folder.
pub const UPGRADE_PLAN_FILE: &str = "upgrade-plan.json";

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Kube(#[from] kismatic_kube::KubeError),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Step(String),
    /// A journaled step failed.
    #[error("{step}: {error}")]
    Failed { step: String, error: Box<StepError> },
    /// A node's staging failed (the run stopped at the next node boundary).
    #[error("{message}")]
    Staging { message: String, retry_may_help: bool },
}

impl ExecError {
    /// What to do about it, for the end of the run.
    pub fn advice(&self) -> &'static str {
        match self {
            ExecError::Failed { error, .. } => error.advice(),
            ExecError::Staging { retry_may_help, .. } => crate::error::advice(*retry_may_help),
            ExecError::Node(e) if e.retry_may_help() => crate::error::advice(true),
            _ => "",
        }
    }
}

impl From<ExecError> for StepError {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Store(e) => StepError::Journal(e),
            ExecError::Failed { error, .. } => *error,
            ExecError::Node(e) => StepError::Node(e),
            ExecError::Kube(e) => StepError::Kube(e),
            other => StepError::Refused(other.to_string()),
        }
    }
}

/// How the run ended, for the summary and the exit code.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run_dir: PathBuf,
    pub completed: bool,
    /// Per node: host, duration, outcome text.
    pub nodes: Vec<(String, Duration, String)>,
    pub message: String,
    pub resumed: bool,
    /// Nodes left out at their old version (`--on-drain-timeout skip`), with why.
    pub left_out: BTreeMap<String, String>,
}

/// What stops a run from outside: SIGINT, SIGTERM, SIGHUP in the real run ([`crate::signals::Signals`]).
pub(crate) trait Interrupts {
    /// Waits for the next one; returns its name.
    async fn next(&mut self) -> String;
}

impl Interrupts for crate::signals::Signals {
    async fn next(&mut self) -> String {
        crate::signals::Signals::next(self).await.to_string()
    }
}

struct Ctx<'a, N, C> {
    plan: &'a UpgradePlan,
    inventory: &'a Inventory,
    release: &'a Release,
    cfg: &'a ExecConfig,
    nodes: &'a N,
    cluster: &'a C,
    run_id: String,
    journal: Mutex<JournalWriter>,
    reporter: Mutex<Reporter>,
    /// Steps an earlier run finished (skipped on resume).
    done: HashSet<String>,
    /// Nodes cordoned by this run or an interrupted earlier one, not yet uncordoned.
    cordoned: Mutex<BTreeSet<String>>,
    /// Cordon steps run ahead of their node's other steps, with the rest of the batch (online batches).
    cordoned_ahead: Mutex<HashSet<String>>,
    /// Workloads moved off each node by its drain (kept in the journal, so a resumed run waits for them too).
    moved: Mutex<BTreeMap<String, BTreeSet<Workload>>>,
    /// Snapshot location per etcd cluster, for messages.
    snapshots: Mutex<BTreeMap<String, String>>,
    /// Online worker batches: taints, splits, nodes left out ([`batch`]).
    batches: batch::BatchState,
}

/// Per node, how its staging ended (absent while it runs).
type StagingBoard = tokio::sync::watch::Receiver<BTreeMap<String, Result<(), Staging>>>;

/// A node's staging failure, kept for the node boundary where the run stops: the message and whether a rerun may
/// pass.
#[derive(Debug, Clone)]
struct Staging {
    error: String,
    retry_may_help: bool,
}

/// Nodes staged at the same time, at least. Staging runs in plan order ahead of the rolling upgrade, which takes
/// one node (or one batch) at a time: a couple of transfers keep ahead of it while the next node's transfer is not
/// slowed by all the others sharing the link (and the CPU).
const STAGE_PARALLEL: usize = 2;

/// When the plan has nothing to do: the latest run's journal may still hold nodes cordoned (an interrupted run
/// whose nodes reached their target before their uncordon). They are uncordoned, and an unfinished run of this
/// release is recorded as ended. Returns a sentence for the message (empty when there was nothing to tidy).
pub async fn close_previous(release: &Release, cfg: &ExecConfig) -> Result<String, ExecError> {
    // Connected on the first uncordon only: most runs with nothing to do have nothing to tidy.
    let kube = tokio::sync::OnceCell::new();
    close_previous_with(release, cfg, async |node: &str| {
        let client = kube.get_or_try_init(|| kismatic_kube::connect_without_retry(&cfg.kubeconfig)).await?;
        Ok::<_, ExecError>(kismatic_kube::ops::uncordon(client, node).await)
    })
    .await
}

/// [`close_previous`] with the uncordon passed in (unit-tested with a fake): its outer error (no API) stops the
/// tidy-up, its inner one (this node) is said in the message.
async fn close_previous_with(
    release: &Release,
    cfg: &ExecConfig,
    uncordon: impl AsyncFn(&str) -> Result<Result<(), kismatic_kube::KubeError>, ExecError>,
) -> Result<String, ExecError> {
    let runs = RunsDir::new(&cfg.runs_dir);
    if runs.latest_run()?.is_none() {
        return Ok(String::new());
    }
    let _lock = runs.lock()?;
    // An unreadable journal is left alone here: the next run that has work says so.
    let Ok(Some((dir, state))) = runs.latest_journal() else { return Ok(String::new()) };
    let same_release = state.header.identity.release_version == release.version.to_string();
    let unfinished = state.ended != Some(true) && same_release;
    if state.cordoned.is_empty() && !unfinished {
        return Ok(String::new());
    }
    let (mut writer, _) = JournalWriter::open(dir)?;
    let mut record = |event| writer.append(&Record { at_ms: crate::time::now_ms(), event });
    record(attached(cfg))?;
    let mut note = String::new();
    if !state.cordoned.is_empty() {
        let mut ok = Vec::new();
        for n in &state.cordoned {
            match uncordon(n).await? {
                Ok(()) => {
                    record(Event::Uncordoned { node: n.clone() })?;
                    ok.push(n.as_str());
                }
                Err(e) => note.push_str(&format!("Could NOT uncordon {n} ({e}): run `kubectl uncordon {n}`.\n")),
            }
        }
        if !ok.is_empty() {
            note.push_str(&format!("Uncordoned {} (left cordoned by run {}).\n", ok.join(", "), state.header.run_id));
        }
    }
    let completed = unfinished || state.ended == Some(true);
    let message = if completed {
        format!("nothing left to do: every node is at release {}", release.version)
    } else {
        format!("its cordoned nodes were uncordoned by a run for release {} that had nothing to do", release.version)
    };
    record(Event::Ended { completed, message })?;
    Ok(note)
}

/// Executes the plan. The caller has checked that it is not blocked.
pub async fn execute(
    plan: &UpgradePlan,
    inventory: &Inventory,
    release: &Release,
    fleet: &Fleet,
    cfg: &ExecConfig,
) -> Result<Outcome, ExecError> {
    let runs = RunsDir::new(&cfg.runs_dir);
    let _lock = runs.lock()?;
    let holder = format!(
        "pid {} on {}, since {}",
        std::process::id(),
        kismatic_journal::store::local_host(),
        crate::time::rfc3339_now()
    );
    let cluster_lock = crate::lock::take(fleet, inventory, &holder).await.map_err(ExecError::Conflict)?;
    let result = async {
        let kube = kismatic_kube::connect_without_retry(&cfg.kubeconfig).await?;
        let nodes = FleetNodes::new(fleet, release, inventory, cfg.node_timeout);
        let timeouts = ClusterTimeouts {
            drain: cfg.drain_timeout,
            node: cfg.node_timeout,
            workload: cfg.workload_timeout,
            stable_for: cfg.stable_for,
        };
        let cluster = KubeCluster::new(kube, &cfg.kubeconfig, &nodes, release, inventory, timeouts);
        let mut signals =
            crate::signals::Signals::new().map_err(|e| ExecError::Step(format!("signal handlers: {e}")))?;
        interpret(plan, inventory, release, cfg, &runs, &nodes, &cluster, &mut signals).await
    }
    .await;
    if let Some(l) = cluster_lock {
        l.release().await;
    }
    result
}

/// A node whose cordon (and drain) an earlier run finished, but which that run's abort uncordoned again before the
/// node's own uncordon step: its cordon and drain are redone, or the resumed run would upgrade a schedulable node.
fn redo_lost_cordon(steps: &[kismatic_core::planner::Step], done: &mut HashSet<String>, still_cordoned: bool) {
    let id = |want: fn(&Action) -> bool| steps.iter().find(|s| want(&s.action)).map(|s| s.id.clone());
    let (Some(cordon), Some(uncordon)) = (id(|a| matches!(a, Action::Cordon)), id(|a| matches!(a, Action::Uncordon)))
    else {
        return;
    };
    if done.contains(&cordon) && !done.contains(&uncordon) && !still_cordoned {
        done.remove(&cordon);
        if let Some(drain) = id(|a| matches!(a, Action::Drain)) {
            done.remove(&drain);
        }
    }
}

/// The run's journal: the previous one resumed (its torn tail cut off), or a new one.
struct Opened {
    writer: JournalWriter,
    done: HashSet<String>,
    cordoned: BTreeSet<String>,
    moved: BTreeMap<String, BTreeSet<Workload>>,
    run_id: String,
    resumed: bool,
    /// Bytes of a torn last line cut off.
    torn: u64,
    batches: batch::BatchState,
}

fn open_journal(
    plan: &UpgradePlan,
    inventory: &Inventory,
    release: &Release,
    cfg: &ExecConfig,
    runs: &RunsDir,
) -> Result<Opened, ExecError> {
    let release_digest = kismatic_release::sha256_file(&release.dir.join(kismatic_release::RELEASE_FILE))
        .map_err(|e| ExecError::Step(format!("{}: {e}", release.dir.display())))?;
    let identity = RunIdentity {
        mode: cfg.mode.clone(),
        release_version: release.version.to_string(),
        release_digest,
        partial_ok: cfg.partial_ok,
    };
    // With --discard-journal the previous journal is not even read: it may be the unreadable one being discarded.
    let previous = if cfg.discard_previous {
        None
    } else {
        runs.latest_journal().map_err(|e| match e {
            StoreError::Parse(p) => ExecError::Conflict(format!(
                "the previous run's journal cannot be read: {p}; pass --discard-journal to start afresh (its \
                 cordoned nodes are then yours to uncordon)"
            )),
            other => ExecError::Store(other),
        })?
    };
    let decision = kismatic_journal::resume_point(previous.as_ref().map(|(_, s)| s), &identity);
    Ok(match decision {
        ResumeDecision::Conflict { reason } => {
            return Err(ExecError::Conflict(format!(
                "{reason} (or pass --discard-journal to abandon it; its cordoned nodes are then yours to uncordon)"
            )));
        }
        ResumeDecision::Resume { .. } => {
            let Some((dir, state)) = previous else { return Err(ExecError::Step("journal vanished".into())) };
            let done: HashSet<String> = state.done_steps().map(str::to_string).collect();
            let moved = state
                .moved
                .iter()
                .map(|(node, ws)| (node.clone(), ws.iter().map(workload_from_journal).collect()))
                .collect();
            let mut done = done;
            for (_, np) in plan.node_plans() {
                let name = cfg.kube_names.get(&np.host).map_or(np.host.as_str(), String::as_str);
                let still_cordoned = state.cordoned.contains(name) || state.cordoned.contains(&np.host);
                redo_lost_cordon(&np.steps, &mut done, still_cordoned);
            }
            let (writer, torn) = JournalWriter::open(dir)?;
            let run_id = state.header.run_id.clone();
            let batches = batch::BatchState::from_journal(&state);
            Opened { writer, done, cordoned: state.cordoned, moved, run_id, resumed: true, torn, batches }
        }
        ResumeDecision::Fresh => {
            let run_id = crate::time::compact_now();
            let header = Header {
                format: kismatic_journal::FORMAT,
                run_id: run_id.clone(),
                started_at_ms: crate::time::now_ms(),
                identity,
                steps: plan.journal_steps(),
            };
            let writer = runs.create_run(&header)?;
            // A copy of the plan file beside the journal, and the upgrade plan with its findings: what this run
            // was asked to do (the run's report reads both).
            // Private (0600): the plan names every node and the SSH key's path.
            if let Ok(text) = std::fs::read(&inventory.plan_path) {
                let _ = store::write_private(&writer.dir().join("plan.yaml"), &text);
            }
            let _ = store::write_private(
                &writer.dir().join(UPGRADE_PLAN_FILE),
                kismatic_core::render::plan_json(plan).as_bytes(),
            );
            Opened {
                writer,
                done: HashSet::new(),
                cordoned: BTreeSet::new(),
                moved: BTreeMap::new(),
                run_id,
                resumed: false,
                torn: 0,
                batches: batch::BatchState::default(),
            }
        }
    })
}

/// The run under its locks: opens (or resumes) the journal, walks the plan until it ends or is interrupted, cleans
/// up and records the end.
#[allow(clippy::too_many_arguments)] // the run's inputs and its three I/O edges, each used once
async fn interpret<N: NodeOps, C: ClusterOps>(
    plan: &UpgradePlan,
    inventory: &Inventory,
    release: &Release,
    cfg: &ExecConfig,
    runs: &RunsDir,
    nodes: &N,
    cluster: &C,
    interrupts: &mut impl Interrupts,
) -> Result<Outcome, ExecError> {
    let opened = open_journal(plan, inventory, release, cfg, runs)?;
    let resumed = opened.resumed;
    let (ctx, run_dir) = Ctx::new(plan, inventory, release, cfg, nodes, cluster, opened)?;
    let mut nodes = Vec::new();
    let result = tokio::select! {
        r = ctx.walk(&mut nodes) => r,
        sig = interrupts.next() => Err(ExecError::Step(format!("interrupted ({sig})"))),
    };
    // Clean-up (commands left running on nodes are stopped, nodes uncordoned) unless a second signal asks to exit
    // at once; the journal is consistent at every record, so it then only lacks what the clean-up would have done.
    let cleanup = async {
        ctx.nodes.close().await;
        // Also after a successful run: a node an earlier, interrupted run cordoned may have reached its target
        // before its uncordon, and then no step of this plan uncordons it.
        let untainted = ctx.untaint_all().await;
        format!("{untainted}{}", ctx.uncordon_all().await)
    };
    let journal = run_dir.join(kismatic_journal::store::JOURNAL_FILE);
    let uncordoned = tokio::select! {
        u = cleanup => u,
        sig = interrupts.next() => {
            ctx.progress(|r| r.finish());
            let message = format!(
                "The upgrade stopped: {}; a second {sig} stopped the clean-up: nodes this run cordoned may still be \
                 cordoned and commands may still run on nodes. Rerun the same command to resume (journal: {}).",
                match &result { Ok(()) => "finished".to_string(), Err(e) => e.to_string() },
                journal.display()
            );
            let _ = ctx.record(Event::Ended { completed: false, message: format!("second {sig} during clean-up") });
            return Ok(Outcome { run_dir, completed: false, nodes, message, resumed, left_out: ctx.left_out() });
        }
    };
    ctx.progress(|r| r.finish());
    ctx.report_round_trips();
    let (completed, message) = ctx.end(result, &uncordoned, &journal)?;
    Ok(Outcome { run_dir, completed, nodes, message, resumed, left_out: ctx.left_out() })
}

/// Time spent waiting (restarts, health, drains) inside a step, for the event stream; and the part of the step's
/// node-command time that fell inside those waits (so that node work outside waits can be told apart).
#[derive(Default)]
struct Waited {
    total: Duration,
    remote_inside: Duration,
    /// Each wait with its kind and start, for the run's timeline.
    spans: Vec<WaitSpan>,
}

impl Waited {
    async fn on<T>(&mut self, kind: WaitKind, f: impl std::future::Future<Output = T>) -> T {
        let t = Instant::now();
        let at_ms = crate::time::now_ms();
        let remote_before = kismatic_fleet::remote_so_far();
        let out = f.await;
        let took = t.elapsed();
        self.total += took;
        self.spans.push(WaitSpan { kind, at_ms, ms: took.as_millis() as u64 });
        if let (Some(a), Some(b)) = (remote_before, kismatic_fleet::remote_so_far()) {
            self.remote_inside += b.saturating_sub(a);
        }
        out
    }
}

/// How long a step took: in all, waiting, and in node commands outside the waits.
struct Took {
    total: Duration,
    waits: Duration,
    remote: Duration,
    round_trips: u64,
    spans: Vec<WaitSpan>,
}

impl<'a, N: NodeOps, C: ClusterOps> Ctx<'a, N, C> {
    /// The run's context over its journal: records that this process took charge, opens the event stream and the
    /// run log, and says which run this is. Returns it with the run folder.
    fn new(
        plan: &'a UpgradePlan,
        inventory: &'a Inventory,
        release: &'a Release,
        cfg: &'a ExecConfig,
        nodes: &'a N,
        cluster: &'a C,
        opened: Opened,
    ) -> Result<(Self, PathBuf), ExecError> {
        let Opened { mut writer, done, cordoned, moved, run_id, resumed, torn, batches } = opened;
        let run_dir = writer.dir().to_path_buf();
        writer.append(&Record { at_ms: crate::time::now_ms(), event: attached(cfg) })?;
        let events = match &cfg.events {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| ExecError::Step(format!("events file {}: {e}", p.display())))?,
            ),
            None => None,
        };
        let log = store::append_private(&run_dir.join("run.log")).ok();
        let ctx = Ctx {
            plan,
            inventory,
            release,
            cfg,
            nodes,
            cluster,
            run_id,
            journal: Mutex::new(writer),
            reporter: Mutex::new(Reporter::new(events, log, cfg.quiet, plan.journal_steps().len())),
            done,
            cordoned: Mutex::new(cordoned),
            cordoned_ahead: Mutex::new(HashSet::new()),
            moved: Mutex::new(moved),
            snapshots: Mutex::new(BTreeMap::new()),
            batches,
        };
        if torn > 0 {
            ctx.line(&format!(
                "the journal's last line was torn (a write that never completed): cut off {torn} byte(s) before \
                 resuming"
            ));
        }
        let what = if resumed { "resuming run" } else { "run" };
        ctx.line(&format!("{what} {} (journal {})", ctx.run_id, run_dir.display()));
        Ok((ctx, run_dir))
    }

    /// Records the run's end; returns whether it completed and the message for the operator.
    fn end(
        &self,
        result: Result<(), ExecError>,
        uncordoned: &str,
        journal: &std::path::Path,
    ) -> Result<(bool, String), ExecError> {
        match result {
            Ok(()) => {
                let message = if self.plan.partial {
                    "Partial upgrade complete. Cluster level services are still left to upgrade. These can only be \
                     upgraded when performing a full upgrade."
                        .to_string()
                } else {
                    format!("The cluster was upgraded successfully to release {}.", self.release.version)
                };
                self.record(Event::Ended { completed: true, message: message.clone() })?;
                Ok((true, format!("{uncordoned}{message}")))
            }
            Err(e) => {
                let advice = match e.advice() {
                    "" => String::new(),
                    a => format!("{a}\n"),
                };
                let message = format!(
                    "The upgrade stopped: {e}\n{advice}{uncordoned}{}Rerun the same command to resume at the first \
                     unfinished step (journal: {}).",
                    self.snapshot_note(),
                    journal.display()
                );
                let _ = self.record(Event::Ended { completed: false, message: e.to_string() });
                Ok((false, message))
            }
        }
    }

    fn line(&self, text: &str) {
        if let Ok(mut r) = self.reporter.lock() {
            r.line(text);
        }
    }

    fn progress(&self, f: impl FnOnce(&mut Reporter)) {
        if let Ok(mut r) = self.reporter.lock() {
            f(&mut r);
        }
    }

    fn record(&self, event: Event) -> Result<(), ExecError> {
        let mut j = self.journal.lock().map_err(|_| ExecError::Step("journal lock poisoned".into()))?;
        j.append(&Record { at_ms: crate::time::now_ms(), event })?;
        Ok(())
    }

    fn emit(&self, phase: &str, node: Option<&str>, step: &str, state: &str, took: Option<Took>, message: &str) {
        if let Ok(mut r) = self.reporter.lock() {
            let ev = StepEvent {
                at_ms: crate::time::now_ms(),
                run_id: &self.run_id,
                phase,
                node,
                step,
                state,
                duration_ms: took.as_ref().map(|t| t.total.as_millis() as u64),
                wait_ms: took.as_ref().map(|t| t.waits.as_millis() as u64),
                remote_ms: took.as_ref().map(|t| t.remote.as_millis() as u64),
                round_trips: took.as_ref().map(|t| t.round_trips),
                waits: took.as_ref().map(|t| t.spans.as_slice()).unwrap_or_default(),
                message,
            };
            r.event(&ev);
        }
    }

    /// Per node, the SSH connections and commands of the whole run, as `info` events (docs/ssh.md): the interpreter
    /// must not add round trips, and this is where that is measured.
    fn report_round_trips(&self) {
        let Ok(mut r) = self.reporter.lock() else { return };
        for (node, rt) in self.nodes.round_trips() {
            let message = format!("{} connection(s), {} command(s)", rt.connections, rt.commands);
            r.event(&StepEvent {
                at_ms: crate::time::now_ms(),
                run_id: &self.run_id,
                phase: "run",
                node: Some(&node),
                step: "ssh",
                state: "info",
                duration_ms: None,
                wait_ms: None,
                remote_ms: None,
                round_trips: Some(rt.commands),
                waits: &[],
                message: &message,
            });
        }
    }

    /// Runs one journaled step: skipped when an earlier run finished it; otherwise `started` is made durable
    /// before the work and `finished`/`failed` after.
    async fn step<F>(&self, phase: &str, node: Option<&str>, id: &str, label: &str, work: F) -> Result<(), ExecError>
    where
        F: AsyncFnOnce(&mut Waited) -> Result<String, StepError>,
    {
        if self.done.contains(id) {
            self.emit(phase, node, id, "skipped", None, "finished by an earlier run");
            self.line(&format!("{phase:<8} {:<12} {label}: already done", node.unwrap_or("-")));
            self.progress(|r| r.advance());
            return Ok(());
        }
        self.record(Event::Started { step: id.to_string() })?;
        self.emit(phase, node, id, "started", None, "");
        self.line(&format!("{phase:<8} {:<12} {label} ...", node.unwrap_or("-")));
        self.progress(|r| r.working_on(&format!("{phase} {} {label}", node.unwrap_or("-"))));
        let t = Instant::now();
        let mut waited = Waited::default();
        let (result, remote, round_trips) = kismatic_fleet::tally_remote_counted(work(&mut waited)).await;
        let took = Took {
            total: t.elapsed(),
            waits: waited.total,
            remote: remote.saturating_sub(waited.remote_inside),
            round_trips,
            spans: waited.spans,
        };
        match result {
            Ok(note) => {
                self.record(Event::Finished { step: id.to_string() })?;
                self.progress(|r| r.advance());
                self.emit(phase, node, id, "finished", Some(took), &note);
                let note = if note.is_empty() { String::new() } else { format!(" ({note})") };
                self.line(&format!(
                    "{phase:<8} {:<12} {label}: done in {:.1}s{note}",
                    node.unwrap_or("-"),
                    t.elapsed().as_secs_f64()
                ));
                Ok(())
            }
            Err(error) => {
                let text = error.to_string();
                self.record(Event::Failed { step: id.to_string(), error: text.clone() })?;
                self.emit(phase, node, id, "failed", Some(took), &text);
                self.line(&format!("{phase:<8} {:<12} {label}: FAILED: {text}", node.unwrap_or("-")));
                Err(ExecError::Failed { step: id.to_string(), error: Box::new(error) })
            }
        }
    }

    /// Staging runs in the background from the start, in plan order; each node's turn waits for its own staging,
    /// and a staging failure anywhere stops the run at the next node boundary (no node is left half-done). The
    /// transfers thereby overlap the snapshot, the restarts and the drains instead of adding to the run.
    async fn walk(&self, nodes: &mut Vec<(String, Duration, String)>) -> Result<(), ExecError> {
        let (staged_tx, staged) = tokio::sync::watch::channel(BTreeMap::new());
        let staging = self.stage_all(staged_tx);
        let rolling = self.roll(&staged, nodes);
        futures::pin_mut!(staging, rolling);
        match futures::future::select(rolling, staging).await {
            futures::future::Either::Left((result, _)) => result,
            futures::future::Either::Right(((), rolling)) => rolling.await,
        }
    }

    /// Waits until `host` is staged; any node's staging failure is an error (checked at every node boundary).
    async fn staged(&self, staged: &StagingBoard, host: &str) -> Result<(), ExecError> {
        let mut rx = staged.clone();
        loop {
            let verdict = {
                let board = rx.borrow_and_update();
                match board.iter().find(|(_, r)| r.is_err()) {
                    Some((failed, Err(e))) => Some(Err(ExecError::Staging {
                        message: format!(
                            "staging artifacts on {failed} failed, so the run stops before {host}: {}",
                            e.error
                        ),
                        retry_may_help: e.retry_may_help,
                    })),
                    _ if board.contains_key(host) => Some(Ok(())),
                    _ => None,
                }
            };
            if let Some(v) = verdict {
                return v;
            }
            // Closed: staging ended without reporting this node (cannot happen while the plan lists it).
            if rx.changed().await.is_err() && !rx.borrow().contains_key(host) {
                return Err(ExecError::Step(format!("{host} was never staged")));
            }
        }
    }

    async fn roll(&self, staged: &StagingBoard, nodes: &mut Vec<(String, Duration, String)>) -> Result<(), ExecError> {
        for snap in &self.plan.snapshots {
            self.snapshot(snap).await?;
        }
        for phase in &self.plan.phases {
            for batch in &phase.batches {
                if self.runs_as_online_batch(phase, batch) {
                    self.online_batch(phase, batch, staged, nodes).await?;
                    continue;
                }
                for np in &batch.nodes {
                    self.staged(staged, &np.host).await?;
                }
                let started = Instant::now();
                // Every node of a batch is cordoned before any is drained, so that pods evicted from one do not
                // land on another about to be drained.
                if batch.nodes.len() > 1 {
                    for np in &batch.nodes {
                        for step in np.steps.iter().filter(|s| matches!(s.action, Action::Cordon)) {
                            self.cordon(phase.kind.as_str(), &np.host, &step.id).await?;
                            self.cordoned_ahead.lock().map(|mut c| c.insert(step.id.clone())).ok();
                        }
                    }
                }
                let results =
                    futures::future::join_all(batch.nodes.iter().map(|np| self.upgrade_node(phase.kind, np))).await;
                let mut first_err = None;
                for (np, r) in batch.nodes.iter().zip(results) {
                    let outcome = match &r {
                        Ok(()) => "upgraded".to_string(),
                        Err(e) => format!("failed: {e}"),
                    };
                    nodes.push((np.host.clone(), started.elapsed(), outcome));
                    if let Err(e) = r {
                        first_err.get_or_insert(e);
                    }
                }
                if let Some(e) = first_err {
                    return Err(e);
                }
            }
            // A run that left nodes out upgrades no on-cluster service (like a partial upgrade).
            if !phase.services.is_empty()
                && let Some(e) = self.left_out_error()
            {
                return Err(e);
            }
            for s in &phase.services {
                self.service(phase.kind, s).await?;
            }
        }
        self.left_out_error().map_or(Ok(()), Err)
    }

    /// The Kubernetes Node name of a plan host: the plan may spell it differently (`WORKER02` for `worker02`);
    /// the facts matched them, and the API wants the Node's own spelling.
    fn kube_name<'h>(&'h self, host: &'h str) -> &'h str {
        self.cfg.kube_names.get(host).map_or(host, String::as_str)
    }

    fn node(&self, host: &str) -> Result<&Node, ExecError> {
        self.inventory
            .nodes
            .iter()
            .find(|n| n.host == host)
            .ok_or_else(|| ExecError::Step(format!("node {host} is in the plan but not in the plan file")))
    }

    /// Every node's artifacts, staged concurrently before anything is changed (a transfer or digest problem stops
    /// the run before any node is touched, and each node's turn is then short).
    async fn stage_all(&self, board: tokio::sync::watch::Sender<BTreeMap<String, Result<(), Staging>>>) {
        use futures::stream::StreamExt;
        let jobs = self.plan.staging.iter().map(|st| async {
            let r = self
                .stage_node(st)
                .await
                .map_err(|e| Staging { error: e.to_string(), retry_may_help: StepError::from(e).retry_may_help() });
            board.send_modify(|m| {
                m.insert(st.host.clone(), r);
            });
        });
        let widest_batch = self.plan.phases.iter().flat_map(|p| &p.batches).map(|b| b.nodes.len()).max().unwrap_or(1);
        futures::stream::iter(jobs).buffer_unordered(STAGE_PARALLEL.max(widest_batch)).collect::<Vec<()>>().await;
    }

    async fn stage_node(&self, st: &StageStep) -> Result<(), ExecError> {
        let node = self.node(&st.host)?;
        let components = st.components.iter().map(|c| self.component(c)).collect::<Result<Vec<&Component>, _>>()?;
        self.step("stage", Some(&st.host), &st.id, "stage artifacts", async |_: &mut Waited| {
            self.nodes.stage(node, &components).await
        })
        .await
    }

    /// Snapshot of one etcd cluster before its first member is touched, verified with `snapshot status`.
    async fn snapshot(&self, snap: &SnapshotStep) -> Result<(), ExecError> {
        let cluster = snap.cluster.as_str();
        let path = format!("{SNAPSHOT_DIR}/{cluster}-{}.db", self.run_id);
        let first = self.node(&snap.node)?;
        self.snapshots.lock().map(|mut s| s.insert(cluster.to_string(), format!("{}:{path}", first.host))).ok();
        let label = format!("snapshot {cluster}");
        self.step("etcd", Some(&first.host), &snap.id, &label, async |w: &mut Waited| {
            // The health gate before the snapshot is a wait like the quorum gates between members.
            let facts = w.on(WaitKind::Health, self.cluster.etcd_cluster(first, cluster)).await?;
            if let Some(p) = etcd::quorum_problem(&facts) {
                return Err(StepError::Refused(format!("not taking a snapshot of an unhealthy cluster: {p}")));
            }
            let (path, info) = w.on(WaitKind::Snapshot, self.cluster.snapshot(first, cluster, &self.run_id)).await?;
            let location =
                Event::Snapshot { cluster: cluster.to_string(), node: first.host.clone(), path: path.clone() };
            self.record(location)?;
            let copied = match &self.cfg.snapshot_dir {
                Some(dir) => {
                    let local = w.on(WaitKind::Snapshot, self.cluster.copy_snapshot(first, &path, dir)).await?;
                    self.snapshots
                        .lock()
                        .map(|mut s| {
                            s.insert(cluster.to_string(), format!("{}:{path} (copy: {})", first.host, local.display()))
                        })
                        .ok();
                    format!(", copied to {}", local.display())
                }
                None => String::new(),
            };
            Ok(format!(
                "{}:{path}, {} keys, revision {}, {} bytes, verified{copied}",
                first.host, info.total_key, info.revision, info.total_size
            ))
        })
        .await
    }

    async fn cordon(&self, ph: &str, host: &str, id: &str) -> Result<(), ExecError> {
        self.step(ph, Some(host), id, "cordon", async |_: &mut Waited| {
            let name = self.kube_name(host);
            self.cluster.cordon(name).await?;
            self.cordoned.lock().map(|mut c| c.insert(name.to_string())).ok();
            self.record(Event::Cordoned { node: name.to_string() })?;
            Ok(String::new())
        })
        .await
    }

    /// One node's part of a phase: its steps in plan order, each journaled. The node is reached first, so that an
    /// unreachable node is not cordoned and drained for nothing.
    async fn upgrade_node(&self, phase: PhaseKind, np: &NodePlan) -> Result<(), ExecError> {
        let ph = phase.as_str();
        let node = self.node(&np.host)?;
        let host = node.host.as_str();
        if np.steps.iter().all(|s| self.done.contains(&s.id)) {
            return Ok(());
        }
        self.nodes
            .connect(node)
            .await
            .map_err(|error| ExecError::Failed { step: np.id.clone(), error: Box::new(error) })?;
        for step in &np.steps {
            match &step.action {
                Action::Cordon => {
                    let ahead = self.cordoned_ahead.lock().map(|c| c.contains(&step.id)).unwrap_or(false);
                    if !ahead {
                        self.cordon(ph, host, &step.id).await?
                    }
                }
                Action::Drain => {
                    self.step(ph, Some(host), &step.id, "drain", async |w: &mut Waited| {
                        let record_moved = |moved: &BTreeSet<Workload>| {
                            self.moved
                                .lock()
                                .map(|mut m| m.entry(host.to_string()).or_default().extend(moved.clone()))
                                .ok();
                            let workloads = moved.iter().map(moved_workload).collect();
                            self.record(Event::Draining { node: host.to_string(), workloads })
                                .map_err(kismatic_kube::HookError::from)
                        };
                        let moved =
                            w.on(WaitKind::Drain, self.cluster.drain(self.kube_name(host), &record_moved)).await?;
                        Ok(format!("{} workload(s) moved", moved.len()))
                    })
                    .await?
                }
                Action::Upgrade { component, from, to, restart, .. } => {
                    let c = self.component(component)?;
                    let label = format!("upgrade {component} {} → {to}", from.as_deref().unwrap_or("none"));
                    self.step(ph, Some(host), &step.id, &label, async |w: &mut Waited| {
                        self.upgrade_component(node, c, *restart, &step.gates, w).await
                    })
                    .await?
                }
                Action::WriteMarkers { kismatic_version, .. } => {
                    self.step(ph, Some(host), &step.id, "write version markers", async |_: &mut Waited| {
                        self.nodes.write_markers(node, kismatic_version).await?;
                        Ok(format!("at {kismatic_version}"))
                    })
                    .await?
                }
                Action::Untaint => self.untaint_step(host, &step.id).await?,
                Action::Uncordon => {
                    self.step(ph, Some(host), &step.id, "uncordon and wait for workloads", async |w: &mut Waited| {
                        let name = self.kube_name(host);
                        self.cluster.uncordon(name).await?;
                        self.cordoned.lock().map(|mut c| c.remove(name)).ok();
                        self.record(Event::Uncordoned { node: name.to_string() })?;
                        let moved = self.moved.lock().ok().and_then(|m| m.get(host).cloned()).unwrap_or_default();
                        for gate in &step.gates {
                            match gate {
                                Gate::WorkloadsBack => {
                                    w.on(WaitKind::Rollout, self.cluster.workloads_back(&moved)).await?
                                }
                                other => return Err(unexpected_gate(*other, "an uncordon")),
                            }
                        }
                        Ok(format!("{} workload(s) ready", moved.len()))
                    })
                    .await?
                }
            }
        }
        Ok(())
    }

    fn component(&self, name: &str) -> Result<&Component, ExecError> {
        self.release.component(name).ok_or_else(|| {
            ExecError::Step(format!("component {name} is planned but not in release {}", self.release.version))
        })
    }

    /// Install, restart when the plan says the component has a service and something changed, then the step's
    /// gates in plan order. An etcd member has its own sequence ([`Self::upgrade_etcd_member`]).
    async fn upgrade_component(
        &self,
        node: &Node,
        c: &Component,
        restart: bool,
        gates: &[Gate],
        w: &mut Waited,
    ) -> Result<String, StepError> {
        if gates.contains(&Gate::EtcdMember) {
            return self.upgrade_etcd_member(node, c, restart, w).await;
        }
        if c.delivery == kismatic_release::Delivery::Manifest {
            return Ok("applied with the services".into());
        }
        let installed = self.nodes.install(node, c).await?;
        // `stale`: switched by a run that died before restarting (the files say done, the process does not).
        if restart && (installed.changed || installed.stale || self.cfg.restart_services) {
            w.on(WaitKind::Restart, self.nodes.restart(node, c)).await?;
        }
        for gate in gates {
            w.on(WaitKind::Health, self.gate(node, c, *gate)).await?;
        }
        Ok(match (installed.changed, installed.stale) {
            (true, _) => format!("running {}", c.version),
            (false, true) => format!("restarted: the files were at {} but the service was not", c.version),
            (false, false) => format!("already at {}", c.version),
        })
    }

    /// One of the gates the plan put after a component's upgrade: which apply is core's choice
    /// ([`kismatic_core::gates::component_gates`]); how each is checked, the I/O side's.
    async fn gate(&self, node: &Node, c: &Component, gate: Gate) -> Result<(), StepError> {
        match gate {
            Gate::Running | Gate::Healthz { .. } => self.nodes.gate(node, c, gate).await,
            Gate::ApiServer { .. } | Gate::NodeReady => {
                self.cluster.gate(node, self.kube_name(&node.host), c, gate).await
            }
            Gate::EtcdMember | Gate::WorkloadsBack | Gate::Rollout => {
                Err(unexpected_gate(gate, "a component's upgrade"))
            }
        }
    }

    /// One etcd member: the cluster must be healthy with a leader before; after the restart this member must be
    /// healthy at the target version. If it does not come back, it is rolled back to its previous version and the
    /// run stops.
    async fn upgrade_etcd_member(
        &self,
        node: &Node,
        c: &Component,
        restart: bool,
        w: &mut Waited,
    ) -> Result<String, StepError> {
        // The quorum gate is a health wait like the one after the restart.
        let before = w.on(WaitKind::Health, self.cluster.etcd_cluster(node, &c.name)).await?;
        if let Some(p) = etcd::quorum_problem(&before) {
            return Err(StepError::Refused(format!("not upgrading {} on {}: {p}", c.name, node.host)));
        }
        let installed = self.nodes.install(node, c).await?;
        // A restart that fails (the new binary does not start) is handled like a member that does not come back.
        let restarted = if restart && (installed.changed || installed.stale || self.cfg.restart_services) {
            w.on(WaitKind::Restart, self.nodes.restart(node, c))
                .await
                .map_err(|e| StepError::NotReady(format!("restart failed: {e}")))
        } else {
            Ok(())
        };
        let healthy = match restarted {
            Ok(()) => w.on(WaitKind::Health, self.wait_member(node, &c.name, &c.version)).await,
            Err(e) => Err(e),
        };
        let Err(why) = healthy else { return Ok(format!("member healthy at {}", c.version)) };
        let after = match self.nodes.rollback(node, c).await {
            Ok(prev) => match w.on(WaitKind::Health, self.wait_member(node, &c.name, &prev)).await {
                Ok(()) => format!("rolled back to {prev}; the cluster is healthy"),
                Err(e) => format!("rolled back to {prev}, but the member is still not healthy: {e}"),
            },
            Err(e) => format!("rollback failed: {e}"),
        };
        Err(StepError::Refused(format!(
            "member {} of {} did not come back healthy at {}: {why}; {after}",
            node.host, c.name, c.version
        )))
    }

    /// Polls until the member on `node` is healthy at `version` and the cluster has a leader.
    async fn wait_member(&self, node: &Node, cluster: &str, version: &str) -> Result<(), StepError> {
        let host = node.host.as_str();
        poll::until(self.cfg.node_timeout, Duration::from_millis(500), || async {
            let f = match self.cluster.etcd_cluster(node, cluster).await {
                Ok(f) => f,
                Err(e) => return Ok(Seen::NotYet(e.to_string())),
            };
            Ok::<_, String>(match f.members.iter().find(|m| m.node.as_deref() == Some(host)) {
                Some(m) if m.healthy == Some(true) && m.version.as_deref() == Some(version) && f.leader.is_some() => {
                    Seen::Ready(())
                }
                Some(m) => Seen::NotYet(format!(
                    "healthy={:?} version={} leader={}",
                    m.healthy,
                    m.version.as_deref().unwrap_or("?"),
                    f.leader.as_deref().unwrap_or("none")
                )),
                None => Seen::NotYet("member not listed".into()),
            })
        })
        .await
        .map_err(|e| {
            StepError::NotReady(match e {
                PollError::Failed(e) => e,
                PollError::TimedOut { last } => {
                    format!("not healthy within {}s (last: {last})", self.cfg.node_timeout.as_secs())
                }
            })
        })
    }

    async fn service(&self, phase: PhaseKind, step: &ServiceStep) -> Result<(), ExecError> {
        let c = self.component(&step.component)?;
        let label = format!("apply {} {} → {}", c.name, step.from.as_deref().unwrap_or("none"), step.to);
        self.step(phase.as_str(), None, &step.id, &label, async |w: &mut Waited| {
            let applied = self.cluster.apply(c).await?;
            for gate in &step.gates {
                match gate {
                    Gate::Rollout => w.on(WaitKind::Rollout, self.cluster.rollout(&applied)).await?,
                    other => return Err(unexpected_gate(*other, "a service")),
                }
            }
            // Recorded in every master's component-versions marker.
            for m in self.inventory.nodes_with_role(Role::Master) {
                self.nodes.record_service(m, c).await?;
            }
            Ok(format!("{} object(s) applied and rolled out", applied.len()))
        })
        .await
    }

    /// Uncordons every node this run (or the interrupted run it resumed) cordoned; returns a sentence for the
    /// exit message.
    async fn uncordon_all(&self) -> String {
        let nodes: Vec<String> = self.cordoned.lock().map(|c| c.iter().cloned().collect()).unwrap_or_default();
        if nodes.is_empty() {
            return String::new();
        }
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for n in nodes {
            match self.cluster.uncordon(&n).await {
                Ok(()) => {
                    let _ = self.record(Event::Uncordoned { node: n.clone() });
                    ok.push(n);
                }
                Err(e) => failed.push(format!("{n} ({e})")),
            }
        }
        let mut s = String::new();
        if !ok.is_empty() {
            s.push_str(&format!("Uncordoned {} (cordoned by this run).\n", ok.join(", ")));
        }
        if !failed.is_empty() {
            s.push_str(&format!("Could NOT uncordon {}: run `kubectl uncordon` for them.\n", failed.join(", ")));
        }
        s
    }

    fn snapshot_note(&self) -> String {
        let snaps = self.snapshots.lock().map(|s| s.clone()).unwrap_or_default();
        snaps.iter().map(|(c, loc)| format!("The {c} snapshot taken before the upgrade is at {loc}.\n")).collect()
    }
}

/// A gate the planner never puts where it was found (a plan from elsewhere, hand-edited).
/// The journal's record that this process took the run over (both when it opens a run and when it only closes the
/// previous one's cordons).
fn attached(cfg: &ExecConfig) -> Event {
    Event::Attached {
        pid: std::process::id(),
        host: kismatic_journal::store::local_host(),
        command: cfg.command.clone(),
        cwd: std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    }
}

fn unexpected_gate(gate: Gate, place: &str) -> StepError {
    StepError::Refused(format!("the plan puts gate {gate:?} after {place}, where it cannot be checked"))
}

fn moved_workload(w: &Workload) -> MovedWorkload {
    MovedWorkload { kind: w.kind.clone(), namespace: w.namespace.clone(), name: w.name.clone() }
}

fn workload_from_journal(w: &MovedWorkload) -> Workload {
    Workload { kind: w.kind.clone(), namespace: w.namespace.clone(), name: w.name.clone() }
}

impl From<InstallError> for ExecError {
    fn from(e: InstallError) -> Self {
        ExecError::Step(e.to_string())
    }
}

#[cfg(test)]
#[path = "interp_tests.rs"]
mod interp_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cordon_the_abort_undid_is_redone_with_its_drain() {
        use kismatic_core::planner::Step;
        let steps = vec![
            Step { id: "w/cordon".into(), action: Action::Cordon, gates: Vec::new() },
            Step { id: "w/drain".into(), action: Action::Drain, gates: Vec::new() },
            Step { id: "w/uncordon".into(), action: Action::Uncordon, gates: Vec::new() },
        ];
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<HashSet<String>>();
        let mut done = set(&["w/cordon", "w/drain"]);
        redo_lost_cordon(&steps, &mut done, true);
        assert_eq!(done, set(&["w/cordon", "w/drain"]), "still cordoned: nothing to redo");
        redo_lost_cordon(&steps, &mut done, false);
        assert!(done.is_empty(), "uncordoned by the abort: cordon and drain again");
        let mut done = set(&["w/cordon", "w/drain", "w/uncordon"]);
        redo_lost_cordon(&steps, &mut done, false);
        assert_eq!(done.len(), 3, "the node's own uncordon ran: nothing to redo");
    }

    #[test]
    fn plan_hosts_map_to_the_node_names_kubernetes_spells() {
        let names = differently_spelled(["WORKER02", "worker01", "gone"].into_iter(), &["worker01", "worker02"]);
        assert_eq!(names, BTreeMap::from([("WORKER02".to_string(), "worker02".to_string())]));
    }
}
