//! Integration tests against real OpenSSH sshd processes on 127.0.77.N (one per node, own mount namespace).

use kismatic_fleet::testing::{NodeOptions, SshCluster};
use kismatic_fleet::{Fleet, FleetConfig, NodeError, Target};
use std::time::Duration;

const SUBNET: u8 = 77;

fn cluster() -> Option<SshCluster> {
    match SshCluster::new(SUBNET) {
        Ok(c) => Some(c),
        Err(reason) => {
            eprintln!("SKIPPED: real-sshd fleet test: {reason}");
            None
        }
    }
}

fn config(c: &SshCluster, user: &str) -> FleetConfig {
    let mut cfg = FleetConfig::new(user, c.port);
    cfg.key = Some(c.client_key.clone());
    cfg.known_hosts = Some(c.known_hosts.clone());
    cfg.connect_timeout = Duration::from_secs(5);
    cfg.retry_backoff = Duration::from_millis(50);
    // The user's own ssh_config must not change what the tests see.
    cfg.ssh_config = Some("/dev/null".into());
    cfg
}

fn targets(c: &SshCluster) -> Vec<Target> {
    c.nodes.iter().map(|n| Target::new(&n.name, &n.address)).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

#[test]
fn reads_per_node_files_and_quotes_arguments() {
    let Some(mut c) = cluster() else { return };
    c.add_node("n1", 1, NodeOptions::default().with_file("kismatic-version", "1.0.0")).expect("n1");
    c.add_node("n2", 2, NodeOptions::default().with_file("kismatic-version", "1.1.0")).expect("n2");
    c.add_down_node("down", 3);
    c.write_known_hosts().expect("known_hosts");
    let fleet = Fleet::new(config(&c, "root")).expect("fleet");
    let results = rt().block_on(fleet.on_each(&targets(&c), async |s| {
        let version = s.read_file("/etc/kismatic-version").await?;
        // Hostile-looking arguments arrive as single, literal arguments.
        let echo = s.run("printf", &["%s|", "a b", "$(id)", "'; rm -rf /", "*"], None).await?;
        Ok((String::from_utf8_lossy(&version).to_string(), String::from_utf8_lossy(&echo.stdout).to_string()))
    }));
    assert_eq!(results.len(), 3);
    let r1 = results[0].as_ref().expect("n1 read");
    assert_eq!(r1.0, "1.0.0");
    assert_eq!(r1.1, "a b|$(id)|'; rm -rf /|*|");
    assert_eq!(results[1].as_ref().expect("n2 read").0, "1.1.0");
    match &results[2] {
        Err(e @ NodeError::Unreachable { node, .. }) => {
            assert_eq!(node, "down");
            assert!(e.to_string().contains("Connection refused"), "{e}");
        }
        other => panic!("expected unreachable, got {other:?}"),
    }
}

#[test]
fn command_failure_is_typed_and_not_retried() {
    let Some(mut c) = cluster() else { return };
    c.add_node("n1", 11, NodeOptions::default()).expect("n1");
    c.write_known_hosts().expect("known_hosts");
    let fleet = Fleet::new(config(&c, "root")).expect("fleet");
    let results = rt().block_on(fleet.on_each(&targets(&c), async |s| s.read_file("/etc/kismatic-version").await));
    match &results[0] {
        Err(NodeError::CommandFailed { node, program, status, stderr }) => {
            assert_eq!(node, "n1");
            assert_eq!(program, "cat");
            assert_eq!(status, "exit code 1");
            assert!(stderr.contains("No such file"), "{stderr}");
        }
        other => panic!("expected command failure, got {other:?}"),
    }
}

#[test]
fn writes_files_atomically_with_mode() {
    let Some(mut c) = cluster() else { return };
    c.add_node("n1", 21, NodeOptions::default()).expect("n1");
    c.write_known_hosts().expect("known_hosts");
    let fleet = Fleet::new(config(&c, "root")).expect("fleet");
    let results = rt().block_on(fleet.on_each(&targets(&c), async |s| {
        s.write_file("/etc/kismatic-version", b"2.0.0", 0o644).await?;
        let back = s.read_file("/etc/kismatic-version").await?;
        let mode = s.run("stat", &["-c", "%a", "/etc/kismatic-version"], None).await?;
        let leftovers = s.run("sh", &["-c", "ls /etc | grep -c kismatic-tmp || true"], None).await?;
        Ok((back, String::from_utf8_lossy(&mode.stdout).trim().to_string(), leftovers.stdout))
    }));
    let (back, mode, leftovers) = results[0].as_ref().expect("write");
    assert_eq!(back, b"2.0.0");
    assert_eq!(mode, "644");
    assert_eq!(String::from_utf8_lossy(leftovers).trim(), "0");
}

#[test]
fn changed_host_key_is_refused_with_both_fingerprints() {
    let Some(mut c) = cluster() else { return };
    c.add_node("n1", 31, NodeOptions::default()).expect("n1");
    c.add_node("n2", 32, NodeOptions::default()).expect("n2");
    let fake = c.forge_known_host("n1").expect("forge");
    let fake_fp = c.fingerprint(&fake).expect("fake fp");
    let real_fp = c.fingerprint(c.nodes[0].host_key.as_deref().expect("key")).expect("real fp");
    let fleet = Fleet::new(config(&c, "root")).expect("fleet");
    let results = rt().block_on(fleet.on_each(&targets(&c), async |s| s.run("true", &[], None).await.map(|_| ())));
    let err = results[0].as_ref().expect_err("changed key must be refused");
    assert!(matches!(err, NodeError::HostKeyChanged { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with("n1: HOST KEY CHANGED"), "{msg}");
    assert!(msg.contains(&fake_fp), "known fingerprint missing: {msg}");
    assert!(msg.contains(&real_fp), "presented fingerprint missing: {msg}");
    // The other node is unaffected.
    assert!(results[1].is_ok(), "{:?}", results[1]);
}

#[test]
fn unknown_host_refused_unless_trusted_then_recorded() {
    let Some(mut c) = cluster() else { return };
    c.add_node("n1", 41, NodeOptions::default()).expect("n1");
    // No known_hosts at all.
    let fleet = Fleet::new(config(&c, "root")).expect("fleet");
    let r = rt().block_on(fleet.on_each(&targets(&c), async |s| s.run("true", &[], None).await.map(|_| ())));
    assert!(matches!(r[0], Err(NodeError::HostKeyUnknown { .. })), "{:?}", r[0]);
    assert!(r[0].as_ref().expect_err("unknown").to_string().contains("--trust-new-hosts"));
    drop(fleet);

    let mut cfg = config(&c, "root");
    cfg.trust_new_hosts = true;
    let fleet = Fleet::new(cfg).expect("fleet");
    let r = rt().block_on(fleet.on_each(&targets(&c), async |s| s.run("true", &[], None).await.map(|_| ())));
    assert!(r[0].is_ok(), "{:?}", r[0]);
    drop(fleet);

    // Recorded for next time: a strict run now passes.
    let fleet = Fleet::new(config(&c, "root")).expect("fleet");
    let r = rt().block_on(fleet.on_each(&targets(&c), async |s| s.run("true", &[], None).await.map(|_| ())));
    assert!(r[0].is_ok(), "{:?}", r[0]);
}

#[test]
fn non_root_user_runs_through_sudo() {
    let Some(mut c) = cluster() else { return };
    c.add_node("n1", 51, NodeOptions::default().with_sudo_user("kismatic-op")).expect("n1");
    c.write_known_hosts().expect("known_hosts");
    let fleet = Fleet::new(config(&c, "kismatic-op")).expect("fleet");
    let r = rt().block_on(fleet.on_each(&targets(&c), async |s| {
        assert!(s.uses_sudo());
        let id = s.run("id", &["-un"], None).await?;
        let who = s.run("sh", &["-c", "echo $SUDO_USER"], None).await?;
        Ok((
            String::from_utf8_lossy(&id.stdout).trim().to_string(),
            String::from_utf8_lossy(&who.stdout).trim().to_string(),
        ))
    }));
    assert_eq!(r[0].as_ref().expect("sudo"), &("root".to_string(), "kismatic-op".to_string()));
}

#[test]
fn wrong_key_is_an_auth_error() {
    let Some(mut c) = cluster() else { return };
    c.add_node("n1", 61, NodeOptions::default()).expect("n1");
    c.write_known_hosts().expect("known_hosts");
    let mut cfg = config(&c, "root");
    let other = c.dir().join("other_key");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .expect("keygen");
    assert!(st.success());
    cfg.key = Some(other);
    let fleet = Fleet::new(cfg).expect("fleet");
    let r = rt().block_on(fleet.on_each(&targets(&c), async |s| s.run("true", &[], None).await.map(|_| ())));
    assert!(matches!(r[0], Err(NodeError::Auth { .. })), "{:?}", r[0]);
}

#[test]
fn command_that_exits_before_reading_its_input_reports_its_own_failure() {
    let Some(mut c) = cluster() else { return };
    c.add_node("n1", 21, NodeOptions::default()).expect("n1");
    c.write_known_hosts().expect("known_hosts");
    let fleet = Fleet::new(config(&c, "root")).expect("fleet");
    // 8 MiB cannot fit in the pipe buffers: the write breaks when the command exits.
    let input = vec![b'x'; 8 << 20];
    let results = rt().block_on(fleet.on_each(&targets(&c), async |s| {
        s.output("sh", &["-c", "echo 'mkdir: cannot create directory' >&2; exit 3"], Some(&input)).await
    }));
    let out = results[0].as_ref().expect("the command's own result, not a broken pipe");
    assert_eq!(out.code, Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), "mkdir: cannot create directory");
}

#[test]
fn node_command_time_is_tallied_per_future() {
    let Some(mut c) = cluster() else { return };
    c.add_node("n1", 22, NodeOptions::default()).expect("n1");
    c.write_known_hosts().expect("known_hosts");
    let fleet = Fleet::new(config(&c, "root")).expect("fleet");
    rt().block_on(async {
        let s = fleet.connect(&targets(&c)[0]).await.expect("connect");
        let started = std::time::Instant::now();
        // Two futures polled together: only the one running a command accrues time.
        let ((ran, busy), ((), idle)) = futures_util::future::join(
            kismatic_fleet::tally_remote(s.run("true", &[], None)),
            kismatic_fleet::tally_remote(async { tokio::task::yield_now().await }),
        )
        .await;
        ran.expect("true runs");
        assert!(busy > Duration::ZERO && busy <= started.elapsed(), "{busy:?}");
        assert_eq!(idle, Duration::ZERO);
        // Outside any tally, commands still run.
        assert!(kismatic_fleet::remote_so_far().is_none());
        s.run("true", &[], None).await.expect("untallied command");
        s.close().await;
    });
}

/// Processes on this machine whose command line holds `needle` (the harness's nodes share the PID namespace).
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains(needle) {
            found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

fn wait_gone(needle: &str) -> Vec<String> {
    for _ in 0..100 {
        let left = processes_with(needle);
        if left.is_empty() {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    processes_with(needle)
}

#[test]
fn hung_command_is_stopped_on_the_node_at_its_deadline() {
    let Some(mut c) = cluster() else { return };
    c.add_node("n1", 71, NodeOptions::default().with_sudo_user("kismatic-op")).expect("n1");
    c.write_known_hosts().expect("known_hosts");
    for user in ["root", "kismatic-op"] {
        let mut cfg = config(&c, user);
        cfg.deadlines.command = Duration::from_secs(1);
        let fleet = Fleet::new(cfg).expect("fleet");
        // A child of the command too: the whole process group must go.
        let marker = format!("98765{}", user.len());
        let script = format!("sleep {marker}1 & sleep {marker}2; wait");
        let results =
            rt().block_on(fleet.on_each(&targets(&c), async |s| {
                s.run("sh", &["-c", &script, "kismatic-hang"], None).await.map(|_| ())
            }));
        match &results[0] {
            Err(e @ NodeError::TimedOut { node, command, .. }) => {
                assert_eq!(node, "n1");
                assert_eq!(command, "kismatic-hang");
                let text = e.to_string();
                assert!(text.contains("within 1s") && text.contains("stopped on the node"), "{text}");
                assert!(e.retry_may_help());
            }
            other => panic!("{user}: expected a timeout, got {other:?}"),
        }
        let left = wait_gone(&marker);
        assert!(left.is_empty(), "{user}: left on the node: {left:?}");
    }
}

#[test]
fn interrupted_command_is_stopped_on_the_node_when_the_session_closes() {
    let Some(mut c) = cluster() else { return };
    c.add_node("n1", 72, NodeOptions::default()).expect("n1");
    c.write_known_hosts().expect("known_hosts");
    let fleet = Fleet::new(config(&c, "root")).expect("fleet");
    let target = Target::new("n1", c.address(72));
    rt().block_on(async {
        let s = fleet.connect(&target).await.expect("connect");
        // The local future is dropped (as on Ctrl-C): the remote command goes on until the session closes.
        let interrupted = tokio::time::timeout(Duration::from_millis(700), s.run("sleep", &["876543"], None)).await;
        assert!(interrupted.is_err(), "sleep ended by itself?");
        assert!(!processes_with("876543").is_empty(), "the command should still run on the node");
        let stopped = s.stop_abandoned().await;
        assert_eq!(stopped, vec!["sleep".to_string()]);
        s.close().await;
    });
    let left = wait_gone("876543");
    assert!(left.is_empty(), "left on the node: {left:?}");
}

#[test]
fn command_labels_name_scripts_not_their_text() {
    use kismatic_fleet::command_label;
    assert_eq!(command_label("sh", &["-c", "long script", "kismatic-stage", "secret"]), "kismatic-stage");
    assert_eq!(command_label("env", &["ETCDCTL_API=3", "etcdctl", "get"]), "etcdctl");
    assert_eq!(command_label("systemctl", &["restart", "--", "etcd"]), "systemctl");
}

#[test]
fn known_hosts_path_with_space_and_percent_is_used_as_is() {
    let Some(mut c) = cluster() else { return };
    c.add_node("n1", 73, NodeOptions::default().with_file("kismatic-version", "1.0.0")).expect("n1");
    c.write_known_hosts().expect("known_hosts");
    let odd = c.dir().join("known hosts %h");
    std::fs::create_dir_all(&odd).expect("dir");
    let path = odd.join("kh");
    std::fs::copy(&c.known_hosts, &path).expect("copy");
    let mut cfg = config(&c, "root");
    cfg.known_hosts = Some(path);
    let fleet = Fleet::new(cfg).expect("fleet");
    let results = rt().block_on(fleet.on_each(&targets(&c), async |s| s.read_file("/etc/kismatic-version").await));
    assert_eq!(results[0].as_deref().expect("strict check against the odd path passes"), b"1.0.0");
}
