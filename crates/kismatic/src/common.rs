//! What several commands share: locating the release and the kubeconfig, and the async runtime.

use anyhow::Context;
use kismatic_release::Release;
use std::path::{Path, PathBuf};

/// `release` next to the binary, where a packaged kismatic ships its target release.
pub fn default_release_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the kismatic binary to find its release directory")?;
    Ok(exe.parent().unwrap_or(Path::new(".")).join("release"))
}

/// Loads the release and checks every artifact's digest locally before anything is sent to a node.
pub fn load_release(dir: Option<&Path>) -> anyhow::Result<Release> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => default_release_dir()?,
    };
    let release = kismatic_release::load_dir(&dir).with_context(|| format!("reading release {}", dir.display()))?;
    let bad = kismatic_release::verify_artifacts(&release);
    if !bad.is_empty() {
        let lines: Vec<String> = bad.iter().map(|p| format!("  {p}")).collect();
        anyhow::bail!("release {} is damaged:\n{}", dir.display(), lines.join("\n"));
    }
    Ok(release)
}

/// Kismatic kept generated assets (kubeconfig, certificates) in `generated/` next to the plan file.
pub fn default_kubeconfig(plan_file: &Path) -> PathBuf {
    plan_file.parent().unwrap_or(Path::new(".")).join("generated").join("kubeconfig")
}

/// The run journals of a cluster live in `runs/` next to its plan file.
pub fn default_runs_dir(plan_file: &Path) -> PathBuf {
    plan_file.parent().unwrap_or(Path::new(".")).join("runs")
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}
