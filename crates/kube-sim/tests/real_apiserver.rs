//! kube-sim's kubelet as the node agent of the real Kubernetes 1.20.2 control plane (Node + RBAC authorization,
//! NodeRestriction), with `system:node:NAME` credentials: registration, heartbeats (Lease and Ready condition),
//! pod status, graceful deletion; role labels refused by NodeRestriction never stop heartbeats, an administrator
//! sets them. Run under `flock /tmp/kismatic-loopback.lock`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kube/tests/support/real_control_plane.rs"]
mod support;

use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::ControlPlane;

fn json(cp: &ControlPlane, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let o = cp.kubectl(&a);
    assert!(o.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn ok(cp: &ControlPlane, args: &[&str]) {
    let o = cp.kubectl(args);
    assert!(o.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

fn until(cp: &ControlPlane, what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what} not within {limit:?}\n{}", cp.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn condition(obj: &Value, t: &str) -> String {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == t))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

fn lease_renew(cp: &ControlPlane, node: &str) -> String {
    let o = cp.kubectl(&["-n", "kube-node-lease", "get", "lease", node, "-o", "jsonpath={.spec.renewTime}"]);
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn start_kubelet(cp: &mut ControlPlane, node: &str) {
    let id = cp.issue(node, &format!("system:node:{node}"), Some("system:nodes"), false);
    let d = cp.dir.path();
    let cfg = format!(
        "api: {{server: \"{}\", ca: \"{}\", cert: \"{}\", key: \"{}\"}}\nnode_name: {node}\nroles: [worker]\n\
         labels: {{kismatic/test: \"yes\"}}\naddress: 127.0.0.1\nheartbeat_interval_ms: 500\nsync_interval_ms: 300\n\
         pod_start_delay_ms: 300\npod_ready_delay_ms: 300\npod_stop_delay_ms: 300\n",
        cp.server, cp.ca, id.cert, id.key
    );
    let path = d.join(format!("kubelet-{node}.yaml"));
    std::fs::write(&path, cfg).unwrap();
    cp.spawn(
        &format!("kubelet-{node}"),
        Path::new(env!("CARGO_BIN_EXE_kube-sim")),
        &["kubelet".into(), "--config".into(), path.display().to_string()],
    );
}

#[test]
fn kube_sim_kubelet_on_the_real_control_plane() {
    let mut cp = ControlPlane::start(&[]);
    let ready = cp.wait_ready(Instant::now());
    eprintln!("kube-apiserver v1.20.2 ready in {:.1} s", ready.as_secs_f64());
    start_kubelet(&mut cp, "w1");

    // Registration under NodeRestriction: the node appears Ready, with the labels a kubelet may set only.
    until(&cp, "node w1 Ready", Duration::from_secs(30), || {
        let o = cp.kubectl(&["get", "node", "w1", "-o", "json"]);
        o.status.success() && condition(&serde_json::from_slice(&o.stdout).unwrap(), "Ready") == "True"
    });
    let n = json(&cp, &["get", "node", "w1"]);
    let labels = &n["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], "w1");
    assert_eq!(labels["kismatic/test"], "yes");
    assert!(labels.get("node-role.kubernetes.io/worker").is_none(), "NodeRestriction refuses role labels");
    assert!(!n["status"]["nodeInfo"]["kubeletVersion"].as_str().unwrap_or("").is_empty());
    let log = std::fs::read_to_string(cp.dir.path().join("kubelet-w1.log")).unwrap();
    assert!(log.contains("an administrator must set them"), "{log}");

    // Heartbeats go on after the refusal: the Lease is renewed.
    let first = lease_renew(&cp, "w1");
    assert!(!first.is_empty());
    until(&cp, "a renewed Lease", Duration::from_secs(10), || lease_renew(&cp, "w1") != first);

    // The administrator sets the role, as the testbed does.
    ok(&cp, &["label", "node", "w1", "node-role.kubernetes.io/worker="]);

    // Pods: a bound pod runs and turns Ready (pods/status with node credentials); a graceful delete ends with
    // the kubelet's final delete (grace 0, UID precondition).
    ok(&cp, &["create", "serviceaccount", "default"]);
    let pod = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "default"},
        "spec": {"nodeName": "w1", "automountServiceAccountToken": false, "containers": [{"name": "c", "image": "busybox"}]}}"#;
    let pod_file = cp.dir.path().join("p1.json");
    std::fs::write(&pod_file, pod).unwrap();
    ok(&cp, &["create", "-f", pod_file.to_str().unwrap()]);
    until(&cp, "pod p1 Ready", Duration::from_secs(30), || {
        let o = cp.kubectl(&["get", "pod", "p1", "-o", "json"]);
        o.status.success() && condition(&serde_json::from_slice(&o.stdout).unwrap(), "Ready") == "True"
    });
    let t = Instant::now();
    ok(&cp, &["delete", "pod", "p1", "--wait=false"]);
    until(&cp, "pod p1 gone", Duration::from_secs(30), || {
        let o = cp.kubectl(&["get", "pod", "p1", "--ignore-not-found", "-o", "name"]);
        o.status.success() && o.stdout.is_empty()
    });
    eprintln!("graceful delete of a Ready pod completed in {:.1} s", t.elapsed().as_secs_f64());

    // A restarted kubelet re-registers (its label refresh allowed, the role refused again) and heartbeats on;
    // the administrator's role label stays.
    cp.stop("kubelet-w1");
    start_kubelet(&mut cp, "w1");
    let before = lease_renew(&cp, "w1");
    until(&cp, "a renewed Lease after restart", Duration::from_secs(15), || lease_renew(&cp, "w1") != before);
    let n = json(&cp, &["get", "node", "w1"]);
    assert_eq!(n["metadata"]["labels"]["node-role.kubernetes.io/worker"], "");
    assert_eq!(condition(&n, "Ready"), "True");
}
