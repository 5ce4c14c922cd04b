//! `kismatic report RUN_DIR`: the run's timeline as one self-contained HTML page (no script, no network: it
//! opens from disk and can be mailed), written into the run folder at the end of every run and on demand.
//!
//! The page: the run's status, an SVG Gantt chart — one lane per node and one for the on-cluster services, each
//! step a bar of its work with its waits (restart, health, drain, rollout, snapshot) drawn over it, staging as a
//! thin bar under the lane, a dashed line where a process took over the run — then the summary table per node and
//! every finding of the plan. Read from the run folder: `journal.jsonl` (required), the events in `run.log`,
//! `upgrade-plan.json` and `result.json` when present.
use crate::status;
use anyhow::Context;
use kismatic_core::human;
use kismatic_core::planner::UpgradePlan;
use kismatic_exec::events::{LoggedEvent, WaitKind, WaitSpan, read_events};
use kismatic_journal::JournalState;
use kismatic_journal::view::{self, RunView, StepKind, classify};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The page's name in the run folder.
pub const TIMELINE_FILE: &str = "timeline.html";
/// The end-of-run result (the `result` document of `-o json`), kept for the report.
pub const RESULT_FILE: &str = "result.json";

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The run folder (`runs/<run-id>` next to the plan file, or a copy of one).
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,
    /// Where to write the page (default: timeline.html in the run folder).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let out = args.output.unwrap_or_else(|| args.run_dir.join(TIMELINE_FILE));
    write_report(&args.run_dir, &out)?;
    crate::outln!("{}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// Everything the page shows, read from a run folder.
pub struct ReportInput {
    pub dir: PathBuf,
    pub state: JournalState,
    pub view: RunView,
    pub events: Vec<LoggedEvent>,
    pub plan: Option<UpgradePlan>,
    pub result: Option<serde_json::Value>,
}

pub fn read_input(dir: &Path) -> anyhow::Result<ReportInput> {
    let run = status::load_run(Path::new(""), Some(dir))?.context("no run")?;
    let now = kismatic_exec::time::now_ms();
    let view = view::view(&run.state, run.lock, now);
    let events = std::fs::read_to_string(dir.join("run.log"))
        .map(|t| read_events(&t, &run.state.header.run_id))
        .unwrap_or_default();
    let plan = std::fs::read_to_string(dir.join(kismatic_exec::run::UPGRADE_PLAN_FILE))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let result = std::fs::read_to_string(dir.join(RESULT_FILE)).ok().and_then(|t| serde_json::from_str(&t).ok());
    Ok(ReportInput { dir: dir.to_path_buf(), state: run.state, view, events, plan, result })
}

/// Reads the run folder and writes the page to `out` (atomically: a reader never sees half a page).
pub fn write_report(dir: &Path, out: &Path) -> anyhow::Result<()> {
    let input = read_input(dir)?;
    let html = render(&input);
    let tmp = out.with_extension("html.tmp");
    std::fs::write(&tmp, html).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BarEnd {
    Done,
    Failed,
    /// Started by a process that died (or is still running it).
    Open,
}

#[derive(Debug, Clone)]
struct Bar {
    lane: usize,
    staging: bool,
    start: u64,
    end: u64,
    step: String,
    how: BarEnd,
    waits: Vec<WaitSpan>,
    message: String,
}

/// Lanes: every node in plan order (the order of the journal's steps), then the services.
fn lanes(state: &JournalState, events: &[LoggedEvent]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |n: &str| {
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    };
    let steps = state.header.steps.iter().map(String::as_str).chain(state.steps.keys().map(String::as_str));
    let mut staged = Vec::new();
    for s in steps {
        match classify(s) {
            StepKind::Node { node, .. } => add(node),
            StepKind::Stage { node } => staged.push(node),
            _ => {}
        }
    }
    for n in staged {
        add(n);
    }
    for e in events {
        if let Some(n) = &e.node {
            add(n);
        }
    }
    out.push(SERVICES_LANE.to_string());
    out
}

const SERVICES_LANE: &str = "services";

fn lane_of(lanes: &[String], e: &LoggedEvent) -> usize {
    let name = e.node.as_deref().unwrap_or(SERVICES_LANE);
    lanes.iter().position(|l| l == name).unwrap_or(lanes.len() - 1)
}

/// Bars from the step events; a step started by a process that then died ends at that process's last event.
fn bars(input: &ReportInput, lanes: &[String], now: u64) -> Vec<Bar> {
    let attempts: Vec<u64> = input.state.attempts.iter().map(|a| a.at_ms).collect();
    let mut open: BTreeMap<String, &LoggedEvent> = BTreeMap::new();
    let mut out = Vec::new();
    let running = matches!(input.view.state, view::RunState::Running { .. });
    let last_before = |from: u64| -> u64 {
        let next = attempts.iter().copied().find(|a| *a > from);
        let in_attempt = input.events.iter().map(|e| e.at_ms).filter(|t| *t >= from && next.is_none_or(|n| *t < n));
        match (in_attempt.max(), next) {
            (_, None) if running => now,
            (Some(t), _) => t,
            (None, _) => from,
        }
    };
    let close_open = |e: &LoggedEvent, out: &mut Vec<Bar>| {
        out.push(Bar {
            lane: lane_of(lanes, e),
            staging: e.phase == "stage",
            start: e.at_ms,
            end: last_before(e.at_ms).max(e.at_ms),
            step: e.step.clone(),
            how: BarEnd::Open,
            waits: Vec::new(),
            message: "started; no end recorded (the process died, or it is still running)".into(),
        });
    };
    for e in &input.events {
        match e.state.as_str() {
            "started" => {
                if let Some(prev) = open.insert(e.step.clone(), e) {
                    close_open(prev, &mut out);
                }
            }
            "finished" | "failed" => {
                let started = open.remove(&e.step).map(|s| s.at_ms);
                let start = e.duration_ms.map(|d| e.at_ms.saturating_sub(d)).or(started).unwrap_or(e.at_ms);
                out.push(Bar {
                    lane: lane_of(lanes, e),
                    staging: e.phase == "stage",
                    start,
                    end: e.at_ms,
                    step: e.step.clone(),
                    how: if e.state == "failed" { BarEnd::Failed } else { BarEnd::Done },
                    waits: e.waits.clone(),
                    message: e.message.clone(),
                });
            }
            _ => {}
        }
    }
    for e in open.into_values() {
        close_open(e, &mut out);
    }
    out
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn wait_color(k: WaitKind) -> &'static str {
    match k {
        WaitKind::Restart => "#f28e2b",
        WaitKind::Health => "#59a14f",
        WaitKind::Drain => "#b07aa1",
        WaitKind::Rollout => "#edc948",
        WaitKind::Snapshot => "#76b7b2",
    }
}

const WORK_COLOR: &str = "#4e79a7";
const STAGE_COLOR: &str = "#a0a0a0";
const LABEL_W: f64 = 150.0;
const CHART_W: f64 = 1000.0;
const LANE_H: f64 = 28.0;
const AXIS_H: f64 = 30.0;

/// A tick interval giving at most about ten ticks.
fn tick_ms(span: u64) -> u64 {
    const STEPS_S: [u64; 16] = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14_400, 43_200];
    let span_s = span / 1000;
    STEPS_S.iter().copied().find(|s| span_s / s <= 10).unwrap_or(86_400) * 1000
}

fn svg(input: &ReportInput, now: u64) -> String {
    let lanes = lanes(&input.state, &input.events);
    let bars = bars(input, &lanes, now);
    let t0 = input.state.header.started_at_ms.min(bars.iter().map(|b| b.start).min().unwrap_or(u64::MAX));
    let t1 = bars.iter().map(|b| b.end).max().unwrap_or(t0).max(t0 + input.view.elapsed_ms).max(t0 + 1000);
    let span = t1 - t0;
    let x = |t: u64| LABEL_W + (t.saturating_sub(t0)) as f64 * CHART_W / span as f64;
    let height = AXIS_H + LANE_H * lanes.len() as f64 + 10.0;
    let width = LABEL_W + CHART_W + 20.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg class="gantt" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="timeline">
<defs><pattern id="open" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#d9d9d9"/><line x1="0" y1="0" x2="0" y2="6" stroke="#888" stroke-width="3"/></pattern></defs>
"##
    );
    // Lanes and their labels.
    for (i, lane) in lanes.iter().enumerate() {
        let y = AXIS_H + LANE_H * i as f64;
        let fill = if i % 2 == 0 { "#f7f7f7" } else { "#ffffff" };
        let _ = writeln!(
            s,
            r#"<rect x="0" y="{y}" width="{width}" height="{LANE_H}" fill="{fill}"/><text x="6" y="{}" class="lane">{}</text>"#,
            y + 18.0,
            esc(lane)
        );
    }
    // Time axis.
    let tick = tick_ms(span);
    let mut t = 0;
    while t <= span {
        let px = x(t0 + t);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{}" x2="{px:.1}" y2="{}" stroke="#ddd"/><text x="{px:.1}" y="18" class="tick">{}</text>"##,
            AXIS_H - 6.0,
            height - 10.0,
            esc(&human::duration_ms(t))
        );
        t += tick;
    }
    // Where a process took over the run (its first start, each resume).
    for (i, a) in input.state.attempts.iter().enumerate() {
        let px = x(a.at_ms);
        let what = if i == 0 { "started" } else { "resumed" };
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{AXIS_H}" x2="{px:.1}" y2="{}" stroke="#333" stroke-dasharray="4 3"><title>{what} by pid {} on {}</title></line>"##,
            height - 10.0,
            a.pid,
            esc(&a.host)
        );
    }
    for b in &bars {
        let y = AXIS_H + LANE_H * b.lane as f64;
        let (top, h) = if b.staging { (y + 21.0, 5.0) } else { (y + 4.0, 15.0) };
        let (x0, x1) = (x(b.start), x(b.end));
        // A step whose process died right after starting it still shows (hatched).
        let w = (x1 - x0).max(if b.how == BarEnd::Open { 4.0 } else { 1.0 });
        let fill = match (b.how, b.staging) {
            (BarEnd::Open, _) => "url(#open)",
            (_, true) => STAGE_COLOR,
            _ => WORK_COLOR,
        };
        let stroke = if b.how == BarEnd::Failed { r##" stroke="#d62728" stroke-width="2""## } else { "" };
        let waited: u64 = b.waits.iter().map(|w| w.ms).sum();
        let mut tip = format!(
            "{}: {}{}",
            b.step,
            human::duration_ms(b.end - b.start),
            if waited > 0 { format!(", waiting {}", human::duration_ms(waited)) } else { String::new() }
        );
        if b.how == BarEnd::Failed {
            tip.push_str(" (FAILED)");
        }
        if !b.message.is_empty() {
            tip.push('\n');
            tip.push_str(&b.message);
        }
        let _ = writeln!(
            s,
            r#"<rect x="{x0:.1}" y="{top}" width="{w:.1}" height="{h}" fill="{fill}"{stroke}><title>{}</title></rect>"#,
            esc(&tip)
        );
        for wspan in &b.waits {
            let (wx0, wx1) = (x(wspan.at_ms), x(wspan.at_ms.saturating_add(wspan.ms)));
            let _ = writeln!(
                s,
                r#"<rect x="{wx0:.1}" y="{top}" width="{:.1}" height="{h}" fill="{}"><title>{}</title></rect>"#,
                (wx1 - wx0).max(0.5),
                wait_color(wspan.kind),
                esc(&format!("{}: waiting on {} for {}", b.step, wspan.kind.as_str(), human::duration_ms(wspan.ms)))
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

fn legend() -> String {
    let mut s = String::from(r#"<p class="legend">"#);
    let mut item = |color: &str, label: &str| {
        let _ = write!(s, r#"<span><i style="background:{color}"></i>{label}</span>"#);
    };
    item(WORK_COLOR, "work (commands, uploads, API calls)");
    for k in WaitKind::ALL {
        item(wait_color(k), &format!("waiting: {}", k.as_str()));
    }
    item(STAGE_COLOR, "staging (background, thin bar)");
    item("#aaa", "started, no end recorded (hatched)");
    s.push_str(r#"<span><i style="background:#fff;border:2px solid #d62728"></i>failed</span></p>"#);
    s
}

fn summary_table(input: &ReportInput) -> String {
    let from_result: BTreeMap<String, &serde_json::Value> = input
        .result
        .as_ref()
        .and_then(|r| r["nodes"].as_array())
        .map(|ns| ns.iter().filter_map(|n| Some((n["host"].as_str()?.to_string(), n))).collect())
        .unwrap_or_default();
    let mut waits: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &input.events {
        // The node's own steps, as in its time (not staging, not the etcd snapshot taken on it).
        if let (Some(n), Some(w)) = (e.node.as_deref(), e.wait_ms)
            && matches!(classify(&e.step), StepKind::Node { .. })
        {
            *waits.entry(n).or_default() += w;
        }
    }
    let changes = |host: &str| -> String {
        let Some(plan) = &input.plan else { return String::new() };
        let Some((_, np)) = plan.node_plans().find(|(_, np)| np.host == host) else { return String::new() };
        np.upgrades().map(|(c, f, t)| format!("{c} {} → {t}", f.unwrap_or("none"))).collect::<Vec<_>>().join(", ")
    };
    let mut s = String::from(
        "<table><thead><tr><th>node</th><th>phase</th><th>state</th><th>steps</th><th>time</th><th>waiting</th>\
         <th>release</th><th>components</th><th>now at / outcome</th></tr></thead><tbody>\n",
    );
    for p in &input.view.node_progress {
        let state = p.state.as_str();
        let release = from_result
            .get(&p.host)
            .map(|n| format!("{} → {}", n["from"].as_str().unwrap_or("?"), n["to"].as_str().unwrap_or("?")))
            .unwrap_or_else(|| format!("→ {}", input.view.command.release));
        let outcome = from_result
            .get(&p.host)
            .and_then(|n| n["outcome"].as_str().map(str::to_string))
            .or_else(|| p.step.clone())
            .unwrap_or_default();
        let _ = writeln!(
            s,
            r#"<tr class="{state}"><td>{}</td><td>{}</td><td>{state}</td><td>{}/{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            esc(&p.host),
            esc(&p.phase),
            p.steps_done,
            p.steps_total,
            human::duration_ms(p.elapsed_ms),
            human::duration_ms(waits.get(p.host.as_str()).copied().unwrap_or(0)),
            esc(&release),
            esc(&changes(&p.host)),
            esc(&outcome)
        );
    }
    for sv in &input.view.services {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td colspan=\"6\"></td></tr>",
            esc(&sv.component),
            esc(&sv.phase),
            esc(&format!("{:?}", sv.status).to_lowercase())
        );
    }
    if let Some(plan) = &input.plan {
        for p in &plan.pruned {
            let codes: Vec<&str> = p.codes.iter().map(|c| c.as_str()).collect();
            let _ = writeln!(
                s,
                "<tr class=\"left\"><td>{}</td><td></td><td>left out</td><td colspan=\"6\">{}</td></tr>",
                esc(&p.host),
                esc(&codes.join(", "))
            );
        }
    }
    s.push_str("</tbody></table>\n");
    s
}

fn findings_table(plan: Option<&UpgradePlan>) -> String {
    let Some(plan) = plan else {
        return "<p>The run folder has no upgrade-plan.json (a run started by an older kismatic).</p>\n".into();
    };
    if plan.findings.is_empty() {
        return "<p>No findings.</p>\n".into();
    }
    let mut s = String::from(
        "<table><thead><tr><th>node</th><th>class</th><th>code</th><th>object</th><th>message</th></tr></thead><tbody>\n",
    );
    for f in &plan.findings {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&f.node),
            f.class.as_str(),
            f.code.as_str(),
            esc(&f.object),
            esc(&f.message)
        );
    }
    s.push_str("</tbody></table>\n");
    s
}

const STYLE: &str = "body{font:14px/1.4 sans-serif;margin:24px;color:#222}h1{font-size:20px}h2{font-size:16px;\
margin-top:28px}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;\
vertical-align:top}th{background:#eee}tr.failed td{background:#fde0e0}tr.interrupted td,tr.running td{background:\
#fff5d6}.gantt text{font:12px sans-serif}.gantt .tick{fill:#666;text-anchor:middle}.legend span{margin-right:14px;\
white-space:nowrap}.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}\
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px}dt{font-weight:bold}dd{margin:0}";

/// The whole page. Pure given its input and `now` (a running run's open steps extend to now).
pub fn render_at(input: &ReportInput, now: u64) -> String {
    let v = &input.view;
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>kismatic run {}</title><style>{STYLE}</style></head><body>\n",
        esc(&v.run_id)
    );
    let _ = writeln!(
        s,
        "<h1>kismatic upgrade {} to release {} — run {}</h1>",
        esc(&v.command.mode),
        esc(&v.command.release),
        esc(&v.run_id)
    );
    s.push_str("<dl>\n");
    let mut row = |k: &str, val: &str| {
        let _ = writeln!(s, "<dt>{k}</dt><dd>{}</dd>", esc(val));
    };
    row("state", &status::state_line(v));
    if let Some(argv) = &v.command.argv {
        row("command", &view::shell_line(argv));
    }
    row("started", &kismatic_exec::time::rfc3339(v.started_at_ms / 1000));
    row("elapsed", &human::duration_ms(v.elapsed_ms));
    row(
        "nodes",
        &format!("{} done, {} in progress, {} left", v.nodes.done.len(), v.nodes.in_progress.len(), v.nodes.left.len()),
    );
    row("steps", &format!("{} of {} done", v.steps.done, v.steps.total));
    for snap in &v.snapshots {
        row("etcd snapshot", &format!("{}: {}:{}", snap.cluster, snap.node, snap.path));
    }
    if !v.cordoned.is_empty() {
        row("cordoned by the run", &v.cordoned.join(", "));
    }
    if let Some(r) = &v.resume {
        row("resume with", &r.shell);
    }
    row("run folder", &input.dir.display().to_string());
    s.push_str("</dl>\n<h2>Timeline</h2>\n");
    if input.events.is_empty() {
        s.push_str("<p>No step events in run.log: the timeline is empty.</p>\n");
    }
    s.push_str(&legend());
    s.push_str(&svg(input, now));
    s.push_str("<h2>Nodes</h2>\n");
    s.push_str(&summary_table(input));
    s.push_str("<h2>Findings</h2>\n");
    s.push_str(&findings_table(input.plan.as_ref()));
    s.push_str("</body></html>\n");
    s
}

pub fn render(input: &ReportInput) -> String {
    render_at(input, kismatic_exec::time::now_ms())
}
