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

/// A whole number within `lo..=hi`, for numeric flags: every refusal states the range (clap's own parser says
/// "invalid digit found in string" for `-1`).
pub fn number_in(s: &str, lo: u64, hi: u64) -> Result<u64, String> {
    let t = s.trim();
    let range = format!("a whole number from {lo} to {hi}");
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{} is not {range}", kismatic_plan::text::quoted(s)));
    }
    match t.parse::<u64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => Err(format!("{} is out of range: it must be {range}", kismatic_plan::text::shown(t))),
    }
}

/// `--drain-timeout`, `--node-timeout`: seconds, at most a week (a deadline near u64 seconds overflows the clock).
pub fn timeout_secs(s: &str) -> Result<u64, String> {
    number_in(s, 1, MAX_TIMEOUT_SECS)
}

/// Longest `--drain-timeout` / `--node-timeout` accepted.
pub const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

pub fn min_free_bytes(s: &str) -> Result<u64, String> {
    number_in(s, 0, kismatic_core::checks::MAX_MIN_FREE_BYTES)
}

pub fn port(s: &str) -> Result<u16, String> {
    number_in(s, 1, u64::from(u16::MAX)).map(|n| u16::try_from(n).unwrap_or(u16::MAX))
}

pub fn parallel_workers(s: &str) -> Result<u32, String> {
    number_in(s, 1, 1000).map(|n| u32::try_from(n).unwrap_or(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_state_their_range() {
        assert_eq!(number_in("-1", 1, 9), Err("\"-1\" is not a whole number from 1 to 9".into()));
        assert_eq!(
            number_in("18446744073709551616", 0, 9),
            Err("18446744073709551616 is out of range: it must be a whole number from 0 to 9".into())
        );
        assert_eq!(number_in("1e3", 0, 9), Err("\"1e3\" is not a whole number from 0 to 9".into()));
        assert_eq!(number_in("7", 1, 9), Ok(7));
    }
}
