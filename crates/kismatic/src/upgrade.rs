//! `kismatic upgrade online|offline`.
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum UpgradeCommand {
    /// Upgrade with safety and availability checks; stop if anything is unsafe or unavailable.
    Online,
    /// Upgrade without safety checks, cordons or drains; only node readiness is checked.
    Offline,
}

pub fn run(_cmd: UpgradeCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
