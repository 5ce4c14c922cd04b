//! End-to-end upgrades on the testbed (systemd-nspawn nodes, real sshd, real TLS etcd 3.4 → 3.5, the real
//! Kubernetes 1.20 control plane v1.20.2 → v1.20.3 behind HAProxy, kube-sim kubelets): blocked online upgrades change nothing, `--partial-ok` upgrades exactly the unflagged nodes,
//! an online upgrade keeps PDB-protected workloads available and the API reachable, data survives, an interrupted
//! run resumes, and a broken etcd artifact is rolled back.
//!
//! Needs root and systemd-nspawn: skipped with the reason printed otherwise (CI runs as root). The scenarios share
//! loopback ranges and the machine's 2 cores, so they run inside one test function, one after the other.

mod support;

use kismatic_ops::contract::{COMPONENT_VERSIONS_FILE, OPT, SNAPSHOT_DIR, STAGING};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Cluster, Sampler, cordoned_nodes, text, work_dir};
use testbed::e2e_skip_reason;

const BARE_POD_ON_WORKER03: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: default}
spec:
  nodeName: worker03
  containers: [{name: bare, image: busybox}]
"#;

#[test]
fn upgrades_on_the_testbed() {
    if let Some(reason) = e2e_skip_reason() {
        eprintln!("SKIPPED upgrade e2e: {reason}");
        return;
    }
    // KISMATIC_E2E=name,name runs only those scenarios (for working on one); by default all run.
    let wanted = |name: &str| std::env::var("KISMATIC_E2E").map(|v| v.split(',').any(|x| x == name)).unwrap_or(true);
    if wanted("online") {
        online_blocked_partial_then_full();
    }
    if wanted("offline") {
        offline_killed_twice_resumes_and_keeps_data();
    }
    if wanted("broken-etcd") {
        broken_etcd_artifact_is_rolled_back();
    }
}

/// ha: a blocked online upgrade changes nothing; `--partial-ok` upgrades exactly the unflagged nodes and stops
/// before the services; after the unsafe pod is gone a full online upgrade completes with the PDB-protected
/// Deployment never below its budget and the API always reachable through the load balancer.
fn online_blocked_partial_then_full() {
    let work = work_dir("e2e-ha");
    let c = Cluster::up("ha.yaml", &work);
    let info = c.kismatic(&["info"]);
    assert!(text(&info).contains("Cluster Version: v1.0.0"), "{}", text(&info));

    c.apply_web();
    c.kubectl_apply(BARE_POD_ON_WORKER03);
    c.wait_ready("web", 3);

    // Dry run: the expected findings, per node.
    let dry = c.kismatic(&["upgrade", "online", "--dry-run", "-o", "json"]);
    assert_eq!(dry.status.code(), Some(1), "blocked");
    let plan: serde_json::Value = serde_json::from_slice(&dry.stdout).expect("plan JSON");
    let mut found: Vec<(String, String)> = plan["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| (f["node"].as_str().unwrap_or("").to_string(), f["code"].as_str().unwrap_or("").to_string()))
        .collect();
    found.sort();
    found.dedup();
    assert!(found.contains(&("worker03".into(), "unmanaged-pod".into())), "{found:?}");
    assert!(found.contains(&("ingress01".into(), "ingress-node".into())), "{found:?}");
    // Nodes a partial run must leave out: those with a finding other than the acknowledged ingress-node.
    let flagged: Vec<String> = found
        .iter()
        .filter(|(n, code)| !(n == "ingress01" && code == "ingress-node"))
        .map(|(n, _)| n.clone())
        .collect();
    eprintln!("findings: {found:?}; left out by --partial-ok: {flagged:?}");
    assert!(flagged.iter().all(|n| n.starts_with("worker") || n.starts_with("ingress")), "{flagged:?}");

    // Blocked for real: nothing changes anywhere.
    let blocked = c.kismatic(&["upgrade", "online"]);
    assert_eq!(blocked.status.code(), Some(1));
    for n in &c.guard.testbed.inv.nodes {
        assert_eq!(c.marker(&n.host), "1.0.0", "{} untouched", n.host);
    }
    assert!(!c.runs_dir().exists(), "a blocked upgrade starts no run");

    // Partial: everything but worker03 (ingress01 acknowledged explicitly).
    let sampler = Sampler::start(c.kubeconfig(), "web");
    let events = work.join("events.jsonl");
    let partial = c.kismatic(&[
        "upgrade",
        "online",
        "--partial-ok",
        "--accept",
        "ingress-node@ingress01",
        "--events",
        events.to_str().expect("utf-8 path"),
    ]);
    let (min_ready, api_failures, samples) = sampler.finish();
    assert_eq!(partial.status.code(), Some(0), "{}", text(&partial));
    assert!(text(&partial).contains("Partial upgrade complete"), "{}", text(&partial));
    for n in &c.guard.testbed.inv.nodes {
        let want = if flagged.contains(&n.host) { "1.0.0" } else { "1.1.0" };
        assert_eq!(c.marker(&n.host), want, "{}", n.host);
    }
    eprintln!("partial: web min ready {min_ready} over {samples} samples, {api_failures} API failures");
    assert!(min_ready >= 2 && min_ready != usize::MAX, "PDB minAvailable 2 held: min ready {min_ready}");
    assert_eq!(api_failures, 0, "the API stayed reachable through the load balancer");
    assert!(cordoned_nodes(&c).is_empty(), "no node left cordoned");
    let services = c.ssh("master01", &["cat", COMPONENT_VERSIONS_FILE]);
    assert!(!services.contains("registry: \"2.8.3\""), "services not upgraded by a partial run: {services}");

    // The unsafe pod goes; the rest is upgraded online.
    c.kubectl(&["delete", "pod", "bare", "--grace-period=0"]);
    // Killed after worker03 was cordoned and drained; the rerun resumes, and after the uncordon it waits for the
    // workloads the killed run's drain moved (kept in the journal).
    let sampler = Sampler::start(c.kubeconfig(), "web");
    let full_args = ["upgrade", "online", "--accept", "ingress-node@ingress01"];
    // SIGTERM (a CI job cancelled) in the middle of a step ends the run like Ctrl-C: the command running on the
    // node is stopped, the node this run cordoned is uncordoned and the journal records the end.
    // (Its own events file: the runs after it wait for steps this one started too.)
    let term_events = work.join("events-sigterm.jsonl");
    let mut child = c.spawn_upgrade(&full_args, &term_events, &stderr_of(&term_events));
    wait_started(&mut child, &term_events, "worker/worker03/drain");
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
    assert!(term.success());
    let ended = child.wait().expect("the run ends");
    assert_eq!(ended.code(), Some(1), "a stopped run exits 1");
    assert!(cordoned_nodes(&c).is_empty(), "SIGTERM uncordoned the node");
    let journal = std::fs::read_to_string(c.latest_journal()).expect("journal");
    let last: serde_json::Value =
        serde_json::from_str(journal.lines().last().expect("records")).expect("a whole last record");
    assert_eq!(last["event"], "ended", "{last}");
    assert!(last["message"].as_str().is_some_and(|m| m.contains("SIGTERM")), "{last}");
    // The stopped drain may have evicted a web pod: until its replacement is Ready the budget allows no disruption
    // and the analysis rightly blocks (exit 1 before attaching, seen in CI). An operator waits too.
    c.wait_ready("web", 3);
    c.wait_disruption_allowed("web");
    let mut child = c.spawn_upgrade(&full_args, &events, &stderr_of(&events));
    // From a second terminal, in the middle of the run: `kismatic status` sees it running, read-only.
    // (The partial run already upgraded every other node: this run has worker03 and the services.)
    wait_started(&mut child, &events, "worker/worker03/drain");
    let status = c.kismatic(&["status"]);
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let pid = child.id();
    assert!(text(&status).contains(&format!("State:    running: pid {pid} on ")), "{}", text(&status));
    assert!(text(&status).contains("at worker/worker03/drain"), "{}", text(&status));
    wait_started(&mut child, &events, "worker/worker03/upgrade/kubelet");
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert_eq!(cordoned_nodes(&c), ["worker03"], "the killed run left its node cordoned");
    let status = c.kismatic(&["status"]);
    let t = text(&status);
    assert!(t.contains("State:    abandoned during worker/worker03/upgrade/kubelet"), "{t}");
    assert!(t.contains("Cordoned by the run: worker03"), "{t}");
    assert!(
        t.contains("To resume, run the same command again:")
            && t.contains("upgrade online --accept ingress-node@ingress01"),
        "{t}"
    );
    // A torn last line (a write the crash cut short) is cut off when the rerun opens the journal, not joined to
    // the next record.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(c.latest_journal()).expect("journal");
        f.write_all(b"{\"at_ms\":1,\"event\":\"sta").expect("torn write");
    }
    let full = c.kismatic(&[&full_args[..], &["--events", events.to_str().expect("utf-8 path")]].concat());
    let (min_ready, api_failures, samples) = sampler.finish();
    assert_eq!(full.status.code(), Some(0), "{}", text(&full));
    assert!(text(&full).contains("resuming run"), "{}", text(&full));
    assert!(text(&full).contains("cut off 23 byte(s)"), "{}", text(&full));
    // The summary's line for the node (the plan above it also names worker03).
    let summary = text(&full);
    assert!(
        summary.lines().any(|l| l.trim_start().starts_with("worker03 ") && l.contains("1.0.0 → 1.1.0  upgraded")),
        "{summary}"
    );
    let moved = last_message(&events, "worker/worker03/drain");
    let ready = last_message(&events, "worker/worker03/uncordon");
    eprintln!("worker03: drain before the kill: {moved}; uncordon after the resume: {ready}");
    let count = |m: &str| m.split_whitespace().next().and_then(|n| n.parse::<usize>().ok()).expect("a count");
    // The resumed run waits for every workload any attempt's drain of worker03 moved: the SIGTERM'd attempt's drain
    // recorded its own set before evicting, and that set may differ from the killed attempt's (CI: 3 against 2).
    let journal = std::fs::read_to_string(c.latest_journal()).expect("journal");
    let recorded: std::collections::BTreeSet<String> = journal
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|r| r["event"] == "draining" && r["node"] == "worker03")
        .flat_map(|r| r["workloads"].as_array().cloned().unwrap_or_default())
        .map(|w| format!("{}/{}/{}", w["kind"], w["namespace"], w["name"]))
        .collect();
    assert!(count(&ready) >= count(&moved), "the resumed run waited for the workloads the killed run's drain moved");
    assert_eq!(count(&ready), recorded.len(), "the resumed run waited for every workload the journal holds moved");
    let status: serde_json::Value =
        serde_json::from_slice(&c.kismatic(&["status", "-o", "json"]).stdout).expect("status JSON");
    assert_eq!(status["state"]["state"], "finished", "{status}");
    assert_eq!(
        status["attempts"].as_array().map(Vec::len),
        Some(3),
        "the process stopped by SIGTERM, the killed one and the resume: {status}"
    );
    let run_dir = PathBuf::from(status["run_dir"].as_str().expect("run_dir"));
    let page = std::fs::read_to_string(run_dir.join("timeline.html")).expect("the run wrote its timeline");
    for lane in ["worker03", "services"] {
        assert!(page.contains(&format!("class=\"lane\">{lane}</text>")), "lane {lane} in the timeline");
    }
    assert!(page.contains("waiting on drain") && page.contains("waiting on health"), "waits drawn");
    let _ =
        std::fs::copy(run_dir.join("timeline.html"), std::env::temp_dir().join("kismatic-e2e-online-timeline.html"));
    eprintln!("full: web min ready {min_ready} over {samples} samples, {api_failures} API failures");
    assert!(min_ready >= 2 && min_ready != usize::MAX, "min ready {min_ready}");
    // No API server restarts in this run (the masters were upgraded by the partial one): the API must answer
    // ≥ 99 % of samples. Rare failures have been seen here (2 of 218, 1 of 164) but not through the master
    // restarts above; kubectl's reasons are printed to find out why.
    assert!(api_failures * 100 <= samples, "{api_failures} API failures over {samples} samples");
    let info = c.kismatic(&["info"]);
    assert_eq!(info.status.code(), Some(0), "{}", text(&info));
    assert!(text(&info).contains("Cluster Version: v1.1.0"), "{}", text(&info));
    assert!(cordoned_nodes(&c).is_empty());
    for e in ["etcd01", "etcd02", "etcd03"] {
        let exe = c.ssh(e, &["sh", "-c", "readlink /proc/$(systemctl show -p MainPID --value etcd)/exe"]);
        assert_eq!(exe.trim(), format!("{OPT}/etcd/3.5.1/bin/etcd"), "{e}");
    }
    let nodes = c.kubectl(&["get", "nodes", "-o", "jsonpath={.items[*].status.nodeInfo.kubeletVersion}"]);
    assert!(nodes.split_whitespace().all(|v| v == "v1.20.3"), "{nodes}");
    // Kept for timing reports (scripts/event-stats.py).
    let _ = std::fs::copy(&events, std::env::temp_dir().join("kismatic-e2e-online-events.jsonl"));
    drop(c);
    let _ = std::fs::remove_dir_all(work);
}

impl Cluster {
    fn etcdctl(&self, endpoint_ip: &str, args: &[&str], stdin: Option<&str>) -> String {
        let tb = &self.guard.testbed;
        let (cert, key) = tb.etcd_client_cert();
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=https://{endpoint_ip}:2379"))
            .arg(format!("--cacert={}", tb.ca_path().display()))
            .arg(format!("--cert={}", cert.display()))
            .arg(format!("--key={}", key.display()))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("etcdctl runs");
        {
            use std::io::Write;
            let mut input = child.stdin.take().expect("stdin");
            if let Some(text) = stdin {
                input.write_all(text.as_bytes()).expect("etcdctl stdin");
            }
        }
        let out = child.wait_with_output().expect("etcdctl");
        assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn etcd_ip(&self) -> String {
        let n = self.guard.testbed.inv.nodes.iter().find(|n| n.roles.iter().any(|r| r.as_str() == "etcd"));
        n.expect("an etcd node").ip.clone()
    }
}

/// The message of the last `finished` event of `step` in an event stream.
fn last_message(events: &Path, step: &str) -> String {
    let text = std::fs::read_to_string(events).expect("events");
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["step"] == step && e["state"] == "finished")
        .and_then(|e| e["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no finished {step} in {}", events.display()))
}

/// Waits until the event stream shows `step` started, then kills the process with SIGKILL.
fn kill_when_started(mut child: std::process::Child, events: &Path, step: &str) {
    wait_started(&mut child, events, step);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    eprintln!("killed kismatic with SIGKILL as {step} started");
}

/// Where a spawned run's output goes: beside its events file (printed when it ends too early).
fn stderr_of(events: &Path) -> PathBuf {
    events.with_extension("stderr")
}

/// Waits until the event stream shows `step` started (the process must still be running).
fn wait_started(child: &mut std::process::Child, events: &Path, step: &str) {
    let deadline = Instant::now() + Duration::from_secs(600);
    let needle = format!("\"step\":\"{step}\",\"state\":\"started\"");
    loop {
        let text = std::fs::read_to_string(events).unwrap_or_default();
        if text.contains(&needle) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let stderr = std::fs::read_to_string(stderr_of(events)).unwrap_or_default();
            panic!("kismatic ended ({status}) before {step} started:\n{text}\nits standard error:\n{stderr}");
        }
        assert!(Instant::now() < deadline, "{step} never started");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const DATA_KEYS: usize = 10_000;
const DATA_OBJECTS: usize = 500;

fn write_data(c: &Cluster) {
    let ip = c.etcd_ip();
    // etcd's default --max-txn-ops is 128: write in transactions of 125 puts.
    for chunk in (0..DATA_KEYS).collect::<Vec<_>>().chunks(125) {
        let mut txn = String::from("\n");
        for i in chunk {
            txn.push_str(&format!("put /kismatic-e2e/key-{i:05} value-{i}-{}\n", "x".repeat(i % 64)));
        }
        // Sections: compares (none), success requests, failure requests (none), each ended by a blank line.
        txn.push_str("\n\n");
        c.etcdctl(&ip, &["txn"], Some(&txn));
    }
    let mut list = String::new();
    for i in 0..DATA_OBJECTS {
        list.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: data-{i:03}, namespace: default, labels: {{e2e: data}}}}\ndata: {{index: \"{i}\", payload: \"{}\"}}\n",
            "y".repeat(i % 100)
        ));
    }
    c.kubectl_apply(&list);
}

fn read_data(c: &Cluster) -> (String, Vec<(String, String)>) {
    let keys = c.etcdctl(&c.etcd_ip(), &["get", "--prefix", "/kismatic-e2e/"], None);
    let cms: serde_json::Value =
        serde_json::from_str(&c.kubectl(&["get", "configmaps", "-l", "e2e=data", "-o", "json"])).expect("json");
    let mut objects: Vec<(String, String)> = cms["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| (o["metadata"]["name"].as_str().unwrap_or("").to_string(), o["data"].to_string()))
        .collect();
    objects.sort();
    (keys, objects)
}

/// ha, offline with two workers at a time: data written before the upgrade; the tool is killed with SIGKILL in
/// the middle of the etcd phase and again in the worker phase; reruns complete; every node and both etcd clusters
/// end at the new release with etcd 3.5.1 running, and every key and object is intact.
fn offline_killed_twice_resumes_and_keeps_data() {
    let work = work_dir("e2e-ha-offline");
    let c = Cluster::up("ha.yaml", &work);
    write_data(&c);
    let before = read_data(&c);
    assert_eq!(before.0.lines().count(), DATA_KEYS * 2, "keys and values");
    assert_eq!(before.1.len(), DATA_OBJECTS);

    // The releases move Kubernetes a patch (v1.20.2 → v1.20.3): no in-place kubelet minor to acknowledge.
    let args = ["upgrade", "offline", "--max-parallel-workers", "2", "--node-timeout", "120"];
    let events = work.join("events.jsonl");
    kill_when_started(c.spawn_upgrade(&args, &events, &stderr_of(&events)), &events, "etcd/etcd02/upgrade/etcd");
    kill_when_started(c.spawn_upgrade(&args, &events, &stderr_of(&events)), &events, "worker/worker01/upgrade/kubelet");
    let last = c.kismatic(&[&args[..], &["--events", events.to_str().expect("utf-8"), "-o", "json"]].concat());
    assert_eq!(last.status.code(), Some(0), "{}", text(&last));
    // JSON lines on stdout: the plan, then the result.
    let stdout = String::from_utf8_lossy(&last.stdout).into_owned();
    let result_line = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value = serde_json::from_str(result_line).expect("the result is JSON");
    let result = &result["result"];
    assert_eq!(result["completed"], true, "{stdout}");
    assert_eq!(result["resumed"], true, "the rerun resumed the journal: {stdout}");
    let nodes = result["nodes"].as_array().expect("nodes");
    assert!(!nodes.is_empty() && nodes.iter().all(|n| n["to"] == "1.1.0" && n["outcome"] == "upgraded"), "{stdout}");
    let ev = std::fs::read_to_string(&events).expect("events");
    assert!(ev.contains("\"state\":\"skipped\""), "finished steps were skipped on resume");
    assert!(!ev.contains("\"step\":\"worker/worker01/cordon\""), "offline upgrades never cordon");

    let info = c.kismatic(&["info"]);
    assert_eq!(info.status.code(), Some(0), "{}", text(&info));
    assert!(text(&info).contains("Cluster Version: v1.1.0"), "{}", text(&info));
    for e in ["etcd01", "etcd02", "etcd03"] {
        for comp in ["etcd", "etcd-networking"] {
            let exe =
                c.ssh(e, &["sh", "-c", &format!("readlink /proc/$(systemctl show -p MainPID --value {comp})/exe")]);
            assert_eq!(exe.trim(), format!("{OPT}/{comp}/3.5.1/bin/etcd"), "{e} {comp}");
        }
    }
    let status = c.etcdctl(&c.etcd_ip(), &["endpoint", "status", "--cluster", "-w", "json"], None);
    let status: serde_json::Value = serde_json::from_str(&status).expect("status json");
    let versions: Vec<&str> =
        status.as_array().expect("members").iter().filter_map(|m| m["Status"]["version"].as_str()).collect();
    assert_eq!(versions, vec!["3.5.1"; 3], "every member reports 3.5.1");
    let after = read_data(&c);
    assert!(before == after, "10,000 etcd keys and 500 API objects are identical after the upgrade");
    assert!(cordoned_nodes(&c).is_empty());
    drop(c);
    let _ = std::fs::remove_dir_all(work);
}

/// minimal: a new etcd whose binary cannot start. The member is rolled back to `previous`, the cluster is healthy
/// again, the run stops and says so, and nothing after etcd was touched.
fn broken_etcd_artifact_is_rolled_back() {
    let work = work_dir("e2e-minimal-broken");
    let mut c = Cluster::up("minimal.yaml", &work);
    // A copy of the new release whose etcd artifact holds an `etcd` that exits at once.
    let broken = work.join("release-broken");
    copy_dir(&c.release_new, &broken);
    let stage = work.join("broken-etcd");
    std::fs::create_dir_all(stage.join("bin")).expect("stage");
    std::fs::write(stage.join("bin/etcd"), "#!/bin/sh\necho 'broken etcd' >&2\nexit 1\n").expect("etcd");
    std::fs::copy(c.release_new.join("artifacts/etcd-3.5.1.tar.gz"), work.join("orig.tar.gz")).expect("copy");
    let untar = Command::new("tar")
        .arg("-xzf")
        .arg(work.join("orig.tar.gz"))
        .arg("-C")
        .arg(&stage)
        .arg("./bin/etcdctl")
        .status()
        .expect("tar");
    assert!(untar.success(), "etcdctl from the good artifact");
    let mut chmod = Command::new("chmod");
    assert!(chmod.arg("755").arg(stage.join("bin/etcd")).status().expect("chmod").success());
    let artifact = broken.join("artifacts/etcd-3.5.1.tar.gz");
    let tar = Command::new("tar").arg("-czf").arg(&artifact).arg("-C").arg(&stage).arg(".").status().expect("tar");
    assert!(tar.success());
    let digest = sha256(&artifact);
    let yaml = std::fs::read_to_string(broken.join("release.yaml")).expect("release.yaml");
    let old_digest = sha256(&c.release_new.join("artifacts/etcd-3.5.1.tar.gz"));
    // Only the `etcd` component's artifact line (etcd-networking keeps the good artifact).
    let yaml = yaml.replacen(
        &format!("{{file: artifacts/etcd-3.5.1.tar.gz, sha256: {old_digest}}}"),
        &format!("{{file: artifacts/etcd-3.5.1.tar.gz, sha256: {digest}}}"),
        1,
    );
    std::fs::write(broken.join("release.yaml"), yaml).expect("write release.yaml");
    c.release_new = broken;

    // First, a node that cannot take its artifacts (its staging folder's parent is a file): the run stops before
    // that node with nothing changed on it; once fixed, the same command resumes.
    let cache = STAGING.rsplit_once('/').map_or(STAGING, |(parent, _)| parent);
    c.ssh("etcd01", &["sh", "-c", &format!("rm -rf {cache} && touch {cache}")]);
    let blocked = c.kismatic(&["upgrade", "offline", "--node-timeout", "20"]);
    assert_eq!(blocked.status.code(), Some(1), "{}", text(&blocked));
    assert!(
        text(&blocked).contains("staging artifacts on etcd01 failed, so the run stops before etcd01")
            && text(&blocked).contains(cache),
        "{}",
        text(&blocked)
    );
    let exe = c.ssh("etcd01", &["sh", "-c", "readlink /proc/$(systemctl show -p MainPID --value etcd)/exe"]);
    assert_eq!(exe.trim(), format!("{OPT}/etcd/3.4.23/bin/etcd"), "etcd01 untouched");
    for n in ["etcd01", "master01", "worker01"] {
        assert_eq!(c.marker(n), "1.0.0", "{n} untouched after the staging failure");
    }
    c.ssh("etcd01", &["rm", "-f", cache]);

    let out = c.kismatic(&["upgrade", "offline", "--node-timeout", "20"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("resuming run"), "{t}");
    assert!(t.contains("did not come back healthy at 3.5.1"), "{t}");
    assert!(t.contains("rolled back to 3.4.23; the cluster is healthy"), "{t}");
    assert!(t.contains(&format!("snapshot taken before the upgrade is at etcd01:{SNAPSHOT_DIR}/etcd-")), "{t}");
    let exe = c.ssh("etcd01", &["sh", "-c", "readlink /proc/$(systemctl show -p MainPID --value etcd)/exe"]);
    assert_eq!(exe.trim(), format!("{OPT}/etcd/3.4.23/bin/etcd"));
    let health = c.etcdctl(&c.etcd_ip(), &["endpoint", "health", "-w", "json"], None);
    assert!(health.contains("\"health\":true"), "{health}");
    for n in ["master01", "worker01"] {
        assert_eq!(c.marker(n), "1.0.0", "{n} untouched after the etcd failure");
    }
    drop(c);
    let _ = std::fs::remove_dir_all(work);
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string()
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().expect("cp");
    assert!(st.success());
}
