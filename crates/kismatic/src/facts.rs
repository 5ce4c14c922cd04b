//! `kismatic facts`: gathers everything the upgrade analysis reads into one JSON document, for a later
//! `kismatic upgrade ... --dry-run --facts FILE` and as support data.

use crate::common;
use crate::info::SshArgs;
use anyhow::Context;
use kismatic_fleet::Fleet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct FactsArgs {
    /// The plan file describing the cluster.
    #[arg(short = 'f', long = "plan-file", default_value = "kismatic-cluster.yaml")]
    plan_file: PathBuf,
    /// Release directory (decides which components are probed on each node; default: `release` next to the binary).
    #[arg(long, value_name = "DIR")]
    release: Option<PathBuf>,
    /// kubeconfig for the cluster's API (default: generated/kubeconfig next to the plan file).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Write the document here instead of standard output.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Port of the API server on each master: each is asked directly for its version and deprecated-API metric.
    #[arg(long, value_name = "PORT", default_value_t = 6443, value_parser = common::port)]
    apiserver_port: u16,
    #[command(flatten)]
    ssh: SshArgs,
}

pub fn run(args: FactsArgs) -> anyhow::Result<ExitCode> {
    let inventory = kismatic_plan::load(&args.plan_file)
        .with_context(|| format!("reading plan file {}", args.plan_file.display()))?;
    let release = common::load_release(args.release.as_deref())?;
    let kubeconfig = args.kubeconfig.clone().unwrap_or_else(|| common::default_kubeconfig(&args.plan_file));
    let fleet = Fleet::new(args.ssh.fleet_config(&inventory)).context("setting up SSH")?;
    let gathered = common::runtime()?.block_on(kismatic_exec::gather::gather(
        &fleet,
        &inventory,
        &release,
        Some(&kubeconfig),
        args.apiserver_port,
    ));
    for w in &gathered.warnings {
        eprintln!("warning: {}", kismatic_plan::text::terminal(&w.to_string()));
    }
    let mut json = serde_json::to_string_pretty(&gathered.facts).context("rendering facts")?;
    json.push('\n');
    match &args.output {
        Some(path) => std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?,
        None => std::io::stdout().write_all(json.as_bytes()).context("writing facts")?,
    }
    let unreachable = gathered.facts.nodes.iter().filter(|n| !n.is_reachable()).count();
    Ok(if unreachable > 0 || !gathered.warnings.is_empty() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
