//! An operator's view of one run, folded from its journal: the command, where the run is (running, stopped,
//! finished, abandoned), which nodes are done, in progress and left, what it cordoned and snapshotted, how long
//! each node took, and the exact command that resumes it. Pure: the caller reads the lock and the clock.
//!
//! Step ids follow the planner's grammar (docs/checks.md): `PHASE/HOST/ACTION[/COMPONENT]` for node steps,
//! `registry/NAME` and `services/NAME` for on-cluster services, `stage/HOST` for staging a node's artifacts and
//! `etcd/snapshot/CLUSTER` for an etcd snapshot. [`classify`] is the one place that reads them.

use crate::{JournalState, SnapshotLocation, StepStatus};
use serde::Serialize;

/// Version of the `kismatic status -o json` document; bumped on any incompatible change.
pub const STATUS_FORMAT: u32 = 1;

/// The cluster's run lock, as seen by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Lock {
    /// A process on this machine holds the lock (its pid when the OS tells).
    Held { pid: Option<u32>, host: String },
    /// Nobody holds it: no kismatic process is working on this cluster from this machine.
    Free,
    /// Cannot be told here: a run folder copied elsewhere, or a run that is not the cluster's latest.
    Unknown,
}

/// What a journal step id is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind<'a> {
    /// Staging a node's artifacts (background, ahead of its turn).
    Stage {
        node: &'a str,
    },
    /// The verified snapshot of an etcd cluster.
    Snapshot {
        cluster: &'a str,
    },
    /// A step of one node's upgrade (`etcd`, `master` or `worker` phase).
    Node {
        phase: &'a str,
        node: &'a str,
        action: &'a str,
    },
    /// An on-cluster service applied through the API.
    Service {
        phase: &'a str,
        component: &'a str,
    },
    Other,
}

pub fn classify(step: &str) -> StepKind<'_> {
    let mut parts = step.splitn(3, '/');
    let (a, b, c) = (parts.next(), parts.next(), parts.next());
    match (a, b, c) {
        (Some("stage"), Some(node), None) => StepKind::Stage { node },
        // Node actions are never named like an etcd cluster, so `etcd/snapshot/etcd` is not node `snapshot`.
        (Some("etcd"), Some("snapshot"), Some(cluster)) if cluster.starts_with("etcd") => {
            StepKind::Snapshot { cluster }
        }
        (Some(phase @ ("etcd" | "apiservers" | "master" | "worker")), Some(node), Some(action)) => {
            StepKind::Node { phase, node, action }
        }
        (Some(phase @ ("registry" | "services")), Some(component), None) => StepKind::Service { phase, component },
        _ => StepKind::Other,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunView {
    pub format: u32,
    pub run_id: String,
    pub started_at_ms: u64,
    pub command: CommandView,
    pub state: RunState,
    pub lock: Lock,
    /// From the start of the run to its end, to the last record (abandoned), or to now (running); a resumed
    /// run's time between its processes counts.
    pub elapsed_ms: u64,
    pub steps: Count,
    pub staged: Count,
    /// Node names by progress, each list in plan order.
    pub nodes: NodeLists,
    /// Per node, in plan order.
    pub node_progress: Vec<NodeProgress>,
    pub services: Vec<ServiceProgress>,
    /// Nodes the run cordoned and has not uncordoned.
    pub cordoned: Vec<String>,
    /// Nodes that still carry the run's drain-soon `PreferNoSchedule` taint.
    pub tainted: Vec<String>,
    /// Nodes left out at their old version (`--on-drain-timeout skip`), with why; a rerun retries them.
    pub left_out: Vec<LeftOut>,
    pub snapshots: Vec<SnapshotLocation>,
    /// Every process that ran the run (format 2 journals), in order.
    pub attempts: Vec<AttemptView>,
    /// How to go on, when the run is unfinished and nothing runs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume: Option<Resume>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeftOut {
    pub node: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandView {
    pub mode: String,
    pub release: String,
    pub release_digest: String,
    pub partial_ok: bool,
    /// The command line of the latest process (format 2 journals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunState {
    /// A process holds the lock and the run has not recorded an end.
    Running {
        pid: Option<u32>,
        host: String,
        /// Steps started and not ended, foreground first.
        steps: Vec<String>,
    },
    /// The run recorded an unsuccessful end (an error, Ctrl-C): `step` is the step that failed, if one did.
    Stopped {
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<String>,
        message: String,
    },
    /// The run recorded a successful end.
    Finished { message: String },
    /// No end recorded and no process on this machine holds the lock: the process died (killed, crashed, the
    /// machine went down). `steps` were in progress; their effect is unknown and a resume redoes them.
    Abandoned {
        steps: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pid: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Count {
    pub done: usize,
    pub total: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct NodeLists {
    pub done: Vec<String>,
    pub in_progress: Vec<String>,
    pub left: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Done,
    /// A step is running now.
    Running,
    /// A step failed (the run stopped there).
    Failed,
    /// A step was started by a process that is gone.
    Interrupted,
    /// Some steps done, none running.
    Partly,
    Left,
}

impl NodeState {
    /// As people read it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Done => "done",
            NodeState::Running => "running",
            NodeState::Failed => "failed",
            NodeState::Interrupted => "interrupted",
            NodeState::Partly => "partly done",
            NodeState::Left => "left",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeProgress {
    pub host: String,
    pub phase: String,
    pub state: NodeState,
    pub steps_done: usize,
    pub steps_total: usize,
    /// The step running, failed or interrupted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Time in this node's steps (latest attempt of each; a step in progress counts up to now).
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceProgress {
    pub component: String,
    pub phase: String,
    pub status: StepStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptView {
    pub at_ms: u64,
    pub pid: u32,
    pub host: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resume {
    /// The command line that resumes the run: the latest process's, without `--discard-journal`.
    pub argv: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The same, as one line to paste into a shell.
    pub shell: String,
}

/// Flags that must not be repeated when resuming: they would start afresh instead.
const NOT_FOR_RESUME: [&str; 1] = ["--discard-journal"];

/// Folds a run's journal into its view. `lock` is the cluster's lock as seen now (pass [`Lock::Unknown`] for a
/// run that is not the cluster's latest, or a copied folder); `now_ms` is the caller's clock.
pub fn view(state: &JournalState, lock: Lock, now_ms: u64) -> RunView {
    let h = &state.header;
    let last = state.attempts.last();
    let open: Vec<String> = in_progress(state);
    let run_state = match (&state.end, &lock) {
        (None, Lock::Held { pid, host }) => {
            RunState::Running { pid: pid.or(last.map(|a| a.pid)), host: host.clone(), steps: open.clone() }
        }
        (None, _) => {
            RunState::Abandoned { steps: open.clone(), pid: last.map(|a| a.pid), host: last.map(|a| a.host.clone()) }
        }
        (Some(end), _) if end.completed => RunState::Finished { message: end.message.clone() },
        (Some(end), _) => RunState::Stopped {
            step: ordered_steps(state).find(|s| state.status(s) == StepStatus::Failed).map(str::to_string),
            message: end.message.clone(),
        },
    };
    // A step still open counts up to now while the run runs, and up to the last record otherwise.
    let until = match &run_state {
        RunState::Running { .. } => now_ms.max(state.last_at_ms),
        RunState::Finished { .. } | RunState::Stopped { .. } => {
            state.end.as_ref().map_or(state.last_at_ms, |e| e.at_ms)
        }
        RunState::Abandoned { .. } => state.last_at_ms,
    };
    let running = matches!(run_state, RunState::Running { .. });

    let mut total = 0;
    let mut done = 0;
    let mut staged = Count { done: 0, total: 0 };
    let mut nodes: Vec<(String, String, Vec<&str>)> = Vec::new();
    let mut services = Vec::new();
    for step in ordered_steps(state) {
        total += 1;
        let status = state.status(step);
        if status == StepStatus::Done {
            done += 1;
        }
        match classify(step) {
            StepKind::Stage { .. } => {
                staged.total += 1;
                if status == StepStatus::Done {
                    staged.done += 1;
                }
            }
            StepKind::Node { phase, node, .. } => match nodes.iter_mut().find(|(n, _, _)| n == node) {
                Some((_, _, steps)) => steps.push(step),
                None => nodes.push((node.to_string(), phase.to_string(), vec![step])),
            },
            StepKind::Service { phase, component } => {
                services.push(ServiceProgress { component: component.to_string(), phase: phase.to_string(), status })
            }
            StepKind::Snapshot { .. } | StepKind::Other => {}
        }
    }

    let mut lists = NodeLists::default();
    let mut node_progress = Vec::new();
    for (host, phase, steps) in nodes {
        let p = node_progress_of(state, host, phase, &steps, running, until);
        match p.state {
            NodeState::Done => lists.done.push(p.host.clone()),
            NodeState::Left => lists.left.push(p.host.clone()),
            _ => lists.in_progress.push(p.host.clone()),
        }
        node_progress.push(p);
    }

    let resume = match run_state {
        RunState::Stopped { .. } | RunState::Abandoned { .. } if !state.is_complete() => Some(resume_command(state)),
        _ => None,
    };
    RunView {
        format: STATUS_FORMAT,
        run_id: h.run_id.clone(),
        started_at_ms: h.started_at_ms,
        command: CommandView {
            mode: h.identity.mode.clone(),
            release: h.identity.release_version.clone(),
            release_digest: h.identity.release_digest.clone(),
            partial_ok: h.identity.partial_ok,
            argv: last.map(|a| a.command.clone()),
            cwd: last.map(|a| a.cwd.clone()),
        },
        state: run_state,
        lock,
        elapsed_ms: until.saturating_sub(h.started_at_ms),
        steps: Count { done, total },
        staged,
        nodes: lists,
        node_progress,
        services,
        cordoned: state.cordoned.iter().cloned().collect(),
        tainted: state.tainted.iter().cloned().collect(),
        left_out: state
            .left_out
            .iter()
            .map(|(node, reason)| LeftOut { node: node.clone(), reason: reason.clone() })
            .collect(),
        snapshots: state.snapshots.values().cloned().collect(),
        attempts: state
            .attempts
            .iter()
            .map(|a| AttemptView { at_ms: a.at_ms, pid: a.pid, host: a.host.clone(), version: a.version.clone() })
            .collect(),
        resume,
    }
}

/// The header's steps in plan order, then steps a resumed run recorded that the header does not list.
fn ordered_steps(state: &JournalState) -> impl Iterator<Item = &str> {
    let listed: std::collections::HashSet<&str> = state.header.steps.iter().map(String::as_str).collect();
    state
        .header
        .steps
        .iter()
        .map(String::as_str)
        .chain(state.steps.keys().map(String::as_str).filter(move |s| !listed.contains(s)))
}

/// Started and not ended: foreground steps first, then staging.
fn in_progress(state: &JournalState) -> Vec<String> {
    let mut open: Vec<&str> = ordered_steps(state).filter(|s| state.status(s) == StepStatus::Interrupted).collect();
    open.sort_by_key(|s| matches!(classify(s), StepKind::Stage { .. }));
    open.into_iter().map(str::to_string).collect()
}

fn node_progress_of(
    state: &JournalState,
    host: String,
    phase: String,
    steps: &[&str],
    running: bool,
    until: u64,
) -> NodeProgress {
    let done = steps.iter().filter(|s| state.status(s) == StepStatus::Done).count();
    let first = |want: StepStatus| steps.iter().find(|s| state.status(s) == want).map(|s| s.to_string());
    // Steps run in order, so a node whose last step is done has finished, even when a resumed run re-planned it
    // without a step an earlier process had started (the component was found at its target).
    let finished = steps.last().is_some_and(|s| state.status(s) == StepStatus::Done);
    let (node_state, step) = if done == steps.len() || finished {
        (NodeState::Done, None)
    } else if let Some(s) = first(StepStatus::Failed) {
        (NodeState::Failed, Some(s))
    } else if let Some(s) = first(StepStatus::Interrupted) {
        (if running { NodeState::Running } else { NodeState::Interrupted }, Some(s))
    } else if done > 0 {
        (NodeState::Partly, None)
    } else {
        (NodeState::Left, None)
    };
    let elapsed_ms = steps
        .iter()
        .filter_map(|s| state.times.get(*s))
        .map(|t| t.ended_ms.unwrap_or(until).saturating_sub(t.started_ms))
        .fold(0u64, u64::saturating_add);
    NodeProgress { host, phase, state: node_state, steps_done: done, steps_total: steps.len(), step, elapsed_ms }
}

fn resume_command(state: &JournalState) -> Resume {
    match state.attempts.last() {
        Some(a) => {
            let argv: Vec<String> =
                a.command.iter().filter(|w| !NOT_FOR_RESUME.contains(&w.as_str())).cloned().collect();
            let line = shell_line(&argv);
            Resume { shell: format!("cd {} && {line}", quote(&a.cwd)), argv, cwd: Some(a.cwd.clone()) }
        }
        // Format 1 journals did not record the command line: the identity says what must be the same.
        None => {
            let id = &state.header.identity;
            let mut argv = vec!["kismatic".to_string(), "upgrade".to_string(), id.mode.clone()];
            if id.partial_ok {
                argv.push("--partial-ok".into());
            }
            let shell = format!(
                "{} -f PLAN --release DIR   # the same plan file, and the release directory of release {}",
                shell_line(&argv),
                id.release_version
            );
            Resume { argv, cwd: None, shell }
        }
    }
}

/// Words as one line for a POSIX shell, each quoted where it needs to be.
pub fn shell_line(words: &[String]) -> String {
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

fn quote(word: &str) -> String {
    // Command-line words cannot hold a NUL byte, the one thing shlex refuses.
    shlex::try_quote(word).map(|q| q.into_owned()).unwrap_or_else(|_| word.replace('\0', ""))
}
