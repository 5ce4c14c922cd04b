//! The kismatic testbed: a real cluster in a box (systemd-nspawn nodes with systemd and OpenSSH, TLS etcd
//! clusters, HAProxy, a local apt repository, two releases), driven from a Kismatic plan file.
//! See docs/testbed.md.

pub mod faults;
pub mod image;
pub mod node;
pub mod pki;
pub mod plan;
pub mod release;
pub mod sample;
pub mod testbed;
pub mod util;

pub use testbed::{Options, Status, Testbed};

use std::path::Path;

/// Brings a testbed up and always tears it down when dropped, also while a test panics.
pub struct Guard {
    pub testbed: Testbed,
}

impl Guard {
    /// `up` of the plan; on failure `up` has already removed what it built.
    pub fn up(plan: &Path, opts: Options) -> anyhow::Result<Guard> {
        let testbed = Testbed::open(plan, opts)?;
        // Constructed before `up` so a panic inside `up` still tears down.
        let guard = Guard { testbed };
        guard.testbed.up()?;
        Ok(guard)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.testbed.down() {
            eprintln!("testbed teardown failed: {e:#}");
        }
    }
}

/// Why the end-to-end tests cannot run here, if they cannot (they need root and systemd-nspawn).
pub fn e2e_skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: the testbed needs root (systemd-nspawn, mounts)".into());
    }
    for tool in ["systemd-nspawn", "debootstrap", "haproxy", "etcdctl"] {
        if util::which(tool).is_none() {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}
