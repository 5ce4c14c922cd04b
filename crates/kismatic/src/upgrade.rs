//! `kismatic upgrade online|offline`: gather facts (or read them), analyse, plan, and execute the plan.
use crate::common;
use crate::info::SshArgs;
use anyhow::{Context, bail};
use kismatic_core::batching::{DEFAULT_TOPOLOGY_KEY, MaxUnavailable};
use kismatic_core::checks::{CheckOptions, DEFAULT_MIN_FREE_BYTES, Mode, analyze};
use kismatic_core::facts::Facts;
use kismatic_core::planner::{PlanOptions, plan};
use kismatic_core::render;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const AFTER_HELP: &str = "\
Exit status: 0 the cluster was upgraded (with --dry-run: the plan is ready and nothing was changed); 1 the upgrade \
is blocked (every finding is printed, grouped by node; there is no prompt) or it stopped part-way (the message says \
where, and rerunning the same command resumes); 2 an error before anything was changed (bad plan, release, facts \
file, ...).

Finding classes: unsafe (data may be lost), unavailable (availability may be lost), unready (the node cannot take \
the upgrade). Codes and rules: docs/checks.md.";

#[derive(clap::Subcommand)]
pub enum UpgradeCommand {
    /// Upgrade with safety and availability checks: stop (print every finding and exit 1) if anything is unsafe,
    /// unavailable or unready. Workers are cordoned and drained one at a time, or in batches proven not to breach
    /// a PodDisruptionBudget with --max-unavailable.
    #[command(after_help = AFTER_HELP)]
    Online(OnlineArgs),
    /// Upgrade without safety checks, cordons or drains; only node readiness is checked. For clusters without
    /// production workloads.
    #[command(after_help = AFTER_HELP)]
    Offline(OfflineArgs),
}

#[derive(clap::Args)]
pub struct OnlineArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Report unsafe and unavailable findings but upgrade anyway (readiness findings still stop the upgrade).
    #[arg(long)]
    ignore_safety_checks: bool,
    /// Acknowledge one kind of unsafe or unavailable finding, on one node (CODE@NODE) or on all (CODE): it is still
    /// reported but no longer stops the upgrade. Repeatable. Example: --accept ingress-node@ingress01.
    #[arg(long, value_name = "CODE[@NODE]")]
    accept: Vec<kismatic_core::planner::Acceptance>,
    /// Workers drained and upgraded together at most: a number of nodes, or a percentage of the workers (rounded
    /// down, at least 1). Batches are made smaller where draining them together would take more from a
    /// PodDisruptionBudget than it allows, leave a replicated controller without a ready replica, span failure
    /// domains or overfill the other nodes; --dry-run shows each batch and what bounded it.
    #[arg(long, value_name = "N|P%", default_value = "1")]
    max_unavailable: MaxUnavailable,
    /// Node label whose values are failure domains: a batch stays within one (a node without it goes alone).
    #[arg(long, value_name = "LABEL", default_value = DEFAULT_TOPOLOGY_KEY)]
    batch_topology_key: String,
    /// What a worker whose drain is still refused at --drain-timeout does to the run. stop: the run stops there
    /// (the node is uncordoned; the rerun resumes at its drain). skip: the node is uncordoned, left at its old
    /// version and named with the pod and budget that refused; the run goes on, skips the on-cluster services
    /// and exits 1; rerunning the same command retries it.
    #[arg(long, value_name = "stop|skip", default_value = "stop")]
    on_drain_timeout: kismatic_exec::run::OnDrainTimeout,
}

#[derive(clap::Args)]
pub struct OfflineArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Workers upgraded at the same time (etcd nodes and masters always go one at a time).
    #[arg(long, default_value_t = 1, value_parser = common::parallel_workers)]
    max_parallel_workers: u32,
    /// Acknowledge a finding that stops offline upgrades too but is not a readiness problem: removed-api (an API
    /// the upgrade removes is still in use) or in-place-kubelet-minor (a kubelet changes minor version without a
    /// drain), on one node (CODE@NODE) or on all (CODE). Repeatable.
    #[arg(long, value_name = "CODE[@NODE]")]
    accept: Vec<kismatic_core::planner::Acceptance>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Output {
    Simple,
    Json,
}

#[derive(clap::Args)]
struct CommonArgs {
    /// The plan file describing the cluster (not read with --facts: the facts document carries its inventory).
    #[arg(short = 'f', long = "plan-file", default_value = "kismatic-cluster.yaml")]
    plan_file: PathBuf,
    /// Release directory holding release.yaml and the artifacts (default: `release` next to the binary).
    #[arg(long, value_name = "DIR")]
    release: Option<PathBuf>,
    /// Upgrade the nodes that have no findings and leave the flagged ones out (flagged etcd and master nodes still
    /// stop the upgrade). The plan then ends before the cluster services.
    #[arg(long)]
    partial_ok: bool,
    /// Print the plan and every finding; change nothing anywhere.
    #[arg(long)]
    dry_run: bool,
    /// Skip the disk-space and package readiness checks (unreachable nodes and version policy are always checked).
    #[arg(long)]
    skip_preflight: bool,
    /// Output format. simple: the plan, progress lines (with a progress bar on a terminal) and a summary per node.
    /// json: JSON documents on standard output, the plan object then (when the upgrade runs) a one-line `result`;
    /// progress goes only to the run's log.
    #[arg(short = 'o', long, value_enum, default_value = "simple")]
    output: Output,
    /// Analyse a facts document (written by `kismatic facts`) instead of the live cluster; nothing is contacted.
    #[arg(long, value_name = "FILE")]
    facts: Option<PathBuf>,
    /// Bytes that must stay free on / after the release's artifacts are placed.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MIN_FREE_BYTES,
        value_parser = common::min_free_bytes)]
    min_free_bytes: u64,
    /// kubeconfig for the cluster's API (default: generated/kubeconfig next to the plan file).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Append one JSON object per step event to FILE (JSON lines).
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// How long a drain retries evictions refused by a PodDisruptionBudget before the run stops, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = common::timeout_secs)]
    drain_timeout: u64,
    /// Deadline for each component to come back at its target version (and each node to turn Ready), in seconds;
    /// the longer of this and --drain-timeout is how long moved workloads may take to be ready again and how long
    /// an on-cluster service's rollout may go without progress.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = common::timeout_secs)]
    node_timeout: u64,
    /// Restart every upgraded component's service even when nothing changed on the node.
    #[arg(long)]
    restart_services: bool,
    /// Start afresh even though the previous run on this cluster is unfinished (its journal is kept).
    #[arg(long)]
    discard_journal: bool,
    /// Copy each etcd snapshot taken before the upgrade into DIR on this machine (created 0700; files 0600), as
    /// well as keeping it on the etcd node.
    #[arg(long, value_name = "DIR")]
    snapshot_dir: Option<PathBuf>,
    /// Deadline of one kind of node command, past which it is stopped on the node and the run stops (the rerun
    /// resumes). Kinds and defaults: command=60 (reads, marker writes, health probes), transfer=900 (artifact
    /// uploads), install=600 (apt-get), restart=300 (systemctl restart), snapshot=600 (etcd snapshot). Repeatable.
    #[arg(long, value_name = "KIND=SECONDS")]
    command_timeout: Vec<String>,
    /// Port of the API server on each master: asked directly for its version and deprecated-API metric before the
    /// upgrade, and for the health gate after upgrading it.
    #[arg(long, value_name = "PORT", default_value_t = 6443, value_parser = common::port)]
    apiserver_port: u16,
    #[command(flatten)]
    ssh: SshArgs,
}

pub fn run(cmd: UpgradeCommand) -> anyhow::Result<ExitCode> {
    let (common, mode, safety) = match cmd {
        UpgradeCommand::Online(a) => (
            a.common,
            Mode::Online,
            Safety {
                ignore: a.ignore_safety_checks,
                accepted: a.accept,
                parallel: 1,
                max_unavailable: a.max_unavailable,
                topology_key: a.batch_topology_key,
                on_drain_timeout: a.on_drain_timeout,
            },
        ),
        UpgradeCommand::Offline(a) => (
            a.common,
            Mode::Offline,
            Safety {
                ignore: false,
                accepted: a.accept,
                parallel: a.max_parallel_workers as usize,
                max_unavailable: MaxUnavailable::default(),
                topology_key: DEFAULT_TOPOLOGY_KEY.to_string(),
                on_drain_timeout: Default::default(),
            },
        ),
    };
    let release = common::load_release(common.release.as_deref())?;
    if let Some(facts_path) = &common.facts {
        let facts = read_facts(facts_path)?;
        let plan = analyse_and_plan(&facts, &release, &common, mode, &safety)?;
        if plan.is_blocked() {
            return Ok(ExitCode::from(1));
        }
        if !common.dry_run {
            bail!(
                "--facts analyses a saved facts document and changes nothing: add --dry-run, or drop --facts to upgrade"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let inventory = kismatic_plan::load(&common.plan_file)
        .with_context(|| format!("reading plan file {}", common.plan_file.display()))?;
    let kubeconfig = common.kubeconfig.clone().unwrap_or_else(|| common::default_kubeconfig(&common.plan_file));
    let mut fleet_config = common.ssh.fleet_config(&inventory);
    for spec in &common.command_timeout {
        fleet_config.deadlines.apply(spec).map_err(|e| anyhow::anyhow!("--command-timeout {e}"))?;
    }
    let fleet = kismatic_fleet::Fleet::new(fleet_config).context("setting up SSH")?;
    let runtime = common::runtime()?;
    let gathered = runtime.block_on(kismatic_exec::gather::gather(
        &fleet,
        &inventory,
        &release,
        Some(&kubeconfig),
        common.apiserver_port,
    ));
    for w in &gathered.warnings {
        eprintln!("warning: {}", kismatic_plan::text::terminal(&w.to_string()));
    }
    let plan = analyse_and_plan(&gathered.facts, &release, &common, mode, &safety)?;
    if plan.is_blocked() {
        return Ok(ExitCode::from(1));
    }
    if common.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    let cfg = kismatic_exec::run::ExecConfig {
        kubeconfig,
        runs_dir: common::default_runs_dir(&common.plan_file),
        mode: mode.to_string(),
        partial_ok: common.partial_ok,
        drain_timeout: Duration::from_secs(common.drain_timeout),
        node_timeout: Duration::from_secs(common.node_timeout),
        workload_timeout: Duration::from_secs(common.node_timeout.max(common.drain_timeout)),
        stable_for: Duration::from_secs(3),
        restart_services: common.restart_services,
        events: common.events.clone(),
        discard_previous: common.discard_journal,
        quiet: matches!(common.output, Output::Json),
        command: std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect(),
        snapshot_dir: common.snapshot_dir.clone(),
        kube_names: kismatic_exec::run::kube_names(&gathered.facts),
        on_drain_timeout: safety.on_drain_timeout,
    };
    if plan.phases.is_empty() {
        // A run that was interrupted after its last node reached the release may have left nodes cordoned.
        let tidied = runtime.block_on(kismatic_exec::run::close_previous(&release, &cfg))?;
        let message = format!("{tidied}Nothing to do: every node is at release {}.", release.version);
        match common.output {
            Output::Simple => println!("{message}"),
            Output::Json => println!(
                "{}",
                serde_json::json!({"result": {"completed": true, "release": release.version.to_string(), "nodes": [], "left_out": [], "message": message}})
            ),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = runtime.block_on(kismatic_exec::run::execute(&plan, &inventory, &release, &fleet, &cfg))?;
    let from_version = |host: &str| {
        gathered
            .facts
            .nodes
            .iter()
            .find(|n| n.host == host)
            .and_then(|n| n.kismatic_version.present())
            .map(|v| v.to_string())
            .unwrap_or_else(|| "none".into())
    };
    let nodes: Vec<NodeSummary> = outcome
        .nodes
        .iter()
        .map(|(host, took, result)| NodeSummary {
            host: host.clone(),
            from: from_version(host),
            to: release.version.to_string(),
            seconds: (took.as_secs_f64() * 10.0).round() / 10.0,
            outcome: result.clone(),
        })
        .collect();
    let mut left_out: Vec<serde_json::Value> = plan
        .pruned
        .iter()
        .map(|p| serde_json::json!({"host": p.host, "codes": p.codes.iter().map(|c| c.as_str()).collect::<Vec<_>>()}))
        .collect();
    left_out.extend(outcome.left_out.iter().map(|(host, why)| serde_json::json!({"host": host, "drain_timeout": why})));
    let result = serde_json::json!({"result": {
        "completed": outcome.completed,
        "resumed": outcome.resumed,
        "run_dir": outcome.run_dir,
        "release": release.version.to_string(),
        "nodes": nodes,
        "left_out": left_out,
        "message": outcome.message,
    }});
    let timeline = keep_result_and_timeline(&outcome.run_dir, &result["result"]);
    match common.output {
        Output::Simple => {
            crate::outln_lossy!("\nSummary:");
            for n in &nodes {
                crate::outln_lossy!("  {:<16} {:>7.1}s  {} → {}  {}", n.host, n.seconds, n.from, n.to, n.outcome);
            }
            for p in &plan.pruned {
                let codes: Vec<&str> = p.codes.iter().map(|c| c.as_str()).collect();
                crate::outln_lossy!("  {:<16} {:>8}  left out ({})", p.host, "-", codes.join(", "));
            }
            if !outcome.left_out.is_empty() {
                let hosts: Vec<&str> = outcome.left_out.keys().map(String::as_str).collect();
                crate::outln_lossy!(
                    "  left out at the old version (drain refused; rerun to retry): {}",
                    hosts.join(", ")
                );
            }
            crate::outln_lossy!("\n{}", outcome.message);
            if let Some(t) = timeline {
                crate::outln_lossy!("Timeline: {}", t.display());
            }
        }
        Output::Json => crate::outln_lossy!("{result}"),
    }
    Ok(if outcome.completed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The run's result and its timeline page, written into the run folder; a failure to write them is a warning
/// (the journal is what matters). Returns the page's path.
fn keep_result_and_timeline(run_dir: &Path, result: &serde_json::Value) -> Option<PathBuf> {
    let written = std::fs::write(run_dir.join(crate::report::RESULT_FILE), format!("{result}\n"))
        .map_err(anyhow::Error::from)
        .and_then(|()| {
            let page = run_dir.join(crate::report::TIMELINE_FILE);
            crate::report::write_report(run_dir, &page).map(|()| page)
        });
    match written {
        Ok(page) => Some(page),
        Err(e) => {
            eprintln!("warning: the run's timeline was not written to {}: {e:#}", run_dir.display());
            None
        }
    }
}

/// One node's line of the end-of-run summary.
#[derive(serde::Serialize)]
struct NodeSummary {
    host: String,
    /// The node's release before the run (`none` when it had no marker).
    from: String,
    to: String,
    seconds: f64,
    outcome: String,
}

/// The mode-specific gating options.
struct Safety {
    ignore: bool,
    accepted: Vec<kismatic_core::planner::Acceptance>,
    parallel: usize,
    max_unavailable: MaxUnavailable,
    topology_key: String,
    on_drain_timeout: kismatic_exec::run::OnDrainTimeout,
}

/// Analysis and planning (pure), and the plan printed in the chosen format.
fn analyse_and_plan(
    facts: &Facts,
    release: &kismatic_release::Release,
    common: &CommonArgs,
    mode: Mode,
    safety: &Safety,
) -> anyhow::Result<kismatic_core::planner::UpgradePlan> {
    let check_opts =
        CheckOptions { mode, min_free_bytes: common.min_free_bytes, skip_preflight: common.skip_preflight };
    let analysis = analyze(facts, release, &check_opts)?;
    let plan_opts = PlanOptions {
        mode,
        partial_ok: common.partial_ok,
        ignore_safety_checks: safety.ignore,
        max_parallel_workers: safety.parallel,
        max_unavailable: safety.max_unavailable,
        topology_key: safety.topology_key.clone(),
        accepted: safety.accepted.clone(),
        apiserver_port: common.apiserver_port,
        moved_by_interrupted_run: if mode == Mode::Online && common.facts.is_none() && !common.discard_journal {
            interrupted_run_moves(&common.plan_file, release, mode, common.partial_ok)
        } else {
            Vec::new()
        },
    };
    let plan = plan(facts, &analysis, release, &plan_opts);
    match common.output {
        Output::Simple => crate::out!("{}", render::plan_text(&plan)),
        Output::Json => crate::outln!("{}", render::plan_json(&plan)),
    }
    Ok(plan)
}

/// The workloads whose pods the drains of the run this command would resume moved (its journal's `draining`
/// records), for [`kismatic_core::planner::caused_by_interrupted_drain`]. Empty when there is no such run; a journal
/// that cannot be read is reported by the executor, not here.
fn interrupted_run_moves(
    plan_file: &Path,
    release: &kismatic_release::Release,
    mode: Mode,
    partial_ok: bool,
) -> Vec<kismatic_core::planner::MovedWorkload> {
    let runs = kismatic_journal::store::RunsDir::new(common::default_runs_dir(plan_file));
    let Ok(Some((_, state))) = runs.latest_journal() else { return Vec::new() };
    let Ok(release_digest) = kismatic_release::sha256_file(&release.dir.join(kismatic_release::RELEASE_FILE)) else {
        return Vec::new();
    };
    let identity = kismatic_journal::RunIdentity {
        mode: mode.to_string(),
        release_version: release.version.to_string(),
        release_digest,
        partial_ok,
    };
    if !matches!(
        kismatic_journal::resume_point(Some(&state), &identity),
        kismatic_journal::ResumeDecision::Resume { .. }
    ) {
        return Vec::new();
    }
    state
        .moved
        .iter()
        .flat_map(|(node, ws)| {
            ws.iter().map(|w| kismatic_core::planner::MovedWorkload {
                drained: node.clone(),
                kind: w.kind.clone(),
                namespace: w.namespace.clone(),
                name: w.name.clone(),
            })
        })
        .collect()
}

fn read_facts(path: &Path) -> anyhow::Result<Facts> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read facts {}", path.display()))?;
    let facts = kismatic_core::facts_check::read(std::io::BufReader::new(file)).map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(|p| format!("  {}:{p}", path.display())).collect();
        anyhow::anyhow!(
            "{} is not a valid facts document ({} problem(s)):\n{}",
            path.display(),
            problems.len(),
            lines.join("\n")
        )
    })?;
    if facts.format != kismatic_core::facts::FACTS_FORMAT {
        bail!(
            "{}: facts format {} is not supported (this kismatic reads format {})",
            path.display(),
            facts.format,
            kismatic_core::facts::FACTS_FORMAT
        );
    }
    Ok(facts)
}
