//! Installing one component on one node, by delivery kind, following the node contract (docs/node-contract.md).
//! Every step is idempotent: run twice, the second run changes nothing. Node-side work is done by fixed scripts
//! whose only inputs are positional arguments, each passed quoted: nothing from a plan or release is ever pasted
//! into shell text.

use kismatic_fleet::{NodeError, NodeSession};
use kismatic_release::{Component, Delivery, Release};
use std::time::{Duration, Instant};

/// Where artifacts are staged on a node before their digest is checked.
pub const STAGING: &str = "/var/cache/kismatic/staging";

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// Files, links or packages changed (the service was or will be restarted).
    pub changed: bool,
    pub restarted: bool,
}

// Reports what is already in place for a binary component: `dir` when the versioned directory exists, `current`
// with the link target.
const BINARY_STATE: &str = r#"
name=$1 version=$2
base=/opt/kismatic/$name
[ -d "$base/$version" ] && echo dir
printf 'current %s\n' "$(readlink "$base/current" 2>/dev/null || true)"
"#;

// Unpacks a staged artifact after checking its digest, switches `current` atomically keeping `previous`, installs
// the unit. Prints `changed` when anything changed. Exit 3: digest mismatch.
const BINARY_INSTALL: &str = r#"
set -eu
name=$1 version=$2 sha=$3 artifact=$4 unit_src=$5 service=$6
base=/opt/kismatic/$name
changed=0
if [ ! -d "$base/$version" ]; then
  actual=$(sha256sum "$artifact" | cut -d' ' -f1)
  if [ "$actual" != "$sha" ]; then
    echo "artifact digest mismatch: expected sha256 $sha, node computed $actual" >&2
    rm -f "$artifact"
    exit 3
  fi
  rm -rf "$base/.$version.tmp"
  mkdir -p "$base/.$version.tmp"
  tar -xzf "$artifact" -C "$base/.$version.tmp"
  mv -T "$base/.$version.tmp" "$base/$version"
  changed=1
fi
rm -f "$artifact"
cur=$(readlink "$base/current" 2>/dev/null || true)
if [ "$cur" != "$version" ]; then
  if [ -n "$cur" ]; then
    ln -sfn "$cur" "$base/.previous.tmp" && mv -T "$base/.previous.tmp" "$base/previous"
  fi
  ln -sfn "$version" "$base/.current.tmp" && mv -T "$base/.current.tmp" "$base/current"
  changed=1
fi
unit=/etc/systemd/system/$service.service
if [ -n "$unit_src" ]; then
  if ! cmp -s "$unit_src" "$unit"; then
    cp "$unit_src" "$unit.tmp" && mv -f "$unit.tmp" "$unit"
    systemctl daemon-reload
    changed=1
  fi
  rm -f "$unit_src"
fi
[ "$changed" = 1 ] && echo changed || true
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

// Prints the version directory of the running service's executable (node contract's running-version rule).
const RUNNING_VERSION: &str = r#"
name=$1 service=$2
systemctl is-active -q "$service" || { echo inactive; exit 0; }
pid=$(systemctl show -p MainPID --value "$service")
exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
case "$exe" in
  /opt/kismatic/$name/*) v=${exe#/opt/kismatic/$name/}; echo "running ${v%%/*}" ;;
  *) echo "other $exe" ;;
esac
"#;

/// Uploads `local` to the node's staging folder (only the bytes travel; the digest is checked on the node).
async fn stage(
    session: &NodeSession,
    release: &Release,
    file: &std::path::Path,
    name: &str,
) -> Result<String, InstallError> {
    let local = release.dir.join(file);
    let bytes =
        std::fs::read(&local).map_err(|source| InstallError::Local { path: local.display().to_string(), source })?;
    session.run("mkdir", &["-p", STAGING], None).await?;
    let remote = format!("{STAGING}/{name}");
    session.write_file(&remote, &bytes, 0o600).await?;
    Ok(remote)
}

/// Installs a `binary` component: artifact uploaded only when its version directory is absent, digest verified on
/// the node, unpacked, `current` switched, unit installed. Does not restart.
pub async fn install_binary(session: &NodeSession, release: &Release, c: &Component) -> Result<Outcome, InstallError> {
    let state = session.run("sh", &["-c", BINARY_STATE, "kismatic-state", &c.name, &c.version], None).await?;
    let state = String::from_utf8_lossy(&state.stdout);
    let have_dir = state.lines().any(|l| l == "dir");
    let current = state.lines().find_map(|l| l.strip_prefix("current ")).unwrap_or("").trim();
    let unit_remote = match &c.unit {
        Some(u) => stage(session, release, &u.file, &format!("{}-{}.service", c.name, c.version)).await?,
        None => String::new(),
    };
    if have_dir && current == c.version && c.unit.is_none() {
        return Ok(Outcome::default());
    }
    let artifact_remote = if have_dir {
        String::from("/dev/null")
    } else {
        stage(session, release, &c.artifact.file, &format!("{}-{}.tar.gz", c.name, c.version)).await?
    };
    let out = session
        .output(
            "sh",
            &[
                "-c",
                BINARY_INSTALL,
                "kismatic-install",
                &c.name,
                &c.version,
                &c.artifact.sha256,
                &artifact_remote,
                &unit_remote,
                service(c),
            ],
            None,
        )
        .await?;
    if !out.success() {
        return Err(step_err(session, c, String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(Outcome { changed: String::from_utf8_lossy(&out.stdout).contains("changed"), restarted: false })
}

/// Installs a `package` component at its pinned version. With package installation disabled the package must
/// already be installed at that version (a readiness check has said so; this re-checks).
pub async fn install_package(
    session: &NodeSession,
    release: &Release,
    c: &Component,
    installation_disabled: bool,
) -> Result<Outcome, InstallError> {
    let pkg = c.package.as_deref().unwrap_or(&c.name);
    let installed = installed_package_version(session, pkg).await?;
    if installed.as_deref() == Some(c.version.as_str()) {
        return Ok(Outcome::default());
    }
    if installation_disabled {
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
    let remote = stage(session, release, &c.artifact.file, &format!("{pkg}_{}.deb", c.version)).await?;
    let check = session.output("sh", &["-c", SHA_CHECK, "kismatic-sha", &c.artifact.sha256, &remote], None).await?;
    if !check.success() {
        return Err(step_err(session, c, String::from_utf8_lossy(&check.stderr).trim().to_string()));
    }
    let out = session
        .output(
            "env",
            &[
                "DEBIAN_FRONTEND=noninteractive",
                "apt-get",
                "install",
                "-y",
                "-q",
                "--allow-downgrades",
                "-o",
                "Dpkg::Options::=--force-confold",
                &remote,
            ],
            None,
        )
        .await?;
    session.run("rm", &["-f", "--", &remote], None).await?;
    if !out.success() {
        return Err(step_err(
            session,
            c,
            format!("apt-get install failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    Ok(Outcome { changed: true, restarted: false })
}

const SHA_CHECK: &str = r#"
sha=$1 file=$2
actual=$(sha256sum "$file" | cut -d' ' -f1)
[ "$actual" = "$sha" ] || { echo "artifact digest mismatch: expected sha256 $sha, node computed $actual" >&2; rm -f "$file"; exit 3; }
"#;

pub async fn installed_package_version(session: &NodeSession, pkg: &str) -> Result<Option<String>, InstallError> {
    let out = session.output("dpkg-query", &["-W", "-f", "${db:Status-Status} ${Version}", "--", pkg], None).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.strip_prefix("installed ").map(|v| v.trim().to_string()))
}

/// Restarts the component's service.
pub async fn restart(session: &NodeSession, c: &Component) -> Result<(), InstallError> {
    session.run("systemctl", &["restart", "--", service(c)], None).await?;
    Ok(())
}

/// Whether the component's service is active (package components may have no service: then `None`).
pub async fn running_version(session: &NodeSession, c: &Component) -> Result<Option<String>, InstallError> {
    let out = session.run("sh", &["-c", RUNNING_VERSION, "kismatic-running", &c.name, service(c)], None).await?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().find_map(|l| l.strip_prefix("running ")).map(|v| v.trim().to_string()))
}

/// Polls until the component's service runs the target version (and stays active), or the deadline passes.
pub async fn wait_running(session: &NodeSession, c: &Component, timeout: Duration) -> Result<(), InstallError> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = match c.delivery {
            Delivery::Binary => running_version(session, c).await?,
            Delivery::Package => {
                let pkg = c.package.as_deref().unwrap_or(&c.name);
                installed_package_version(session, pkg).await?
            }
            Delivery::Manifest => return Ok(()),
        };
        if now.as_deref() == Some(c.version.as_str()) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(step_err(
                session,
                c,
                format!(
                    "did not come up at {} within {}s (running: {})",
                    c.version,
                    timeout.as_secs(),
                    now.unwrap_or_else(|| "nothing".into())
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Switches a binary component back to its previous version and restarts it; returns that version.
pub async fn rollback_binary(session: &NodeSession, c: &Component) -> Result<String, InstallError> {
    let out = session.run("sh", &["-c", BINARY_ROLLBACK, "kismatic-rollback", &c.name, service(c)], None).await?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The marker files' contents for a node at `release` with these components (`/etc/component-versions` is a YAML
/// map component → version plus `kubernetes`).
pub fn marker_texts<'a>(release: &Release, components: impl Iterator<Item = &'a Component>) -> (String, String) {
    let mut versions = String::new();
    for c in components {
        versions.push_str(&format!("{}: {}\n", c.name, yaml_scalar(&c.version)));
    }
    versions.push_str(&format!("kubernetes: {}\n", yaml_scalar(&release.kubernetes)));
    (release.version.to_string(), versions)
}

// Versions are validated semver-ish strings, but quote anything YAML could misread (e.g. `1.10` as a float).
fn yaml_scalar(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
        && s.chars().any(|c| c.is_ascii_alphabetic())
    {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// Writes the node's markers (only after all its components are verified at the target).
pub async fn write_markers(session: &NodeSession, version: &str, component_versions: &str) -> Result<(), InstallError> {
    session.write_file("/etc/component-versions", component_versions.as_bytes(), 0o644).await?;
    session.write_file("/etc/kismatic-version", version.as_bytes(), 0o644).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_scalars_are_quoted_when_ambiguous() {
        assert_eq!(yaml_scalar("v1.34.1"), "v1.34.1");
        assert_eq!(yaml_scalar("3.5.1"), "\"3.5.1\"");
        assert_eq!(yaml_scalar("1.10"), "\"1.10\"");
        assert_eq!(yaml_scalar("a\"b"), "\"a\\\"b\"");
    }
}
