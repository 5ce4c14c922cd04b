//! End to end, the `removed-api` gate (issue 14) on the testbed's real Kubernetes control plane: `upgrade online
//! --dry-run` to a release that crosses Kubernetes 1.22 reports nothing before anything uses a removed API, and
//! after kubectl applied a `networking.k8s.io/v1beta1` Ingress and a client called `extensions/v1beta1`, it reports
//! `removed-api` naming both (the object from its last-applied configuration, the calls from the API server's own
//! `apiserver_requested_deprecated_apis` metric and, for who called, its audit log). Measured: before any user
//! object, the metric already counts extensions/v1beta1 ingress requests made by the control plane itself; the
//! audit log names the controller-manager as their caller, and the gate leaves the control plane out.
//!
//! The crossing release is the testbed's 1.1.0 with another version written into its `release.yaml` (v1.22.0): its
//! artifacts are the same files with the same digests. It is only planned, never installed — a dry run reads
//! versions and digests, and runs nothing. Needs root and the testbed on the real control plane (Kubernetes 1.20);
//! otherwise it prints `SKIPPED` with the reason.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use testbed::{Guard, Options, e2e_skip_reason};

fn kismatic(plan: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_kismatic")).args(args).arg("-f").arg(plan).output().expect("runs");
    eprintln!(
        "$ kismatic {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// kubectl v1.20.2 from the control-plane build (within skew of the testbed's API servers).
fn kubectl_1_20() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-kubernetes.sh");
    let out = Command::new("bash").arg(&script).arg("--cached").output().expect("bash");
    assert!(out.status.success(), "the control plane is not built: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("kubectl")
}

/// A copy of `release` that claims Kubernetes `to` for the release and every component at `from`.
fn restamped_release(release: &Path, from: &str, to: &str, dest: &Path) -> PathBuf {
    let out = dest.join("1.2.0");
    let status = Command::new("cp").arg("-a").arg(release).arg(&out).status().expect("cp");
    assert!(status.success());
    let yaml = std::fs::read_to_string(out.join("release.yaml")).expect("release.yaml");
    let mut restamped = String::new();
    for line in yaml.lines() {
        let l = if line.starts_with("version: ") {
            "version: 1.2.0".to_string()
        } else if line == format!("kubernetes: {from}") {
            format!("kubernetes: {to}")
        } else if line.trim_start() == format!("version: {from}") {
            line.replace(from, to)
        } else {
            line.to_string()
        };
        restamped.push_str(&l);
        restamped.push('\n');
    }
    std::fs::write(out.join("release.yaml"), restamped).expect("write release.yaml");
    out
}

/// `(node, code, message)` of every finding of a dry run's JSON.
fn findings(out: &Output) -> Vec<(String, String, String)> {
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    plan["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or("").to_string();
            (s("node"), s("code"), s("message"))
        })
        .collect()
}

#[test]
fn removed_api_uses_block_a_release_that_removes_them() {
    if let Some(reason) = e2e_skip_reason() {
        eprintln!("SKIPPED removed-api e2e: {reason}");
        return;
    }
    let work = std::env::temp_dir().join(format!("kismatic-e2e-removed-api-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let plan = work.join("minimal.yaml");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/minimal.yaml"), &plan).expect("copy");
    let guard = Guard::up(&plan, Options { quiet: true, ..Options::default() }).expect("testbed up");
    let state = guard.testbed.load_state().expect("state").expect("testbed state exists");
    let release_new = state.release_new.expect("testbed built the new release");
    let release = kismatic_release::load_dir(&release_new).expect("the testbed's release loads");
    let Some(from) = release.kubernetes.strip_prefix("v1.20.").map(|_| release.kubernetes.clone()) else {
        eprintln!("SKIPPED removed-api e2e: the testbed runs Kubernetes {}, not 1.20", release.kubernetes);
        return;
    };
    let crossing = restamped_release(&release_new, &from, "v1.22.0", &work);
    let kubeconfig = guard.testbed.kubeconfig_path();
    let dry_run = || {
        let args = ["upgrade", "online", "--dry-run", "-o", "json", "--release"];
        let mut cmd: Vec<&str> = args.to_vec();
        let crossing = crossing.to_str().expect("utf-8 path");
        let kc = kubeconfig.to_str().expect("utf-8 path");
        cmd.extend([crossing, "--kubeconfig", kc]);
        let out = kismatic(&plan, &cmd);
        assert_eq!(out.status.code(), Some(1), "a move from 1.20 to 1.22 is blocked (two minors at least)");
        findings(&out)
    };
    let removed = |f: &[(String, String, String)]| -> Vec<String> {
        f.iter().filter(|(_, code, _)| code == "removed-api").map(|(_, _, m)| m.clone()).collect()
    };

    // Whom the masters' controller-manager and scheduler talk to, read from their running processes (the skew
    // policy's `upstream`): the testbed points them at their own master's API server.
    let facts_args = ["facts", "--release", crossing.to_str().expect("utf-8"), "--kubeconfig"];
    let mut facts_args = facts_args.to_vec();
    facts_args.push(kubeconfig.to_str().expect("utf-8"));
    let facts = kismatic(&plan, &facts_args);
    assert!(facts.status.success(), "kismatic facts");
    let facts: serde_json::Value = serde_json::from_slice(&facts.stdout).expect("facts JSON");
    let masters: Vec<&serde_json::Value> = facts["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["components"].get("kube-controller-manager").is_some())
        .collect();
    assert!(!masters.is_empty(), "no master in the facts");
    for m in masters {
        for c in ["kube-controller-manager", "kube-scheduler"] {
            let obs = &m["components"][c];
            assert_eq!(obs["upstream"], "local", "{}: {c}: {obs}", m["host"]);
            assert!(obs["api_servers"].as_array().is_some_and(|a| !a.is_empty()), "{obs}");
        }
    }

    // Before anything uses a removed API: no removed-api finding at all (the version policy refuses the two-minor
    // move). The API server's metric does count extensions/v1beta1 ingress requests already (measured: the real
    // 1.20 control plane's garbage-collector and quota informers list every resource discovery names); its audit
    // log says they are the controller-manager's, which the gate leaves out.
    let before = dry_run();
    assert!(before.iter().any(|(_, code, _)| code == "version-policy"), "{before:?}");
    let before_removed = removed(&before);
    assert!(before_removed.is_empty(), "nothing uses a removed API yet: {before_removed:#?}");
    let audit = |facts: &serde_json::Value| -> Vec<serde_json::Value> {
        facts["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["components"].get("kube-apiserver").map(|c| c["audit_log"].clone()))
            .collect()
    };
    let before_audit = audit(&facts);
    eprintln!("the API servers' audit logs before any use: {}", serde_json::Value::from(before_audit.clone()));
    assert!(!before_audit.is_empty() && before_audit.iter().all(|a| a["state"] == "read"), "{before_audit:?}");

    // An Ingress applied by kubectl 1.20 in networking.k8s.io/v1beta1, and a client listing extensions/v1beta1.
    let kubectl = kubectl_1_20();
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut c = Command::new(&kubectl);
        c.arg("--kubeconfig").arg(&kubeconfig).args(args);
        let out = match stdin {
            Some(text) => {
                let manifest = work.join("ingress.yaml");
                std::fs::write(&manifest, text).expect("write manifest");
                c.arg("-f").arg(&manifest).output()
            }
            None => c.output(),
        }
        .expect("kubectl runs");
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["create", "namespace", "shop"], None);
    run(
        &["apply"],
        Some(
            "apiVersion: networking.k8s.io/v1beta1\nkind: Ingress\nmetadata: {name: web, namespace: shop}\n\
             spec: {backend: {serviceName: web, servicePort: 80}}\n",
        ),
    );
    run(&["get", "--raw", "/apis/extensions/v1beta1/ingresses"], None);

    let after = dry_run();
    let messages = removed(&after);
    assert!(
        messages.iter().any(|m| m.contains("Ingress shop/web") && m.contains("networking.k8s.io/v1beta1")),
        "the applied object is named: {messages:#?}"
    );
    for api in ["extensions/v1beta1 ingresses", "networking.k8s.io/v1beta1 ingresses"] {
        assert!(
            messages.iter().any(|m| m.contains(&format!("records requests for {api} by admin"))
                && m.contains("user agent kubectl/v1.20.2")),
            "the calls to {api} are named with their caller (the kubectl above): {messages:#?}"
        );
    }
    assert!(!messages.iter().any(|m| m.contains("controller-manager")), "{messages:#?}");
    assert!(messages.iter().all(|m| m.contains("1.22")), "each names the removal release: {messages:#?}");
    drop(guard);
    let _ = std::fs::remove_dir_all(&work);
}
