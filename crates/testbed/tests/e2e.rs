//! End-to-end: the `ha` testbed comes up, is reachable over SSH with strict host keys, runs two TLS etcd clusters
//! with the right member count and release 1.0.0; `down` leaves nothing behind; a second `up` reuses the image.
//! Needs root and systemd-nspawn: skipped with the reason printed otherwise (CI runs as root).
//! One test function, so the testbeds never run concurrently (they share loopback ranges and 2 cores).

use kismatic_ops::contract::{COMPONENT_VERSIONS_FILE, KISMATIC_VERSION_FILE, OPT};
use std::path::{Path, PathBuf};
use std::process::Command;
use testbed::node::Ssh;
use testbed::{Guard, Options, e2e_skip_reason};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name)
}

fn listening_on(prefix: &str) -> Vec<String> {
    let out = Command::new("ss").args(["-Htlnp"]).output().expect("ss runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().nth(3).is_some_and(|a| a.starts_with(prefix)))
        .map(str::to_string)
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| Path::new(m).starts_with(dir)))
        .map(str::to_string)
        .collect()
}

#[test]
fn testbed_lifecycle() {
    if let Some(reason) = e2e_skip_reason() {
        eprintln!("SKIPPED testbed e2e: {reason}");
        return;
    }
    let opts = Options::default();
    let images = opts.state_dir.join("images");

    let (pids, cluster_dir) = {
        let guard = Guard::up(&example("ha.yaml"), opts.clone()).expect("testbed up");
        let tb = &guard.testbed;
        let ssh = tb.ssh();
        assert_eq!(ssh.user, "kismaticuser", "ha uses a non-root sudo user");

        // SSH with the plan's key and strict host-key checking against the handed-out known_hosts.
        for n in &tb.inv.nodes {
            let host = ssh.run(&n.ip, &["hostname"]).expect("ssh to node");
            assert_eq!(host.trim(), n.host);
            let version = ssh.run(&n.ip, &["cat", KISMATIC_VERSION_FILE]).expect("marker");
            assert_eq!(version, "1.0.0", "{}: no newline, no v", n.host);
            let cv = ssh.run(&n.ip, &["cat", COMPONENT_VERSIONS_FILE]).expect("marker");
            assert!(cv.contains("kubernetes: v1.20.2"), "{}: {cv}", n.host);
        }
        // A host key that is not in known_hosts is refused (checking is strict, not bypassed).
        let empty_kh = std::env::temp_dir().join(format!("testbed-e2e-kh-{}", std::process::id()));
        std::fs::write(&empty_kh, "").expect("write empty known_hosts");
        let strict = Ssh { known_hosts: empty_kh.clone(), ..ssh.clone() };
        let first = &tb.inv.nodes[0];
        assert!(strict.run(&first.ip, &["true"]).is_err(), "unknown host key must be refused");
        std::fs::remove_file(empty_kh).ok();

        // Both etcd clusters healthy over TLS with every member, running the release's etcd from its
        // versioned folder (the running-version rule of the node contract).
        let etcd_nodes: Vec<_> = tb.inv.nodes.iter().filter(|n| n.roles.iter().any(|r| r.as_str() == "etcd")).collect();
        assert_eq!(etcd_nodes.len(), 3);
        for (component, port, _) in testbed::testbed::etcd_clusters() {
            let health = tb.etcd_health(port).expect("etcd health");
            assert_eq!(health.lines().filter(|l| l.contains("is healthy")).count(), 3, "{component}: {health}");
            for n in &etcd_nodes {
                let pid =
                    ssh.run(&n.ip, &["systemctl", "show", "-p", "MainPID", "--value", component]).expect("MainPID");
                let exe = ssh.run(&n.ip, &["readlink", &format!("/proc/{}/exe", pid.trim())]).expect("exe");
                assert_eq!(exe.trim(), format!("{OPT}/{component}/3.4.23/bin/etcd"), "{}", n.host);
            }
        }

        // The container runtime came from the local apt repository, which also offers the next version.
        let worker = tb.inv.nodes.iter().find(|n| n.host == "worker01").expect("worker01");
        let policy = ssh.run(&worker.ip, &["apt-cache", "policy", "kismatic-runtime"]).expect("apt-cache");
        assert!(policy.contains("Installed: 1.0.0") && policy.contains("1.1.0"), "{policy}");

        let state = tb.load_state().expect("state").expect("state exists");
        if state.kube_sim {
            kube_checks(tb, &ssh);
        } else {
            eprintln!("kube checks SKIPPED: no kube-sim binary next to the test (cargo build -p kube-sim first)");
        }

        let status = tb.status().expect("status");
        assert!(status.up, "{status:?}");
        let mut pids: Vec<u32> = state.nodes.iter().filter_map(|n| n.process.map(|p| p.pid)).collect();
        pids.extend(state.haproxy.map(|p| p.pid));
        (pids, tb.dir.clone())
        // guard dropped here: down
    };
    for pid in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z")),
            "process {pid} survived down"
        );
    }
    assert!(!cluster_dir.exists(), "{} survived down", cluster_dir.display());
    assert!(mounts_under(&cluster_dir).is_empty());
    let left = listening_on("127.0.10.");
    assert!(left.is_empty(), "sockets left listening: {left:?}");

    // A second testbed reuses the cached base image (no rebuild: the image folder is untouched).
    let stamp = |p: &Path| {
        std::fs::read_dir(p)
            .expect("images")
            .flatten()
            .filter(|e| e.path().join("recipe.txt").exists())
            // recipe.txt is written once, when the image is built (nspawn touches the folder itself).
            .map(|e| (e.file_name(), std::fs::metadata(e.path().join("recipe.txt")).and_then(|m| m.modified()).ok()))
            .collect::<Vec<_>>()
    };
    let before = stamp(&images);
    {
        let guard = Guard::up(&example("minimal.yaml"), opts.clone()).expect("second up");
        assert!(guard.testbed.status().expect("status").up);
    }
    assert_eq!(before, stamp(&images), "the base image was rebuilt");
    assert!(listening_on("127.0.11.").is_empty());
}

fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output().expect("kubectl runs");
    assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` every 500 ms until it is true or `secs` pass (no fixed sleeps, no assertion on time).
fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    f()
}

/// kube-sim checks: every kubelet's Node Ready at the old version, a 3-replica Deployment spreads over the
/// workers, stopping a worker's kubelet turns its Node NotReady.
fn kube_checks(tb: &testbed::Testbed, ssh: &Ssh) {
    let kc = tb.kubeconfig_path();
    let nodes = kubectl(
        &kc,
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.nodeInfo.kubeletVersion} \
             {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ],
    );
    let lines: Vec<&str> = nodes.lines().collect();
    assert_eq!(lines.len(), 4, "3 workers + 1 ingress: {nodes}");
    for l in &lines {
        assert!(l.ends_with("v1.20.2 True"), "{l}");
    }
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: spread\n  namespace: default\n\
spec:\n  replicas: 3\n  selector:\n    matchLabels: {app: spread}\n  template:\n    metadata:\n      \
labels: {app: spread}\n    spec:\n      nodeSelector: {node-role.kubernetes.io/worker: \"\"}\n      \
topologySpreadConstraints: [{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule, \
labelSelector: {matchLabels: {app: spread}}}]\n      \
containers: [{name: app, image: nginx:1.27}]\n";
    let file = std::env::temp_dir().join(format!("testbed-e2e-spread-{}.yaml", std::process::id()));
    std::fs::write(&file, manifest).expect("write manifest");
    kubectl(&kc, &["apply", "-f", &file.to_string_lossy()]);
    std::fs::remove_file(&file).ok();
    kubectl(&kc, &["rollout", "status", "deployment/spread", "--timeout=90s"]);
    let placed = kubectl(&kc, &["get", "pods", "-l", "app=spread", "-o", "jsonpath={.items[*].spec.nodeName}"]);
    let mut hosts: Vec<&str> = placed.split_whitespace().collect();
    hosts.sort();
    hosts.dedup();
    assert_eq!(hosts, vec!["worker01", "worker02", "worker03"], "{placed}");

    let worker = tb.inv.nodes.iter().find(|n| n.host == "worker03").expect("worker03");
    ssh.run(&worker.ip, &["systemctl", "stop", "kubelet"]).expect("stop kubelet");
    let not_ready = eventually(90, || {
        kubectl(&kc, &["get", "node", "worker03", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"])
            .trim()
            != "True"
    });
    assert!(not_ready, "worker03 stayed Ready after its kubelet stopped");
}
