//! `kismatic info`.
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// The plan file describing the cluster.
    #[arg(short = 'f', long = "plan-file", default_value = "kismatic-cluster.yaml")]
    pub plan_file: PathBuf,
}

pub fn run(_args: InfoArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
