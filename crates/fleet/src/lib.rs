//! kismatic-fleet: run commands and read/write files on many nodes at once over SSH.
//!
//! Transport: the system OpenSSH client in ControlMaster mode (the `openssh` crate, native mux), so known_hosts,
//! ssh_config, agents, ProxyJump and certificates behave exactly as with `ssh`. One master connection per node;
//! every command is a new channel on it. See `docs/ssh.md` for the host-key policy, concurrency and sudo rules.
//!
//! Every per-node operation returns `Result<_, NodeError>`: one node's failure is that node's result.

mod error;
pub mod hostkey;

pub use deadline::{Deadlines, OpKind};
pub use error::{FleetError, NodeError};

mod deadline;

use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

tokio::task_local! {
    /// Nanoseconds spent in node commands by the future running under [`tally_remote`].
    static REMOTE_NANOS: std::cell::Cell<u64>;
    /// Node commands (SSH round trips) run by the future running under [`tally_remote_counted`].
    static REMOTE_COMMANDS: std::cell::Cell<u64>;
}

/// Runs `f` and returns, with its output, the time it spent waiting on node commands (round trip and the command's
/// own run time). Futures running concurrently each keep their own tally. Lets a caller tell the nodes' work from
/// its own.
pub async fn tally_remote<F: std::future::Future>(f: F) -> (F::Output, Duration) {
    let (out, time, _) = tally_remote_counted(f).await;
    (out, time)
}

/// [`tally_remote`], and the number of node commands (SSH round trips) `f` ran.
pub async fn tally_remote_counted<F: std::future::Future>(f: F) -> (F::Output, Duration, u64) {
    REMOTE_COMMANDS
        .scope(std::cell::Cell::new(0), async {
            let (out, time) = REMOTE_NANOS
                .scope(std::cell::Cell::new(0), async {
                    let out = f.await;
                    (out, remote_so_far().unwrap_or_default())
                })
                .await;
            (out, time, REMOTE_COMMANDS.try_with(|c| c.get()).unwrap_or_default())
        })
        .await
}

/// SSH traffic to one node during a run: master connections opened (a key exchange each) and commands run on them
/// (a round trip each, including the ones that stop an abandoned command).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundTrips {
    pub connections: u64,
    pub commands: u64,
}

type TrafficTable = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, RoundTrips>>>;

fn count(table: &TrafficTable, node: &str, f: impl FnOnce(&mut RoundTrips)) {
    if let Ok(mut t) = table.lock() {
        f(t.entry(node.to_string()).or_default());
    }
}

/// The tally of the enclosing [`tally_remote`] so far (`None` outside one).
pub fn remote_so_far() -> Option<Duration> {
    REMOTE_NANOS.try_with(|c| Duration::from_nanos(c.get())).ok()
}

/// How to reach the fleet. Built from the plan's SSH settings plus command-line choices.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub user: String,
    /// Private key; `None` leaves the choice to ssh (agent, ssh_config, default identities).
    pub key: Option<PathBuf>,
    pub port: u16,
    /// known_hosts file to verify against; `None` means the user's own `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Accept and record keys of hosts not yet in known_hosts (`StrictHostKeyChecking=accept-new`). A *changed*
    /// key is refused either way.
    pub trust_new_hosts: bool,
    /// TCP connect + SSH banner timeout of one attempt.
    pub connect_timeout: Duration,
    /// Attempts per node for connection failures (never for failed commands).
    pub connect_attempts: u32,
    /// Delay before the second attempt; doubles for each further one.
    pub retry_backoff: Duration,
    /// Concurrent SSH handshakes. sshd's default `MaxStartups 10:30:100` starts dropping unauthenticated
    /// connections beyond 10, and a bastion is often shared: stay at 10.
    pub max_handshakes: usize,
    /// Concurrent established sessions (one ssh master process each).
    pub max_sessions: usize,
    /// An ssh_config file to use instead of the user's (`ssh -F`); `None` uses the normal ones.
    pub ssh_config: Option<PathBuf>,
    /// Idle time after which a master connection exits by itself, so a crashed run leaves nothing behind for long.
    pub control_persist: Duration,
    /// How long one node command of each kind may run before it is stopped on the node.
    pub deadlines: Deadlines,
}

impl FleetConfig {
    pub fn new(user: impl Into<String>, port: u16) -> Self {
        FleetConfig {
            user: user.into(),
            key: None,
            port,
            known_hosts: None,
            trust_new_hosts: false,
            connect_timeout: Duration::from_secs(10),
            connect_attempts: 3,
            retry_backoff: Duration::from_millis(250),
            max_handshakes: 10,
            max_sessions: 256,
            ssh_config: None,
            control_persist: Duration::from_secs(600),
            deadlines: Deadlines::default(),
        }
    }

    /// The plan's SSH settings (user, key, port, known_hosts).
    pub fn from_plan(ssh: &kismatic_plan::SshSettings) -> Self {
        let mut c = FleetConfig::new(ssh.user.clone(), ssh.port);
        c.key = Some(ssh.key.clone());
        c.known_hosts = ssh.known_hosts.clone();
        c
    }
}

/// One node to talk to: its plan name (for messages) and the address SSH connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub name: String,
    pub address: String,
}

impl Target {
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> Self {
        Target { name: name.into(), address: address.into() }
    }
}

/// Output of a remote command that ran to completion (whatever its exit status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// The connection pool for one run. Dropping it removes the control directory; close sessions first.
pub struct Fleet {
    config: FleetConfig,
    known_hosts: PathBuf,
    control_dir: tempfile::TempDir,
    handshakes: Semaphore,
    sessions: Semaphore,
    traffic: TrafficTable,
}

impl Fleet {
    pub fn new(config: FleetConfig) -> Result<Self, FleetError> {
        let known_hosts = match &config.known_hosts {
            Some(p) => p.clone(),
            None => {
                let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or(FleetError::NoHome)?;
                PathBuf::from(home).join(".ssh").join("known_hosts")
            }
        };
        if config.trust_new_hosts
            && let Some(dir) = known_hosts.parent().filter(|d| !d.as_os_str().is_empty())
        {
            // ssh cannot record a new key into a file whose folder does not exist.
            std::fs::create_dir_all(dir)
                .map_err(|source| FleetError::KnownHostsDir { path: known_hosts.clone(), source })?;
        }
        // Control sockets must fit sun_path (108 bytes): a short folder under /tmp, private to us.
        let tmp = Path::new("/tmp");
        // tempfile creates it 0700; the mode is set again so that a changed default can never widen it.
        let control_dir = tempfile::Builder::new()
            .prefix("kf-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(tmp)
            .map_err(|source| FleetError::ControlDir { dir: tmp.to_path_buf(), source })?;
        Ok(Fleet {
            handshakes: Semaphore::new(config.max_handshakes.max(1)),
            sessions: Semaphore::new(config.max_sessions.max(1)),
            config,
            known_hosts,
            control_dir,
            traffic: TrafficTable::default(),
        })
    }

    /// SSH connections and commands per node so far, over every session this fleet opened.
    pub fn round_trips(&self) -> std::collections::BTreeMap<String, RoundTrips> {
        self.traffic.lock().map(|t| t.clone()).unwrap_or_default()
    }

    pub fn config(&self) -> &FleetConfig {
        &self.config
    }

    /// The known_hosts file host keys are verified against (and new ones recorded in).
    pub fn known_hosts(&self) -> &Path {
        &self.known_hosts
    }

    fn builder(&self) -> SessionBuilder {
        let mut b = SessionBuilder::default();
        b.user(self.config.user.clone())
            .port(self.config.port)
            .known_hosts_check(if self.config.trust_new_hosts { KnownHosts::Add } else { KnownHosts::Strict })
            .user_known_hosts_file(ssh_option_path(&self.known_hosts))
            .connect_timeout(self.config.connect_timeout)
            .server_alive_interval(Duration::from_secs(15))
            .control_directory(self.control_dir.path())
            .control_persist(ControlPersist::IdleFor(
                NonZeroUsize::new(self.config.control_persist.as_secs() as usize).unwrap_or(NonZeroUsize::MIN),
            ));
        if let Some(key) = &self.config.key {
            b.keyfile(key);
        }
        if let Some(cfg) = &self.config.ssh_config {
            b.config_file(cfg);
        }
        b
    }

    /// Opens a master connection to one node, retrying connection failures with exponential backoff.
    /// Holds a handshake permit only while connecting.
    pub async fn connect(&self, target: &Target) -> Result<NodeSession, NodeError> {
        let builder = self.builder();
        let attempts = self.config.connect_attempts.max(1);
        let mut delay = self.config.retry_backoff;
        let mut attempt = 1;
        loop {
            let result = {
                let _permit = self
                    .handshakes
                    .acquire()
                    .await
                    .map_err(|e| NodeError::Session { node: target.name.clone(), reason: e.to_string() })?;
                tracing::debug!(node = %target.name, attempt, "connecting");
                builder.connect_mux(&target.address).await
            };
            match result {
                Ok(session) => {
                    count(&self.traffic, &target.name, |t| t.connections += 1);
                    return Ok(NodeSession {
                        traffic: self.traffic.clone(),
                        session,
                        name: target.name.clone(),
                        user: self.config.user.clone(),
                        sudo: self.config.user != "root",
                        deadlines: self.config.deadlines.clone(),
                        inflight: std::sync::Mutex::new(std::collections::HashMap::new()),
                    });
                }
                Err(err) => {
                    let err = self.connect_error(target, err).await;
                    if !err.is_retryable() || attempt >= attempts {
                        tracing::debug!(node = %target.name, attempt, error = %err, "giving up");
                        return Err(err);
                    }
                    tracing::debug!(node = %target.name, attempt, error = %err, "retrying");
                    // Jitter from the name spreads retries of nodes that failed together (MaxStartups drops).
                    let jitter = Duration::from_millis(target.name.bytes().map(u64::from).sum::<u64>() % 97);
                    tokio::time::sleep(delay + jitter).await;
                    delay = delay.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }

    async fn connect_error(&self, target: &Target, err: openssh::Error) -> NodeError {
        let text = match &err {
            openssh::Error::Connect(e) | openssh::Error::Master(e) => e.to_string(),
            other => other.to_string(),
        };
        let node = target.name.clone();
        let address = hostkey::known_hosts_name(&target.address, self.config.port);
        match hostkey::classify(&text) {
            hostkey::ConnectFailure::HostKeyChanged { presented } => {
                let presented = match presented {
                    Some(p) => Some(p),
                    None => {
                        hostkey::scan_fingerprints(&target.address, self.config.port, self.config.connect_timeout).await
                    }
                };
                let known = hostkey::known_fingerprints(&self.known_hosts, &address).await;
                NodeError::HostKeyChanged {
                    node,
                    address,
                    known_hosts: self.known_hosts.clone(),
                    known: known.unwrap_or_else(|| "(unreadable entry)".into()),
                    presented: presented.unwrap_or_else(|| "(unknown)".into()),
                }
            }
            hostkey::ConnectFailure::HostKeyUnknown => {
                NodeError::HostKeyUnknown { node, address, known_hosts: self.known_hosts.clone() }
            }
            hostkey::ConnectFailure::Auth(reason) => NodeError::Auth { node, user: self.config.user.clone(), reason },
            hostkey::ConnectFailure::Unreachable(reason) => NodeError::Unreachable { node, address, reason },
        }
    }

    /// Connects to every target concurrently (bounded), runs `f` on each session, closes it, and returns one
    /// result per target, in the targets' order.
    pub async fn on_each<T, F>(&self, targets: &[Target], f: F) -> Vec<Result<T, NodeError>>
    where
        F: AsyncFn(&NodeSession) -> Result<T, NodeError>,
    {
        let f = &f;
        let jobs = targets.iter().map(|t| async move {
            let _permit = self
                .sessions
                .acquire()
                .await
                .map_err(|e| NodeError::Session { node: t.name.clone(), reason: e.to_string() })?;
            let session = self.connect(t).await?;
            let result = f(&session).await;
            session.close().await;
            result
        });
        futures_util::future::join_all(jobs).await
    }
}

/// A command kept running on a node while this value lives: its input stays open, and it ends when the input does
/// ([`release`](Held::release), or this process ending by any means: the channel then closes). Used for locks held
/// on a node, which the node's kernel releases when the holding command ends.
pub struct Held {
    child: openssh::Child<std::sync::Arc<Session>>,
    stdin: Option<openssh::ChildStdin>,
    session: std::sync::Arc<Session>,
    node: String,
}

impl Held {
    /// Ends the held command (end of its input) and the connection it used.
    pub async fn release(mut self) {
        drop(self.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        if let Ok(session) = std::sync::Arc::try_unwrap(self.session) {
            let _ = session.close().await;
        } else {
            tracing::debug!(node = %self.node, "held session still shared");
        }
    }
}

impl Fleet {
    /// Starts `program args...` on the node over a connection of its own and waits (within the command deadline)
    /// for its first line of output. `Ok(Ok((held, line)))`: it printed a line and keeps running until released;
    /// `Ok(Err(output))`: it ended first (with this output).
    pub async fn hold(
        &self,
        target: &Target,
        program: &str,
        args: &[&str],
    ) -> Result<Result<(Held, String), Output>, NodeError> {
        use tokio::io::AsyncBufReadExt;
        let node = self.connect(target).await?;
        let sudo = node.sudo;
        let name = node.name.clone();
        let session = std::sync::Arc::new(node.session);
        let session_error =
            |e: openssh::Error| NodeError::Session { node: name.clone(), reason: format!("{e}{}", source_text(&e)) };
        let mut argv: Vec<&str> = Vec::new();
        if sudo {
            argv.extend(["sudo", "-n", "--"]);
        }
        argv.push(program);
        argv.extend(args);
        let mut cmd = session.clone().arc_command(argv[0]);
        cmd.args(&argv[1..]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().await.map_err(session_error)?;
        let stdin = child.stdin().take();
        let mut stdout = tokio::io::BufReader::new(
            child
                .stdout()
                .take()
                .ok_or_else(|| NodeError::Session { node: name.clone(), reason: "no stdout pipe".into() })?,
        );
        let mut line = String::new();
        let limit = self.config.deadlines.command;
        let read = tokio::time::timeout(limit, stdout.read_line(&mut line)).await;
        match read {
            Ok(Ok(n)) if n > 0 && line.trim() != "busy" => {
                Ok(Ok((Held { child, stdin, session, node: name }, line.trim().to_string())))
            }
            Ok(_) => {
                drop(stdin);
                let mut rest = Vec::new();
                let _ = tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut rest).await;
                let mut stderr = Vec::new();
                if let Some(mut e) = child.stderr().take() {
                    let _ = tokio::io::AsyncReadExt::read_to_end(&mut e, &mut stderr).await;
                }
                let status = child.wait().await.map_err(session_error)?;
                let mut out = line.into_bytes();
                out.extend(rest);
                Ok(Err(Output { code: status.code(), stdout: out, stderr }))
            }
            Err(_) => Err(NodeError::TimedOut {
                node: name,
                command: command_label(program, args),
                kind: OpKind::Command.as_str(),
                after: limit.as_secs(),
                stopped: "it was left to end with the connection".into(),
            }),
        }
    }
}

/// An open connection to one node. Commands run through `sudo -n` when the SSH user is not root.
pub struct NodeSession {
    session: Session,
    name: String,
    user: String,
    sudo: bool,
    deadlines: Deadlines,
    /// Commands started and not seen to end (their future was dropped: interrupted), by process-group file; they
    /// are stopped on the node when the session closes.
    inflight: std::sync::Mutex<std::collections::HashMap<String, String>>,
    traffic: TrafficTable,
}

/// Every node command runs as the leader of a process group of its own (`setsid`), whose id it records in `$1`, so
/// that a command that overran its deadline or was interrupted can be stopped with everything it started. The
/// record is removed when the command ends.
const GROUP_SCRIPT: &str = r#"f=$1
shift
echo "$$" > "$f" 2>/dev/null || true
"$@"
rc=$?
rm -f -- "$f"
exit "$rc"
"#;

/// Stops the process group recorded in `$1`: SIGTERM, then SIGKILL for what is left after 5 s. Prints `stopped`
/// when a group was found.
const KILL_SCRIPT: &str = r#"f=$1
pg=$(cat -- "$f" 2>/dev/null) || exit 0
rm -f -- "$f"
case $pg in ''|*[!0-9]*) exit 0 ;; esac
kill -s TERM -- "-$pg" 2>/dev/null || exit 0
echo stopped
i=0
while kill -s 0 -- "-$pg" 2>/dev/null; do
  i=$((i+1))
  if [ "$i" -ge 50 ]; then kill -s KILL -- "-$pg" 2>/dev/null; exit 0; fi
  sleep 0.1
done
"#;

/// Where process-group records live on the node (tmpfs: a reboot clears them).
const GROUP_DIR: &str = "/run";

/// A name for one command's process-group record, unique across runs and commands.
fn group_file() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{GROUP_DIR}/kismatic-cmd.{}.{nanos}.{n}", std::process::id())
}

/// What a command is called in messages: the script's name for `sh -c SCRIPT NAME ...` (the scripts are long and
/// their arguments may be secrets), else the program.
pub fn command_label(program: &str, args: &[&str]) -> String {
    match (program, args) {
        ("sh" | "bash", ["-c", _, name, ..]) => (*name).to_string(),
        ("sh" | "bash", ["-c", ..]) => format!("{program} -c"),
        ("env", rest) => rest.iter().find(|a| !a.contains('=')).map_or("env", |p| p).to_string(),
        _ => program.to_string(),
    }
}

/// Removes a command from the in-flight table when it ended (whatever its result), not when its future was dropped.
struct Inflight<'a> {
    table: &'a std::sync::Mutex<std::collections::HashMap<String, String>>,
    file: String,
    ended: bool,
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        if self.ended
            && let Ok(mut t) = self.table.lock()
        {
            t.remove(&self.file);
        }
    }
}

/// Atomic write: a temporary file in the same folder, then rename. `$1` path, `$2` octal mode; data on stdin.
const WRITE_SCRIPT: &str = r#"set -eu
tmp="$1.kismatic-tmp.$$"
trap 'rm -f "$tmp"' EXIT
umask 077
cat > "$tmp"
chmod "$2" "$tmp"
mv -f "$tmp" "$1"
"#;

impl NodeSession {
    /// The node's plan name.
    pub fn node(&self) -> &str {
        &self.name
    }

    /// Whether commands are wrapped in `sudo -n`.
    pub fn uses_sudo(&self) -> bool {
        self.sudo
    }

    /// Whether the master connection still answers (a local check: no round trip to the node). A session kept
    /// for a whole run is checked before reuse and replaced when it died.
    pub async fn is_alive(&self) -> bool {
        self.session.check().await.is_ok()
    }

    /// Runs `program args...` (each argument shell-quoted; never interpolated) and returns its output whatever
    /// the exit status, within the deadline of [`OpKind::Command`]. Errors only when the command could not be run,
    /// the connection broke, or the deadline passed (the command is then stopped on the node).
    pub async fn output(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Output, NodeError> {
        self.output_within(OpKind::Command, program, args, stdin).await
    }

    /// [`output`](Self::output) within the deadline of `kind`.
    pub async fn output_within(
        &self,
        kind: OpKind,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Output, NodeError> {
        let started = std::time::Instant::now();
        let out = self.bounded(kind, program, args, stdin).await;
        let _ = REMOTE_NANOS.try_with(|c| c.set(c.get().saturating_add(started.elapsed().as_nanos() as u64)));
        out
    }

    async fn bounded(
        &self,
        kind: OpKind,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Output, NodeError> {
        let limit = self.deadlines.get(kind);
        let label = command_label(program, args);
        let file = group_file();
        if let Ok(mut t) = self.inflight.lock() {
            t.insert(file.clone(), label.clone());
        }
        let mut inflight = Inflight { table: &self.inflight, file: file.clone(), ended: false };
        let result = tokio::time::timeout(limit, self.output_untallied(Some(&file), program, args, stdin)).await;
        inflight.ended = true;
        match result {
            Ok(out) => out,
            Err(_) => {
                tracing::debug!(node = %self.name, command = %label, "deadline passed; stopping it");
                let stopped = self.stop_group(&file).await;
                Err(NodeError::TimedOut {
                    node: self.name.clone(),
                    command: label,
                    kind: kind.as_str(),
                    after: limit.as_secs(),
                    stopped: match stopped {
                        Ok(()) => "it was stopped on the node".to_string(),
                        Err(e) => format!("stopping it on the node failed ({e}); it may still run there"),
                    },
                })
            }
        }
    }

    /// Stops a command's process group on the node (see [`KILL_SCRIPT`]).
    async fn stop_group(&self, file: &str) -> Result<(), NodeError> {
        let args = ["-c", KILL_SCRIPT, "kismatic-stop", file];
        match tokio::time::timeout(Duration::from_secs(15), self.output_untallied(None, "sh", &args, None)).await {
            Ok(out) => out.map(|_| ()),
            Err(_) => {
                Err(NodeError::Session { node: self.name.clone(), reason: "kismatic-stop did not answer".into() })
            }
        }
    }

    /// Stops, on the node, every command whose future was dropped before it ended (an interrupted run); returns
    /// their names. [`close`](Self::close) does this too.
    pub async fn stop_abandoned(&self) -> Vec<String> {
        let left: Vec<(String, String)> = self.inflight.lock().map(|mut t| t.drain().collect()).unwrap_or_default();
        let mut stopped = Vec::new();
        for (file, label) in left {
            match self.stop_group(&file).await {
                Ok(()) => stopped.push(label),
                Err(e) => tracing::warn!(node = %self.name, command = %label, error = %e, "could not stop"),
            }
        }
        stopped
    }

    async fn output_untallied(
        &self,
        group: Option<&str>,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Output, NodeError> {
        let mut argv: Vec<&str> = Vec::with_capacity(args.len() + 10);
        if self.sudo {
            argv.extend(["sudo", "-n", "--"]);
        }
        if let Some(file) = group {
            argv.extend(["setsid", "-w", "sh", "-c", GROUP_SCRIPT, "kismatic-cmd", file]);
        }
        argv.push(program);
        argv.extend(args);
        count(&self.traffic, &self.name, |t| t.commands += 1);
        let _ = REMOTE_COMMANDS.try_with(|c| c.set(c.get().saturating_add(1)));
        let mut cmd = self.session.command(argv[0]);
        cmd.args(&argv[1..]);
        // Arguments may carry secrets (tokens, passwords in files being written): log only the program.
        tracing::debug!(node = %self.name, program, "run");
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().await.map_err(|e| self.session_error(e))?;
        let mut stdin_error = None;
        if let Some(data) = stdin
            && let Some(mut pipe) = child.stdin().take()
        {
            // A command that exits before reading all its input (it failed early) breaks the pipe: its own exit
            // status and stderr say why, so they are returned rather than the broken pipe.
            stdin_error = pipe.write_all(data).await.err();
            pipe.shutdown().await.ok();
            drop(pipe);
        }
        let out = child.wait_with_output().await.map_err(|e| self.session_error(e))?;
        match stdin_error {
            Some(e) if out.status.success() => {
                Err(NodeError::Session { node: self.name.clone(), reason: format!("writing stdin: {e}") })
            }
            _ => Ok(Output { code: out.status.code(), stdout: out.stdout, stderr: out.stderr }),
        }
    }

    /// Like [`output`](Self::output) but a non-zero exit is an error (`CommandFailed`, or `Sudo` when sudo itself
    /// refused).
    pub async fn run(&self, program: &str, args: &[&str], stdin: Option<&[u8]>) -> Result<Output, NodeError> {
        self.run_within(OpKind::Command, program, args, stdin).await
    }

    /// [`run`](Self::run) within the deadline of `kind`.
    pub async fn run_within(
        &self,
        kind: OpKind,
        program: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Output, NodeError> {
        let out = self.output_within(kind, program, args, stdin).await?;
        if out.success() {
            return Ok(out);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if self.sudo && out.code == Some(1) && is_sudo_refusal(&stderr) {
            return Err(NodeError::Sudo { node: self.name.clone(), user: self.user.clone(), stderr });
        }
        Err(NodeError::CommandFailed {
            node: self.name.clone(),
            program: program.to_string(),
            status: match out.code {
                Some(c) => format!("exit code {c}"),
                None => "killed by a signal".to_string(),
            },
            stderr,
        })
    }

    /// Reads a whole file.
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, NodeError> {
        Ok(self.run("cat", &["--", path], None).await?.stdout)
    }

    /// Writes a whole file atomically (temporary file beside it, then rename) with the given octal mode.
    pub async fn write_file(&self, path: &str, contents: &[u8], mode: u32) -> Result<(), NodeError> {
        let mode = format!("{mode:o}");
        self.run("sh", &["-c", WRITE_SCRIPT, "kismatic-write", path, &mode], Some(contents)).await?;
        Ok(())
    }

    /// Ends the master connection. Errors are ignored: the node's result is already decided.
    pub async fn close(self) {
        let stopped = self.stop_abandoned().await;
        if !stopped.is_empty() {
            tracing::info!(node = %self.name, commands = ?stopped, "stopped interrupted commands on the node");
        }
        if let Err(e) = self.session.close().await {
            tracing::debug!(node = %self.name, error = %e, "closing the SSH master");
        }
    }

    fn session_error(&self, e: openssh::Error) -> NodeError {
        NodeError::Session { node: self.name.clone(), reason: format!("{e}{}", source_text(&e)) }
    }
}

/// A path as the value of an `ssh -o` option: ssh splits option values at spaces (unless quoted), expands `%`
/// tokens and a leading `~`, so the path is quoted with `"`, `\` and `"` escaped, `%` doubled, and a leading `~`
/// kept literal.
fn ssh_option_path(path: &Path) -> PathBuf {
    let text = path.to_string_lossy();
    let text = if text.starts_with('~') { format!("./{text}") } else { text.into_owned() };
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for ch in text.chars() {
        match ch {
            '\\' | '"' => {
                quoted.push('\\');
                quoted.push(ch);
            }
            '%' => quoted.push_str("%%"),
            _ => quoted.push(ch),
        }
    }
    quoted.push('"');
    PathBuf::from(quoted)
}

fn source_text(e: &dyn std::error::Error) -> String {
    let mut s = String::new();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn is_sudo_refusal(stderr: &str) -> bool {
    stderr.starts_with("sudo:")
        && (stderr.contains("password is required")
            || stderr.contains("not in the sudoers")
            || stderr.contains("may not run sudo")
            || stderr.contains("is not allowed to execute"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SSH control folder (its sockets give a shell on every node) is private to the run: 0700 under /tmp,
    /// removed with the fleet.
    #[test]
    fn the_control_folder_is_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = FleetConfig::new("root", 22);
        cfg.known_hosts = Some(dir.path().join("known_hosts"));
        let fleet = Fleet::new(cfg).expect("fleet");
        let control = fleet.control_dir.path().to_path_buf();
        assert!(
            control.starts_with("/tmp") && control.file_name().is_some_and(|n| n.to_string_lossy().starts_with("kf-"))
        );
        let mode = std::fs::metadata(&control).expect("control folder").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{control:?} is {mode:o}");
        drop(fleet);
        assert!(!control.exists(), "{control:?} left behind");
    }

    #[test]
    fn sudo_refusals() {
        assert!(is_sudo_refusal("sudo: a password is required"));
        assert!(is_sudo_refusal("sudo: bob is not in the sudoers file.  This incident will be reported."));
        assert!(!is_sudo_refusal("cat: /x: No such file or directory"));
    }

    #[test]
    fn known_hosts_paths_are_quoted_for_ssh() {
        assert_eq!(ssh_option_path(Path::new("/a b/%h/k\"x")), PathBuf::from(r#""/a b/%%h/k\"x""#));
        assert_eq!(ssh_option_path(Path::new("~k")), PathBuf::from(r#""./~k""#));
    }

    #[test]
    fn config_defaults_fit_maxstartups() {
        let c = FleetConfig::new("root", 22);
        assert!(c.max_handshakes <= 10);
        assert!(!c.trust_new_hosts);
    }
}

#[cfg(feature = "testing")]
pub mod testing;
