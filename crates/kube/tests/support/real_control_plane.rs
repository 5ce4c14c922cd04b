//! Test support: the real Kubernetes 1.20.2 control plane (built by scripts/build-kubernetes.sh) on loopback — a
//! real etcd, kube-apiserver with Node+RBAC authorization and NodeRestriction, and the controller-manager with the
//! controllers a test asks for — with an admin kubeconfig and client certificates for any identity. Shared by the
//! kismatic-kube and kube-sim tests (`#[path]`-included). Run under `flock /tmp/kismatic-loopback.lock`.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ETCD: &str = "/usr/bin/etcd";

/// The built control plane's folder; fails (never builds, never skips) when it is not built.
pub fn built() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-kubernetes.sh");
    let out = Command::new("bash").arg(&script).arg("--cached").stderr(Stdio::inherit()).output().expect("bash");
    assert!(out.status.success(), "the real control plane is not built (see above): run bash scripts/setup.sh");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn(dir: &Path, name: &str, bin: &Path, args: &[String]) -> Proc {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
    Proc(child)
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// A client certificate and key (PEM file paths).
pub struct ClientCert {
    pub cert: String,
    pub key: String,
}

pub struct ControlPlane {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
    pub server: String,
    pub ca: String,
    pub kubeconfig: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    procs: Vec<(String, Proc)>,
}

impl ControlPlane {
    /// etcd, kube-apiserver v1.20.2 and, unless `controllers` is empty, kube-controller-manager running those
    /// controllers (e.g. `disruption`) with admin credentials and no leader election.
    pub fn start(controllers: &[&str]) -> ControlPlane {
        let bin = built();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, "kismatic-test-ca");
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = write(&d, "ca.crt", &p.self_signed(&ca_key).unwrap().pem());
        let (client, peer, api) = (free_port(), free_port(), free_port());
        let server = format!("https://127.0.0.1:{api}");
        let mut cp = ControlPlane {
            dir,
            bin,
            server,
            ca,
            kubeconfig: d.join("admin.kubeconfig"),
            issuer: Issuer::new(p, ca_key),
            procs: Vec::new(),
        };
        let tls = cp.issue("apiserver", "kube-apiserver", None, true);
        let admin = cp.issue("admin", "admin", Some("system:masters"), false);
        cp.write_kubeconfig(&cp.kubeconfig.clone(), &admin);
        let sa = KeyPair::generate().unwrap();
        let sa_pub = write(&d, "sa.pub", &sa.public_key_pem());
        let sa_key = write(&d, "sa.key", &sa.serialize_pem());
        let s = |x: &str| x.to_string();
        let etcd = spawn(
            &d,
            "etcd",
            Path::new(ETCD),
            &[
                s("--name=e0"),
                format!("--data-dir={}", d.join("etcd").display()),
                format!("--listen-client-urls=http://127.0.0.1:{client}"),
                format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster=e0=http://127.0.0.1:{peer}"),
            ],
        );
        cp.procs.push(("etcd".into(), etcd));
        let apiserver = spawn(
            &d,
            "kube-apiserver",
            &cp.bin.join("v1.20.2/kube-apiserver"),
            &[
                s("--advertise-address=127.0.0.1"),
                s("--bind-address=127.0.0.1"),
                format!("--secure-port={api}"),
                format!("--tls-cert-file={}", tls.cert),
                format!("--tls-private-key-file={}", tls.key),
                format!("--client-ca-file={}", cp.ca),
                s("--authorization-mode=Node,RBAC"),
                s("--enable-admission-plugins=NodeRestriction"),
                format!("--etcd-servers=http://127.0.0.1:{client}"),
                s("--service-account-issuer=https://kubernetes.default.svc"),
                format!("--service-account-key-file={sa_pub}"),
                format!("--service-account-signing-key-file={sa_key}"),
                s("--service-cluster-ip-range=10.96.0.0/12"),
                s("--endpoint-reconciler-type=none"),
                format!("--cert-dir={}", d.join("certs").display()),
            ],
        );
        cp.procs.push(("kube-apiserver".into(), apiserver));
        if !controllers.is_empty() {
            let cm = spawn(
                &d,
                "kube-controller-manager",
                &cp.bin.join("v1.20.2/kube-controller-manager"),
                &[
                    format!("--kubeconfig={}", cp.kubeconfig.display()),
                    format!("--controllers={}", controllers.join(",")),
                    s("--leader-elect=false"),
                    s("--port=0"),
                    s("--secure-port=0"),
                ],
            );
            cp.procs.push(("kube-controller-manager".into(), cm));
        }
        cp
    }

    /// A certificate signed by the cluster CA (IP SAN 127.0.0.1; `server` adds serverAuth).
    pub fn issue(&self, name: &str, cn: &str, org: Option<&str>, server: bool) -> ClientCert {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string(), "kubernetes.default.svc".into()]).unwrap();
        p.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        p.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1))));
        p.distinguished_name.push(DnType::CommonName, cn);
        if let Some(o) = org {
            p.distinguished_name.push(DnType::OrganizationName, o);
        }
        p.extended_key_usages = if server {
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        let d = self.dir.path();
        ClientCert {
            cert: write(d, &format!("{name}.crt"), &cert.pem()),
            key: write(d, &format!("{name}.key"), &key.serialize_pem()),
        }
    }

    pub fn write_kubeconfig(&self, path: &Path, id: &ClientCert) {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster: {{server: \"{}\", certificate-authority: \"{}\"}}\nusers:\n- name: u\n  user: {{client-certificate: \"{}\", client-key: \"{}\"}}\ncontexts:\n- name: t\n  context: {{cluster: t, user: u}}\ncurrent-context: t\n",
            self.server, self.ca, id.cert, id.key
        );
        std::fs::write(path, text).unwrap();
    }

    /// kubectl v1.20.2 (built from the same tree) with the admin kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new(self.bin.join("kubectl"))
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .output()
            .unwrap()
    }

    /// Waits for `/readyz` (as admin); returns how long after `since` it answered.
    pub fn wait_ready(&self, since: Instant) -> Duration {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let o = self.kubectl(&["get", "--raw", "/readyz"]);
            if o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "ok" {
                return since.elapsed();
            }
            assert!(Instant::now() < deadline, "kube-apiserver not ready within 120 s\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts another process whose log goes next to the control plane's; stopped with the control plane.
    pub fn spawn(&mut self, name: &str, bin: &Path, args: &[String]) {
        let p = spawn(self.dir.path(), name, bin, args);
        self.procs.push((name.to_string(), p));
    }

    pub fn stop(&mut self, name: &str) {
        self.procs.retain(|(n, _)| n != name);
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (n, _) in &self.procs {
            let text = std::fs::read_to_string(self.dir.path().join(format!("{n}.log"))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out.push_str(&format!("--- {n} (last lines)\n"));
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Clients and the controller-manager before the API server, the API server before etcd.
        while let Some((_, p)) = self.procs.pop() {
            drop(p);
        }
    }
}
