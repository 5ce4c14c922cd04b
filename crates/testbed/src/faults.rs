//! Fault injection: stop one node's container (a node that goes away) and start it again with everything it had
//! (its overlay upper dir, hence its files, installed components and etcd data, is kept). See docs/testbed.md.

use crate::node::{self, Proc, RELEASES_IN_NODE, STAGE_IN_NODE};
use crate::testbed::{State, Testbed};
use crate::util::{self, write_file};
use anyhow::{Context, Result, anyhow, bail};
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

/// File in the node's folder naming the base image its nspawn ran on, so a restart uses the same lower layer.
const BASE_FILE: &str = "base-image";

impl Testbed {
    fn fault_state(&self) -> Result<State> {
        self.load_state()?.ok_or_else(|| anyhow!("the testbed of {} is not up", self.inv.plan_path.display()))
    }

    fn save_fault_state(&self, s: &State) -> Result<()> {
        write_file(&self.dir.join("state.json"), serde_json::to_string_pretty(s)?, 0o600)
    }

    /// Whether the node's container is running.
    pub fn node_running(&self, host: &str) -> Result<bool> {
        let s = self.fault_state()?;
        let n = s.nodes.iter().find(|n| n.host == host).ok_or_else(|| anyhow!("no node {host} in the testbed"))?;
        Ok(n.process.is_some_and(|p| p.alive()))
    }

    /// Stops one node's container as `down` does (SIGTERM: nspawn halts the container's systemd; after 30 s
    /// SIGKILL), keeping its files. Its addresses stop answering: to the tool the node has gone away.
    pub fn stop_node(&self, host: &str) -> Result<()> {
        self.take_node_away(host, false)
    }

    /// Kills one node's container at once (SIGKILL to nspawn and the container's init, so every process in it
    /// dies together: a power cut), keeping its files. Connections to it are reset within milliseconds, so the
    /// step that was running on it fails while it runs.
    pub fn kill_node(&self, host: &str) -> Result<()> {
        self.take_node_away(host, true)
    }

    fn take_node_away(&self, host: &str, kill: bool) -> Result<()> {
        let mut s = self.fault_state()?;
        let n = s.nodes.iter_mut().find(|n| n.host == host).ok_or_else(|| anyhow!("no node {host} in the testbed"))?;
        let Some(p) = n.process.filter(|p| p.alive()) else {
            bail!("node {host} is not running");
        };
        // The base image is the `-D` argument of the running nspawn (read before it goes).
        let cmdline = fs::read(format!("/proc/{}/cmdline", p.pid)).context("reading the node's nspawn command line")?;
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let base = args
            .iter()
            .position(|a| a == "-D")
            .and_then(|i| args.get(i + 1))
            .ok_or_else(|| anyhow!("node {host}: no -D in nspawn's command line {args:?}"))?;
        let ndir = self.dir.join("nodes").join(host);
        write_file(&ndir.join(BASE_FILE), base, 0o600)?;
        if kill {
            let init = util::children(p.pid);
            util::signal(p.pid, libc::SIGKILL);
            for k in init {
                util::signal(k, libc::SIGKILL);
            }
            let _ = util::wait_until("nspawn to die", Duration::from_secs(10), || Ok((!p.alive()).then_some(())));
        } else {
            p.stop(Duration::from_secs(30));
        }
        if p.alive() {
            bail!("node {host}: systemd-nspawn {} did not stop", p.pid);
        }
        node::remove_cgroups(&n.machine);
        n.process = None;
        self.save_fault_state(&s)
    }

    /// Starts a node stopped by `stop_node` or `kill_node` on the same image, overlay and binds, and waits (up to the boot
    /// timeout) until its systemd reports `running` or `degraded` over SSH. Enabled units (etcd, the control plane,
    /// kubelet) start as at any boot; etcd members rejoin their cluster by themselves.
    pub fn start_node(&self, host: &str) -> Result<()> {
        let mut s = self.fault_state()?;
        let release_root = s
            .release_old
            .as_deref()
            .and_then(|p| p.parent())
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("the testbed state names no release folder"))?;
        let n = s.nodes.iter_mut().find(|n| n.host == host).ok_or_else(|| anyhow!("no node {host} in the testbed"))?;
        if n.process.is_some_and(|p| p.alive()) {
            bail!("node {host} is already running");
        }
        let ip = n.ip.clone();
        let ndir = self.dir.join("nodes").join(host);
        let base = PathBuf::from(
            fs::read_to_string(ndir.join(BASE_FILE))
                .with_context(|| format!("node {host} was not stopped by stop_node (no {BASE_FILE})"))?,
        );
        let binds = [(release_root, RELEASES_IN_NODE), (self.dir.join("stage").join(host), STAGE_IN_NODE)];
        let proc: Proc = node::start(&base, &ndir.join("upper"), &n.machine, &binds, &ndir.join("console.log"))?;
        n.process = Some(proc);
        self.save_fault_state(&s)?;
        let ssh = self.ssh();
        util::wait_until(&format!("node {host} to boot again"), self.opts.boot_timeout, || {
            if !proc.alive() {
                let log = fs::read_to_string(ndir.join("console.log")).unwrap_or_default();
                bail!("node {host}: systemd-nspawn exited; console:\n{}", util::tail(&log, 20));
            }
            let st = match ssh.run(&ip, &["systemctl", "is-system-running"]) {
                Ok(o) => o.trim().to_string(),
                // is-system-running exits non-zero for `degraded` (and `starting`); the word is in the message.
                Err(e) if format!("{e:#}").contains("degraded") => "degraded".into(),
                Err(e) => return Err(e),
            };
            Ok((st == "running" || st == "degraded").then_some(()))
        })?;
        Ok(())
    }
}
