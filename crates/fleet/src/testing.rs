//! Test harness: real OpenSSH `sshd` processes, one per node, each on its own loopback address and in its own mount
//! namespace with an overlay over `/etc`, so that every node has its own marker files (and users, sudoers).
//!
//! Needs root (mount namespaces, overlayfs, sshd). [`SshCluster::new`] returns `Err(reason)` when the machine
//! cannot run it; tests print that reason and skip. Every sshd is stopped by its PID when the cluster is dropped;
//! all files live in one temporary folder removed with it.
//!
//! Enabled by the `testing` feature; used by this crate's tests and by the `kismatic` binary's tests.

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Mounts the overlays over /etc and /opt, optionally adds a sudo user inside them, then becomes sshd.
/// Fixed text; values are `$1..$6`.
const NODE_SCRIPT: &str = r#"set -e
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc
mount -t overlay overlay -o "lowerdir=/opt,upperdir=$5,workdir=$6" /opt
if [ -n "$4" ]; then
  useradd -M -N -l -s /bin/sh -p '*' "$4"
  printf '%s ALL=(ALL) NOPASSWD: ALL\n' "$4" > /etc/sudoers.d/kismatic-test
  chmod 0440 /etc/sudoers.d/kismatic-test
fi
exec /usr/sbin/sshd -D -e -f "$3"
"#;

/// Options of one node.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Files to create in the node's `/etc` (path relative to `/etc`, contents).
    pub etc_files: Vec<(String, Vec<u8>)>,
    /// A non-root user to create inside the node, with passwordless sudo.
    pub sudo_user: Option<String>,
    /// Symlinks to create in the node's `/opt` (path relative to `/opt`, target), e.g.
    /// `kismatic/etcd/current` → `/opt/kismatic/etcd/3.5.1`.
    pub opt_links: Vec<(String, String)>,
}

impl NodeOptions {
    pub fn with_file(mut self, path: &str, contents: impl AsRef<[u8]>) -> Self {
        self.etc_files.push((path.to_string(), contents.as_ref().to_vec()));
        self
    }
    /// Both Kismatic markers.
    pub fn with_markers(self, version: &str, kubernetes: &str) -> Self {
        self.with_file("kismatic-version", version)
            .with_file("component-versions", format!("kubernetes: {kubernetes}\n"))
    }
    pub fn with_opt_link(mut self, path: &str, target: &str) -> Self {
        self.opt_links.push((path.to_string(), target.to_string()));
        self
    }
    pub fn with_sudo_user(mut self, user: &str) -> Self {
        self.sudo_user = Some(user.to_string());
        self
    }
}

pub struct SshNode {
    pub name: String,
    pub address: String,
    /// `ssh-ed25519 AAAA...` of the node's host key; `None` for a node with no sshd.
    pub host_key: Option<String>,
    child: Option<Child>,
}

impl SshNode {
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

pub struct SshCluster {
    dir: tempfile::TempDir,
    subnet: u8,
    pub port: u16,
    /// Client private key (ed25519, no passphrase).
    pub client_key: PathBuf,
    /// known_hosts holding every started node's key (see [`write_known_hosts`](Self::write_known_hosts)).
    pub known_hosts: PathBuf,
    pub nodes: Vec<SshNode>,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?}: {}: {}", out.status, String::from_utf8_lossy(&out.stderr)))
    }
}

fn keygen(path: &Path) -> Result<String, String> {
    run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "kismatic-test", "-f"]).arg(path))?;
    let public = fs::read_to_string(path.with_extension("pub")).map_err(|e| e.to_string())?;
    // Drop the comment: known_hosts lines are `name type key`.
    Ok(public.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
}

/// Why this machine cannot run the harness, if it cannot.
pub fn unsupported_reason() -> Option<String> {
    // SAFETY-free check of the effective uid through /proc, to avoid a libc dependency.
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2));
    if euid != Some("0") {
        return Some("needs root (mount namespaces, overlayfs over /etc, sshd)".into());
    }
    for tool in ["/usr/sbin/sshd", "/usr/bin/unshare", "/usr/bin/ssh", "/usr/bin/ssh-keygen"] {
        if !Path::new(tool).exists() {
            return Some(format!("{tool} is missing (apt-get install openssh-server openssh-client util-linux)"));
        }
    }
    None
}

impl SshCluster {
    /// A cluster whose nodes listen on `127.0.<subnet>.<n>`. Pick a subnet per test binary; the port is free-chosen
    /// so that clusters of concurrently running tests do not collide.
    pub fn new(subnet: u8) -> Result<Self, String> {
        if let Some(reason) = unsupported_reason() {
            return Err(reason);
        }
        let dir = tempfile::Builder::new().prefix("kismatic-sshd-").tempdir().map_err(|e| e.to_string())?;
        // A non-root test user must be able to read authorized_keys through this folder.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        fs::create_dir_all("/run/sshd").map_err(|e| format!("/run/sshd: {e}"))?;
        let client_key = dir.path().join("id_client");
        let public = keygen(&client_key)?;
        let authorized = dir.path().join("authorized_keys");
        fs::write(&authorized, format!("{public}\n")).map_err(|e| e.to_string())?;
        fs::set_permissions(&authorized, fs::Permissions::from_mode(0o644)).map_err(|e| e.to_string())?;
        let port = free_port()?;
        let known_hosts = dir.path().join("known_hosts");
        Ok(SshCluster { dir, subnet, port, client_key, known_hosts, nodes: Vec::new() })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn address(&self, n: u8) -> String {
        format!("127.0.{}.{}", self.subnet, n)
    }

    /// Starts a node with its own sshd on `127.0.<subnet>.<n>` and waits until it accepts connections.
    pub fn add_node(&mut self, name: &str, n: u8, options: NodeOptions) -> Result<String, String> {
        let address = self.address(n);
        let ndir = self.dir.path().join(format!("node-{n}"));
        let upper = ndir.join("upper");
        let work = ndir.join("work");
        fs::create_dir_all(upper.join("sudoers.d")).map_err(|e| e.to_string())?;
        fs::create_dir_all(&work).map_err(|e| e.to_string())?;
        for (path, contents) in &options.etc_files {
            let p = upper.join(path);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            fs::write(&p, contents).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        let opt_upper = ndir.join("opt-upper");
        let opt_work = ndir.join("opt-work");
        fs::create_dir_all(&opt_work).map_err(|e| e.to_string())?;
        fs::create_dir_all(&opt_upper).map_err(|e| e.to_string())?;
        for (path, target) in &options.opt_links {
            let p = opt_upper.join(path);
            if let Some(parent) = p.parent() {
                fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            }
            std::os::unix::fs::symlink(target, &p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        let host_key_path = ndir.join("ssh_host_ed25519_key");
        let host_key = keygen(&host_key_path)?;
        let config = ndir.join("sshd_config");
        let authorized = self.dir.path().join("authorized_keys");
        fs::write(
            &config,
            format!(
                "ListenAddress {address}\nPort {port}\nHostKey {hk}\nPidFile none\nAuthorizedKeysFile {ak}\n\
                 StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nMaxStartups 1000:30:1000\nMaxSessions 100\nUseDNS no\n\
                 LogLevel ERROR\nPrintMotd no\n",
                port = self.port,
                hk = host_key_path.display(),
                ak = authorized.display(),
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = fs::File::create(ndir.join("sshd.log")).map_err(|e| e.to_string())?;
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c", NODE_SCRIPT, "kismatic-node"])
            .arg(&upper)
            .arg(&work)
            .arg(&config)
            .arg(options.sudo_user.as_deref().unwrap_or(""))
            .arg(&opt_upper)
            .arg(&opt_work)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting sshd for {name}: {e}"))?;
        self.nodes.push(SshNode {
            name: name.to_string(),
            address: address.clone(),
            host_key: Some(host_key),
            child: Some(child),
        });
        self.wait_listening(self.nodes.len() - 1, &ndir)?;
        Ok(address)
    }

    /// A node in the plan with nothing listening at its address.
    pub fn add_down_node(&mut self, name: &str, n: u8) -> String {
        let address = self.address(n);
        self.nodes.push(SshNode { name: name.to_string(), address: address.clone(), host_key: None, child: None });
        address
    }

    fn wait_listening(&mut self, idx: usize, ndir: &Path) -> Result<(), String> {
        let addr: SocketAddr =
            format!("{}:{}", self.nodes[idx].address, self.port).parse().map_err(|e| format!("{e}"))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            let exited = match self.nodes[idx].child.as_mut() {
                Some(c) => c.try_wait().map_err(|e| e.to_string())?,
                None => None,
            };
            if exited.is_some() || Instant::now() > deadline {
                let log = fs::read_to_string(ndir.join("sshd.log")).unwrap_or_default();
                return Err(format!("sshd for {} did not come up on {addr} ({exited:?}): {log}", self.nodes[idx].name));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The known_hosts line of a started node: `[addr]:port ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self, node: &SshNode) -> Option<String> {
        node.host_key.as_ref().map(|k| format!("[{}]:{} {}", node.address, self.port, k))
    }

    /// Writes `known_hosts` with every started node's key.
    pub fn write_known_hosts(&self) -> Result<(), String> {
        let mut f = fs::File::create(&self.known_hosts).map_err(|e| e.to_string())?;
        for node in &self.nodes {
            if let Some(line) = self.known_hosts_line(node) {
                writeln!(f, "{line}").map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Replaces the recorded key of the node named `name` in `known_hosts` with a freshly generated one, as if the
    /// node had been re-keyed (or impersonated). Returns the fake key line.
    pub fn forge_known_host(&self, name: &str) -> Result<String, String> {
        let node = self.nodes.iter().find(|n| n.name == name).ok_or_else(|| format!("no node {name}"))?;
        let fake = keygen(&self.dir.path().join(format!("fake-{name}")))?;
        let line = format!("[{}]:{} {}", node.address, self.port, fake);
        let mut text = String::new();
        for n in &self.nodes {
            if n.name == name {
                text.push_str(&line);
                text.push('\n');
            } else if let Some(l) = self.known_hosts_line(n) {
                text.push_str(&l);
                text.push('\n');
            }
        }
        fs::write(&self.known_hosts, text).map_err(|e| e.to_string())?;
        Ok(line)
    }

    /// SHA256 fingerprint of a public key line (`ssh-keygen -lf`).
    pub fn fingerprint(&self, key_line: &str) -> Result<String, String> {
        let p = self.dir.path().join("fp.pub");
        fs::write(&p, format!("{key_line}\n")).map_err(|e| e.to_string())?;
        let out = Command::new("ssh-keygen").arg("-lf").arg(&p).output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        text.split_whitespace()
            .find(|w| w.starts_with("SHA256:"))
            .map(str::to_string)
            .ok_or_else(|| format!("no fingerprint in {text:?}"))
    }

    /// Stops every sshd by its PID (SIGKILL through `Child::kill`) and reaps it.
    pub fn stop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for SshCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("choosing a port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}
