//! `kismatic`: upgrades self-managed Kubernetes clusters safely. This crate is the thin edge: argument parsing,
//! rendering and exit codes. The work lives in the library crates.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod common;
mod docs;
mod facts;
mod info;
mod report;
mod status;
mod upgrade;

#[derive(Parser)]
#[command(name = "kismatic", version, about = "Upgrade self-managed Kubernetes clusters safely, node by node.")]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version of the cluster and of every node, and drift between markers and what actually runs.
    Info(info::InfoArgs),
    /// Gather every fact the upgrade analysis reads (nodes, Kubernetes API, etcd) into one JSON document.
    Facts(facts::FactsArgs),
    /// Upgrade the cluster to the target release.
    #[command(subcommand)]
    Upgrade(upgrade::UpgradeCommand),
    /// Show the current or last upgrade run: where it is, what it did and left, and how to resume it.
    Status(status::StatusArgs),
    /// Write a run's timeline (a self-contained HTML page: Gantt chart, summary, findings) from its run folder.
    Report(report::ReportArgs),
    /// Print a shell completion script (bash, zsh or fish).
    Completions(docs::CompletionsArgs),
    /// Write the man pages (one per command) into a folder.
    Man(docs::ManArgs),
}

/// Writes to standard output; a closed pipe (`| head`) is an error, not a panic.
pub(crate) fn write_stdout(bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|()| out.flush()).map_err(|e| anyhow::anyhow!("writing to standard output: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info(args) => info::run(args),
        Command::Facts(args) => facts::run(args),
        Command::Upgrade(cmd) => upgrade::run(cmd),
        Command::Status(args) => status::run(args),
        Command::Report(args) => report::run(args),
        Command::Completions(args) => docs::completions(args),
        Command::Man(args) => docs::man(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
