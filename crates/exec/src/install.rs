//! Installing one component on one node, by delivery kind, following the node contract (docs/node-contract.md).
//! Every step is idempotent: run twice, the second run changes nothing. Node-side work is done by fixed scripts
//! whose only inputs are positional arguments, each passed quoted: nothing from a plan or release is ever pasted
//! into shell text.

use crate::poll::{self, PollError, Seen};
use kismatic_fleet::{NodeError, NodeSession, OpKind};
use kismatic_release::{Artifact, Component, Delivery, Release};
use std::time::Duration;

use kismatic_ops::contract::scripts::{
    ACTIVATE_BINARY, BINARY_ROLLBACK, HEALTHZ, PACKAGE_INSTALL, RUNNING_EXE, STAGE, STAGE_STATE,
};
pub use kismatic_ops::contract::{DIGEST_MARKER, STAGING};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("{node}: {component}: {message}")]
    Step { node: String, component: String, message: String },
    #[error("{path}: {source}")]
    Local { path: String, source: std::io::Error },
}

fn step_err(session: &NodeSession, c: &Component, message: impl Into<String>) -> InstallError {
    InstallError::Step { node: session.node().to_string(), component: c.name.clone(), message: message.into() }
}

fn service(c: &Component) -> &str {
    c.service.as_deref().unwrap_or(&c.name)
}

/// What a component install changed on the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Files, links or packages changed (the service must be restarted).
    pub changed: bool,
    /// binary: the version its service runs now (before any restart), by the node contract's running-version rule.
    /// A run killed between switching `current` and restarting leaves `changed` false but this stale.
    pub running: Option<String>,
}

/// The running version from a script's `exe` line.
fn running_from(c: &Component, stdout: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("exe "))
        .and_then(|exe| kismatic_ops::contract::version_from_exe(&c.name, exe))
}

/// Reads a file of the release and checks it against the digest the release names for it.
pub fn read_verified(release: &Release, artifact: &Artifact) -> Result<Vec<u8>, InstallError> {
    let path = release.dir.join(&artifact.file);
    let local = |source| InstallError::Local { path: path.display().to_string(), source };
    let bytes = std::fs::read(&path).map_err(local)?;
    let digest = kismatic_release::sha256_hex(&bytes);
    if digest != artifact.sha256 {
        return Err(local(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("sha256 {digest} does not match the release ({})", artifact.sha256),
        )));
    }
    Ok(bytes)
}

/// Release files read (and digest-checked) once per run and shared by every node's staging, so memory stays at
/// the size of the distinct artifacts whatever the number of nodes staged at once, and nodes staged together wait
/// for one read instead of each hashing the same file.
#[derive(Default)]
pub struct ArtifactCache(std::sync::Mutex<std::collections::HashMap<String, ArtifactCell>>);

type ArtifactCell = std::sync::Arc<tokio::sync::OnceCell<std::sync::Arc<Vec<u8>>>>;

impl ArtifactCache {
    pub async fn get(&self, release: &Release, artifact: &Artifact) -> Result<std::sync::Arc<Vec<u8>>, InstallError> {
        let cell = match self.0.lock() {
            Ok(mut m) => m.entry(artifact.sha256.clone()).or_default().clone(),
            Err(_) => ArtifactCell::default(),
        };
        let bytes =
            cell.get_or_try_init(|| async { read_verified(release, artifact).map(std::sync::Arc::new) }).await?;
        Ok(bytes.clone())
    }
}

fn staged_package_path(pkg: &str, version: &str) -> String {
    format!("{STAGING}/{pkg}_{version}.deb")
}

fn package_name(c: &Component) -> &str {
    c.package.as_deref().unwrap_or(&c.name)
}

/// What staging did on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Staged {
    /// Distinct artifacts uploaded (components sharing an artifact digest share one upload).
    pub uploads: usize,
    pub bytes: u64,
    /// Components whose artifact was already unpacked, installed or staged.
    pub already: usize,
}

/// Puts the artifacts of `components` on the node ahead of its turn, without touching anything that runs:
/// binaries are unpacked into their versioned directories (`current` is not switched), packages wait in the staging
/// folder. Each distinct artifact travels once, and its digest is checked on the node. With package installation
/// disabled, packages are not staged (they must already be installed). Idempotent.
pub async fn stage(
    session: &NodeSession,
    release: &Release,
    artifacts: &ArtifactCache,
    components: &[&Component],
    package_installation_disabled: bool,
) -> Result<Staged, InstallError> {
    let wanted: Vec<&Component> = components
        .iter()
        .copied()
        .filter(|c| match c.delivery {
            Delivery::Binary => true,
            Delivery::Package => !package_installation_disabled,
            Delivery::Manifest => false,
        })
        .collect();
    if wanted.is_empty() {
        return Ok(Staged::default());
    }
    let mut args: Vec<&str> = vec!["-c", STAGE_STATE.text(), "kismatic-stage-state"];
    for c in &wanted {
        match c.delivery {
            Delivery::Binary => args.extend(["binary", c.name.as_str(), c.version.as_str(), &c.artifact.sha256]),
            _ => args.extend(["package", package_name(c), c.version.as_str(), &c.artifact.sha256]),
        }
    }
    let state = session.run("sh", &args, None).await?;
    let state = String::from_utf8_lossy(&state.stdout);
    let present: Vec<&str> = state.lines().filter_map(|l| l.split_once(' ').map(|(_, name)| name)).collect();
    let mut staged = Staged::default();
    // Artifact digest → the components it serves on this node.
    let mut uploads: Vec<(&Artifact, Vec<&Component>)> = Vec::new();
    for c in wanted {
        let name = if c.delivery == Delivery::Binary { c.name.as_str() } else { package_name(c) };
        if present.contains(&name) {
            staged.already += 1;
            continue;
        }
        match uploads.iter_mut().find(|(a, cs)| a.sha256 == c.artifact.sha256 && cs[0].delivery == c.delivery) {
            Some((_, cs)) => cs.push(c),
            None => uploads.push((&c.artifact, vec![c])),
        }
    }
    for (artifact, cs) in uploads {
        let bytes = artifacts.get(release, artifact).await?;
        let mut args: Vec<String> =
            vec!["-c".into(), STAGE.text().into(), "kismatic-stage".into(), artifact.sha256.clone()];
        if cs[0].delivery == Delivery::Binary {
            args.push("tar".into());
            for c in &cs {
                args.extend([c.name.clone(), c.version.clone()]);
            }
        } else {
            args.extend(["deb".into(), staged_package_path(package_name(cs[0]), &cs[0].version)]);
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = session.output_within(OpKind::Transfer, "sh", &argv, Some(&bytes)).await?;
        if !out.success() {
            return Err(step_err(session, cs[0], String::from_utf8_lossy(&out.stderr).trim().to_string()));
        }
        staged.uploads += 1;
        staged.bytes += bytes.len() as u64;
    }
    Ok(staged)
}

/// Exit status of the node scripts when the component's artifact is not staged on the node.
const NOT_STAGED: i32 = 4;

/// Installs a `binary` component: makes its staged version current and writes its unit (staging it first if an
/// earlier staging did not, or was undone). Does not restart.
pub async fn install_binary(session: &NodeSession, release: &Release, c: &Component) -> Result<Outcome, InstallError> {
    let unit = match &c.unit {
        Some(u) => String::from_utf8(read_verified(release, u)?)
            .map_err(|_| step_err(session, c, format!("unit file {} is not UTF-8 text", u.file.display())))?,
        None => String::new(),
    };
    let has_unit = if c.unit.is_some() { "1" } else { "0" };
    let args = [
        "-c",
        ACTIVATE_BINARY.text(),
        "kismatic-activate",
        &c.name,
        &c.version,
        service(c),
        has_unit,
        &unit,
        &c.artifact.sha256,
    ];
    let mut out = session.output("sh", &args, None).await?;
    if out.code == Some(NOT_STAGED) {
        stage(session, release, &ArtifactCache::default(), &[c], false).await?;
        out = session.output("sh", &args, None).await?;
    }
    if !out.success() {
        return Err(step_err(session, c, String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(Outcome {
        changed: String::from_utf8_lossy(&out.stdout).lines().any(|l| l == "changed"),
        running: running_from(c, &out.stdout),
    })
}

/// Installs a `package` component at its pinned version from the staged package file (staging it first if
/// needed), and checks the installed version. With package installation disabled the package must already be
/// installed at that version (a readiness check has said so; this re-checks).
pub async fn install_package(
    session: &NodeSession,
    release: &Release,
    c: &Component,
    installation_disabled: bool,
) -> Result<Outcome, InstallError> {
    let pkg = package_name(c);
    if installation_disabled {
        let installed = installed_package_version(session, pkg).await?;
        if installed.as_deref() == Some(c.version.as_str()) {
            return Ok(Outcome::default());
        }
        return Err(step_err(
            session,
            c,
            format!(
                "package installation is disabled in the plan and {pkg} is {} (needs {})",
                installed.map(|v| format!("at {v}")).unwrap_or_else(|| "not installed".into()),
                c.version
            ),
        ));
    }
    let deb = staged_package_path(pkg, &c.version);
    let args = ["-c", PACKAGE_INSTALL.text(), "kismatic-package", pkg, &c.version, &c.artifact.sha256, &deb];
    let mut out = session.output_within(OpKind::Install, "sh", &args, None).await?;
    if out.code == Some(NOT_STAGED) {
        stage(session, release, &ArtifactCache::default(), &[c], false).await?;
        out = session.output_within(OpKind::Install, "sh", &args, None).await?;
    }
    if !out.success() {
        return Err(step_err(session, c, String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(Outcome { changed: String::from_utf8_lossy(&out.stdout).trim() == "changed", running: None })
}

pub async fn installed_package_version(session: &NodeSession, pkg: &str) -> Result<Option<String>, InstallError> {
    let out = session.output("dpkg-query", &["-W", "-f", "${db:Status-Status} ${Version}", "--", pkg], None).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.strip_prefix("installed ").map(|v| v.trim().to_string()))
}

/// Restarts the component's service.
pub async fn restart(session: &NodeSession, c: &Component) -> Result<(), InstallError> {
    session.run_within(OpKind::Restart, "systemctl", &["restart", "--", service(c)], None).await?;
    Ok(())
}

/// Whether the component's service is active (package components may have no service: then `None`).
pub async fn running_version(session: &NodeSession, c: &Component) -> Result<Option<String>, InstallError> {
    let out = session.run("sh", &["-c", RUNNING_EXE.text(), "kismatic-running", service(c)], None).await?;
    Ok(running_from(c, &out.stdout))
}

/// Polls until the component's service runs the target version (and stays active), or the deadline passes.
pub async fn wait_running(session: &NodeSession, c: &Component, timeout: Duration) -> Result<(), InstallError> {
    let polled = poll::until(timeout, Duration::from_millis(300), || async {
        let now = match c.delivery {
            Delivery::Binary => running_version(session, c).await?,
            Delivery::Package => installed_package_version(session, package_name(c)).await?,
            Delivery::Manifest => return Ok(Seen::Ready(())),
        };
        Ok(match now {
            Some(v) if v == c.version => Seen::Ready(()),
            other => Seen::NotYet(other.unwrap_or_else(|| "nothing".into())),
        })
    })
    .await;
    match polled {
        Ok(()) => Ok(()),
        Err(PollError::Failed(e)) => Err(e),
        Err(PollError::TimedOut { last }) => Err(step_err(
            session,
            c,
            format!("did not come up at {} within {}s (running: {last})", c.version, timeout.as_secs()),
        )),
    }
}

/// Polls the component's `/healthz` on the node until it answers 200, or the deadline passes.
pub async fn wait_healthz(
    session: &NodeSession,
    c: &Component,
    node_address: &str,
    port: u16,
    timeout: Duration,
) -> Result<(), InstallError> {
    let port = port.to_string();
    let args = ["-c", HEALTHZ.text(), "kismatic-healthz", &port, node_address, "127.0.0.1"];
    let polled = poll::until(timeout, Duration::from_millis(300), || async {
        let out = session.output("bash", &args, None).await?;
        Ok::<_, InstallError>(if String::from_utf8_lossy(&out.stdout).trim() == "healthy" {
            Seen::Ready(())
        } else {
            Seen::NotYet(String::new())
        })
    })
    .await;
    match polled {
        Ok(()) => Ok(()),
        Err(PollError::Failed(e)) => Err(e),
        Err(PollError::TimedOut { .. }) => Err(step_err(
            session,
            c,
            format!("/healthz on port {port} ({node_address} or 127.0.0.1) not healthy within {}s", timeout.as_secs()),
        )),
    }
}

/// Switches a binary component back to its previous version and restarts it; returns that version.
pub async fn rollback_binary(session: &NodeSession, c: &Component) -> Result<String, InstallError> {
    let args = ["-c", BINARY_ROLLBACK.text(), "kismatic-rollback", &c.name, service(c)];
    let out = session.run_within(OpKind::Restart, "sh", &args, None).await?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
