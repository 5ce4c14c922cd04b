//! Kismatic's own templates, migration of deprecated fields, defaults, and the derived inventory.

use kismatic_plan::{Inventory, Plan, Role, load, load_plan, parse, read};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    // CI clones the repository beside `shared/`.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/kismatic-plans")
}

const TEMPLATES: [&str; 3] =
    ["cluster-config.yaml", "plan-template.golden.yaml", "plan-template-with-storage.golden.yaml"];

/// The templates parse and migrate; validation lists exactly the placeholders still to be filled in
/// (in `tests/expected/NAME.txt`, fixture folder shown as `$FIXTURES`; `BLESS=1` rewrites them).
#[test]
fn kismatic_templates_read_and_report_exactly_their_placeholders() {
    let dir = fixtures();
    for name in TEMPLATES {
        let path = dir.join(name);
        let text = fs::read_to_string(&path).expect("fixture readable (is ../shared beside the repo?)");
        let plan = read(&text, &path).unwrap_or_else(|e| panic!("{name} must parse and migrate:\n{e}"));
        let err = load(&path).expect_err("templates have placeholders");
        let shown = err.to_string().replace(&dir.display().to_string(), "$FIXTURES") + "\n";
        let expected_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected").join(format!("{name}.txt"));
        if std::env::var_os("BLESS").is_some() {
            fs::write(&expected_path, &shown).expect("bless");
        } else {
            let expected = fs::read_to_string(&expected_path).expect("expected file");
            assert_eq!(shown, expected, "{name}");
        }
        // Everything that was present and valid came through.
        assert_eq!(plan.kubernetes_version(), "v1.10.5", "{name}");
    }
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn write_key(dir: &Path, rel: &str) -> PathBuf {
    let key = dir.join(rel);
    if let Some(parent) = key.parent() {
        fs::create_dir_all(parent).expect("key dir");
    }
    fs::write(&key, "key\n").expect("write key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
    key
}

/// Replace each occurrence of `pattern` in turn with the next value.
fn fill(text: &str, pattern: &str, values: &[&str]) -> String {
    let mut out = String::new();
    let mut rest = text;
    let mut vals = values.iter();
    while let Some(i) = rest.find(pattern) {
        out.push_str(&rest[..i]);
        out.push_str(vals.next().copied().unwrap_or(pattern));
        rest = &rest[i + pattern.len()..];
    }
    out.push_str(rest);
    out
}

/// Kismatic's template with its placeholders filled in loads end to end.
#[test]
fn filled_in_template_loads() {
    let text = fs::read_to_string(fixtures().join("plan-template-with-storage.golden.yaml")).expect("fixture");
    let hosts = [
        "etcd01",
        "etcd02",
        "etcd03",
        "master01",
        "master02",
        "worker01",
        "worker02",
        "worker03",
        "ingress01",
        "ingress02",
        "storage01",
        "storage02",
    ];
    let host_values: Vec<String> = hosts.iter().map(|h| format!("host: {h}")).collect();
    let ip_values: Vec<String> = (1..=hosts.len()).map(|i| format!("    ip: 10.0.0.{i}")).collect();
    let tmp = tempfile::tempdir().expect("tempdir");
    let source = tmp.path().join("motd");
    fs::write(&source, "hi\n").expect("source");
    let mut t = fill(&text, "host: \"\"", &refs(&host_values));
    t = fill(&t, "    ip: \"\"", &refs(&ip_values));
    t = t.replace("load_balancer: \"\"", "load_balancer: lb.example.com:6443");
    t = t.replace("- hosts: []", "- hosts: [worker]");
    t = t.replace("source: \"\"", &format!("source: {}", source.display()));
    t = t.replace("destination: \"\"", "destination: /etc/motd");
    let plan_path = tmp.path().join("kismatic-cluster.yaml");
    fs::write(&plan_path, &t).expect("plan");
    let key = write_key(tmp.path(), "kismaticuser.key");

    let (plan, inv) = load_plan(&plan_path).unwrap_or_else(|e| panic!("filled-in template must load:\n{e}"));
    assert_eq!(inv.cluster_name, "kubernetes");
    assert_eq!(inv.ssh.key, key);
    assert_eq!(inv.ssh.port, 22);
    assert_eq!(inv.ssh.user, "kismaticuser");
    assert_eq!(inv.nodes.len(), 12);
    assert_eq!(inv.expected.etcd, 3);
    assert_eq!(inv.expected.storage, 2);
    assert_eq!(inv.load_balancer.as_ref().map(|l| (l.host.as_str(), l.port)), Some(("lb.example.com", 6443)));
    // Order: master group first, then etcd, worker, ingress, storage.
    assert_eq!(inv.nodes[0].host, "master01");
    assert_eq!(inv.nodes[2].host, "etcd01");
    assert!(inv.nodes.iter().all(|n| n.internal_ip == n.ip), "internalip defaults to ip");
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
}

fn minimal(extra_cluster: &str, groups: &str) -> String {
    format!(
        "cluster:\n  name: c\n  networking:\n    pod_cidr_block: 172.16.0.0/16\n    service_cidr_block: 172.20.0.0/16\n  \
         certificates:\n    expiry: 17520h\n  ssh:\n    user: u\n    ssh_key: id_rsa\n{extra_cluster}{groups}"
    )
}

const GROUPS: &str = "etcd:\n  expected_count: 1\n  nodes:\n  - {host: n1, ip: 10.0.0.1}\n\
master:\n  load_balancer: n1:6443\n  expected_count: 1\n  nodes:\n  - {host: n1, ip: 10.0.0.1}\n\
worker:\n  expected_count: 1\n  nodes:\n  - {host: n2, ip: 10.0.0.2}\n";

fn ok(text: &str) -> (Plan, Inventory) {
    parse(text, Path::new("/plans/kismatic-cluster.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn defaults_are_kismatics() {
    let (plan, inv) = ok(&minimal("", GROUPS));
    assert_eq!(inv.ssh.port, 22);
    assert_eq!(plan.kubernetes_version(), "v1.10.5");
    let cni = plan.add_ons.cni.as_ref().expect("cni defaulted");
    assert_eq!(cni.provider.as_ref().map(|p| p.value.as_str()), Some("calico"));
    assert_eq!(cni.options.calico.mode.as_ref().map(|p| p.value.as_str()), Some("overlay"));
    assert_eq!(cni.options.calico.log_level.as_ref().map(|p| p.value.as_str()), Some("info"));
    assert_eq!(cni.options.calico.workload_mtu.as_ref().map(|p| p.value), Some(1500));
    assert_eq!(plan.add_ons.dns.provider.as_ref().map(|p| p.value.as_str()), Some("kubedns"));
    assert_eq!(plan.add_ons.dns.options.replicas.as_ref().map(|p| p.value), Some(2));
    assert_eq!(plan.cluster.certificates.ca_expiry.as_ref().map(|p| p.value.as_str()), Some("17520h"));
    assert_eq!(plan.docker.logs.driver.as_ref().map(|p| p.value.as_str()), Some("json-file"));
    assert_eq!(plan.docker.logs.opts.get("max-size").map(|v| v.value.as_str()), Some("50m"));
    let h = plan.add_ons.heapster.as_ref().expect("heapster defaulted");
    assert_eq!(h.options.heapster.replicas.as_ref().map(|p| p.value), Some(2));
    assert_eq!(h.options.heapster.service_type.as_ref().map(|p| p.value.as_str()), Some("ClusterIP"));
    assert!(!inv.disable_package_installation);
    assert!(inv.ssh.known_hosts.is_none());
    // internalip = ip
    assert!(inv.nodes.iter().all(|n| n.internal_ip == n.ip));
}

#[test]
fn unique_nodes_and_roles() {
    let groups = "etcd:\n  expected_count: 2\n  nodes:\n  - {host: n1, ip: 10.0.0.1, labels: {zone: a, tier: etcd}}\n  - {host: n3, ip: 10.0.0.3}\n\
master:\n  load_balancer: n1:6443\n  expected_count: 1\n  nodes:\n  - {host: N1, ip: 10.0.0.1, internalip: 10.0.0.1, labels: {tier: master}}\n\
worker:\n  expected_count: 2\n  nodes:\n  - {host: n2, ip: 10.0.0.2, internalip: 10.1.0.2}\n  - {host: n1, ip: 10.0.0.1, taints: [{key: dedicated, value: x, effect: NoSchedule}]}\n\
ingress:\n  expected_count: 1\n  nodes:\n  - {host: n2, ip: 10.0.0.2, internalip: 10.1.0.2}\nstorage:\n  expected_count: 0\n  nodes: []\n";
    let (_, inv) = ok(&minimal("", groups));
    let summary: Vec<(String, Vec<Role>)> = inv.nodes.iter().map(|n| (n.host.clone(), n.roles.clone())).collect();
    assert_eq!(
        summary,
        vec![
            // First occurrence wins (the master entry, upper case as written); roles in Role order.
            ("N1".to_string(), vec![Role::Master, Role::Etcd, Role::Worker]),
            ("n3".to_string(), vec![Role::Etcd]),
            ("n2".to_string(), vec![Role::Worker, Role::Ingress]),
        ]
    );
    assert_eq!(inv.nodes[2].internal_ip, "10.1.0.2");
    // Labels merge, later groups (etcd < master < worker < ingress < storage) win.
    assert_eq!(inv.nodes[0].labels.get("tier").map(String::as_str), Some("master"));
    assert_eq!(inv.nodes[0].labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!(inv.nodes[0].taints.len(), 1);
    assert_eq!(inv.nodes_with_role(Role::Etcd).count(), 2);
    assert_eq!(inv.expected.ingress, 1);
    assert_eq!(inv.expected.storage, 0);
}

#[test]
fn relative_and_home_key_paths() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sub = tmp.path().join("cluster");
    fs::create_dir_all(&sub).expect("dir");
    let key = write_key(&sub, "keys/id_rsa");
    let text = minimal("", GROUPS).replace("ssh_key: id_rsa", "ssh_key: keys/id_rsa\n    known_hosts: known_hosts");
    let plan_path = sub.join("plan.yaml");
    fs::write(&plan_path, text).expect("plan");
    let inv = load(&plan_path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(inv.ssh.key, key);
    assert_eq!(inv.ssh.known_hosts, Some(sub.join("known_hosts")));
    assert!(inv.plan_path.is_absolute());

    let abs = minimal("", GROUPS).replace("ssh_key: id_rsa", "ssh_key: /etc/ssh/key");
    let (_, inv) = ok(&abs);
    assert_eq!(inv.ssh.key, PathBuf::from("/etc/ssh/key"));
    let (_, inv) = ok(&minimal("", GROUPS));
    assert_eq!(inv.ssh.key, PathBuf::from("/plans/id_rsa"));
}

fn read_ok(text: &str) -> Plan {
    read(text, Path::new("p.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

fn warnings(plan: &Plan) -> Vec<String> {
    plan.warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn migrates_load_balanced_fqdn() {
    let plan = read_ok("master:\n  load_balanced_fqdn: lb.example.com\n  load_balanced_short_name: lb\n");
    let m = plan.master.as_ref().expect("master");
    assert_eq!(m.value.load_balancer.as_ref().map(|v| v.value.as_str()), Some("lb.example.com:6443"));
    assert_eq!(
        warnings(&plan),
        vec![
            "p.yaml:2:23: master.load_balanced_fqdn: deprecated; read as `load_balancer: lb.example.com:6443`",
            "p.yaml:3:29: master.load_balanced_short_name: deprecated and ignored",
        ]
    );
    // load_balancer wins when both are set.
    let plan = read_ok("master:\n  load_balancer: a:1\n  load_balanced_fqdn: b\n");
    let m = plan.master.as_ref().expect("master");
    assert_eq!(m.value.load_balancer.as_ref().map(|v| v.value.as_str()), Some("a:1"));
}

#[test]
fn migrates_allow_package_installation() {
    for (allow, disable) in [(true, false), (false, true)] {
        let plan = read_ok(&format!("cluster:\n  allow_package_installation: {allow}\n"));
        assert_eq!(plan.cluster.disable_package_installation.as_ref().map(|v| v.value), Some(disable));
    }
}

#[test]
fn migrates_features_package_manager() {
    let plan = read_ok("features:\n  package_manager:\n    enabled: false\n");
    let pm = &plan.add_ons.package_manager;
    assert_eq!(pm.disable.as_ref().map(|v| v.value), Some(true));
    assert_eq!(pm.provider.as_ref().map(|v| v.value.as_str()), Some("helm"));
}

#[test]
fn migrates_registry_address_and_port() {
    let plan = read_ok("docker_registry:\n  address: reg.local\n  port: 8443\n");
    assert_eq!(plan.docker_registry.server.as_ref().map(|v| v.value.as_str()), Some("reg.local:8443"));
    let plan = read_ok("docker_registry:\n  address: reg.local\n");
    assert_eq!(plan.docker_registry.server.as_ref().map(|v| v.value.as_str()), Some("reg.local"));
}

#[test]
fn migrates_networking_type_to_calico_mode() {
    let plan = read_ok("cluster:\n  networking:\n    type: routed\n");
    let cni = plan.add_ons.cni.as_ref().expect("cni");
    assert_eq!(cni.options.calico.mode.as_ref().map(|v| v.value.as_str()), Some("routed"));
    // Ignored when add_ons.cni is given.
    let plan = read_ok("cluster:\n  networking:\n    type: routed\nadd_ons:\n  cni:\n    provider: weave\n");
    let cni = plan.add_ons.cni.as_ref().expect("cni");
    assert_eq!(cni.options.calico.mode.as_ref().map(|v| v.value.as_str()), Some("overlay"));
}

#[test]
fn migrates_heapster_dashboard_and_direct_lvm() {
    let plan = read_ok(
        "add_ons:\n  heapster:\n    options:\n      heapster_replicas: 5\n      influxdb_pvc_name: data\n  dashbard:\n    disable: true\n\
docker:\n  storage:\n    direct_lvm:\n      enabled: true\n      block_device: /dev/sdb\n      enable_deferred_deletion: true\n",
    );
    let h = plan.add_ons.heapster.as_ref().expect("heapster");
    assert_eq!(h.options.heapster.replicas.as_ref().map(|v| v.value), Some(5));
    assert_eq!(h.options.influxdb.pvc_name.as_ref().map(|v| v.value.as_str()), Some("data"));
    let d = plan.add_ons.dashboard.as_ref().expect("dashboard");
    assert_eq!(d.disable.as_ref().map(|v| v.value), Some(true));
    let st = &plan.docker.storage;
    assert_eq!(st.driver.as_ref().map(|v| v.value.as_str()), Some("devicemapper"));
    assert_eq!(st.direct_lvm_block_device.path.as_ref().map(|v| v.value.as_str()), Some("/dev/sdb"));
    assert_eq!(st.direct_lvm_block_device.thinpool_percent.as_ref().map(|v| v.value.as_str()), Some("95"));
    assert_eq!(st.opts.get("dm.use_deferred_deletion").map(|v| v.value.as_str()), Some("true"));
    assert_eq!(plan.warnings.len(), 4, "{:?}", warnings(&plan));
}

#[test]
fn admin_password_is_read_and_noted() {
    let plan = read_ok("cluster:\n  admin_password: hunter2\n");
    assert_eq!(warnings(&plan), vec!["p.yaml:2:19: cluster.admin_password: deprecated and ignored"]);
}

#[test]
fn error_display_is_one_line_per_diagnostic() {
    let err = parse("cluster:\n  ssh:\n    usr: x\n    sshport: 1\n", Path::new("dir/plan.yaml")).expect_err("invalid");
    let shown = err.to_string();
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(
        lines,
        vec![
            "dir/plan.yaml:3:5: unknown key `usr` in `cluster.ssh`, did you mean `user`?",
            "dir/plan.yaml:4:5: unknown key `sshport` in `cluster.ssh`, did you mean `ssh_port`?",
        ]
    );
    assert_eq!(err.diagnostics().len(), 2);
    let d = &err.diagnostics()[0];
    assert_eq!(d.pos.map(|p| (p.line, p.column)), Some((3, 5)));

    let missing = load(Path::new("/nonexistent/plan.yaml")).expect_err("no file");
    assert!(missing.to_string().starts_with("/nonexistent/plan.yaml: cannot read plan file:"), "{missing}");
}

#[test]
fn yaml_11_booleans_and_numbers_as_strings_are_accepted() {
    // Go yaml.v2 accepted these; so do we.
    let plan = read_ok(
        "cluster:\n  disable_package_installation: yes\n  version: 1.10.5\ndocker:\n  logs:\n    opts:\n      max-file: 1\n",
    );
    assert_eq!(plan.cluster.disable_package_installation.as_ref().map(|v| v.value), Some(true));
    assert_eq!(plan.kubernetes_version(), "1.10.5");
    assert_eq!(plan.docker.logs.opts.get("max-file").map(|v| v.value.as_str()), Some("1"));
}
