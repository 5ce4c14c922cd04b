//! Progress output and the JSON-lines event stream (`--events FILE`): one object per step event, for CI and for
//! measuring where a run spends its time (`wait_ms` is time spent waiting on restarts, health and drains).

use serde::Serialize;
use std::io::Write;
use std::time::Instant;

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
    #[serde(skip_serializing_if = "str::is_empty")]
    pub message: &'a str,
}

pub struct Reporter {
    started: Instant,
    events: Option<std::fs::File>,
    quiet: bool,
}

impl Reporter {
    pub fn new(events: Option<std::fs::File>, quiet: bool) -> Self {
        Reporter { started: Instant::now(), events, quiet }
    }

    pub fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Human progress line: elapsed, phase, node, step, what happened.
    pub fn line(&self, text: &str) {
        if !self.quiet {
            println!("[{:>7.1}s] {text}", self.started.elapsed().as_secs_f64());
        }
    }

    pub fn event(&mut self, e: &StepEvent<'_>) {
        if let Some(f) = &mut self.events
            && let Ok(mut line) = serde_json::to_string(e)
        {
            line.push('\n');
            // The event stream is best-effort telemetry; the journal is the record that matters.
            let _ = f.write_all(line.as_bytes());
        }
    }
}
