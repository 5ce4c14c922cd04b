//! Nodes: systemd-nspawn containers booting real systemd and OpenSSH from the shared base image, and SSH access
//! to them exactly as the tool has it (plan user, plan key, strict host-key checking against our known_hosts).

use crate::util::{self, mkdir, run, run_with_input, shell_line, write_file};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Where the host folders appear inside every node (read-only bind mounts).
pub const RELEASES_IN_NODE: &str = "/var/lib/kismatic-testbed/releases";
pub const STAGE_IN_NODE: &str = "/var/lib/kismatic-testbed/stage";
const SUDO_UID: u32 = 1000;

/// A process the testbed started, identified by PID and start time (so a reused PID is never signalled).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Proc {
    pub pid: u32,
    pub start_time: u64,
}

impl Proc {
    pub fn of(pid: u32) -> Result<Proc> {
        let start_time =
            util::process_start_time(pid).with_context(|| format!("process {pid} vanished right after it started"))?;
        Ok(Proc { pid, start_time })
    }

    pub fn alive(&self) -> bool {
        util::process_matches(self.pid, self.start_time)
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL (the process and its direct children).
    pub fn stop(&self, grace: Duration) {
        if !self.alive() {
            return;
        }
        util::signal(self.pid, libc::SIGTERM);
        let gone = util::wait_until("process exit", grace, || Ok((!self.alive()).then_some(())));
        if gone.is_err() && self.alive() {
            let kids = util::children(self.pid);
            util::signal(self.pid, libc::SIGKILL);
            for k in kids {
                util::signal(k, libc::SIGKILL);
            }
            let _ = util::wait_until("process exit", Duration::from_secs(5), || Ok((!self.alive()).then_some(())));
        }
    }
}

#[derive(Debug, Clone)]
pub struct Ssh {
    pub user: String,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    pub port: u16,
}

impl Ssh {
    fn base(&self, ip: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(["-F", "/dev/null", "-i"])
            .arg(&self.key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ConnectTimeout=5",
                "-o",
                "LogLevel=ERROR",
                "-p",
            ])
            .arg(self.port.to_string())
            .arg(format!("{}@{ip}", self.user))
            .arg("--");
        c
    }

    fn sudo(&self) -> Vec<&'static str> {
        if self.user == "root" { vec![] } else { vec!["sudo", "-n"] }
    }

    /// Runs one command (as root, through sudo for a non-root user); the words are quoted for the remote shell.
    pub fn run(&self, ip: &str, words: &[&str]) -> Result<String> {
        let mut all = self.sudo();
        all.extend_from_slice(words);
        run(self.base(ip).arg(shell_line(&all)))
    }

    /// Runs a script (lines built with `shell_line`) as root with `sh -e`, fed on stdin.
    pub fn script(&self, ip: &str, script: &str) -> Result<String> {
        let mut all = self.sudo();
        all.extend_from_slice(&["sh", "-e"]);
        run_with_input(self.base(ip).arg(shell_line(&all)), Some(script.as_bytes()))
    }
}

pub struct NodeSpec<'a> {
    pub host: &'a str,
    pub ip: &'a str,
    pub machine: &'a str,
    pub ssh_port: u16,
    pub user: &'a str,
    pub authorized_key: &'a str,
    pub host_key: &'a Path,
    pub etc_hosts: &'a str,
}

/// Fills a node's overlay upper dir before boot: identity, sshd on the node's address only, its host key, the
/// SSH user, the local apt source. Written only while the node is stopped (overlayfs forbids writing an upper
/// dir under a live mount).
pub fn prepare_upper(base: &Path, upper: &Path, n: &NodeSpec) -> Result<()> {
    mkdir(upper)?;
    let etc = upper.join("etc");
    write_file(&etc.join("hostname"), format!("{}\n", n.host), 0o644)?;
    write_file(&etc.join("hosts"), n.etc_hosts, 0o644)?;
    let machine_id = &util::sha256_hex(n.machine.as_bytes())[..32];
    write_file(&etc.join("machine-id"), format!("{machine_id}\n"), 0o444)?;
    write_file(
        &etc.join("ssh/sshd_config.d/kismatic-testbed.conf"),
        format!(
            "# kismatic testbed: this node's sshd listens only on its own loopback address.\n\
             Port {}\nListenAddress {}\nHostKey /etc/ssh/ssh_host_ed25519_key\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nMaxStartups 100:30:200\n",
            n.ssh_port, n.ip
        ),
        0o644,
    )?;
    fs::copy(n.host_key, etc.join("ssh/ssh_host_ed25519_key"))?;
    fs::set_permissions(etc.join("ssh/ssh_host_ed25519_key"), fs::Permissions::from_mode(0o600))?;
    fs::copy(n.host_key.with_extension("pub"), etc.join("ssh/ssh_host_ed25519_key.pub"))?;
    write_file(
        &etc.join("apt/sources.list.d/kismatic-testbed.list"),
        format!("deb [trusted=yes] file:{RELEASES_IN_NODE}/apt ./\n"),
        0o644,
    )?;
    let key_line = format!("{}\n", n.authorized_key);
    if n.user == "root" {
        let home = upper.join("root");
        mkdir(&home.join(".ssh"))?;
        fs::set_permissions(&home, fs::Permissions::from_mode(0o700))?;
        fs::set_permissions(home.join(".ssh"), fs::Permissions::from_mode(0o700))?;
        write_file(&home.join(".ssh/authorized_keys"), key_line, 0o600)?;
    } else {
        add_sudo_user(base, upper, n.user, &key_line)?;
    }
    Ok(())
}

fn add_sudo_user(base: &Path, upper: &Path, user: &str, key_line: &str) -> Result<()> {
    let valid = user.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && user.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && user.len() <= 32;
    if !valid {
        bail!("ssh user {user:?} is not a valid Linux user name");
    }
    let uid = SUDO_UID;
    let entries = [
        ("passwd", format!("{user}:x:{uid}:{uid}:kismatic testbed:/home/{user}:/bin/bash\n")),
        ("group", format!("{user}:x:{uid}:\n")),
        ("shadow", format!("{user}:*:20000:0:99999:7:::\n")),
        ("gshadow", format!("{user}:!::\n")),
    ];
    for (file, line) in entries {
        let src = base.join("etc").join(file);
        let dst = upper.join("etc").join(file);
        let meta = fs::metadata(&src).with_context(|| format!("{} missing", src.display()))?;
        let mut text = fs::read_to_string(&src)?;
        if !text.lines().any(|l| l.starts_with(&format!("{user}:"))) {
            text.push_str(&line);
        }
        write_file(&dst, text, meta.permissions().mode() & 0o7777)?;
        std::os::unix::fs::chown(&dst, Some(0), Some(std::os::unix::fs::MetadataExt::gid(&meta)))?;
    }
    write_file(&upper.join("etc/sudoers.d/kismatic-testbed"), format!("{user} ALL=(ALL:ALL) NOPASSWD: ALL\n"), 0o440)?;
    let home = upper.join("home").join(user);
    mkdir(&home.join(".ssh"))?;
    write_file(&home.join(".ssh/authorized_keys"), key_line, 0o600)?;
    fs::set_permissions(home.join(".ssh"), fs::Permissions::from_mode(0o700))?;
    for p in [home.clone(), home.join(".ssh"), home.join(".ssh/authorized_keys")] {
        std::os::unix::fs::chown(&p, Some(uid), Some(uid))?;
    }
    Ok(())
}

/// The cgroup hierarchies systemd uses on this host (unified, hybrid or legacy layout).
fn cgroup_roots() -> Vec<PathBuf> {
    const CGROUP2: i64 = 0x6367_7270;
    const CGROUP1: i64 = 0x0027_e0eb;
    let fs_type = |p: &str| -> Option<i64> {
        let c = std::ffi::CString::new(p).ok()?;
        // SAFETY: statfs writes into a zeroed struct we own; the path is NUL-terminated.
        unsafe {
            let mut st: libc::statfs = std::mem::zeroed();
            (libc::statfs(c.as_ptr(), &mut st) == 0).then_some(st.f_type as i64)
        }
    };
    let mut roots = Vec::new();
    for (p, magic) in
        [("/sys/fs/cgroup", CGROUP2), ("/sys/fs/cgroup/unified", CGROUP2), ("/sys/fs/cgroup/systemd", CGROUP1)]
    {
        if fs_type(p) == Some(magic) {
            roots.push(PathBuf::from(p));
        }
    }
    roots
}

/// Each node gets cgroups of its own. Without a host systemd, every nspawn would otherwise sit in the same
/// cgroup and all containers' systemd instances would manage one shared `payload/system.slice` tree (units of
/// the same name in two nodes would share, and kill, each other's processes).
pub fn cgroup_dirs(machine: &str) -> Vec<PathBuf> {
    cgroup_roots().into_iter().map(|r| r.join("kismatic-testbed").join(machine)).collect()
}

/// Removes a node's cgroups once its processes are gone (deepest first; cgroupfs only allows rmdir).
pub fn remove_cgroups(machine: &str) {
    fn rm(dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    rm(&e.path());
                }
            }
        }
        let _ = fs::remove_dir(dir);
    }
    for d in cgroup_dirs(machine) {
        rm(&d);
        if let Some(parent) = d.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
}

/// Starts `systemd-nspawn --boot` in the background, detached in its own process group; returns its PID.
pub fn start(base: &Path, upper: &Path, machine: &str, binds: &[(PathBuf, &str)], console_log: &Path) -> Result<Proc> {
    let log = fs::File::create(console_log).with_context(|| format!("cannot create {}", console_log.display()))?;
    let mut cmd = Command::new("systemd-nspawn");
    cmd.args(["--quiet", "-D"])
        .arg(base)
        .arg(format!("--overlay={}:{}:/", base.display(), upper.display()))
        .args(["-M", machine])
        .args(["--boot", "--register=no", "--keep-unit", "--console=pipe", "--link-journal=no"]);
    for (host, inside) in binds {
        cmd.arg(format!("--bind-ro={}:{inside}", host.display()));
    }
    let mut procs_files = Vec::new();
    for d in cgroup_dirs(machine) {
        mkdir(&d)?;
        procs_files.push(
            fs::OpenOptions::new()
                .write(true)
                .open(d.join("cgroup.procs"))
                .with_context(|| format!("cannot open {}/cgroup.procs", d.display()))?,
        );
    }
    let fds: Vec<i32> = procs_files.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0);
    util::no_inherited_fds(&mut cmd);
    // SAFETY: the closure only calls write(2) on descriptors opened before fork (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            for fd in &fds {
                // "0" moves the calling process (the child about to exec nspawn) into that cgroup.
                if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let line = util::describe(&cmd);
    let child = cmd.spawn().with_context(|| format!("cannot start `{line}`"))?;
    drop(procs_files);
    Proc::of(child.id())
}
