//! `kismatic status`: the current or last run of a cluster, from its journal and its lock, read-only (a run in
//! progress is never disturbed). Also works on a run folder copied elsewhere. Output formats: docs/status.md.
use crate::common;
use anyhow::Context;
use kismatic_core::human;
use kismatic_journal::store::{JOURNAL_FILE, LockHolder, RunsDir};
use kismatic_journal::view::{self, Lock, NodeState, RunState, RunView};
use kismatic_journal::{JournalState, StepStatus};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
#[command(after_help = "\
Exit status: 0 the status was printed; 1 the cluster has no recorded run; 2 the journal could not be read.

States: running (a process holds the cluster's run lock: its PID and host are shown), stopped (the run recorded \
an error or an interruption and names the step), finished, abandoned (no end was recorded and no process holds \
the lock: it was killed or its machine went down). For an unfinished run that nothing runs, the command that \
resumes it is printed.")]
pub struct StatusArgs {
    /// The plan file of the cluster: its runs are in `runs/` next to it; the latest is shown.
    #[arg(short = 'f', long = "plan-file", default_value = "kismatic-cluster.yaml")]
    pub plan_file: PathBuf,
    /// A run folder (`runs/<run-id>`, or a copy of one) instead of the plan's latest run.
    #[arg(long, value_name = "DIR")]
    pub run: Option<PathBuf>,
    /// Output format: simple text, or one JSON document (docs/status.md).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = crate::info::OutputFormat::Simple)]
    pub output: crate::info::OutputFormat,
}

/// A run folder and its journal.
pub struct LoadedRun {
    pub dir: PathBuf,
    pub state: JournalState,
    /// The cluster's lock as seen for this run.
    pub lock: Lock,
}

/// Finds and reads the run: `--run DIR`, or the latest run next to the plan file. `Ok(None)`: no run recorded.
pub fn load_run(plan_file: &Path, run: Option<&Path>) -> anyhow::Result<Option<LoadedRun>> {
    let dir = match run {
        Some(d) => d.to_path_buf(),
        None => match RunsDir::new(common::default_runs_dir(plan_file)).latest_run()? {
            Some(d) => d,
            None => return Ok(None),
        },
    };
    let path = dir.join(JOURNAL_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read the journal {}", path.display()))?;
    let state = kismatic_journal::parse(&path.display().to_string(), &text)?;
    let lock = lock_for(&dir);
    Ok(Some(LoadedRun { dir, state, lock }))
}

/// The lock tells about a run only when the run is the latest of the runs folder the lock belongs to.
fn lock_for(dir: &Path) -> Lock {
    let Some(root) = dir.parent() else { return Lock::Unknown };
    let runs = RunsDir::new(root);
    let latest = runs.latest_run().ok().flatten();
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !latest.is_some_and(|l| same(&l, dir)) {
        return Lock::Unknown;
    }
    match runs.lock_holder() {
        Some(LockHolder::Held { pid }) => Lock::Held { pid, host: kismatic_journal::store::local_host() },
        Some(LockHolder::Free) => Lock::Free,
        None => Lock::Unknown,
    }
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let Some(run) = load_run(&args.plan_file, args.run.as_deref())? else {
        eprintln!(
            "No run recorded for this cluster: {} holds no run folder (a run starts with `kismatic upgrade`).",
            common::default_runs_dir(&args.plan_file).display()
        );
        return Ok(ExitCode::from(1));
    };
    let v = view::view(&run.state, run.lock, kismatic_exec::time::now_ms());
    let out = match args.output {
        crate::info::OutputFormat::Simple => render_text(&v, &run.dir),
        crate::info::OutputFormat::Json => render_json(&v, &run.dir),
    };
    crate::out!("{out}");
    Ok(ExitCode::SUCCESS)
}

pub fn render_json(v: &RunView, dir: &Path) -> String {
    let mut doc = serde_json::to_value(v).unwrap_or_default();
    if let Some(o) = doc.as_object_mut() {
        o.insert("run_dir".into(), dir.display().to_string().into());
    }
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_default();
    s.push('\n');
    s
}

fn when(ms: u64) -> String {
    kismatic_exec::time::rfc3339(ms / 1000)
}

/// One line saying where the run is.
pub fn state_line(v: &RunView) -> String {
    match &v.state {
        RunState::Running { pid, host, steps } => {
            let pid = pid.map_or("a process".to_string(), |p| format!("pid {p}"));
            let at = if steps.is_empty() { String::new() } else { format!(", at {}", steps.join(", ")) };
            format!("running: {pid} on {host}{at}")
        }
        RunState::Stopped { step, message } => {
            let first = message.lines().next().unwrap_or_default();
            match step {
                // The executor's message starts with the step id.
                Some(s) => format!("stopped at {s}: {}", first.strip_prefix(&format!("{s}: ")).unwrap_or(first)),
                None => format!("stopped: {first}"),
            }
        }
        RunState::Finished { message } => format!("finished: {message}"),
        RunState::Abandoned { steps, pid, host } => {
            let during =
                if steps.is_empty() { "between steps".to_string() } else { format!("during {}", steps.join(", ")) };
            let who = match (pid, host) {
                (Some(p), Some(h)) => format!(" (pid {p} on {h})"),
                _ => String::new(),
            };
            let why = if v.lock == Lock::Unknown {
                "no end recorded, and the lock cannot be checked from here: the process died, or runs elsewhere"
            } else {
                "no end recorded and no process holds the lock: the process was killed or its machine went down"
            };
            format!("abandoned {during}{who}: {why}")
        }
    }
}

pub fn render_text(v: &RunView, dir: &Path) -> String {
    let mut s = String::new();
    let c = &v.command;
    let _ = writeln!(s, "Run {}  ({})", v.run_id, dir.display());
    let _ = writeln!(
        s,
        "Command:  upgrade {}{} to release {} (release.yaml sha256 {})",
        c.mode,
        if c.partial_ok { " --partial-ok" } else { "" },
        c.release,
        short_digest(&c.release_digest)
    );
    if let Some(argv) = &c.argv {
        let _ = writeln!(s, "          {}", view::shell_line(argv));
    }
    let _ = writeln!(s, "State:    {}", state_line(v));
    let _ = writeln!(s, "Started:  {}, elapsed {}", when(v.started_at_ms), human::duration_ms(v.elapsed_ms));
    let _ = writeln!(
        s,
        "Steps:    {} of {} done; artifacts staged on {} of {} node(s)",
        v.steps.done, v.steps.total, v.staged.done, v.staged.total
    );
    let n = &v.nodes;
    let _ = writeln!(s, "Nodes:    {} done, {} in progress, {} left", n.done.len(), n.in_progress.len(), n.left.len());
    let width = v.node_progress.iter().map(|p| p.host.len()).max().unwrap_or(0).max(4);
    for p in &v.node_progress {
        let state = p.state.as_str();
        let time = if p.elapsed_ms > 0 || p.state != NodeState::Left {
            human::duration_ms(p.elapsed_ms)
        } else {
            String::new()
        };
        let step = p.step.as_deref().map(|st| format!("  {st}")).unwrap_or_default();
        let _ = writeln!(
            s,
            "  {:<width$}  {:<7} {:<11} {:>2}/{:<2} {:>8}{step}",
            p.host, p.phase, state, p.steps_done, p.steps_total, time
        );
    }
    if !v.services.is_empty() {
        let items: Vec<String> = v
            .services
            .iter()
            .map(|sv| {
                let st = match sv.status {
                    StepStatus::Done => "applied",
                    StepStatus::Interrupted => "in progress",
                    StepStatus::Failed => "failed",
                    StepStatus::NotStarted => "left",
                };
                format!("{} {st}", sv.component)
            })
            .collect();
        let _ = writeln!(s, "Services: {}", items.join(", "));
    }
    let cordoned = if v.cordoned.is_empty() { "none".to_string() } else { v.cordoned.join(", ") };
    let _ = writeln!(s, "Cordoned by the run: {cordoned}");
    if !v.tainted.is_empty() {
        let _ = writeln!(
            s,
            "Tainted by the run (upgrade.kismatic.io/drain-soon:PreferNoSchedule): {}",
            v.tainted.join(", ")
        );
    }
    for l in &v.left_out {
        let _ = writeln!(s, "Left out at its old version: {} ({}); a rerun retries it", l.node, l.reason);
    }
    for snap in &v.snapshots {
        let _ = writeln!(s, "etcd snapshot ({}): {}:{}", snap.cluster, snap.node, snap.path);
    }
    if v.attempts.len() > 1 {
        let list: Vec<String> =
            v.attempts.iter().map(|a| format!("pid {} on {} at {}", a.pid, a.host, when(a.at_ms))).collect();
        let _ = writeln!(s, "Processes: {}", list.join("; "));
    }
    if let Some(r) = &v.resume {
        let _ = writeln!(s, "\nTo resume, run the same command again:\n  {}", r.shell);
        if !v.cordoned.is_empty() {
            let _ = writeln!(
                s,
                "(it uncordons {} at that node's turn; `kubectl uncordon NODE` does it now)",
                v.cordoned.join(", ")
            );
        }
    }
    if let RunState::Running { .. } = v.state {
        let _ = writeln!(s, "\nFollow it: tail -f {}", dir.join("run.log").display());
    }
    s.lines().map(str::trim_end).fold(String::with_capacity(s.len()), |mut out, l| {
        out.push_str(l);
        out.push('\n');
        out
    })
}

fn short_digest(d: &str) -> &str {
    d.get(..12).unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kismatic_journal::{Event, Header, Record, RunIdentity};

    const T0: u64 = 1_795_636_800_000;

    fn steps() -> Vec<String> {
        let mut s: Vec<String> =
            ["etcd01", "master01", "worker01", "worker02"].iter().map(|n| format!("stage/{n}")).collect();
        s.push("etcd/snapshot/etcd".into());
        s.extend(["etcd/etcd01/upgrade/etcd", "etcd/etcd01/markers"].map(String::from));
        s.extend(
            ["cordon", "drain", "upgrade/kube-apiserver", "upgrade/kubelet", "markers", "uncordon"]
                .map(|a| format!("master/master01/{a}")),
        );
        for w in ["worker01", "worker02"] {
            s.extend(["cordon", "drain", "upgrade/kubelet", "markers", "uncordon"].map(|a| format!("worker/{w}/{a}")));
        }
        s.extend(["registry/registry", "services/dns"].map(String::from));
        s
    }

    /// A run that went through `upto` foreground steps (staging all done), 2 s per step, then started the next.
    fn journal(upto: usize, next_started: bool) -> (JournalState, u64) {
        let header = Header {
            format: kismatic_journal::FORMAT,
            run_id: "20261125T200000Z".into(),
            started_at_ms: T0,
            identity: RunIdentity {
                mode: "online".into(),
                release_version: "1.1.0".into(),
                release_digest: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
                partial_ok: false,
            },
            steps: steps(),
        };
        let mut state = JournalState::new(header);
        let mut t = T0;
        let rec = |state: &mut JournalState, t: u64, event: Event| state.apply(&Record { at_ms: t, event });
        rec(
            &mut state,
            t,
            Event::Attached {
                pid: 4242,
                host: "admin1".into(),
                command: [
                    "kismatic",
                    "upgrade",
                    "online",
                    "-f",
                    "ha.yaml",
                    "--release",
                    "release/1.1.0",
                    "--accept",
                    "ingress-node@ingress01",
                ]
                .map(String::from)
                .to_vec(),
                cwd: "/srv/clusters/prod".into(),
                version: "0.1.0".into(),
            },
        );
        for n in ["etcd01", "master01", "worker01", "worker02"] {
            rec(&mut state, t + 10, Event::Started { step: format!("stage/{n}") });
            rec(&mut state, t + 900, Event::Finished { step: format!("stage/{n}") });
        }
        let fg: Vec<String> = steps().into_iter().filter(|s| !s.starts_with("stage/")).collect();
        for (i, step) in fg.iter().enumerate() {
            if i > upto || (i == upto && !next_started) {
                break;
            }
            t += 1000;
            rec(&mut state, t, Event::Started { step: step.clone() });
            if step.ends_with("/cordon") {
                let node = step.split('/').nth(1).unwrap_or_default().to_string();
                rec(&mut state, t + 100, Event::Cordoned { node });
            }
            if i == upto {
                break;
            }
            if step == "etcd/snapshot/etcd" {
                rec(
                    &mut state,
                    t + 900,
                    Event::Snapshot {
                        cluster: "etcd".into(),
                        node: "etcd01".into(),
                        path: format!("{}/etcd-20261125T200000Z.db", kismatic_ops::contract::SNAPSHOT_DIR),
                    },
                );
            }
            if step.ends_with("/uncordon") {
                let node = step.split('/').nth(1).unwrap_or_default().to_string();
                rec(&mut state, t + 200, Event::Uncordoned { node });
            }
            t += 1000;
            rec(&mut state, t, Event::Finished { step: step.clone() });
        }
        (state, t + 1000)
    }

    fn dir() -> PathBuf {
        PathBuf::from("/srv/clusters/prod/runs/20261125T200000Z")
    }

    #[test]
    fn running_mid_node() {
        // In the drain of worker01: etcd, the master and worker01's cordon are done.
        let (state, now) = journal(10, true);
        let v = view::view(&state, Lock::Held { pid: Some(4242), host: "admin1".into() }, now + 3_500);
        insta::assert_snapshot!(render_text(&v, &dir()));
        insta::assert_snapshot!("running_mid_node_json", render_json(&v, &dir()));
    }

    #[test]
    fn stopped_mid_node() {
        let (mut state, t) = journal(11, true);
        let failed = "worker/worker01/upgrade/kubelet";
        state.apply(&Record {
            at_ms: t,
            event: Event::Failed {
                step: failed.into(),
                error: "Node worker01 not Ready at v1.34.1 within 120s (last: kubelet v1.33.5)".into(),
            },
        });
        state.apply(&Record { at_ms: t + 100, event: Event::Uncordoned { node: "worker01".into() } });
        state.apply(&Record {
            at_ms: t + 200,
            event: Event::Ended {
                completed: false,
                message: format!("{failed}: Node worker01 not Ready at v1.34.1 within 120s (last: kubelet v1.33.5)"),
            },
        });
        let v = view::view(&state, Lock::Free, t + 60_000);
        insta::assert_snapshot!(render_text(&v, &dir()));
    }

    #[test]
    fn tainted_and_left_out_nodes_are_shown() {
        let (mut state, t) = journal(11, true);
        state.apply(&Record { at_ms: t, event: Event::Tainted { node: "worker02".into() } });
        let why = "drain of worker01 timed out after 300s: evicting pod shop/web-0 is refused by \
                   PodDisruptionBudget shop/web (disruptions allowed 0, healthy 2/3)";
        state.apply(&Record { at_ms: t + 100, event: Event::LeftOut { node: "worker01".into(), reason: why.into() } });
        let v = view::view(&state, Lock::Free, t + 60_000);
        let text = render_text(&v, &dir());
        assert!(
            text.contains("Tainted by the run (upgrade.kismatic.io/drain-soon:PreferNoSchedule): worker02"),
            "{text}"
        );
        assert!(text.contains(&format!("Left out at its old version: worker01 ({why}); a rerun retries it")), "{text}");
        // A rerun's cordon of the node (its retry) clears it.
        state.apply(&Record { at_ms: t + 200, event: Event::Cordoned { node: "worker01".into() } });
        assert!(view::view(&state, Lock::Free, t + 60_000).left_out.is_empty());
    }

    #[test]
    fn abandoned_after_a_kill() {
        let (state, now) = journal(11, true);
        let v = view::view(&state, Lock::Free, now + 3_600_000);
        insta::assert_snapshot!(render_text(&v, &dir()));
    }

    #[test]
    fn finished() {
        let total = steps().iter().filter(|s| !s.starts_with("stage/")).count();
        let (mut state, t) = journal(total, false);
        state.apply(&Record {
            at_ms: t,
            event: Event::Ended {
                completed: true,
                message: "The cluster was upgraded successfully to release 1.1.0.".into(),
            },
        });
        let v = view::view(&state, Lock::Free, t + 60_000);
        insta::assert_snapshot!(render_text(&v, &dir()));
    }
}
