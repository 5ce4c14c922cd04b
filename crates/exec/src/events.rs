//! Progress output and the JSON-lines event stream (`--events FILE`): one object per step event, for CI and for
//! measuring where a run spends its time (`wait_ms` is time spent waiting on restarts, health and drains;
//! `remote_ms` the time in node commands outside those waits; the rest of `duration_ms` is the tool's own).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct StepEvent<'a> {
    pub at_ms: u64,
    pub run_id: &'a str,
    pub phase: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<&'a str>,
    pub step: &'a str,
    /// `started`, `finished`, `failed`, `skipped` (done by an earlier run) or `info`.
    pub state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
    /// Time in node commands (round trip and the command's own run) outside the waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_ms: Option<u64>,
    /// Node commands (SSH round trips) the step ran; on the `info` event `ssh` at the end of a run, the node's
    /// total over the run (connections in `message`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub round_trips: Option<u64>,
    /// Each wait inside the step, in order (finished and failed events): what was waited on, from when, how long.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub waits: &'a [WaitSpan],
    #[serde(skip_serializing_if = "str::is_empty")]
    pub message: &'a str,
}

/// What a step waited on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitKind {
    /// A service restart (systemd).
    Restart,
    /// A health gate: running version, /healthz, /readyz and /version, Node Ready, etcd member and quorum.
    Health,
    /// A drain: evictions, retried while a PodDisruptionBudget refuses.
    Drain,
    /// Workloads back at their ready counts after an uncordon, or a service rollout.
    Rollout,
    /// An etcd snapshot being written and verified.
    Snapshot,
}

impl WaitKind {
    pub const ALL: [WaitKind; 5] =
        [WaitKind::Restart, WaitKind::Health, WaitKind::Drain, WaitKind::Rollout, WaitKind::Snapshot];

    pub fn as_str(self) -> &'static str {
        match self {
            WaitKind::Restart => "restart",
            WaitKind::Health => "health",
            WaitKind::Drain => "drain",
            WaitKind::Rollout => "rollout",
            WaitKind::Snapshot => "snapshot",
        }
    }
}

/// One wait: its kind, its start (Unix milliseconds) and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct WaitSpan {
    pub kind: WaitKind,
    pub at_ms: u64,
    pub ms: u64,
}

pub struct Reporter {
    started: Instant,
    events: Option<std::fs::File>,
    /// The run's log in its run folder: every progress line and event, whatever the terminal shows.
    log: Option<std::fs::File>,
    quiet: bool,
    /// On a terminal: a bar of steps done under the lines, with the step in progress and the elapsed time.
    bar: Option<ProgressBar>,
}

impl Reporter {
    /// `total_steps` sizes the terminal progress bar, shown only when standard output is a terminal.
    pub fn new(events: Option<std::fs::File>, log: Option<std::fs::File>, quiet: bool, total_steps: usize) -> Self {
        let bar = (!quiet && std::io::stdout().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total_steps as u64), ProgressDrawTarget::stdout());
            if let Ok(style) =
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps  {wide_msg}")
            {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Reporter { started: Instant::now(), events, log, quiet, bar }
    }

    /// The step now in progress (phase, node, step), shown on the bar.
    pub fn working_on(&self, what: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(what.to_string());
        }
    }

    /// One more step finished or skipped.
    pub fn advance(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    /// Removes the bar (end of the run), leaving the printed lines.
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Human progress line: elapsed, phase, node, step, what happened.
    pub fn line(&mut self, text: &str) {
        // Progress lines carry node output: sanitized here, the one way they reach a terminal.
        let text = kismatic_plan::text::terminal(text);
        let line = format!("[{:>7.1}s] {text}", self.started.elapsed().as_secs_f64());
        match &self.bar {
            // Printed above the bar, which stays at the bottom.
            Some(bar) => bar.println(&line),
            // A closed standard output (`| head`) must not stop a running upgrade: progress is dropped then.
            None if !self.quiet => {
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            None => {}
        }
        if let Some(f) = &mut self.log {
            // The log is for people reading after the fact; the journal is the record that matters.
            let _ = writeln!(f, "{line}");
        }
    }

    pub fn event(&mut self, e: &StepEvent<'_>) {
        if let Ok(mut line) = serde_json::to_string(e) {
            line.push('\n');
            // The event stream is best-effort telemetry; the journal is the record that matters.
            if let Some(f) = &mut self.events {
                let _ = f.write_all(line.as_bytes());
            }
            if let Some(f) = &mut self.log {
                let _ = f.write_all(line.as_bytes());
            }
        }
    }
}

/// A step event read back from an event stream or a run's `run.log` (owned, every field optional that a writer
/// may leave out), for reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct LoggedEvent {
    pub at_ms: u64,
    pub run_id: String,
    pub phase: String,
    #[serde(default)]
    pub node: Option<String>,
    pub step: String,
    pub state: String,
    #[serde(default)]
    pub duration_ms: Option<u64>,
    #[serde(default)]
    pub wait_ms: Option<u64>,
    #[serde(default)]
    pub remote_ms: Option<u64>,
    #[serde(default)]
    pub round_trips: Option<u64>,
    #[serde(default)]
    pub waits: Vec<WaitSpan>,
    #[serde(default)]
    pub message: String,
}

/// The step events of one run in a `run.log` or `--events` file; progress lines and other runs' events are
/// skipped, and so is a torn last line.
pub fn read_events(text: &str, run_id: &str) -> Vec<LoggedEvent> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<LoggedEvent>(l).ok())
        .filter(|e| e.run_id == run_id)
        .collect()
}
