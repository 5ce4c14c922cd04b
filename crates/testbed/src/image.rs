//! The Debian base image: built once with debootstrap, cached by the hash of its recipe, used read-only as the
//! lower layer of every node's overlay.

use crate::util::{self, mkdir, remove_all, run, sha256_hex, write_file};
use anyhow::{Context, Result, bail};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const SUITE: &str = "bookworm";
// curl: the master health gate asks the controller-manager's and scheduler's HTTPS /healthz on the node, as on a real master.
const INCLUDE: &str = "systemd,systemd-sysv,dbus,openssh-server,iproute2,sudo,ca-certificates,curl";
/// Bump when the post-debootstrap steps below change: it is part of the recipe hash.
const POST_STEPS: &str = "v1: remove ssh host keys; empty machine-id; empty sources.list; apt-get clean";

/// The Debian mirror this machine already uses (so a proxy or snapshot mirror is honoured), else deb.debian.org.
pub fn host_mirror() -> String {
    let mut candidates = Vec::new();
    if let Ok(entries) = fs::read_dir("/etc/apt/sources.list.d") {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "sources")
                && let Ok(t) = fs::read_to_string(e.path())
            {
                // deb822 stanzas: take URIs of a stanza whose Suites include plain `bookworm`.
                for stanza in t.split("\n\n") {
                    let field =
                        |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()));
                    if let (Some(uris), Some(suites)) = (field("URIs:"), field("Suites:"))
                        && suites.split_whitespace().any(|s| s == SUITE)
                        && let Some(u) = uris.split_whitespace().next()
                    {
                        candidates.push(u.to_string());
                    }
                }
            }
        }
    }
    if let Ok(t) = fs::read_to_string("/etc/apt/sources.list") {
        for l in t.lines() {
            let w: Vec<&str> = l.split_whitespace().filter(|w| !w.starts_with('[')).collect();
            if w.len() >= 3 && w[0] == "deb" && w[2] == SUITE {
                candidates.push(w[1].to_string());
            }
        }
    }
    candidates.into_iter().find(|u| u.starts_with("http")).unwrap_or_else(|| "http://deb.debian.org/debian".to_string())
}

pub fn recipe(mirror: &str) -> String {
    format!("debootstrap --variant=minbase --include={INCLUDE} {SUITE} BASE {mirror}\npost: {POST_STEPS}\n")
}

/// Returns the image's root folder, building it first when no image of this recipe exists.
pub fn ensure(images_dir: &Path, mirror: &str, progress: &dyn Fn(&str)) -> Result<PathBuf> {
    let recipe = recipe(mirror);
    let hash = &sha256_hex(recipe.as_bytes())[..16];
    let dir = images_dir.join(hash);
    let rootfs = dir.join("rootfs");
    if rootfs.join("usr/lib/systemd/systemd").exists() {
        progress(&format!("base image {hash} cached ({})", rootfs.display()));
        return Ok(rootfs);
    }
    mkdir(images_dir)?;
    // Two testbeds starting at once must not build the same image twice.
    let lock = fs::File::create(images_dir.join(format!("{hash}.lock")))?;
    lock.lock().context("cannot lock the image cache")?;
    if rootfs.join("usr/lib/systemd/systemd").exists() {
        return Ok(rootfs);
    }
    if util::which("debootstrap").is_none() {
        bail!("debootstrap is not installed (apt-get install debootstrap)");
    }
    progress(&format!("building base image {hash} with debootstrap from {mirror} (about a minute)"));
    let partial = images_dir.join(format!("{hash}.partial"));
    remove_all(&partial)?;
    let tmp_root = partial.join("rootfs");
    mkdir(&tmp_root)?;
    run(Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={INCLUDE}"))
        .arg(SUITE)
        .arg(&tmp_root)
        .arg(mirror))
    .context("debootstrap failed")?;
    // Host keys and machine-id would otherwise be shared by every node; each node gets its own in its upper dir.
    for e in fs::read_dir(tmp_root.join("etc/ssh"))?.flatten() {
        if e.file_name().to_string_lossy().starts_with("ssh_host_") {
            fs::remove_file(e.path())?;
        }
    }
    write_file(&tmp_root.join("etc/machine-id"), "", 0o444)?;
    // Nodes only reach the testbed's own apt repository (loopback-only rule).
    write_file(&tmp_root.join("etc/apt/sources.list"), "", 0o644)?;
    run(Command::new("chroot").arg(&tmp_root).args(["apt-get", "clean"]))?;
    write_file(&partial.join("recipe.txt"), &recipe, 0o644)?;
    remove_all(&dir)?;
    fs::rename(&partial, &dir).with_context(|| format!("cannot move image into {}", dir.display()))?;
    let _ = fs::remove_file(images_dir.join(format!("{hash}.lock")));
    Ok(rootfs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_changes_with_mirror() {
        assert_ne!(recipe("http://a/debian"), recipe("http://b/debian"));
        assert!(recipe("http://a/debian").contains("--variant=minbase"));
    }
}
