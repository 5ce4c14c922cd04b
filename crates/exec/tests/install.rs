//! Staging and installing `binary` components on a real OpenSSH node (sshd in its own mount namespace with overlays
//! over /etc and /opt, 127.0.78.N): each distinct artifact travels once, staging changes nothing that runs, every
//! step is idempotent, a node whose staged version vanished is staged again at its turn, and a release file that
//! does not match its digest is refused before anything is sent.

use kismatic_exec::install;
use kismatic_fleet::testing::{NodeOptions, SshCluster};
use kismatic_fleet::{Fleet, FleetConfig, NodeSession, Target};
use kismatic_ops::contract::{CLUSTER_LOCK, DIGEST_MARKER, OPT, STAGING, UNIT_DIR};
use kismatic_release::Release;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SUBNET: u8 = 78;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// A release with three binary components: `api` and `sched` have byte-identical artifacts (as a single multi-call
/// binary would), `proxy` its own.
fn release(dir: &Path) -> Release {
    for (name, text) in [("api", "multi-call binary"), ("sched", "multi-call binary"), ("proxy", "proxy binary")] {
        let stage = dir.join(format!("stage-{name}/bin"));
        std::fs::create_dir_all(&stage).expect("stage");
        std::fs::write(stage.join("tool"), text).expect("tool");
        let ok = Command::new("tar")
            .arg("-czf")
            .arg(dir.join(format!("{name}.tar.gz")))
            .arg("-C")
            .arg(dir.join(format!("stage-{name}")))
            .arg(".")
            .status()
            .expect("tar");
        assert!(ok.success());
    }
    let digest = |f: &str| kismatic_release::sha256_file(&dir.join(f)).expect("digest");
    let mut yaml = String::from("format: 1\nversion: 1.1.0\nkubernetes: v1.34.1\ncomponents:\n");
    for name in ["api", "sched", "proxy"] {
        let unit = format!("[Service]\nExecStart={OPT}/{name}/current/bin/tool\n");
        std::fs::write(dir.join(format!("{name}.service")), unit).expect("unit");
        yaml.push_str(&format!(
            "  - {{name: {name}, version: v1.34.1, delivery: binary, roles: [master], \
             artifact: {{file: {name}.tar.gz, sha256: {}}}, unit: {{file: {name}.service, sha256: {}}}}}\n",
            digest(&format!("{name}.tar.gz")),
            digest(&format!("{name}.service"))
        ));
    }
    std::fs::write(dir.join("release.yaml"), yaml).expect("release.yaml");
    kismatic_release::load_dir(dir).expect("release loads")
}

/// The harness with one node, and a fleet configuration that reaches it as `user` with the harness's key and
/// known_hosts (no ssh_config of this machine); `None` (the test skipped, the reason printed) where sshd cannot run.
fn one_node(test: &str, host: &str, octet: u8, options: NodeOptions, user: &str) -> Option<(SshCluster, FleetConfig)> {
    let mut c = match SshCluster::new(SUBNET) {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("SKIPPED: real-sshd {test} test: {reason}");
            return None;
        }
    };
    c.add_node(host, octet, options).expect(host);
    c.write_known_hosts().expect("known_hosts");
    let mut cfg = FleetConfig::new(user, c.port);
    cfg.key = Some(c.client_key.clone());
    cfg.known_hosts = Some(c.known_hosts.clone());
    cfg.ssh_config = Some("/dev/null".into());
    Some((c, cfg))
}

async fn sh(s: &NodeSession, script: &str) -> String {
    String::from_utf8_lossy(&s.run("sh", &["-c", script], None).await.expect("command").stdout).trim().to_string()
}

#[test]
fn staging_and_install_are_idempotent_and_upload_each_artifact_once() {
    let Some((c, mut cfg)) = one_node("install", "n1", 1, NodeOptions::default(), "root") else {
        return;
    };
    cfg.connect_timeout = Duration::from_secs(5);
    let fleet = Fleet::new(cfg).expect("fleet");
    let dir = tempfile::tempdir().expect("tempdir");
    let rel = release(dir.path());
    let all: Vec<_> = rel.components.iter().collect();
    rt().block_on(async {
        let s = fleet.connect(&Target::new("n1", c.address(1))).await.expect("connect");

        let first = install::stage(&s, &rel, &install::ArtifactCache::default(), &all, false).await.expect("stage");
        assert_eq!((first.uploads, first.already), (2, 0), "api and sched share one upload: {first:?}");
        assert_eq!(sh(&s, &format!("cat {OPT}/sched/v1.34.1/bin/tool")).await, "multi-call binary");
        assert_eq!(sh(&s, &format!("cat {OPT}/proxy/v1.34.1/bin/tool")).await, "proxy binary");
        assert_eq!(sh(&s, &format!("ls -A {OPT}/api")).await, "v1.34.1", "staging switches no `current` link");
        assert_eq!(sh(&s, &format!("ls -A {STAGING} | grep -c upload || true")).await, "0", "no leftovers");

        let again =
            install::stage(&s, &rel, &install::ArtifactCache::default(), &all, false).await.expect("stage again");
        assert_eq!((again.uploads, again.bytes, again.already), (0, 0, 3), "nothing travels twice");

        // A version directory whose digest marker does not name the release's artifact (changed by hand, or left
        // by something else) is not staged: it is replaced, and nothing is left beside it.
        sh(&s, &format!("echo other > {OPT}/proxy/v1.34.1/{DIGEST_MARKER}; echo bad > {OPT}/proxy/v1.34.1/bin/tool"))
            .await;
        let redo = install::stage(&s, &rel, &install::ArtifactCache::default(), &all, false).await.expect("restage");
        assert_eq!((redo.uploads, redo.already), (1, 2), "{redo:?}");
        assert_eq!(sh(&s, &format!("cat {OPT}/proxy/v1.34.1/bin/tool")).await, "proxy binary");
        assert_eq!(sh(&s, &format!("ls -A {OPT}/proxy")).await, "v1.34.1");
        // Re-checked before use too: activation refuses a directory with another digest and stages it again.
        sh(&s, &format!("echo bad > {OPT}/proxy/v1.34.1/bin/tool; echo other > {OPT}/proxy/v1.34.1/{DIGEST_MARKER}"))
            .await;
        let proxy = rel.component("proxy").expect("proxy");
        assert!(install::install_binary(&s, &rel, proxy).await.expect("install re-staged").changed);
        assert_eq!(sh(&s, &format!("cat {OPT}/proxy/current/bin/tool")).await, "proxy binary");
        sh(&s, &format!("rm {OPT}/proxy/current")).await;

        let api = rel.component("api").expect("api");
        assert!(install::install_binary(&s, &rel, api).await.expect("install").changed);
        assert_eq!(sh(&s, &format!("readlink {OPT}/api/current")).await, "v1.34.1");
        let unit = sh(&s, &format!("cat {UNIT_DIR}/api.service")).await;
        assert_eq!(unit, format!("[Service]\nExecStart={OPT}/api/current/bin/tool"), "the unit, byte for byte");
        assert!(!install::install_binary(&s, &rel, api).await.expect("install again").changed, "idempotent");

        // The staged version vanished (an operator cleaned up): the node's turn stages it again.
        let proxy = rel.component("proxy").expect("proxy");
        sh(&s, &format!("rm -rf {OPT}/proxy")).await;
        assert!(install::install_binary(&s, &rel, proxy).await.expect("install unstaged").changed);
        assert_eq!(sh(&s, &format!("cat {OPT}/proxy/current/bin/tool")).await, "proxy binary");

        // A release file that no longer matches its digest is refused locally: nothing is sent.
        sh(&s, &format!("rm -rf {OPT}/sched")).await;
        std::fs::write(dir.path().join("sched.tar.gz"), b"tampered").expect("tamper");
        let err = install::stage(&s, &rel, &install::ArtifactCache::default(), &all, false)
            .await
            .expect_err("tampered artifact");
        assert!(err.to_string().contains("sched.tar.gz") && err.to_string().contains("does not match"), "{err}");
        assert_eq!(sh(&s, &format!("ls {OPT}")).await.split_whitespace().collect::<Vec<_>>(), ["api", "proxy"]);
        s.close().await;
    });
}

/// The controller-manager/scheduler gate asks `/healthz` on the node itself: a listener answering 200 passes, a
/// port nobody serves fails at the deadline with a message naming the port.
#[test]
fn healthz_gate_asks_the_node() {
    let Some((c, cfg)) = one_node("healthz", "n2", 2, NodeOptions::default(), "root") else {
        return;
    };
    let fleet = Fleet::new(cfg).expect("fleet");
    // A plain-HTTP /healthz on the node's address (the nodes of this harness share the host's network).
    let listener = std::net::TcpListener::bind((c.address(2).as_str(), 0)).expect("listener");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let _ = std::io::Write::write_all(&mut stream, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let rel = release(dir.path());
    let comp = rel.component("api").expect("component");
    rt().block_on(async {
        let s = fleet.connect(&Target::new("n2", c.address(2))).await.expect("connect");
        install::wait_healthz(&s, comp, &c.address(2), port, Duration::from_secs(20)).await.expect("healthy");
        // A port on which nothing listens: bound, then released.
        let free = std::net::TcpListener::bind((c.address(2).as_str(), 0)).expect("free port");
        let free_port = free.local_addr().expect("addr").port();
        drop(free);
        let err = install::wait_healthz(&s, comp, &c.address(2), free_port, Duration::ZERO).await.expect_err("down");
        assert!(err.to_string().contains(&format!("/healthz on port {free_port}")), "{err}");
        s.close().await;
    });
}

/// The cluster's lock is held on the node while the run lives: a second run is refused with the holder named, and
/// once the first releases it (or its connection ends) the lock is free again.
#[test]
fn cluster_lock_is_held_on_the_node_and_ends_with_its_holder() {
    let Some((c, mut cfg)) = one_node("lock", "etcd01", 30, NodeOptions::default(), "root") else {
        return;
    };
    cfg.connect_timeout = Duration::from_secs(5);
    let fleet = Fleet::new(cfg.clone()).expect("fleet");
    let other = Fleet::new(cfg).expect("another machine's fleet");
    let target = Target::new("etcd01", c.address(30));
    rt().block_on(async {
        let first = kismatic_exec::lock::take_on(&fleet, &target, "pid 1 on a").await.expect("free");
        let refused = kismatic_exec::lock::take_on(&other, &target, "pid 2 on b").await.err().expect("held");
        assert!(refused.contains(&format!("etcd01:{CLUSTER_LOCK}")) && refused.contains("pid 1 on a"), "{refused}");
        first.release().await;
        let again = kismatic_exec::lock::take_on(&other, &target, "pid 2 on b").await.expect("free again");
        // The holder dies without releasing: its connection ends, and the node's kernel frees the lock.
        drop(again);
        drop(other);
        let mut taken = None;
        for _ in 0..50 {
            if let Ok(l) = kismatic_exec::lock::take_on(&fleet, &target, "pid 3 on a").await {
                taken = Some(l);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        taken.expect("a dead holder's lock is free").release().await;
    });
}

/// `--snapshot-dir DIR`: a snapshot is copied off the node into `DIR/<node>-<file>`, the folder created 0700 and
/// the copy 0600 whatever the umask (it holds every secret of the cluster), with no temporary left beside it.
#[test]
fn a_snapshot_is_copied_off_the_node_privately() {
    use std::os::unix::fs::PermissionsExt;
    let Some((c, cfg)) = one_node("snapshot copy", "etcd03", 3, NodeOptions::default(), "root") else {
        return;
    };
    let fleet = Fleet::new(cfg).expect("fleet");
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("snapshots/cluster-a");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    rt().block_on(async {
        let s = fleet.connect(&Target::new("etcd03", c.address(3))).await.expect("connect");
        // In the node's own /etc (an overlay): the copy reads whatever path the snapshot step reported.
        let path = "/etc/etcd-20261202T180000Z.db";
        s.write_file(path, &bytes, 0o644).await.expect("a snapshot on the node");
        let copied = kismatic_exec::etcd::copy_snapshot(&s, path, &local).await.expect("copied");
        assert_eq!(copied, local.join("etcd03-etcd-20261202T180000Z.db"));
        assert_eq!(std::fs::read(&copied).expect("copy"), bytes, "byte for byte");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&copied), 0o600);
        assert_eq!(mode(&local), 0o700);
        let names: Vec<_> = std::fs::read_dir(&local).expect("dir").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names.len(), 1, "no temporary left: {names:?}");
        s.close().await;
    });
}

/// Processes on this machine whose command line holds `needle` (the harness's nodes share the PID namespace),
/// waiting up to 5 s for them to go.
fn left_running(needle: &str) -> Vec<String> {
    let scan = || {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
            }
        }
        found
    };
    for _ in 0..100 {
        if scan().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    scan()
}

/// The hang: a node whose `kismatic-stage-state` never ends (here its digest marker is a FIFO nobody
/// writes, so `cat` blocks). Staging is stopped at the command deadline, the error names the node, the step (as
/// the run reports it) and the command, says a retry may help, and nothing of the command is left on the node.
#[test]
fn a_hung_staging_command_is_stopped_at_its_deadline_and_leaves_nothing() {
    use kismatic_exec::error::StepError;
    use kismatic_exec::run::ExecError;
    let Some((c, mut cfg)) =
        one_node("hung-command", "worker04", 4, NodeOptions::default().with_sudo_user("kismatic-op"), "kismatic-op")
    else {
        return;
    };
    cfg.deadlines.command = Duration::from_secs(2);
    let fleet = Fleet::new(cfg).expect("fleet");
    let dir = tempfile::tempdir().expect("tempdir");
    let rel = release(dir.path());
    let proxy = rel.component("proxy").expect("proxy");
    let marker = format!("{OPT}/proxy/v1.34.1/{DIGEST_MARKER}");
    rt().block_on(async {
        let s = fleet.connect(&Target::new("worker04", c.address(4))).await.expect("connect");
        sh(&s, &format!("mkdir -p {OPT}/proxy/v1.34.1 && rm -f {marker} && mkfifo {marker}")).await;
        let started = std::time::Instant::now();
        let err = install::stage(&s, &rel, &install::ArtifactCache::default(), &[proxy], false)
            .await
            .expect_err("the hung command is stopped");
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(20), "stopped after {took:?}");
        let step = StepError::Install(err);
        assert!(step.retry_may_help(), "a hang may pass when retried: {step}");
        let text = ExecError::Failed { step: "stage/worker04".into(), error: Box::new(step) }.to_string();
        assert!(
            text.starts_with("stage/worker04: worker04: `kismatic-stage-state` did not finish within 2s")
                && text.contains("stopped on the node"),
            "{text}"
        );
        let left = left_running("kismatic-stage-state");
        assert!(left.is_empty(), "left on the node: {left:?}");
        let left = left_running(&marker);
        assert!(left.is_empty(), "the blocked `cat` left on the node: {left:?}");
        sh(&s, &format!("rm -f {marker}")).await;
        s.close().await;
    });
}
