//! The testbed's lifecycle: `up`, `status`, `down`, driven by a plan file.

use crate::node::{self, NodeSpec, Proc, RELEASES_IN_NODE, STAGE_IN_NODE, Ssh};
use crate::pki::{Ca, Usage};
use crate::plan::{Inventory, Node, Role};
use crate::release::{self, Component, Delivery, Release, Releases};
use crate::util::{self, mkdir, remove_all, run, shell_line, write_file};
use crate::{image, plan};
use anyhow::{Context, Result, anyhow, bail};
use kismatic_ops::contract::{
    COMPONENT_VERSIONS_FILE, CONFIG, KISMATIC_VERSION_FILE, OPT, UNIT_DIR, config_dir, etcd_tls_dir,
};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/kismatic-testbed";
/// The API server port on each master.
pub const APISERVER_PORT: u16 = 6443;

/// The Service network of the real control plane and its `kubernetes` Service IP (in the API server's SANs).
const SERVICE_RANGE: &str = "10.96.0.0/12";
const SERVICE_IP: &str = "10.96.0.1";

/// The real API server's audit policy: every request's metadata (no bodies: secrets never reach the log).
const AUDIT_POLICY: &str =
    "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n";

/// `/etc/kismatic/<c>/flags.env`, read by the unit (`EnvironmentFile=`, `$FLAGS`): flags without spaces.
fn flags_env(component: &str, host: &str, flags: &[String]) -> String {
    format!("# {component} on {host}, written by the kismatic testbed\nFLAGS=\"{}\"\n", flags.join(" "))
}

/// The testbed's client and peer ports of an etcd cluster, by its name in core's list.
fn etcd_ports(cluster: &str) -> Option<(u16, u16)> {
    match cluster {
        "etcd" => Some((2379, 2380)),
        "etcd-networking" => Some((6666, 6660)),
        _ => None,
    }
}

/// The etcd clusters (`kismatic_core::gates::ETCD_CLUSTERS`, the one list) with their testbed ports: component
/// name, client port, peer port.
pub fn etcd_clusters() -> impl Iterator<Item = (&'static str, u16, u16)> {
    kismatic_core::gates::ETCD_CLUSTERS
        .into_iter()
        .filter_map(|c| etcd_ports(c).map(|(client, peer)| (c, client, peer)))
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Images, downloads, releases and per-testbed state live here.
    pub state_dir: PathBuf,
    /// The kube-sim binary; `None` looks next to the running executable (the cargo target dir).
    pub kube_sim: Option<PathBuf>,
    /// The real control plane's build folder; `None`: `$KISMATIC_KUBERNETES`, else asked of
    /// `scripts/build-kubernetes.sh --cached` in this source tree (never built here: a missing build is an error).
    pub kubernetes: Option<PathBuf>,
    /// Debian mirror for debootstrap; `None` uses the mirror of this machine's apt sources.
    pub mirror: Option<String>,
    /// Keep what a failed `up` built, for debugging (default: tear it down).
    pub keep_on_failure: bool,
    pub boot_timeout: Duration,
    pub quiet: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            state_dir: std::env::var_os("KISMATIC_TESTBED_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            kube_sim: std::env::var_os("KUBE_SIM").map(PathBuf::from),
            kubernetes: std::env::var_os("KISMATIC_KUBERNETES").map(PathBuf::from),
            mirror: None,
            keep_on_failure: false,
            boot_timeout: Duration::from_secs(120),
            quiet: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub host: String,
    pub ip: String,
    pub machine: String,
    pub process: Option<Proc>,
}

/// What a testbed started and wrote, persisted as `state.json` so `down` can remove exactly that.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub cluster: String,
    pub plan: PathBuf,
    /// Set once `up` finished successfully.
    pub ready: bool,
    pub nodes: Vec<NodeState>,
    pub haproxy: Option<Proc>,
    /// Files outside the state dir that the testbed created (known_hosts, kubeconfig, the SSH key it generated).
    pub handed_out: Vec<PathBuf>,
    pub release_old: Option<PathBuf>,
    pub release_new: Option<PathBuf>,
    /// The Kubernetes components are installed: the real control plane on the masters, kube-sim as the node
    /// agent (kubelet, proxy) on the others.
    pub kube_sim: bool,
}

pub struct Testbed {
    pub inv: Inventory,
    pub opts: Options,
    pub dir: PathBuf,
    pub handout: PathBuf,
    started: Instant,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub host: String,
    pub ip: String,
    pub roles: Vec<String>,
    pub running: bool,
    pub system: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub cluster: String,
    pub up: bool,
    pub nodes: Vec<NodeStatus>,
    pub etcd: Vec<(String, String)>,
    pub load_balancer: Option<String>,
    pub kubeconfig: Option<PathBuf>,
    pub known_hosts: PathBuf,
    pub release_old: Option<PathBuf>,
    pub release_new: Option<PathBuf>,
}

impl Testbed {
    pub fn open(plan_path: &Path, opts: Options) -> Result<Testbed> {
        let inv = plan::load_inventory(plan_path)?;
        let dir = opts.state_dir.join("clusters").join(&inv.cluster_name);
        let handout = match &inv.ssh.known_hosts {
            Some(k) => {
                k.parent().map(Path::to_path_buf).ok_or_else(|| anyhow!("known_hosts {} has no folder", k.display()))?
            }
            None => inv.plan_path.parent().unwrap_or(Path::new("/")).join(format!("{}.testbed", inv.cluster_name)),
        };
        Ok(Testbed { inv, opts, dir, handout, started: Instant::now() })
    }

    fn progress(&self, msg: &str) {
        if !self.opts.quiet {
            eprintln!("[{:>6.1}s] {}: {msg}", self.started.elapsed().as_secs_f64(), self.inv.cluster_name);
        }
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.inv.ssh.known_hosts.clone().unwrap_or_else(|| self.handout.join("known_hosts"))
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.handout.join("kubeconfig")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("pki/ca.crt")
    }

    /// A client certificate for the etcd clusters (for tests and debugging from the host).
    pub fn etcd_client_cert(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("pki/etcd-client.crt"), self.dir.join("pki/etcd-client.key"))
    }

    pub fn ssh(&self) -> Ssh {
        Ssh {
            user: self.inv.ssh.user.clone(),
            key: self.inv.ssh.key.clone(),
            known_hosts: self.known_hosts(),
            port: self.inv.ssh.port,
        }
    }

    fn machine(&self, host: &str) -> String {
        format!("kt-{}-{host}", self.inv.cluster_name)
            .chars()
            .map(|c| if c == '.' { '-' } else { c })
            .take(64)
            .collect()
    }

    pub fn load_state(&self) -> Result<Option<State>> {
        let p = self.dir.join("state.json");
        match fs::read_to_string(&p) {
            Ok(t) => Ok(Some(serde_json::from_str(&t).with_context(|| format!("{} is corrupt", p.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", p.display())),
        }
    }

    fn save_state(&self, s: &State) -> Result<()> {
        write_file(&self.dir.join("state.json"), serde_json::to_string_pretty(s)?, 0o600)
    }

    fn etcd_nodes(&self) -> Vec<&Node> {
        self.inv.nodes_with_role(Role::Etcd).collect()
    }

    /// Brings the testbed up. Idempotent: a testbed that is already up is checked and left alone; a broken or
    /// half-built one is removed and built again. A failed `up` removes what it built (unless `keep_on_failure`).
    pub fn up(&self) -> Result<()> {
        preflight()?;
        if let Some(state) = self.load_state()? {
            let all_alive = state.nodes.iter().all(|n| n.process.is_some_and(|p| p.alive()))
                && state.haproxy.is_none_or(|p| p.alive());
            if state.ready && all_alive {
                self.progress("already up; checking health");
                self.wait_etcd_healthy(Duration::from_secs(60))?;
                self.progress("up");
                return Ok(());
            }
            self.progress("found an incomplete testbed; removing it first");
            self.down()?;
        }
        match self.build_up() {
            Ok(()) => Ok(()),
            Err(e) if self.opts.keep_on_failure => {
                Err(e.context(format!("up failed; kept {} for debugging", self.dir.display())))
            }
            Err(e) => {
                self.progress("up failed; tearing down what was built");
                if let Err(d) = self.down() {
                    eprintln!("warning: teardown after the failed up also failed: {d:#}");
                }
                Err(e)
            }
        }
    }

    fn build_up(&self) -> Result<()> {
        let p = |m: &str| self.progress(m);
        mkdir(&self.dir)?;
        let mut state = State {
            cluster: self.inv.cluster_name.clone(),
            plan: self.inv.plan_path.clone(),
            ready: false,
            nodes: Vec::new(),
            haproxy: None,
            handed_out: Vec::new(),
            release_old: None,
            release_new: None,
            kube_sim: false,
        };
        self.save_state(&state)?;

        let mirror = self.opts.mirror.clone().unwrap_or_else(image::host_mirror);
        let base = image::ensure(&self.opts.state_dir.join("images"), &mirror, &p)?;
        let etcd_new = release::ensure_etcd_new(&self.opts.state_dir.join("downloads"), &p)?;
        let kube_sim = self.find_kube_sim();
        match &kube_sim {
            Some(k) => p(&format!("kube-sim: {}", k.display())),
            None => p("kube-sim binary not found (--kube-sim, $KUBE_SIM, or next to this executable): \
                 skipping the control plane, kubelets and on-cluster services"),
        }
        let kubernetes = match &kube_sim {
            Some(_) => {
                let k = self.find_kubernetes()?;
                p(&format!("control plane: Kubernetes from {}", k.display()));
                Some(k)
            }
            None => None,
        };
        let releases = release::ensure(
            &self.opts.state_dir.join("releases"),
            &release::Inputs {
                etcd_old: Path::new("/usr/bin"),
                etcd_new: &etcd_new,
                kube_sim: kube_sim.as_deref(),
                kubernetes: kubernetes.as_deref(),
            },
            &p,
        )?;
        state.release_old = Some(releases.old.dir.clone());
        state.release_new = Some(releases.new.dir.clone());
        state.kube_sim = releases.with_kube_sim;

        p("generating keys, certificates and node configuration");
        let authorized_key = {
            let existed = self.inv.ssh.key.exists();
            let k = crate::pki::ssh_key(&self.inv.ssh.key, "kismatic-testbed")?;
            if !existed {
                state.handed_out.push(self.inv.ssh.key.clone());
                state.handed_out.push(self.inv.ssh.key.with_extension("pub"));
            }
            k
        };
        let ca = Ca::ensure(&self.dir.join("pki"), &self.inv.cluster_name)?;
        let mut known_hosts = String::new();
        for n in &self.inv.nodes {
            let key = self.dir.join("nodes").join(&n.host).join("ssh_host_ed25519_key");
            let public = crate::pki::ssh_key(&key, &n.host)?;
            let addr = if self.inv.ssh.port == 22 { n.ip.clone() } else { format!("[{}]:{}", n.ip, self.inv.ssh.port) };
            let _ = writeln!(known_hosts, "{addr} {public}");
        }
        let kh = self.known_hosts();
        write_file(&kh, &known_hosts, 0o644)?;
        state.handed_out.push(kh);
        self.stage(&ca, &releases)?;
        let kubeconfig = self.write_kubeconfig(&ca)?;
        state.handed_out.push(kubeconfig);
        let ca_copy = self.handout.join("ca.crt");
        fs::copy(ca.cert(), &ca_copy)?;
        state.handed_out.push(ca_copy);
        self.save_state(&state)?;

        let mut etc_hosts = String::from("127.0.0.1 localhost\n");
        for n in &self.inv.nodes {
            let _ = writeln!(etc_hosts, "{} {}", n.ip, n.host);
        }
        let release_root =
            releases.old.dir.parent().ok_or_else(|| anyhow!("release folder has no parent"))?.to_path_buf();
        if let Some(raised) = ensure_inotify_instances(self.inv.nodes.len())? {
            p(&format!(
                "raised fs.inotify.max_user_instances from {} to {} for the nodes' systemd",
                raised.0, raised.1
            ));
        }
        p(&format!("starting {} nodes", self.inv.nodes.len()));
        for n in &self.inv.nodes {
            let machine = self.machine(&n.host);
            let ndir = self.dir.join("nodes").join(&n.host);
            let upper = ndir.join("upper");
            remove_all(&upper)?;
            node::prepare_upper(
                &base,
                &upper,
                &NodeSpec {
                    host: &n.host,
                    ip: &n.ip,
                    machine: &machine,
                    ssh_port: self.inv.ssh.port,
                    user: &self.inv.ssh.user,
                    authorized_key: &authorized_key,
                    host_key: &ndir.join("ssh_host_ed25519_key"),
                    etc_hosts: &etc_hosts,
                },
            )?;
            let binds =
                [(release_root.clone(), RELEASES_IN_NODE), (self.dir.join("stage").join(&n.host), STAGE_IN_NODE)];
            // Record the node before waiting for anything, so a failure from here on can still stop it.
            state.nodes.push(NodeState {
                host: n.host.clone(),
                ip: n.ip.clone(),
                machine: machine.clone(),
                process: None,
            });
            let proc = node::start(&base, &upper, &machine, &binds, &ndir.join("console.log"))?;
            if let Some(last) = state.nodes.last_mut() {
                last.process = Some(proc);
            }
            self.save_state(&state)?;
        }
        self.wait_booted(&state)?;
        p("all nodes booted; installing release 1.0.0 on every node");
        self.install_all(&releases.old)?;
        p("waiting for both etcd clusters to be healthy");
        self.wait_etcd_healthy(Duration::from_secs(90))?;
        if let Some(lb) = &self.inv.load_balancer {
            p(&format!("starting HAProxy at {}:{}", lb.host, lb.port));
            state.haproxy = Some(self.start_haproxy()?);
            self.save_state(&state)?;
        }
        if releases.with_kube_sim {
            self.wait_kube_sim(&releases.old)?;
        }
        state.ready = true;
        self.save_state(&state)?;
        p(&format!(
            "up: {} nodes, release {} installed; known_hosts {}, kubeconfig {}",
            self.inv.nodes.len(),
            releases.old.version,
            self.known_hosts().display(),
            self.kubeconfig_path().display()
        ));
        Ok(())
    }

    /// The real control plane's build folder (never builds it: that is scripts/setup.sh's job).
    fn find_kubernetes(&self) -> Result<PathBuf> {
        if let Some(k) = &self.opts.kubernetes {
            return Ok(k.clone());
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-kubernetes.sh");
        let out = Command::new("bash").arg(&script).arg("--cached").stderr(std::process::Stdio::inherit()).output();
        match out {
            Ok(o) if o.status.success() => Ok(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())),
            _ => bail!(
                "the real control plane is not built ({} --cached): run bash scripts/setup.sh, or pass --kubernetes \
                 DIR",
                script.display()
            ),
        }
    }

    fn find_kube_sim(&self) -> Option<PathBuf> {
        if let Some(p) = &self.opts.kube_sim {
            return p.is_file().then(|| p.clone());
        }
        // The cargo target dir: next to this executable, or one level up for test binaries in `deps/`.
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?;
        [dir.join("kube-sim"), dir.parent()?.join("kube-sim")].into_iter().find(|p| p.is_file())
    }

    /// Per-node files bind-mounted read-only at STAGE_IN_NODE: component configuration and TLS material that
    /// the install step copies to /etc/kismatic/<component>/, and the component-versions marker.
    fn stage(&self, ca: &Ca, releases: &Releases) -> Result<()> {
        let stage_root = self.dir.join("stage");
        remove_all(&stage_root)?;
        let etcd_client = ca.issue("etcd-client", "/CN=etcd-client", &[], &[], Usage::Client)?;
        // The kubeconfig's user (written by `write_kubeconfig` from the CA folder).
        ca.issue("admin", "/O=system:masters/CN=admin", &[], &[], Usage::Client)?;
        let etcd_nodes = self.etcd_nodes();
        for n in &self.inv.nodes {
            let stage = stage_root.join(&n.host);
            let etc = stage.join("etc/kismatic");
            mkdir(&etc)?;
            let copy = |from: &Path, to: PathBuf, mode: u32| -> Result<()> {
                let data = fs::read(from).with_context(|| format!("reading {}", from.display()))?;
                write_file(&to, data, mode)
            };
            if n.has_role(Role::Etcd) {
                let server = ca.issue(
                    &format!("etcd-{}", n.host),
                    &format!("/CN={}", n.host),
                    &[&n.ip, "127.0.0.1"],
                    &[&n.host, "localhost"],
                    Usage::ServerClient,
                )?;
                for (component, client_port, peer_port) in etcd_clusters() {
                    let dir = etc.join(component);
                    let tls = dir.join("tls");
                    copy(&ca.cert(), tls.join("ca.crt"), 0o644)?;
                    copy(&server.cert, tls.join("server.crt"), 0o644)?;
                    copy(&server.key, tls.join("server.key"), 0o600)?;
                    copy(&etcd_client.cert, tls.join("client.crt"), 0o644)?;
                    copy(&etcd_client.key, tls.join("client.key"), 0o600)?;
                    let initial: Vec<String> =
                        etcd_nodes.iter().map(|e| format!("{}=https://{}:{peer_port}", e.host, e.ip)).collect();
                    write_file(
                        &dir.join("etcd.conf.yml"),
                        etcd_config(
                            component,
                            &n.host,
                            &n.ip,
                            client_port,
                            peer_port,
                            &initial.join(","),
                            &self.inv.cluster_name,
                        ),
                        0o644,
                    )?;
                }
            }
            if releases.with_kube_sim {
                self.stage_kube_sim(ca, n, &etc)?;
            }
            if releases.with_kube_sim && n.has_role(Role::Master) {
                self.stage_real_master(ca, n, &etc, &etcd_client)?;
            }
            // The marker as the tool writes it: components on this node, plus the Kubernetes version.
            let mut versions = String::new();
            // Masters also record the on-cluster services (applied at `up` when the control plane runs).
            let records_services = releases.with_kube_sim && n.roles.contains(&Role::Master);
            for c in &releases.old.components {
                let here = match c.delivery {
                    Delivery::Manifest => records_services,
                    _ => c.runs_on(&n.roles),
                };
                if here {
                    let _ = writeln!(versions, "{}: {}", c.name, c.version);
                }
            }
            let _ = writeln!(versions, "kubernetes: {}", releases.old.kubernetes);
            write_file(&stage.join("etc/component-versions"), versions, 0o644)?;
        }
        Ok(())
    }

    /// The node agents' configuration (kube-sim's kubelet and proxy: `/etc/kismatic/<component>/config.yaml` plus
    /// TLS files); they talk to the load balancer.
    fn stage_kube_sim(&self, ca: &Ca, n: &Node, etc: &Path) -> Result<()> {
        let server = self.apiserver_url();
        for (component, _, roles) in release::KUBE_SIM_COMPONENTS {
            if !roles.iter().any(|r| n.has_role(*r)) {
                continue;
            }
            let dir = etc.join(component);
            let tls = dir.join("tls");
            let copy = |from: &Path, to: PathBuf, mode: u32| -> Result<()> { write_file(&to, fs::read(from)?, mode) };
            copy(&ca.cert(), tls.join("ca.crt"), 0o644)?;
            // The formats of crates/kube-sim/src/config.rs (deny_unknown_fields: only known keys).
            let d = format!("{}/tls", config_dir(component));
            let mut cfg = format!("# kube-sim {component} on {}, written by the kismatic testbed\n", n.host);
            let (name, subject) = match component {
                "kubelet" => (format!("kubelet-{}", n.host), format!("/O=system:nodes/CN=system:node:{}", n.host)),
                _ => ("kube-proxy".into(), "/CN=system:kube-proxy".into()),
            };
            let cert = ca.issue(&name, &subject, &[&n.ip], &[&n.host], Usage::ServerClient)?;
            copy(&cert.cert, tls.join("client.crt"), 0o644)?;
            copy(&cert.key, tls.join("client.key"), 0o600)?;
            let _ = write!(
                cfg,
                "api:\n  server: {server}\n  ca: {d}/ca.crt\n  cert: {d}/client.crt\n  key: {d}/client.key\n"
            );
            match component {
                "kubelet" => {
                    let roles: Vec<&str> = n.roles.iter().map(|r| r.as_str()).collect();
                    let _ = write!(
                        cfg,
                        "node_name: {}\naddress: {}\nroles: [{}]\nheartbeat_interval_ms: 3000\n",
                        n.host,
                        n.ip,
                        roles.join(", ")
                    );
                    if !n.labels.is_empty() {
                        cfg.push_str("labels:\n");
                        for (k, v) in &n.labels {
                            let _ = writeln!(cfg, "  {k:?}: {v:?}");
                        }
                    }
                    if !n.taints.is_empty() {
                        cfg.push_str("taints:\n");
                        for t in &n.taints {
                            let _ =
                                writeln!(cfg, "  - {{key: {:?}, value: {:?}, effect: {:?}}}", t.key, t.value, t.effect);
                        }
                    }
                }
                // Its default health address (127.0.0.1:10256) would collide between nodes.
                "kube-proxy" => {
                    let _ = write!(cfg, "node_name: {}\nhealthz_address: {}:10256\n", n.host, n.ip);
                }
                _ => {}
            }
            write_file(&dir.join("config.yaml"), cfg, 0o644)?;
        }
        Ok(())
    }

    /// The API server's serving certificate on a master (SANs: its address, the load balancer, loopback, the
    /// `kubernetes` Service's IP and names).
    fn apiserver_cert(&self, ca: &Ca, n: &Node) -> Result<crate::pki::Cert> {
        let lb = self.inv.load_balancer.as_ref().map(|l| l.host.clone()).unwrap_or_else(|| n.ip.clone());
        ca.issue(
            &format!("apiserver-{}", n.host),
            "/CN=kube-apiserver",
            &[&n.ip, &lb, "127.0.0.1", SERVICE_IP],
            &[
                &n.host,
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "localhost",
            ],
            Usage::ServerClient,
        )
    }

    /// The real control plane's configuration on a master: TLS material and `flags.env` per component under
    /// /etc/kismatic/<c>/ (the units are the release's, the same on every master). The controller-manager and
    /// scheduler talk to their own master's API server, with leader election among the masters.
    fn stage_real_master(&self, ca: &Ca, n: &Node, etc: &Path, etcd_client: &crate::pki::Cert) -> Result<()> {
        let copy = |from: &Path, to: PathBuf, mode: u32| -> Result<()> {
            write_file(&to, fs::read(from).with_context(|| format!("reading {}", from.display()))?, mode)
        };
        let pki = &ca.dir;
        let front_proxy = Ca::ensure(&pki.join("front-proxy"), &format!("{}-front-proxy", self.inv.cluster_name))?;
        let proxy_client =
            front_proxy.issue("front-proxy-client", "/CN=front-proxy-client", &[], &[], Usage::Client)?;
        let kubelet_client = ca.issue(
            "apiserver-kubelet-client",
            "/O=system:masters/CN=kube-apiserver-kubelet-client",
            &[],
            &[],
            Usage::Client,
        )?;
        let sa = crate::pki::key_pair(pki, "service-account")?;
        let serving = self.apiserver_cert(ca, n)?;
        let own = format!("https://{}:{APISERVER_PORT}", n.ip);
        let etcd: Vec<String> = self.etcd_nodes().iter().map(|e| format!("https://{}:2379", e.ip)).collect();

        let d = &config_dir("kube-apiserver");
        let dir = etc.join("kube-apiserver");
        copy(&ca.cert(), dir.join("tls/ca.crt"), 0o644)?;
        copy(&serving.cert, dir.join("tls/server.crt"), 0o644)?;
        copy(&serving.key, dir.join("tls/server.key"), 0o600)?;
        copy(&etcd_client.cert, dir.join("tls/etcd-client.crt"), 0o644)?;
        copy(&etcd_client.key, dir.join("tls/etcd-client.key"), 0o600)?;
        copy(&kubelet_client.cert, dir.join("tls/kubelet-client.crt"), 0o644)?;
        copy(&kubelet_client.key, dir.join("tls/kubelet-client.key"), 0o600)?;
        copy(&front_proxy.cert(), dir.join("tls/front-proxy-ca.crt"), 0o644)?;
        copy(&proxy_client.cert, dir.join("tls/front-proxy-client.crt"), 0o644)?;
        copy(&proxy_client.key, dir.join("tls/front-proxy-client.key"), 0o600)?;
        copy(&sa.cert, dir.join("tls/service-account.pub"), 0o644)?;
        copy(&sa.key, dir.join("tls/service-account.key"), 0o600)?;
        write_file(&dir.join("audit-policy.yaml"), AUDIT_POLICY, 0o644)?;
        let flags = [
            format!("--advertise-address={}", n.ip),
            format!("--bind-address={}", n.ip),
            format!("--secure-port={APISERVER_PORT}"),
            format!("--tls-cert-file={d}/tls/server.crt"),
            format!("--tls-private-key-file={d}/tls/server.key"),
            format!("--client-ca-file={d}/tls/ca.crt"),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--allow-privileged=true".into(),
            format!("--etcd-servers={}", etcd.join(",")),
            format!("--etcd-cafile={d}/tls/ca.crt"),
            format!("--etcd-certfile={d}/tls/etcd-client.crt"),
            format!("--etcd-keyfile={d}/tls/etcd-client.key"),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={d}/tls/service-account.pub"),
            format!("--service-account-signing-key-file={d}/tls/service-account.key"),
            format!("--service-cluster-ip-range={SERVICE_RANGE}"),
            format!("--kubelet-client-certificate={d}/tls/kubelet-client.crt"),
            format!("--kubelet-client-key={d}/tls/kubelet-client.key"),
            "--kubelet-preferred-address-types=InternalIP".into(),
            format!("--proxy-client-cert-file={d}/tls/front-proxy-client.crt"),
            format!("--proxy-client-key-file={d}/tls/front-proxy-client.key"),
            format!("--requestheader-client-ca-file={d}/tls/front-proxy-ca.crt"),
            "--requestheader-allowed-names=front-proxy-client".into(),
            "--requestheader-username-headers=X-Remote-User".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            format!("--audit-policy-file={d}/audit-policy.yaml"),
            "--audit-log-path=/var/log/kubernetes/audit.log".into(),
            "--audit-log-maxsize=20".into(),
            "--audit-log-maxbackup=1".into(),
            // Loopback addresses are not valid endpoints of the `kubernetes` Service ("… loopback range").
            "--endpoint-reconciler-type=none".into(),
            "--cert-dir=/var/lib/kismatic/kube-apiserver".into(),
            // On SIGTERM /readyz fails at once while requests are still served for 5 s: HAProxy's check (1 s,
            // down after 3) takes the master out before its listener closes (docs/testbed.md).
            "--shutdown-delay-duration=5s".into(),
        ];
        write_file(&dir.join("flags.env"), flags_env("kube-apiserver", &n.host, &flags), 0o644)?;

        for (component, cn, port) in [
            ("kube-controller-manager", "system:kube-controller-manager", 10257),
            ("kube-scheduler", "system:kube-scheduler", 10259),
        ] {
            let d = config_dir(component);
            let dir = etc.join(component);
            let client = ca.issue(component, &format!("/CN={cn}"), &[], &[], Usage::Client)?;
            copy(&ca.cert(), dir.join("tls/ca.crt"), 0o644)?;
            copy(&client.cert, dir.join("tls/client.crt"), 0o644)?;
            copy(&client.key, dir.join("tls/client.key"), 0o600)?;
            let kubeconfig = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: own\n  cluster:\n    server: {own}\n    \
                 certificate-authority: {d}/tls/ca.crt\nusers:\n- name: {cn}\n  user:\n    \
                 client-certificate: {d}/tls/client.crt\n    client-key: {d}/tls/client.key\ncontexts:\n- name: own\n  \
                 context:\n    cluster: own\n    user: {cn}\ncurrent-context: own\n"
            );
            write_file(&dir.join("kubeconfig"), kubeconfig, 0o600)?;
            let k = format!("{d}/kubeconfig");
            // Serving certificates: self-signed into --cert-dir (the health gate does not verify them).
            let mut flags = vec![
                format!("--kubeconfig={k}"),
                format!("--authentication-kubeconfig={k}"),
                format!("--authorization-kubeconfig={k}"),
                format!("--bind-address={}", n.ip),
                format!("--secure-port={port}"),
                // The insecure port (10251/10252 on 0.0.0.0) would collide between masters on a shared loopback.
                "--port=0".into(),
                "--leader-elect=true".into(),
                format!("--cert-dir=/var/lib/kismatic/{component}"),
            ];
            if component == "kube-controller-manager" {
                copy(&ca.dir.join("ca.key"), dir.join("tls/ca.key"), 0o600)?;
                copy(&sa.key, dir.join("tls/service-account.key"), 0o600)?;
                flags.extend([
                    "--use-service-account-credentials=true".into(),
                    format!("--service-account-private-key-file={d}/tls/service-account.key"),
                    format!("--root-ca-file={d}/tls/ca.crt"),
                    format!("--cluster-signing-cert-file={d}/tls/ca.crt"),
                    format!("--cluster-signing-key-file={d}/tls/ca.key"),
                    "--controllers=*,bootstrapsigner,tokencleaner".into(),
                    // Faster than Kubernetes' 40 s so tests see a dead kubelet quickly (a documented difference).
                    "--node-monitor-grace-period=15s".into(),
                ]);
            }
            write_file(&dir.join("flags.env"), flags_env(component, &n.host, &flags), 0o644)?;
        }
        Ok(())
    }

    fn apiserver_url(&self) -> String {
        match &self.inv.load_balancer {
            Some(lb) => format!("https://{}:{}", lb.host, lb.port),
            None => {
                let ip = self.inv.nodes_with_role(Role::Master).next().map(|m| m.ip.clone()).unwrap_or_default();
                format!("https://{ip}:{APISERVER_PORT}")
            }
        }
    }

    fn write_kubeconfig(&self, ca: &Ca) -> Result<PathBuf> {
        let read = |p: PathBuf| -> Result<String> {
            Ok(util::base64(&fs::read(&p).with_context(|| format!("reading {}", p.display()))?))
        };
        let name = &self.inv.cluster_name;
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n    \
             certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {cert}\n    \
             client-key-data: {key}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: admin\n\
             current-context: {name}\n",
            server = self.apiserver_url(),
            ca = read(ca.cert())?,
            cert = read(ca.dir.join("admin.crt"))?,
            key = read(ca.dir.join("admin.key"))?,
        );
        let path = self.kubeconfig_path();
        write_file(&path, text, 0o600)?;
        Ok(path)
    }

    fn wait_booted(&self, state: &State) -> Result<()> {
        let ssh = self.ssh();
        std::thread::scope(|s| {
            let handles: Vec<_> = state
                .nodes
                .iter()
                .map(|n| {
                    let ssh = &ssh;
                    s.spawn(move || -> Result<()> {
                        let console = self.dir.join("nodes").join(&n.host).join("console.log");
                        util::wait_until(&format!("node {} to boot", n.host), self.opts.boot_timeout, || {
                            if !n.process.is_some_and(|p| p.alive()) {
                                let log = fs::read_to_string(&console).unwrap_or_default();
                                bail!("node {}: systemd-nspawn exited; console:\n{}", n.host, util::tail(&log, 20));
                            }
                            let out = ssh.run(&n.ip, &["systemctl", "is-system-running"]).or_else(|e| {
                                // is-system-running exits non-zero for `degraded`; keep its stdout.
                                let msg = format!("{e:#}");
                                if msg.contains("degraded") { Ok("degraded".into()) } else { Err(e) }
                            })?;
                            let st = out.trim();
                            Ok((st == "running" || st == "degraded").then_some(()))
                        })?;
                        self.progress(&format!("node {} ({}) booted", n.host, n.ip));
                        Ok(())
                    })
                })
                .collect();
            let mut first: Option<anyhow::Error> = None;
            for h in handles {
                let r = h.join().unwrap_or_else(|_| Err(anyhow!("a boot watcher panicked")));
                if let (Err(e), None) = (r, &first) {
                    first = Some(e);
                }
            }
            first.map_or(Ok(()), Err)
        })
    }

    /// Installs a release on every node, as the tool would: digest checks, versioned folder, `current` link,
    /// unit, configuration, packages from the apt repository, markers; then starts the services.
    fn install_all(&self, rel: &Release) -> Result<()> {
        let ssh = self.ssh();
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .inv
                .nodes
                .iter()
                .map(|n| {
                    let ssh = &ssh;
                    s.spawn(move || -> Result<()> {
                        let script = install_script(rel, &n.roles);
                        ssh.script(&n.ip, &script)
                            .with_context(|| format!("installing release {} on {}", rel.version, n.host))?;
                        self.progress(&format!("node {}: release {} installed", n.host, rel.version));
                        Ok(())
                    })
                })
                .collect();
            let mut first: Option<anyhow::Error> = None;
            for h in handles {
                let r = h.join().unwrap_or_else(|_| Err(anyhow!("an installer panicked")));
                if let (Err(e), None) = (r, &first) {
                    first = Some(e);
                }
            }
            first.map_or(Ok(()), Err)
        })
    }

    /// `etcdctl endpoint health --cluster` over TLS from the host, for each etcd cluster.
    pub fn etcd_health(&self, client_port: u16) -> Result<String> {
        let (cert, key) = self.etcd_client_cert();
        let endpoints: Vec<String> =
            self.etcd_nodes().iter().map(|e| format!("https://{}:{client_port}", e.ip)).collect();
        util::run_combined(
            Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", endpoints.join(",")))
                .arg(format!("--cacert={}", self.ca_path().display()))
                .arg(format!("--cert={}", cert.display()))
                .arg(format!("--key={}", key.display()))
                .args(["--dial-timeout=2s", "--command-timeout=5s", "endpoint", "health", "--cluster"]),
        )
    }

    fn wait_etcd_healthy(&self, deadline: Duration) -> Result<()> {
        let members = self.etcd_nodes().len();
        for (component, client_port, _) in etcd_clusters() {
            util::wait_until(&format!("etcd cluster {component}"), deadline, || {
                let out = self.etcd_health(client_port)?;
                let healthy = out.lines().filter(|l| l.contains("is healthy")).count();
                Ok((healthy == members).then_some(()))
            })?;
            self.progress(&format!("etcd cluster {component}: {members} members healthy"));
        }
        Ok(())
    }

    fn start_haproxy(&self) -> Result<Proc> {
        let lb = self.inv.load_balancer.as_ref().ok_or_else(|| anyhow!("no load balancer in the plan"))?;
        let mut cfg = format!(
            "# kismatic testbed {name}: the masters' load balancer\nglobal\n  maxconn 4096\n\n\
             defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n\n\
             frontend apiserver\n  bind {host}:{port}\n  default_backend masters\n\n\
             backend masters\n  balance roundrobin\n",
            name = self.inv.cluster_name,
            host = lb.host,
            port = lb.port
        );
        // The API server's own readiness (anonymous /readyz over TLS), so a master that is shutting down or
        // starting gets no new connections; `redispatch` retries a refused connection elsewhere. A check times
        // out after 5 s, not after `inter`: on 2 loaded cores /readyz took over 1 s and both masters were marked
        // down at once (the API refused connections through the load balancer).
        cfg.push_str(
            "  option httpchk GET /readyz\n  http-check expect status 200\n  option redispatch\n  retries 3\n  \
             timeout check 5s\n  default-server check check-ssl verify none inter 1s fall 3 rise 2\n",
        );
        for m in self.inv.nodes_with_role(Role::Master) {
            let _ = writeln!(cfg, "  server {} {}:{APISERVER_PORT}", m.host, m.ip);
        }
        let cfg_path = self.dir.join("haproxy.cfg");
        write_file(&cfg_path, cfg, 0o644)?;
        run(Command::new("haproxy").arg("-c").arg("-f").arg(&cfg_path))
            .context("HAProxy rejected its configuration")?;
        let log = fs::File::create(self.dir.join("haproxy.log"))?;
        let mut cmd = Command::new("haproxy");
        // -db: stay in the foreground, so the PID we record is the process to stop.
        cmd.arg("-db").arg("-f").arg(&cfg_path).stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        util::no_inherited_fds(&mut cmd);
        let child = cmd.spawn().context("cannot start haproxy")?;
        let proc = Proc::of(child.id())?;
        let addr = format!("{}:{}", lb.host, lb.port);
        util::wait_until("HAProxy to listen", Duration::from_secs(10), || {
            if !proc.alive() {
                let log = fs::read_to_string(self.dir.join("haproxy.log")).unwrap_or_default();
                bail!("haproxy exited:\n{}", util::tail(&log, 10));
            }
            Ok(util::tcp_open(&addr).then_some(()))
        })?;
        Ok(proc)
    }

    /// With the Kubernetes components installed: the API through the load balancer, every kubelet's Node Ready, then the
    /// on-cluster services applied and rolled out.
    fn wait_kube_sim(&self, rel: &Release) -> Result<()> {
        let kc = self.kubeconfig_path();
        let kubectl =
            |args: &[&str]| -> Result<String> { run(Command::new("kubectl").arg("--kubeconfig").arg(&kc).args(args)) };
        self.progress("waiting for the API server");
        util::wait_until("the API server /readyz", Duration::from_secs(90), || {
            Ok(kubectl(&["get", "--raw", "/readyz"]).is_ok().then_some(()))
        })?;
        let kubelets: Vec<&Node> = self
            .inv
            .nodes
            .iter()
            .filter(|n| n.has_role(Role::Worker) || n.has_role(Role::Ingress) || n.has_role(Role::Storage))
            .collect();
        for n in &kubelets {
            util::wait_until(&format!("node {} Ready", n.host), Duration::from_secs(90), || {
                let out = kubectl(&[
                    "get",
                    "node",
                    &n.host,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
                ]);
                Ok(out.is_ok_and(|o| o.trim() == "True").then_some(()))
            })?;
        }
        self.progress(&format!("{} nodes Ready", kubelets.len()));
        // Role labels come from an administrator: NodeRestriction refuses `node-role.kubernetes.io/*` from a
        // kubelet (kube-sim's kubelet only asks, best-effort), as kubeadm labels its nodes.
        for n in &kubelets {
            let mut args = vec!["label".to_string(), "node".into(), n.host.clone(), "--overwrite".into()];
            args.extend(n.roles.iter().map(|r| format!("node-role.kubernetes.io/{}=", r.as_str())));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl(&args).with_context(|| format!("labelling node {} with its roles", n.host))?;
        }
        // The real node controller lifts the `node.kubernetes.io/not-ready` taint only on its next pass (up to
        // 5 s after Ready): services applied before that would all land on the first untainted node (the real
        // scheduler spreads as a preference), a replicas-on-single-node finding for every online upgrade.
        for n in &kubelets {
            util::wait_until(&format!("node {} schedulable", n.host), Duration::from_secs(60), || {
                let keys = kubectl(&["get", "node", &n.host, "-o", "jsonpath={.spec.taints[*].key}"])?;
                Ok((!keys.split_whitespace().any(|k| k.starts_with("node.kubernetes.io/"))).then_some(()))
            })?;
        }
        for c in rel.components.iter().filter(|c| c.delivery == Delivery::Manifest) {
            let file = rel.dir.join(&c.artifact);
            kubectl(&["apply", "-f", &file.to_string_lossy()]).with_context(|| format!("applying {}", c.name))?;
        }
        for c in rel.components.iter().filter(|c| c.delivery == Delivery::Manifest) {
            let kind = if c.name == "network" { "daemonset" } else { "deployment" };
            kubectl(&["-n", "kube-system", "rollout", "status", &format!("{kind}/{}", c.name), "--timeout=90s"])
                .with_context(|| format!("waiting for {} to roll out", c.name))?;
        }
        self.progress("on-cluster services rolled out");
        Ok(())
    }

    pub fn status(&self) -> Result<Status> {
        let state = self.load_state()?;
        let ssh = self.ssh();
        let mut nodes = Vec::new();
        for n in &self.inv.nodes {
            let running = state
                .as_ref()
                .and_then(|s| s.nodes.iter().find(|x| x.host == n.host))
                .and_then(|x| x.process)
                .is_some_and(|p| p.alive());
            let system = if running {
                match ssh.run(&n.ip, &["systemctl", "is-system-running"]) {
                    Ok(o) => o.trim().to_string(),
                    Err(e) => {
                        let m = format!("{e:#}");
                        if m.contains("degraded") { "degraded".into() } else { "unreachable".into() }
                    }
                }
            } else {
                "stopped".into()
            };
            nodes.push(NodeStatus {
                host: n.host.clone(),
                ip: n.ip.clone(),
                roles: n.roles.iter().map(|r| r.to_string()).collect(),
                running,
                system,
            });
        }
        let mut etcd = Vec::new();
        if nodes.iter().any(|n| n.running) {
            for (component, port, _) in etcd_clusters() {
                let health = match self.etcd_health(port) {
                    Ok(o) => format!(
                        "{}/{} members healthy",
                        o.lines().filter(|l| l.contains("is healthy")).count(),
                        self.etcd_nodes().len()
                    ),
                    Err(_) => "unhealthy".into(),
                };
                etcd.push((component.to_string(), health));
            }
        }
        let lb = self.inv.load_balancer.as_ref().map(|lb| {
            let alive = state.as_ref().and_then(|s| s.haproxy).is_some_and(|p| p.alive());
            format!("{}:{} ({})", lb.host, lb.port, if alive { "haproxy running" } else { "down" })
        });
        Ok(Status {
            cluster: self.inv.cluster_name.clone(),
            up: state.as_ref().is_some_and(|s| s.ready) && nodes.iter().all(|n| n.running),
            nodes,
            etcd,
            load_balancer: lb,
            kubeconfig: self.kubeconfig_path().exists().then(|| self.kubeconfig_path()),
            known_hosts: self.known_hosts(),
            release_old: state.as_ref().and_then(|s| s.release_old.clone()),
            release_new: state.as_ref().and_then(|s| s.release_new.clone()),
        })
    }

    /// Stops every process the testbed started (by PID), unmounts and removes its files. Safe to run twice and
    /// on a half-built testbed.
    pub fn down(&self) -> Result<()> {
        let state = self.load_state()?;
        if let Some(s) = &state {
            if let Some(h) = s.haproxy {
                h.stop(Duration::from_secs(5));
            }
            // nspawn turns SIGTERM into an orderly container shutdown; all nodes halt in parallel.
            let procs: Vec<Proc> = s.nodes.iter().filter_map(|n| n.process).collect();
            for p in &procs {
                if p.alive() {
                    util::signal(p.pid, libc::SIGTERM);
                }
            }
            let _ = util::wait_until("nodes to halt", Duration::from_secs(30), || {
                Ok(procs.iter().all(|p| !p.alive()).then_some(()))
            });
            for p in &procs {
                p.stop(Duration::from_secs(5));
            }
            if let Some(p) = procs.iter().find(|p| p.alive()) {
                bail!("systemd-nspawn {} did not stop", p.pid);
            }
            for n in &s.nodes {
                node::remove_cgroups(&n.machine);
            }
            for f in &s.handed_out {
                remove_all(f)?;
            }
        }
        for f in [self.known_hosts(), self.kubeconfig_path(), self.handout.join("ca.crt")] {
            remove_all(&f)?;
        }
        // Remove the handout folder only when the testbed leaves it empty (it may hold the user's own key).
        if fs::read_dir(&self.handout).is_ok_and(|mut d| d.next().is_none()) {
            let _ = fs::remove_dir(&self.handout);
        }
        unmount_under(&self.dir)?;
        remove_all(&self.dir)?;
        self.progress("down");
        Ok(())
    }
}

/// Each container's systemd takes several inotify instances of the host's per-user budget (all nodes run as root).
/// Debian's default of 128 boots only about 22 nodes: the 45-node scale testbed had 23 nodes never reach sshd
/// until it was raised.
const INOTIFY_INSTANCES_PER_NODE: u64 = 16;
const INOTIFY_INSTANCES_FOR_THE_HOST: u64 = 256;
const INOTIFY_MAX_USER_INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";

/// The `max_user_instances` that `nodes` containers need, when `current` is too low.
fn inotify_instances_needed(nodes: usize, current: u64) -> Option<u64> {
    let nodes = u64::try_from(nodes).unwrap_or(u64::MAX);
    let needed = nodes.saturating_mul(INOTIFY_INSTANCES_PER_NODE).saturating_add(INOTIFY_INSTANCES_FOR_THE_HOST);
    (current < needed).then_some(needed)
}

/// Raises the host's inotify instance limit when it is too low for the nodes; returns (before, after) if it did.
fn ensure_inotify_instances(nodes: usize) -> Result<Option<(u64, u64)>> {
    let text = fs::read_to_string(INOTIFY_MAX_USER_INSTANCES)
        .with_context(|| format!("reading {INOTIFY_MAX_USER_INSTANCES}"))?;
    let current: u64 = text
        .trim()
        .parse()
        .with_context(|| format!("{INOTIFY_MAX_USER_INSTANCES}: not a number: {:?}", text.trim()))?;
    match inotify_instances_needed(nodes, current) {
        None => Ok(None),
        Some(needed) => {
            fs::write(INOTIFY_MAX_USER_INSTANCES, needed.to_string())
                .with_context(|| format!("raising {INOTIFY_MAX_USER_INSTANCES} to {needed} for {nodes} nodes"))?;
            Ok(Some((current, needed)))
        }
    }
}

fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the testbed needs root (systemd-nspawn, debootstrap, mounts)");
    }
    for tool in [
        "systemd-nspawn",
        "debootstrap",
        "haproxy",
        "etcdctl",
        "openssl",
        "ssh",
        "ssh-keygen",
        "dpkg-deb",
        "dpkg-scanpackages",
        "python3",
        "tar",
    ] {
        if util::which(tool).is_none() {
            bail!("{tool} is not installed; see docs/testbed.md for the packages the testbed needs");
        }
    }
    for b in ["/usr/bin/etcd", "/usr/bin/etcdctl"] {
        if !Path::new(b).exists() {
            bail!("{b} missing: apt-get install etcd-server etcd-client (3.4.23 is the old release's etcd)");
        }
    }
    Ok(())
}

/// Lazily unmounts anything still mounted under `dir` (deepest first). nspawn mounts in its own namespace, so
/// normally there is nothing; this covers a crashed nspawn.
fn unmount_under(dir: &Path) -> Result<()> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Ok(());
    };
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| m.starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in mounts {
        let c = std::ffi::CString::new(m.as_os_str().as_encoded_bytes())?;
        // SAFETY: umount2 takes a valid NUL-terminated path; MNT_DETACH cannot corrupt memory.
        let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            bail!("cannot unmount {}: {}", m.display(), std::io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn etcd_config(
    component: &str,
    host: &str,
    ip: &str,
    client_port: u16,
    peer_port: u16,
    initial_cluster: &str,
    cluster: &str,
) -> String {
    let tls = etcd_tls_dir(component);
    let security = format!(
        "  cert-file: {tls}/server.crt\n  key-file: {tls}/server.key\n  client-cert-auth: true\n  \
         trusted-ca-file: {tls}/ca.crt\n"
    );
    format!(
        "# {component} member {host}, written by the kismatic testbed\nname: {host}\n\
         data-dir: /var/lib/kismatic/{component}\n\
         listen-client-urls: https://{ip}:{client_port}\nadvertise-client-urls: https://{ip}:{client_port}\n\
         listen-peer-urls: https://{ip}:{peer_port}\ninitial-advertise-peer-urls: https://{ip}:{peer_port}\n\
         initial-cluster: {initial_cluster}\ninitial-cluster-state: new\ninitial-cluster-token: {cluster}-{component}\n\
         client-transport-security:\n{security}peer-transport-security:\n{security}\
         logger: zap\nlog-outputs: [stderr]\n"
    )
}

/// The shell script (every word quoted) that installs `rel` on a node with `roles`, run as root with `sh -e`.
pub fn install_script(rel: &Release, roles: &[Role]) -> String {
    let version_dir = rel.dir.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let in_node = |p: &str| format!("{RELEASES_IN_NODE}/{version_dir}/{p}");
    let sha = |c: &Component, p: &str| -> String {
        // Digests as recorded in the release, recomputed here from the same files.
        util::sha256_file(&rel.dir.join(p)).unwrap_or_else(|_| c.name.clone())
    };
    let verify = |digest: &str, path: &str| {
        format!("{} | sha256sum --check --quiet --strict -", shell_line(&["printf", "%s  %s\\n", digest, path]))
    };
    let mut lines = vec!["set -e".to_string(), "export DEBIAN_FRONTEND=noninteractive".into()];
    let mut services = Vec::new();
    for c in rel.components.iter().filter(|c| c.runs_on(roles)) {
        match c.delivery {
            Delivery::Binary => {
                let art = in_node(&c.artifact);
                let base = format!("{OPT}/{}", c.name);
                let dir = format!("{base}/{}", c.version);
                let tmp = format!("{dir}.partial");
                lines.push(verify(&sha(c, &c.artifact), &art));
                lines.push(shell_line(&["rm", "-rf", &tmp]));
                lines.push(shell_line(&["mkdir", "-p", &tmp]));
                lines.push(shell_line(&["tar", "-xzf", &art, "-C", &tmp]));
                lines.push(shell_line(&["rm", "-rf", &dir]));
                lines.push(shell_line(&["mv", &tmp, &dir]));
                // Atomic switch of `current`: a new link renamed over the old one.
                lines.push(shell_line(&["ln", "-sfn", &c.version, &format!("{base}/current.new")]));
                lines.push(shell_line(&["mv", "-T", &format!("{base}/current.new"), &format!("{base}/current")]));
                if let Some(u) = &c.unit {
                    let unit = in_node(u);
                    lines.push(verify(&sha(c, u), &unit));
                    lines.push(shell_line(&[
                        "install",
                        "-m",
                        "0644",
                        &unit,
                        &format!("{UNIT_DIR}/{}.service", c.service),
                    ]));
                }
                let conf = config_dir(&c.name);
                lines.push(shell_line(&["rm", "-rf", &conf]));
                lines.push(shell_line(&["mkdir", "-p", CONFIG]));
                lines.push(shell_line(&["cp", "-R", &format!("{STAGE_IN_NODE}{conf}"), &conf]));
                services.push(c.service.clone());
            }
            Delivery::Package => {
                let pkg = c.package.clone().unwrap_or_else(|| c.name.clone());
                lines.push(shell_line(&["apt-get", "-qq", "update"]));
                lines.push(shell_line(&[
                    "apt-get",
                    "-qq",
                    "install",
                    "-y",
                    "--no-install-recommends",
                    &format!("{pkg}={}", c.version),
                ]));
            }
            Delivery::Manifest => {}
        }
    }
    lines.push(shell_line(&[
        "install",
        "-m",
        "0644",
        &format!("{STAGE_IN_NODE}{COMPONENT_VERSIONS_FILE}"),
        COMPONENT_VERSIONS_FILE,
    ]));
    lines.push(format!("{} > {KISMATIC_VERSION_FILE}", shell_line(&["printf", "%s", &rel.version])));
    if !services.is_empty() {
        lines.push(shell_line(&["systemctl", "daemon-reload"]));
        let mut enable = vec!["systemctl".to_string(), "enable".into(), "--quiet".into()];
        enable.extend(services.iter().cloned());
        lines.push(shell_line(&enable));
        // --no-block: an etcd member only reports ready once its peers are up, so members start together.
        let mut start = vec!["systemctl".to_string(), "start".into(), "--no-block".into()];
        start.extend(services.iter().cloned());
        lines.push(shell_line(&start));
    }
    lines.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    /// Every etcd cluster core knows has its ports on the testbed, and they do not collide.
    #[test]
    fn every_core_etcd_cluster_has_ports() {
        let clusters: Vec<_> = super::etcd_clusters().collect();
        assert_eq!(clusters.len(), kismatic_core::gates::ETCD_CLUSTERS.len(), "{clusters:?}");
        let mut ports: Vec<u16> = clusters.iter().flat_map(|(_, c, p)| [*c, *p]).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 2 * clusters.len());
    }

    /// Debian's default (128) is too low for the scale testbed's 45 nodes and enough for ha's 9; a higher limit is
    /// never lowered.
    #[test]
    fn inotify_instances_are_raised_only_when_too_low() {
        assert_eq!(super::inotify_instances_needed(45, 128), Some(45 * 16 + 256));
        assert_eq!(super::inotify_instances_needed(9, 128), Some(9 * 16 + 256));
        assert_eq!(super::inotify_instances_needed(9, 8192), None);
        assert_eq!(super::inotify_instances_needed(usize::MAX, 128), Some(u64::MAX));
    }
}
