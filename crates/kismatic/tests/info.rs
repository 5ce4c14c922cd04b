//! `kismatic info` end to end: the built binary against real OpenSSH sshd processes, one per node on
//! 127.0.76.N, each with its own /etc (markers) and /opt through overlays in its own mount namespace.
//! Needs root; without it every test prints why it is skipped.

use assert_cmd::Command;
use kismatic_fleet::testing::{NodeOptions, SshCluster};
use kismatic_ops::contract::OPT;
use std::path::{Path, PathBuf};

const SUBNET: u8 = 76;

fn cluster() -> Option<SshCluster> {
    match SshCluster::new(SUBNET) {
        Ok(c) => Some(c),
        Err(reason) => {
            eprintln!("SKIPPED: kismatic info real-sshd test: {reason}");
            None
        }
    }
}

/// A Kismatic plan with one node per group: first node etcd, second master, the rest workers.
fn write_plan(c: &SshCluster, user: &str, known_hosts: Option<&Path>) -> PathBuf {
    let node = |i: usize| {
        let n = &c.nodes[i];
        format!("    - host: {}\n      ip: {}\n", n.name, n.address)
    };
    let workers: String = (2..c.nodes.len()).map(node).collect();
    let kh = known_hosts.map(|p| format!("    known_hosts: {}\n", p.display())).unwrap_or_default();
    let plan = format!(
        "cluster:\n  name: test\n  version: v1.34.1\n  networking:\n    pod_cidr_block: 172.16.0.0/16\n    \
         service_cidr_block: 172.20.0.0/16\n  certificates:\n    expiry: 17520h\n  ssh:\n    user: {user}\n    \
         ssh_key: {key}\n    ssh_port: {port}\n{kh}\
         etcd:\n  expected_count: 1\n  nodes:\n{etcd}\
         master:\n  expected_count: 1\n  load_balancer: {lb}:6443\n  nodes:\n{master}\
         worker:\n  expected_count: {wc}\n  nodes:\n{workers}",
        key = c.client_key.display(),
        port = c.port,
        etcd = node(0),
        master = node(1),
        lb = c.nodes[1].address,
        wc = c.nodes.len() - 2,
    );
    let path = c.dir().join("kismatic-cluster.yaml");
    std::fs::write(&path, plan).expect("plan written");
    path
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn info(plan: &Path, extra: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_kismatic"))
        .arg("info")
        .arg("-f")
        .arg(plan)
        .args(extra)
        // The user's ssh_config must not leak into the tests; HOME points nowhere useful.
        .env("HOME", plan.parent().expect("plan dir"))
        .output()
        .expect("kismatic runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
    }
}

fn settings(c: &SshCluster) -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(&regex_escape(&c.dir().display().to_string()), "[TMP]");
    s.add_filter(&format!(":{}\\b", c.port), ":[PORT]");
    s.add_filter(&format!("port {}\\b", c.port), "port [PORT]");
    s.add_filter(r"SHA256:[A-Za-z0-9+/=]+", "SHA256:[FP]");
    s.add_filter(r#""/": \d+"#, r#""/": [BYTES]"#);
    s
}

fn regex_escape(s: &str) -> String {
    s.chars().flat_map(|ch| if ch.is_ascii_alphanumeric() || ch == '/' { vec![ch] } else { vec!['\\', ch] }).collect()
}

/// The JSON row of the node named `name` (rows are in plan order: master, etcd, worker groups).
fn node<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["nodes"].as_array().and_then(|a| a.iter().find(|n| n["name"] == name)).unwrap_or(&serde_json::Value::Null)
}

fn markers(version: &str) -> NodeOptions {
    NodeOptions::default().with_markers(version, "v1.34.1")
}

#[test]
fn all_nodes_at_one_version() {
    let Some(mut c) = cluster() else { return };
    c.add_node("etcd01", 1, markers("1.1.0")).expect("etcd01");
    c.add_node("master01", 2, markers("1.1.0")).expect("master01");
    c.add_node("worker01", 3, markers("1.1.0")).expect("worker01");
    c.write_known_hosts().expect("known_hosts");
    let plan = write_plan(&c, "root", Some(&c.known_hosts));

    let r = info(&plan, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    settings(&c).bind(|| insta::assert_snapshot!("all_at_one_version", r.stdout));

    let r = info(&plan, &["-o", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["cluster_version"], "1.1.0");
    assert_eq!(v["transitioning"], false);
    assert_eq!(node(&v, "master01")["roles"], serde_json::json!(["master"]));
    assert_eq!(node(&v, "master01")["component_markers"]["value"]["kubernetes"], "v1.34.1");
    settings(&c).bind(|| insta::assert_snapshot!("all_at_one_version_json", r.stdout));
}

#[test]
fn mixed_versions_are_transitioning() {
    let Some(mut c) = cluster() else { return };
    c.add_node("etcd01", 11, markers("1.1.0")).expect("etcd01");
    c.add_node("master01", 12, markers("1.1.0")).expect("master01");
    c.add_node("worker01", 13, markers("1.0.0")).expect("worker01");
    c.add_node("worker02", 14, markers("1.0.0")).expect("worker02");
    c.write_known_hosts().expect("known_hosts");
    let plan = write_plan(&c, "root", Some(&c.known_hosts));
    let r = info(&plan, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.starts_with("Transitioning from v1.0.0 to v1.1.0\n\nNodes:\n"), "{}", r.stdout);
    settings(&c).bind(|| insta::assert_snapshot!("transitioning", r.stdout));
    let v: serde_json::Value = serde_json::from_str(&info(&plan, &["-o", "json"]).stdout).expect("json");
    assert_eq!(v["earliest_version"], "1.0.0");
    assert_eq!(v["latest_version"], "1.1.0");
    assert_eq!(v["transitioning"], true);
    assert_eq!(v["cluster_version"], serde_json::Value::Null);
}

#[test]
fn unreachable_missing_empty_and_garbage_markers_are_rows() {
    let Some(mut c) = cluster() else { return };
    c.add_node("etcd01", 21, markers("1.1.0")).expect("etcd01");
    c.add_node("master01", 22, NodeOptions::default()).expect("master01 (no markers)");
    c.add_node("worker01", 23, NodeOptions::default().with_file("kismatic-version", "")).expect("worker01");
    c.add_node(
        "worker02",
        24,
        NodeOptions::default().with_file("kismatic-version", "abc").with_file("component-versions", "- not\n- a map\n"),
    )
    .expect("worker02");
    c.add_down_node("worker03", 25);
    c.write_known_hosts().expect("known_hosts");
    let plan = write_plan(&c, "root", Some(&c.known_hosts));
    let r = info(&plan, &[]);
    assert_eq!(r.code, 1, "one node could not be read: {}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("1 of 5 nodes could not be read"), "{}", r.stderr);
    settings(&c).bind(|| insta::assert_snapshot!("problems", r.stdout));

    let r = info(&plan, &["-o", "json"]);
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let status: Vec<&str> = ["etcd01", "master01", "worker01", "worker02", "worker03"]
        .map(|n| node(&v, n)["status"].as_str().unwrap_or(""))
        .to_vec();
    assert_eq!(status, ["ok", "not_installed", "invalid_marker", "invalid_marker", "unreachable"]);
    assert_eq!(node(&v, "worker01")["error"], "invalid version \"\"");
    assert_eq!(node(&v, "worker02")["error"], "invalid version \"abc\"");
    assert_eq!(node(&v, "worker02")["component_markers"]["state"], "invalid");
    assert_eq!(v["nodes_unreadable"], 1);
    settings(&c).bind(|| insta::assert_snapshot!("problems_json", r.stdout));
}

#[test]
fn changed_host_key_is_refused() {
    let Some(mut c) = cluster() else { return };
    c.add_node("etcd01", 31, markers("1.1.0")).expect("etcd01");
    c.add_node("master01", 32, markers("1.1.0")).expect("master01");
    c.add_node("worker01", 33, markers("1.1.0")).expect("worker01");
    let fake = c.forge_known_host("master01").expect("forged");
    let known_fp = c.fingerprint(&fake).expect("fp");
    let presented_fp = c.fingerprint(c.nodes[1].host_key.as_deref().expect("key")).expect("fp");
    let plan = write_plan(&c, "root", Some(&c.known_hosts));
    let r = info(&plan, &[]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("master01: HOST KEY CHANGED"), "{}", r.stdout);
    assert!(r.stdout.contains(&known_fp), "known fingerprint {known_fp} missing: {}", r.stdout);
    assert!(r.stdout.contains(&presented_fp), "presented fingerprint {presented_fp} missing: {}", r.stdout);
    // --trust-new-hosts never overrides a changed key.
    let r = info(&plan, &["--trust-new-hosts"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("HOST KEY CHANGED"), "{}", r.stdout);
    settings(&c).bind(|| insta::assert_snapshot!("host_key_changed", r.stdout));
}

#[test]
fn trust_new_hosts_records_keys_for_next_time() {
    let Some(mut c) = cluster() else { return };
    c.add_node("etcd01", 41, markers("1.1.0")).expect("etcd01");
    c.add_node("master01", 42, markers("1.1.0")).expect("master01");
    c.add_node("worker01", 43, markers("1.1.0")).expect("worker01");
    let kh = c.dir().join("fresh").join("known_hosts");
    let plan = write_plan(&c, "root", Some(&kh));

    let r = info(&plan, &[]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("host key unknown"), "{}", r.stdout);
    assert!(r.stdout.contains("--trust-new-hosts"), "{}", r.stdout);

    let r = info(&plan, &["--trust-new-hosts"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for node in &c.nodes {
        let name = format!("[{}]:{}", node.address, c.port);
        let found = std::process::Command::new("ssh-keygen")
            .arg("-F")
            .arg(&name)
            .arg("-f")
            .arg(&kh)
            .output()
            .expect("ssh-keygen");
        assert!(found.status.success(), "{name} not recorded in {}", kh.display());
    }
    let r = info(&plan, &[]);
    assert_eq!(r.code, 0, "strict run after recording: {}\n{}", r.stdout, r.stderr);
}

#[test]
fn non_root_user_with_sudo() {
    let Some(mut c) = cluster() else { return };
    let user = "kismatic-op";
    c.add_node("etcd01", 51, markers("1.1.0").with_sudo_user(user)).expect("etcd01");
    c.add_node("master01", 52, markers("1.1.0").with_sudo_user(user)).expect("master01");
    // No sudo rights here: this node's row says so.
    c.add_node("worker01", 53, markers("1.1.0")).expect("worker01");
    c.write_known_hosts().expect("known_hosts");
    let plan = write_plan(&c, user, Some(&c.known_hosts));
    let r = info(&plan, &["-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(node(&v, "etcd01")["status"], "ok", "{}", r.stdout);
    assert_eq!(node(&v, "master01")["status"], "ok", "{}", r.stdout);
    // worker01 has no such user at all: authentication fails.
    assert_eq!(node(&v, "worker01")["status"], "auth_failed", "{}", r.stdout);
    assert_eq!(r.code, 1);
}

#[test]
fn release_components_installed_and_package_versions() {
    let Some(mut c) = cluster() else { return };
    let opts = || {
        markers("1.1.0")
            .with_file("component-versions", "kubernetes: v1.34.1\netcd: 3.5.0\n")
            .with_opt_link("kismatic/etcd/current", &format!("{OPT}/etcd/3.5.1"))
    };
    c.add_node("etcd01", 61, opts()).expect("etcd01");
    c.add_node("master01", 62, markers("1.1.0")).expect("master01");
    c.add_node("worker01", 63, markers("1.1.0")).expect("worker01");
    c.write_known_hosts().expect("known_hosts");
    let plan = write_plan(&c, "root", Some(&c.known_hosts));
    let rel = c.dir().join("release");
    std::fs::create_dir_all(rel.join("a")).expect("release dir");
    for f in ["etcd.tar.gz", "runtime.deb"] {
        std::fs::write(rel.join("a").join(f), f).expect("artifact");
    }
    // Release loading checks unit files (issue 12): a real unit.
    std::fs::write(rel.join("a/etcd.service"), format!("[Service]\nExecStart={OPT}/etcd/current/etcd\n"))
        .expect("unit");
    let zero = "0".repeat(64);
    let ssh_version = String::from_utf8_lossy(
        &std::process::Command::new("dpkg-query")
            .args(["-W", "-f", "${Version}", "openssh-server"])
            .output()
            .expect("dpkg-query")
            .stdout,
    )
    .to_string();
    std::fs::write(
        rel.join("release.yaml"),
        format!(
            "format: 1\nversion: 1.1.0\nkubernetes: v1.34.1\ncomponents:\n  - name: etcd\n    version: 3.5.1\n    \
             delivery: binary\n    roles: [etcd]\n    artifact: {{file: a/etcd.tar.gz, sha256: {zero}}}\n    \
             unit: {{file: a/etcd.service, sha256: {zero}}}\n  - name: ssh-server\n    version: 1.0.0\n    \
             delivery: package\n    package: openssh-server\n    service: ssh\n    roles: [etcd, master, worker]\n    \
             artifact: {{file: a/runtime.deb, sha256: {zero}}}\n"
        ),
    )
    .expect("release.yaml");
    let r = info(&plan, &["-o", "json", "--release", rel.to_str().expect("utf-8 path")]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("json");
    let etcd = &node(&v, "etcd01")["components"]["etcd"];
    assert_eq!(etcd["installed"], "3.5.1", "{}", r.stdout);
    assert_eq!(etcd["marker"], "3.5.0");
    assert_eq!(node(&v, "etcd01")["status"], "drift");
    assert_eq!(node(&v, "etcd01")["drift"][0]["kind"], "marker-vs-installed");
    assert_eq!(node(&v, "master01")["components"]["ssh-server"]["installed"], ssh_version.as_str());
    assert!(node(&v, "master01")["components"].get("etcd").is_none(), "etcd is not probed on a master");
    assert_eq!(v["target_version"], "1.1.0");
    assert!(node(&v, "etcd01")["disk_free"]["/"].as_u64().unwrap_or(0) > 0);
}
