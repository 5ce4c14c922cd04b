//! `kismatic status` on real run folders: while a process holds the cluster's lock (read without disturbing it),
//! after the process is gone, on a copy of the run folder elsewhere, and with no run at all.

use kismatic_journal::store::RunsDir;
use kismatic_journal::{Event, FORMAT, Header, Record, RunIdentity};
use std::path::Path;
use std::process::{Command, Output};

fn kismatic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kismatic")).args(args).output().expect("kismatic runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A cluster folder with a plan file and one run whose second step is in progress.
fn cluster(root: &Path) -> std::path::PathBuf {
    std::fs::write(root.join("kismatic-cluster.yaml"), "cluster: {}\n").expect("plan");
    let runs = RunsDir::new(root.join("runs"));
    let header = Header {
        format: FORMAT,
        run_id: "20261125T200000Z".into(),
        started_at_ms: 1_795_636_800_000,
        identity: RunIdentity {
            mode: "offline".into(),
            release_version: "1.1.0".into(),
            release_digest: "abc".into(),
            partial_ok: false,
        },
        steps: vec!["stage/w1".into(), "worker/w1/upgrade/kubelet".into(), "worker/w1/markers".into()],
    };
    let mut w = runs.create_run(&header).expect("run");
    let mut at = 1_795_636_800_000;
    let mut rec = |event: Event| {
        at += 1000;
        w.append(&Record { at_ms: at, event }).expect("append");
    };
    rec(Event::Attached {
        pid: std::process::id(),
        host: kismatic_journal::store::local_host(),
        command: ["kismatic", "upgrade", "offline", "--discard-journal", "--release", "my release"]
            .map(String::from)
            .to_vec(),
        cwd: root.display().to_string(),
        version: "0.1.0".into(),
    });
    rec(Event::Started { step: "stage/w1".into() });
    rec(Event::Finished { step: "stage/w1".into() });
    rec(Event::Started { step: "worker/w1/upgrade/kubelet".into() });
    w.dir().to_path_buf()
}

#[test]
fn status_while_running_after_a_kill_and_on_a_copy() {
    let tmp = tempfile::tempdir().expect("tmp");
    let run_dir = cluster(tmp.path());
    let plan = tmp.path().join("kismatic-cluster.yaml");
    let plan = plan.to_str().expect("utf-8");

    // This test process plays the running kismatic: it holds the lock.
    let runs = RunsDir::new(tmp.path().join("runs"));
    let lock = runs.lock().expect("lock");
    let out = kismatic(&["status", "-f", plan]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = stdout(&out);
    let pid = std::process::id();
    assert!(text.contains(&format!("State:    running: pid {pid} on ")), "{text}");
    assert!(text.contains("at worker/w1/upgrade/kubelet"), "{text}");
    assert!(!text.contains("To resume"), "{text}");
    // Asking took nothing: the lock is still held and the journal unchanged.
    assert!(runs.lock().is_err(), "status must not take the lock");
    let json: serde_json::Value =
        serde_json::from_slice(&kismatic(&["status", "-f", plan, "-o", "json"]).stdout).expect("json");
    assert_eq!(json["state"]["state"], "running");
    assert_eq!(json["state"]["pid"], pid);
    assert_eq!(json["format"], 1);
    assert_eq!(json["run_dir"], run_dir.display().to_string());

    // The process is gone: abandoned, with the command that resumes it (without --discard-journal).
    drop(lock);
    let text = stdout(&kismatic(&["status", "-f", plan]));
    assert!(text.contains("State:    abandoned during worker/w1/upgrade/kubelet"), "{text}");
    let resume = format!("cd {} && kismatic upgrade offline --release 'my release'", tmp.path().display());
    assert!(text.contains(&resume), "{text}");

    // A copy of the run folder elsewhere: read the same way; the lock cannot be checked there.
    let elsewhere = tempfile::tempdir().expect("tmp");
    let copy = elsewhere.path().join("20261125T200000Z");
    std::fs::create_dir(&copy).expect("mkdir");
    std::fs::copy(run_dir.join("journal.jsonl"), copy.join("journal.jsonl")).expect("copy");
    let json: serde_json::Value =
        serde_json::from_slice(&kismatic(&["status", "--run", copy.to_str().expect("utf-8"), "-o", "json"]).stdout)
            .expect("json");
    assert_eq!(json["state"]["state"], "abandoned");
    assert_eq!(json["lock"]["state"], "unknown");
    assert_eq!(json["nodes"]["in_progress"][0], "w1");
}

#[test]
fn status_without_a_run_says_so() {
    let tmp = tempfile::tempdir().expect("tmp");
    let plan = tmp.path().join("kismatic-cluster.yaml");
    let out = kismatic(&["status", "-f", plan.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No run recorded for this cluster"));
}

#[test]
fn status_names_the_line_of_a_corrupt_journal() {
    let tmp = tempfile::tempdir().expect("tmp");
    let run_dir = cluster(tmp.path());
    let path = run_dir.join("journal.jsonl");
    let mut text = std::fs::read_to_string(&path).expect("read");
    text = text.replacen("\"started\"", "\"sta", 1);
    std::fs::write(&path, text).expect("write");
    let out = kismatic(&["status", "--run", run_dir.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("journal.jsonl:3: corrupt journal record"), "{err}");
}
