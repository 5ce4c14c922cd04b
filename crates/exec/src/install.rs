//! Installing one component on one node, by delivery kind, following the node contract (docs/node-contract.md).
//! Every step is idempotent: run twice, the second run changes nothing. Node-side work is done by fixed scripts
//! whose only inputs are positional arguments, each passed quoted: nothing from a plan or release is ever pasted
//! into shell text.

use crate::poll::{self, PollError, Seen};
use kismatic_fleet::{NodeError, NodeSession, OpKind};
use kismatic_release::{Artifact, Component, Delivery, Release};
use std::time::Duration;

pub use kismatic_ops::contract::STAGING;

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

// Prints `exe <path>` for the active service `$service`'s main process (nothing when the service is not active).
macro_rules! report_running_exe {
    () => {
        r#"
if systemctl is-active -q "$service" 2>/dev/null; then
  pid=$(systemctl show -p MainPID --value "$service")
  printf 'exe %s\n' "$(readlink "/proc/$pid/exe" 2>/dev/null || true)"
fi
"#
    };
}

/// The running version from a script's `exe` line.
fn running_from(c: &Component, stdout: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("exe "))
        .and_then(|exe| kismatic_ops::contract::version_from_exe(&c.name, exe))
}

/// The file inside each staged version directory naming the sha256 of the artifact it was unpacked from; a
/// directory whose marker does not name the release's digest is not staged (it is replaced).
pub const DIGEST_MARKER: &str = ".kismatic-sha256";

// Reports, for each (kind, name, version, sha256) quadruple, what is already in place: `ready NAME` when the
// binary's versioned directory exists with the artifact's digest in its marker, or the package is installed at the
// version; `staged NAME` when the package file is waiting in the staging folder.
const STAGE_STATE: &str = r#"
while [ $# -ge 4 ]; do
  kind=$1 name=$2 version=$3 sha=$4
  shift 4
  case $kind in
    binary) [ "$(cat "/opt/kismatic/$name/$version/.kismatic-sha256" 2>/dev/null)" = "$sha" ] && printf 'ready %s\n' "$name" ;;
    package)
      s=$(dpkg-query -W -f '${db:Status-Status} ${Version}' -- "$name" 2>/dev/null || true)
      [ "$s" = "installed $version" ] && printf 'ready %s\n' "$name"
      [ -f "/var/cache/kismatic/staging/${name}_$version.deb" ] && printf 'staged %s\n' "$name" ;;
  esac
done
true
"#;

// Receives one artifact on stdin, checks its digest, then either unpacks it into each listed component's versioned
// directory (`tar NAME VERSION ...`; hidden folder + rename, so a directory that exists is complete; the digest is
// recorded inside it, and a directory with another digest is replaced) or keeps it as a package file
// (`deb PATH`). Exit 3: digest mismatch.
const STAGE: &str = r#"
set -eu
sha=$1 kind=$2
shift 2
staging=/var/cache/kismatic/staging
mkdir -p "$staging"
tmp=$(mktemp "$staging/.upload.XXXXXX")
trap 'rm -f "$tmp"' EXIT
cat > "$tmp"
actual=$(sha256sum "$tmp" | cut -d' ' -f1)
if [ "$actual" != "$sha" ]; then
  echo "artifact digest mismatch: expected sha256 $sha, node computed $actual" >&2
  exit 3
fi
case $kind in
  tar)
    while [ $# -ge 2 ]; do
      base=/opt/kismatic/$1 version=$2
      shift 2
      [ "$(cat "$base/$version/.kismatic-sha256" 2>/dev/null)" = "$sha" ] && continue
      rm -rf "$base/.$version.tmp" "$base/.$version.old"
      mkdir -p "$base/.$version.tmp"
      tar -xzf "$tmp" -C "$base/.$version.tmp"
      printf '%s\n' "$sha" > "$base/.$version.tmp/.kismatic-sha256"
      if [ -e "$base/$version" ]; then mv -T "$base/$version" "$base/.$version.old"; fi
      mv -T "$base/.$version.tmp" "$base/$version"
      rm -rf "$base/.$version.old"
    done ;;
  deb) chmod 644 "$tmp" && mv -f "$tmp" "$1" ;;
esac
"#;

// Makes a staged binary component current: switches `current` atomically keeping `previous`, writes the unit from
// its text. Prints `changed` when anything changed, then what the service runs. Exit 4: the version is not staged
// (or its directory's digest marker does not name `$6`).
const ACTIVATE_BINARY: &str = concat!(
    r#"
set -eu
name=$1 version=$2 service=$3 has_unit=$4 unit_text=$5 sha=$6
base=/opt/kismatic/$name
[ "$(cat "$base/$version/.kismatic-sha256" 2>/dev/null)" = "$sha" ] || exit 4
changed=0
cur=$(readlink "$base/current" 2>/dev/null || true)
if [ "$cur" != "$version" ]; then
  if [ -n "$cur" ]; then
    ln -sfn "$cur" "$base/.previous.tmp" && mv -T "$base/.previous.tmp" "$base/previous"
  fi
  ln -sfn "$version" "$base/.current.tmp" && mv -T "$base/.current.tmp" "$base/current"
  changed=1
fi
if [ "$has_unit" = 1 ]; then
  unit=/etc/systemd/system/$service.service
  tmp=$(mktemp "$unit.XXXXXX")
  printf '%s' "$unit_text" > "$tmp"
  if cmp -s "$tmp" "$unit"; then
    rm -f "$tmp"
  else
    chmod 644 "$tmp" && mv -f "$tmp" "$unit"
    # Only where systemd is the init (as maintainer scripts check); elsewhere there is nothing to reload.
    if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
    changed=1
  fi
fi
[ "$changed" = 1 ] && echo changed || true
"#,
    report_running_exe!()
);

// Installs a staged package file at its pinned version unless that version is installed; checks the digest again
// (the file sat on the node) and the installed version after. Prints `changed` or `unchanged`. Exit 3: digest
// mismatch; exit 4: not staged; exit 5: apt-get failed (its messages on stderr).
const PACKAGE_INSTALL: &str = r#"
pkg=$1 version=$2 sha=$3 deb=$4
status() { dpkg-query -W -f '${db:Status-Status} ${Version}' -- "$pkg" 2>/dev/null || true; }
if [ "$(status)" = "installed $version" ]; then echo unchanged; exit 0; fi
[ -f "$deb" ] || exit 4
actual=$(sha256sum "$deb" | cut -d' ' -f1)
if [ "$actual" != "$sha" ]; then
  echo "staged package digest mismatch: expected sha256 $sha, node computed $actual" >&2
  rm -f "$deb"
  exit 3
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades -o Dpkg::Options::=--force-confold "$deb" >/dev/null || exit 5
rm -f "$deb"
now=$(status)
if [ "$now" != "installed $version" ]; then echo "after apt-get install, $pkg is: ${now:-not installed}" >&2; exit 5; fi
echo changed
"#;

// Switches `current` back to `previous` (rollback of one member).
const BINARY_ROLLBACK: &str = r#"
set -eu
name=$1 service=$2
base=/opt/kismatic/$name
prev=$(readlink "$base/previous")
ln -sfn "$prev" "$base/.current.tmp" && mv -T "$base/.current.tmp" "$base/current"
systemctl restart "$service"
echo "$prev"
"#;

// What the service runs (node contract's running-version rule, applied in `running_from`).
const RUNNING_EXE: &str = concat!("service=$1\n", report_running_exe!());

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
    let mut args: Vec<&str> = vec!["-c", STAGE_STATE, "kismatic-stage-state"];
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
        let mut args: Vec<String> = vec!["-c".into(), STAGE.into(), "kismatic-stage".into(), artifact.sha256.clone()];
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
        ACTIVATE_BINARY,
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
    let args = ["-c", PACKAGE_INSTALL, "kismatic-package", pkg, &c.version, &c.artifact.sha256, &deb];
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
    let out = session.run("sh", &["-c", RUNNING_EXE, "kismatic-running", service(c)], None).await?;
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

// Asks `/healthz` on the node itself, at each address in turn (the node's own address, then loopback): with curl
// when the node has it (HTTPS as Kubernetes serves it, then plain HTTP), else a plain HTTP/1.0 request through
// bash's /dev/tcp. Prints `healthy` or exits 1.
const HEALTHZ: &str = r#"
port=$1
shift
for addr in "$@"; do
  if command -v curl >/dev/null 2>&1; then
    if curl -fsk --max-time 2 -o /dev/null "https://$addr:$port/healthz" 2>/dev/null \
      || curl -fs --max-time 2 -o /dev/null "http://$addr:$port/healthz" 2>/dev/null; then
      echo healthy; exit 0
    fi
  elif exec 3<>"/dev/tcp/$addr/$port"; then
    printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$addr" >&3
    status=$(timeout 2 head -n 1 <&3)
    exec 3<&-
    case "$status" in "HTTP/1."?" 200"*) echo healthy; exit 0 ;; esac
  fi 2>/dev/null
done
exit 1
"#;

/// Polls the component's `/healthz` on the node until it answers 200, or the deadline passes.
pub async fn wait_healthz(
    session: &NodeSession,
    c: &Component,
    node_address: &str,
    port: u16,
    timeout: Duration,
) -> Result<(), InstallError> {
    let port = port.to_string();
    let args = ["-c", HEALTHZ, "kismatic-healthz", &port, node_address, "127.0.0.1"];
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
    let args = ["-c", BINARY_ROLLBACK, "kismatic-rollback", &c.name, service(c)];
    let out = session.run_within(OpKind::Restart, "sh", &args, None).await?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
