//! `kismatic upgrade online|offline`: analyse, plan and (once the executor lands) execute an upgrade.
use anyhow::{Context, bail};
use kismatic_core::checks::{CheckOptions, DEFAULT_MIN_FREE_BYTES, Mode, analyze};
use kismatic_core::facts::Facts;
use kismatic_core::planner::{PlanOptions, plan};
use kismatic_core::render;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const AFTER_HELP: &str = "\
Exit status: 0 the plan is ready (with --dry-run: nothing was changed); 1 the upgrade is blocked (every finding is \
printed, grouped by node; there is no prompt); 2 an error (bad plan, release or facts file, ...).

Finding classes: unsafe (data may be lost), unavailable (availability may be lost), unready (the node cannot take \
the upgrade). Codes and rules: docs/checks.md.";

#[derive(clap::Subcommand)]
pub enum UpgradeCommand {
    /// Upgrade with safety and availability checks: stop (print every finding and exit 1) if anything is unsafe,
    /// unavailable or unready. Workers are cordoned and drained one at a time.
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
}

#[derive(clap::Args)]
pub struct OfflineArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Workers upgraded at the same time (etcd nodes and masters always go one at a time).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_parallel_workers: u32,
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
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "simple")]
    output: Output,
    /// Analyse a facts document (written by `kismatic facts`) instead of the live cluster; nothing is contacted.
    #[arg(long, value_name = "FILE")]
    facts: Option<PathBuf>,
    /// Bytes that must stay free on / after the release's artifacts are placed.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MIN_FREE_BYTES)]
    min_free_bytes: u64,
}

pub fn run(cmd: UpgradeCommand) -> anyhow::Result<ExitCode> {
    let (common, mode, ignore, parallel) = match cmd {
        UpgradeCommand::Online(a) => (a.common, Mode::Online, a.ignore_safety_checks, 1),
        UpgradeCommand::Offline(a) => (a.common, Mode::Offline, false, a.max_parallel_workers as usize),
    };
    let release_dir = match &common.release {
        Some(d) => d.clone(),
        None => default_release_dir()?,
    };
    let release = kismatic_release::load_dir(&release_dir)?;
    let bad = kismatic_release::verify_artifacts(&release);
    if !bad.is_empty() {
        let lines: Vec<String> = bad.iter().map(|p| format!("  {p}")).collect();
        bail!("release {} is damaged:\n{}", release_dir.display(), lines.join("\n"));
    }
    let Some(facts_path) = &common.facts else {
        bail!(
            "live fact gathering is not available in this build yet; gather facts with `kismatic facts -f {}` and \
             pass them with --facts FILE",
            common.plan_file.display()
        );
    };
    let facts = read_facts(facts_path)?;
    let check_opts =
        CheckOptions { mode, min_free_bytes: common.min_free_bytes, skip_preflight: common.skip_preflight };
    let analysis = analyze(&facts, &release, &check_opts)?;
    let plan_opts = PlanOptions {
        mode,
        partial_ok: common.partial_ok,
        ignore_safety_checks: ignore,
        max_parallel_workers: parallel,
    };
    let plan = plan(&facts, &analysis, &release, &plan_opts);
    match common.output {
        Output::Simple => print!("{}", render::plan_text(&plan)),
        Output::Json => println!("{}", render::plan_json(&plan)),
    }
    if plan.is_blocked() {
        return Ok(ExitCode::from(1));
    }
    if !common.dry_run {
        bail!("the upgrade executor has not landed yet: nothing was changed (use --dry-run to only print the plan)");
    }
    Ok(ExitCode::SUCCESS)
}

fn default_release_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the kismatic binary to find its release directory")?;
    Ok(exe.parent().unwrap_or(Path::new(".")).join("release"))
}

fn read_facts(path: &Path) -> anyhow::Result<Facts> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read facts {}", path.display()))?;
    let facts: Facts = serde_json::from_reader(std::io::BufReader::new(file))
        .map_err(|e| anyhow::anyhow!("{}:{}:{}: not a facts document: {e}", path.display(), e.line(), e.column()))?;
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
