//! The upgrade journal: a durable record of every step's start and end, so that an interrupted upgrade resumes
//! exactly where it stopped, and so that an abort knows which nodes this run cordoned.
//!
//! Format (stable, versioned): a JSON-lines file. The first line is a [`Header`]; every further line is one
//! [`Record`]. Records are only ever appended, each followed by `fsync`, so a crash can at worst leave a torn
//! final line, which [`parse`] drops (it was never acknowledged). The pure half of this crate ([`JournalState`],
//! [`resume_point`], [`ResumeDecision`], [`view`]) does no I/O; [`store`] holds the file handling and the run lock.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub mod store;
pub mod view;

/// Version of the journal file format written; bumped on any incompatible change. Format 2 added the `attached`
/// and `snapshot` records; format 1 journals (without them) are still read and resumed.
pub const FORMAT: u32 = 2;

/// Journal formats this version reads.
pub const READS_FORMATS: [u32; 2] = [1, 2];

/// What the run was started to do. A rerun resumes a journal only when it asks for the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// `online` or `offline`.
    pub mode: String,
    /// Target release version.
    pub release_version: String,
    /// sha256 of the release.yaml the run upgrades to.
    pub release_digest: String,
    pub partial_ok: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub format: u32,
    pub run_id: String,
    /// Unix milliseconds; supplied by the caller (the pure core has no clock).
    pub started_at_ms: u64,
    pub identity: RunIdentity,
    /// The ordered step ids of the plan this run executes.
    pub steps: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        step: String,
    },
    Finished {
        step: String,
    },
    Failed {
        step: String,
        error: String,
    },
    /// A node was cordoned by this run (it must be uncordoned on abort).
    Cordoned {
        node: String,
    },
    Uncordoned {
        node: String,
    },
    /// The workloads whose pods a node's drain is about to evict, recorded before the first eviction so that a
    /// resumed run still waits for them to be back at their ready counts after the node's uncordon.
    Draining {
        node: String,
        workloads: Vec<MovedWorkload>,
    },
    /// The run ended; `completed` is true only when every step finished.
    Ended {
        completed: bool,
        message: String,
    },
    /// A process took charge of the run: its first start, or a rerun that resumes it. Written right after the
    /// run lock is taken, so that `kismatic status` can say who runs it and print the command that resumes it.
    Attached {
        pid: u32,
        host: String,
        /// The command line, as the process received it.
        command: Vec<String>,
        /// The working directory the command ran in (relative paths in `command` are relative to it).
        cwd: String,
        /// The kismatic version of the process.
        version: String,
    },
    /// A verified snapshot of an etcd cluster, taken before its first member was touched.
    Snapshot {
        cluster: String,
        node: String,
        path: String,
    },
    /// Before an online worker batch, the live re-check found that the cluster no longer permits draining it whole:
    /// it runs as these parts, one after another (a resumed run follows them exactly).
    BatchSplit {
        batch: String,
        parts: Vec<Vec<String>>,
        reason: String,
    },
    /// The node got the `PreferNoSchedule` drain-soon taint (its batch is next): it must be removed on abort.
    Tainted {
        node: String,
    },
    Untainted {
        node: String,
    },
    /// `--on-drain-timeout skip`: the node's drain was still refused at the deadline; it was uncordoned and left
    /// at its old version (a rerun retries it).
    LeftOut {
        node: String,
        reason: String,
    },
}

/// A process that ran (part of) the run, from its `attached` record to its `ended` record, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub at_ms: u64,
    pub pid: u32,
    pub host: String,
    pub command: Vec<String>,
    pub cwd: String,
    pub version: String,
}

/// When a step last ran: its latest start, and the end of that attempt (absent while it runs or after a crash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTimes {
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    /// The error of a failed attempt.
    pub error: Option<String>,
    /// How often the step was started (more than once when a resumed run redid it).
    pub starts: u32,
}

/// Where an etcd cluster's snapshot was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotLocation {
    pub cluster: String,
    pub node: String,
    pub path: String,
}

/// How the latest process of a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    pub at_ms: u64,
    pub completed: bool,
    pub message: String,
}

/// A workload (its top owner: Deployment, StatefulSet, ...) with pods moved off a node by its drain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MovedWorkload {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub at_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    NotStarted,
    /// Started but neither finished nor failed: the run died inside this step, whose effect is unknown.
    Interrupted,
    Failed,
    Done,
}

/// The journal folded into what a resume needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalState {
    pub header: Header,
    pub steps: BTreeMap<String, StepStatus>,
    /// Nodes this run cordoned and has not uncordoned.
    pub cordoned: BTreeSet<String>,
    /// Per node, every workload its drain (or a redone drain) moved.
    pub moved: BTreeMap<String, BTreeSet<MovedWorkload>>,
    /// `Some(completed)` once the latest process of the run recorded its end (a resume clears it again).
    pub ended: Option<bool>,
    /// The latest process's end, with its message.
    pub end: Option<RunEnd>,
    /// Every process that took charge of the run, in order (format 2; empty for format 1 journals).
    pub attempts: Vec<Attempt>,
    /// Per step that was started: when its latest attempt started and ended.
    pub times: BTreeMap<String, StepTimes>,
    /// Verified etcd snapshots, by cluster.
    pub snapshots: BTreeMap<String, SnapshotLocation>,
    /// Nodes that carry the run's drain-soon taint (not yet removed).
    pub tainted: BTreeSet<String>,
    /// Nodes left out of the run (`--on-drain-timeout skip`) and why; a later cordon of the node (its retry)
    /// clears it.
    pub left_out: BTreeMap<String, String>,
    /// Online worker batches split by the live re-check: batch id → its parts.
    pub splits: BTreeMap<String, Vec<Vec<String>>>,
    /// Time of the last record (the header's start when there is none).
    pub last_at_ms: u64,
}

impl JournalState {
    pub fn new(header: Header) -> Self {
        let steps = header.steps.iter().map(|s| (s.clone(), StepStatus::NotStarted)).collect();
        let last_at_ms = header.started_at_ms;
        JournalState {
            header,
            steps,
            cordoned: BTreeSet::new(),
            moved: BTreeMap::new(),
            ended: None,
            end: None,
            attempts: Vec::new(),
            times: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            tainted: BTreeSet::new(),
            left_out: BTreeMap::new(),
            splits: BTreeMap::new(),
            last_at_ms,
        }
    }

    /// Applies one record. A resumed run re-plans from the cluster's real state, so it may record steps that are
    /// not in the header's list; they are tracked like the others.
    pub fn apply(&mut self, record: &Record) {
        let at = record.at_ms;
        self.last_at_ms = self.last_at_ms.max(at);
        match &record.event {
            Event::Started { step } => {
                // Work after an end: a rerun resumed the run (format 1 journals have no `attached` record).
                self.reopen();
                self.set(step, StepStatus::Interrupted);
                let t = self.times.entry(step.clone()).or_insert(StepTimes {
                    started_ms: at,
                    ended_ms: None,
                    error: None,
                    starts: 0,
                });
                *t = StepTimes { started_ms: at, ended_ms: None, error: None, starts: t.starts.saturating_add(1) };
            }
            Event::Finished { step } => {
                self.set(step, StepStatus::Done);
                self.end_step(step, at, None);
            }
            Event::Failed { step, error } => {
                self.set(step, StepStatus::Failed);
                self.end_step(step, at, Some(error.clone()));
            }
            Event::Cordoned { node } => {
                self.cordoned.insert(node.clone());
                self.left_out.remove(node);
            }
            Event::Uncordoned { node } => {
                self.cordoned.remove(node);
            }
            // A redone drain finds only the pods still on the node: keep the union.
            Event::Draining { node, workloads } => {
                self.moved.entry(node.clone()).or_default().extend(workloads.iter().cloned());
            }
            Event::Ended { completed, message } => {
                self.ended = Some(*completed);
                self.end = Some(RunEnd { at_ms: at, completed: *completed, message: message.clone() });
            }
            Event::Attached { pid, host, command, cwd, version } => {
                self.reopen();
                self.attempts.push(Attempt {
                    at_ms: at,
                    pid: *pid,
                    host: host.clone(),
                    command: command.clone(),
                    cwd: cwd.clone(),
                    version: version.clone(),
                });
            }
            Event::Snapshot { cluster, node, path } => {
                self.snapshots.insert(
                    cluster.clone(),
                    SnapshotLocation { cluster: cluster.clone(), node: node.clone(), path: path.clone() },
                );
            }
            Event::BatchSplit { batch, parts, .. } => {
                self.splits.insert(batch.clone(), parts.clone());
            }
            Event::Tainted { node } => {
                self.tainted.insert(node.clone());
            }
            Event::Untainted { node } => {
                self.tainted.remove(node);
            }
            Event::LeftOut { node, reason } => {
                self.left_out.insert(node.clone(), reason.clone());
            }
        }
    }

    /// A process resumed a run that had recorded its end: the run is open again. A completed run is never
    /// resumed (a rerun starts afresh), so only an unsuccessful end is cleared.
    fn reopen(&mut self) {
        if self.ended == Some(false) {
            self.ended = None;
            self.end = None;
        }
    }

    fn end_step(&mut self, step: &str, at: u64, error: Option<String>) {
        // An end without a start (a torn or hand-edited journal) still counts, as a zero-length attempt.
        let t = self.times.entry(step.to_string()).or_insert(StepTimes {
            started_ms: at,
            ended_ms: None,
            error: None,
            starts: 1,
        });
        t.ended_ms = Some(at.max(t.started_ms));
        t.error = error;
    }

    fn set(&mut self, step: &str, status: StepStatus) {
        self.steps.insert(step.to_string(), status);
    }

    pub fn status(&self, step: &str) -> StepStatus {
        self.steps.get(step).copied().unwrap_or(StepStatus::NotStarted)
    }

    /// Index (in plan order) of the first step that is not done, or `None` when every step is done.
    pub fn first_unfinished(&self) -> Option<usize> {
        self.header.steps.iter().position(|s| self.status(s) != StepStatus::Done)
    }

    /// The run recorded a successful end, or every planned step is done.
    pub fn is_complete(&self) -> bool {
        self.ended == Some(true) || self.first_unfinished().is_none()
    }

    /// Steps done, for a resumed run to skip.
    pub fn done_steps(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().filter(|(_, s)| **s == StepStatus::Done).map(|(k, _)| k.as_str())
    }
}

/// What a new run does with the journal a previous run left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResumeDecision {
    /// No previous journal, or the previous run completed: start afresh.
    Fresh,
    /// Same command: skip the steps already done, starting at `from` (an index into the previous plan's steps).
    /// Steps that were interrupted are redone after re-checking the node's real state.
    Resume { from: usize },
    /// The previous run is unfinished and was started for something else: refuse rather than mix two upgrades.
    Conflict { reason: String },
}

/// Decides whether `identity` may resume `previous`.
pub fn resume_point(previous: Option<&JournalState>, identity: &RunIdentity) -> ResumeDecision {
    let Some(prev) = previous else { return ResumeDecision::Fresh };
    if prev.is_complete() {
        return ResumeDecision::Fresh;
    }
    let from = prev.first_unfinished().unwrap_or(prev.header.steps.len());
    let p = &prev.header.identity;
    if p.release_version != identity.release_version || p.release_digest != identity.release_digest {
        return ResumeDecision::Conflict {
            reason: format!(
                "run {} is an unfinished upgrade to release {} (release.yaml sha256 {}); this run targets {} ({})",
                prev.header.run_id,
                p.release_version,
                p.release_digest,
                identity.release_version,
                identity.release_digest
            ),
        };
    }
    if p.mode != identity.mode || p.partial_ok != identity.partial_ok {
        return ResumeDecision::Conflict {
            reason: format!(
                "run {} is an unfinished `upgrade {}{}`; rerun that same command to resume it",
                prev.header.run_id,
                p.mode,
                if p.partial_ok { " --partial-ok" } else { "" }
            ),
        };
    }
    ResumeDecision::Resume { from }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("{file}: the journal is empty")]
    Empty { file: String },
    #[error("{file}:1: not a journal header: {error}")]
    Header { file: String, error: String },
    #[error("{file}:1: journal format {found} is not supported (this kismatic reads formats 1 and 2)")]
    Format { file: String, found: u32 },
    #[error("{file}:{line}: corrupt journal record: {error}")]
    Record { file: String, line: usize, error: String },
}

/// Parses a journal file's text. A torn final line (no trailing newline: the write never completed) is ignored;
/// corruption anywhere else is an error naming the line, because silently skipping records could redo or skip work.
pub fn parse(file: &str, text: &str) -> Result<JournalState, ParseError> {
    let complete = text.ends_with('\n');
    let mut lines: Vec<&str> = text.split_terminator('\n').collect();
    if !complete {
        lines.pop();
    }
    let Some(first) = lines.first() else { return Err(ParseError::Empty { file: file.to_string() }) };
    let header: Header =
        serde_json::from_str(first).map_err(|e| ParseError::Header { file: file.to_string(), error: e.to_string() })?;
    if !READS_FORMATS.contains(&header.format) {
        return Err(ParseError::Format { file: file.to_string(), found: header.format });
    }
    let mut state = JournalState::new(header);
    for (i, line) in lines.iter().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(line).map_err(|e| ParseError::Record {
            file: file.to_string(),
            line: i + 1,
            error: e.to_string(),
        })?;
        state.apply(&record);
    }
    Ok(state)
}

#[cfg(test)]
mod tests;
