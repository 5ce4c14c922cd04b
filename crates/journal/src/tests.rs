use super::*;
use proptest::prelude::*;

fn identity() -> RunIdentity {
    RunIdentity {
        mode: "online".into(),
        release_version: "1.1.0".into(),
        release_digest: "abc".into(),
        partial_ok: false,
    }
}

fn header(steps: &[&str]) -> Header {
    Header {
        format: FORMAT,
        run_id: "20261125T200000Z".into(),
        started_at_ms: 1,
        identity: identity(),
        steps: steps.iter().map(|s| s.to_string()).collect(),
    }
}

fn rec(event: Event) -> Record {
    Record { at_ms: 2, event }
}

fn started(s: &str) -> Record {
    rec(Event::Started { step: s.into() })
}
fn finished(s: &str) -> Record {
    rec(Event::Finished { step: s.into() })
}

fn text(h: &Header, records: &[Record]) -> String {
    let mut t = serde_json::to_string(h).unwrap() + "\n";
    for r in records {
        t += &(serde_json::to_string(r).unwrap() + "\n");
    }
    t
}

#[test]
fn fresh_when_no_previous_run() {
    assert_eq!(resume_point(None, &identity()), ResumeDecision::Fresh);
}

#[test]
fn fresh_when_previous_run_completed() {
    let mut s = JournalState::new(header(&["a", "b"]));
    for r in [started("a"), finished("a"), started("b"), finished("b")] {
        s.apply(&r);
    }
    assert!(s.is_complete());
    assert_eq!(resume_point(Some(&s), &identity()), ResumeDecision::Fresh);
}

#[test]
fn resumes_at_interrupted_step() {
    let mut s = JournalState::new(header(&["a", "b", "c"]));
    for r in [started("a"), finished("a"), started("b")] {
        s.apply(&r);
    }
    assert_eq!(s.status("b"), StepStatus::Interrupted);
    assert_eq!(resume_point(Some(&s), &identity()), ResumeDecision::Resume { from: 1 });
}

#[test]
fn failed_step_is_redone() {
    let mut s = JournalState::new(header(&["a", "b"]));
    s.apply(&started("a"));
    s.apply(&rec(Event::Failed { step: "a".into(), error: "boom".into() }));
    assert_eq!(s.status("a"), StepStatus::Failed);
    assert_eq!(resume_point(Some(&s), &identity()), ResumeDecision::Resume { from: 0 });
}

#[test]
fn other_release_conflicts() {
    let s = JournalState::new(header(&["a"]));
    let mut other = identity();
    other.release_version = "1.2.0".into();
    let ResumeDecision::Conflict { reason } = resume_point(Some(&s), &other) else { panic!("expected conflict") };
    assert!(reason.contains("unfinished upgrade to release 1.1.0"), "{reason}");
}

#[test]
fn other_mode_conflicts_and_names_the_command() {
    let s = JournalState::new(header(&["a"]));
    let mut other = identity();
    other.mode = "offline".into();
    let ResumeDecision::Conflict { reason } = resume_point(Some(&s), &other) else { panic!("expected conflict") };
    assert!(reason.contains("rerun that same command"), "{reason}");
    assert!(reason.contains("`upgrade online`"), "{reason}");
}

#[test]
fn cordon_tracking() {
    let mut s = JournalState::new(header(&["a"]));
    s.apply(&rec(Event::Cordoned { node: "w1".into() }));
    s.apply(&rec(Event::Cordoned { node: "w2".into() }));
    s.apply(&rec(Event::Uncordoned { node: "w1".into() }));
    assert_eq!(s.cordoned.iter().cloned().collect::<Vec<_>>(), vec!["w2".to_string()]);
}

fn workload(name: &str) -> MovedWorkload {
    MovedWorkload { kind: "Deployment".into(), namespace: "default".into(), name: name.into() }
}

#[test]
fn drained_workloads_survive_a_resume_and_a_redone_drain_adds_to_them() {
    let h = header(&["w1/drain", "w1/uncordon"]);
    let first = rec(Event::Draining { node: "w1".into(), workloads: vec![workload("web"), workload("api")] });
    // The drain was interrupted after evicting `web`: the redo sees only `api` (and a newcomer) on the node.
    let redo = rec(Event::Draining { node: "w1".into(), workloads: vec![workload("api"), workload("db")] });
    let s = parse("j", &text(&h, &[started("w1/drain"), first, started("w1/drain"), redo])).unwrap();
    let names: Vec<&str> = s.moved["w1"].iter().map(|w| w.name.as_str()).collect();
    assert_eq!(names, ["api", "db", "web"]);
    // Uncordoning does not forget them: the uncordon step itself may be redone and must wait for them again.
    let mut s = s;
    s.apply(&rec(Event::Uncordoned { node: "w1".into() }));
    assert_eq!(s.moved["w1"].len(), 3);
}

#[test]
fn draining_record_format_is_stable() {
    let r = rec(Event::Draining { node: "w1".into(), workloads: vec![workload("web")] });
    assert_eq!(
        serde_json::to_string(&r).unwrap(),
        r#"{"at_ms":2,"event":"draining","node":"w1","workloads":[{"kind":"Deployment","namespace":"default","name":"web"}]}"#
    );
}

#[test]
fn torn_last_line_is_ignored() {
    let h = header(&["a", "b"]);
    let mut t = text(&h, &[started("a"), finished("a")]);
    t.push_str("{\"at_ms\":3,\"event\":\"sta");
    let s = parse("j", &t).unwrap();
    assert_eq!(s.first_unfinished(), Some(1));
}

#[test]
fn corruption_in_the_middle_names_the_line() {
    let h = header(&["a"]);
    let t = text(&h, &[started("a")]).replace("\"started\"", "\"strted\"")
        + &serde_json::to_string(&finished("a")).unwrap()
        + "\n";
    let err = parse("runs/x/journal.jsonl", &t).unwrap_err();
    assert!(err.to_string().starts_with("runs/x/journal.jsonl:2: corrupt journal record"), "{err}");
}

#[test]
fn empty_and_foreign_format() {
    assert_eq!(parse("j", "").unwrap_err(), ParseError::Empty { file: "j".into() });
    let mut h = header(&[]);
    h.format = 99;
    let err = parse("j", &text(&h, &[])).unwrap_err();
    assert_eq!(err, ParseError::Format { file: "j".into(), found: 99 });
    assert!(matches!(parse("j", "not json\n").unwrap_err(), ParseError::Header { .. }));
}

#[test]
fn record_format_is_stable() {
    let r = rec(Event::Failed { step: "etcd/n1/etcd".into(), error: "x".into() });
    assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"at_ms":2,"event":"failed","step":"etcd/n1/etcd","error":"x"}"#);
}

#[test]
fn store_roundtrip_and_lock() {
    let dir = tempfile::tempdir().unwrap();
    let runs = store::RunsDir::new(dir.path().join("runs"));
    let lock = runs.lock().unwrap();
    let err = runs.lock().unwrap_err();
    assert!(err.to_string().contains("another kismatic run holds"), "{err}");
    assert!(runs.latest_journal().unwrap().is_none());
    let h = header(&["a", "b"]);
    let mut w = runs.create_run(&h).unwrap();
    w.append(&started("a")).unwrap();
    w.append(&finished("a")).unwrap();
    w.append(&started("b")).unwrap();
    drop(w);
    let (path, state) = runs.latest_journal().unwrap().unwrap();
    assert!(path.ends_with(&h.run_id));
    assert_eq!(state.status("a"), StepStatus::Done);
    assert_eq!(state.status("b"), StepStatus::Interrupted);
    drop(lock);
    runs.lock().unwrap();
}

proptest! {
    /// Whatever prefix of a sequential run survives a crash, the resume point is the first step not finished, and
    /// never skips a step that did not finish.
    #[test]
    fn resume_never_skips_unfinished(n in 1usize..12, cut in 0usize..30) {
        let steps: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let refs: Vec<&str> = steps.iter().map(|s| s.as_str()).collect();
        let h = header(&refs);
        let mut records = Vec::new();
        for s in &steps {
            records.push(started(s));
            records.push(finished(s));
        }
        let cut = cut.min(records.len());
        let state = parse("j", &text(&h, &records[..cut])).unwrap();
        let done = cut / 2;
        match resume_point(Some(&state), &identity()) {
            ResumeDecision::Fresh => prop_assert_eq!(done, n),
            ResumeDecision::Resume { from } => prop_assert_eq!(from, done),
            ResumeDecision::Conflict { .. } => prop_assert!(false),
        }
    }

    /// Truncating the file at any byte never yields an error other than an empty/partial header, and never marks a
    /// step done whose `finished` record was cut.
    #[test]
    fn any_truncation_is_safe(n in 1usize..6, at in 0usize..2000) {
        let steps: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let refs: Vec<&str> = steps.iter().map(|s| s.as_str()).collect();
        let h = header(&refs);
        let mut records = Vec::new();
        for s in &steps {
            records.push(started(s));
            records.push(finished(s));
        }
        let full = text(&h, &records);
        let at = at.min(full.len());
        let cut = &full[..at];
        if let Ok(state) = parse("j", cut) {
            let complete_lines = cut.matches('\n').count();
            let finished_kept = complete_lines.saturating_sub(1) / 2;
            let done = state.header.steps.iter().filter(|s| state.status(s) == StepStatus::Done).count();
            prop_assert_eq!(done, finished_kept);
        }
    }
}

mod view_tests {
    use super::*;
    use crate::view::{Lock, NodeState, RunState, StepKind, classify, view};

    const STEPS: [&str; 7] = [
        "stage/w1",
        "stage/w2",
        "worker/w1/cordon",
        "worker/w1/upgrade/kubelet",
        "worker/w1/markers",
        "worker/w2/upgrade/kubelet",
        "services/dns",
    ];

    fn at(ms: u64, event: Event) -> Record {
        Record { at_ms: ms, event }
    }

    fn attached(ms: u64, pid: u32, command: &[&str]) -> Record {
        at(
            ms,
            Event::Attached {
                pid,
                host: "admin1".into(),
                command: command.iter().map(|s| s.to_string()).collect(),
                cwd: "/srv/cluster".into(),
                version: "0.1.0".into(),
            },
        )
    }

    fn state(records: &[Record]) -> JournalState {
        let mut h = header(&STEPS);
        h.started_at_ms = 1_000;
        let mut s = JournalState::new(h);
        for r in records {
            s.apply(r);
        }
        s
    }

    fn first_node_done() -> Vec<Record> {
        let mut r = vec![attached(1_000, 42, &["kismatic", "upgrade", "online", "--discard-journal"])];
        for (i, s) in STEPS[..5].iter().enumerate() {
            let t = 2_000 + i as u64 * 1_000;
            r.push(at(t, Event::Started { step: s.to_string() }));
            r.push(at(t + 500, Event::Finished { step: s.to_string() }));
        }
        r.push(at(7_000, Event::Started { step: "worker/w2/upgrade/kubelet".into() }));
        r
    }

    #[test]
    fn step_ids_are_classified() {
        assert_eq!(classify("stage/w1"), StepKind::Stage { node: "w1" });
        assert_eq!(classify("etcd/snapshot/etcd-networking"), StepKind::Snapshot { cluster: "etcd-networking" });
        assert_eq!(
            classify("etcd/snapshot/markers"),
            StepKind::Node { phase: "etcd", node: "snapshot", action: "markers" },
            "a node named snapshot"
        );
        assert_eq!(
            classify("master/m1/upgrade/kube-apiserver"),
            StepKind::Node { phase: "master", node: "m1", action: "upgrade/kube-apiserver" }
        );
        assert_eq!(
            classify("apiservers/m1/upgrade/kube-apiserver"),
            StepKind::Node { phase: "apiservers", node: "m1", action: "upgrade/kube-apiserver" },
            "the split master phase"
        );
        assert_eq!(classify("registry/registry"), StepKind::Service { phase: "registry", component: "registry" });
        assert_eq!(classify("something/else/entirely/new"), StepKind::Other);
    }

    #[test]
    fn running_run_shows_the_holder_and_counts_the_open_step_up_to_now() {
        let s = state(&first_node_done());
        let v = view(&s, Lock::Held { pid: Some(42), host: "admin1".into() }, 9_000);
        assert_eq!(
            v.state,
            RunState::Running { pid: Some(42), host: "admin1".into(), steps: vec!["worker/w2/upgrade/kubelet".into()] }
        );
        assert_eq!(v.nodes.done, vec!["w1"]);
        assert_eq!(v.nodes.in_progress, vec!["w2"]);
        assert_eq!(v.node_progress[1].state, NodeState::Running);
        assert_eq!(v.node_progress[1].elapsed_ms, 2_000, "started at 7 s, now 9 s");
        assert_eq!(v.node_progress[0].elapsed_ms, 1_500);
        assert_eq!(v.elapsed_ms, 8_000);
        assert_eq!(v.resume, None, "nothing to resume while it runs");
    }

    #[test]
    fn a_dead_process_leaves_an_abandoned_run_and_the_resume_drops_discard_journal() {
        let s = state(&first_node_done());
        let v = view(&s, Lock::Free, 99_000);
        assert!(
            matches!(&v.state, RunState::Abandoned { steps, pid: Some(42), .. } if steps == &["worker/w2/upgrade/kubelet"])
        );
        assert_eq!(v.elapsed_ms, 6_000, "up to the last record, not now");
        let resume = v.resume.expect("resume");
        assert_eq!(resume.argv, vec!["kismatic", "upgrade", "online"]);
        assert_eq!(resume.shell, "cd /srv/cluster && kismatic upgrade online");
    }

    #[test]
    fn stopped_names_the_failed_step_and_a_resume_reopens_the_run() {
        let mut r = first_node_done();
        r.push(at(8_000, Event::Failed { step: "worker/w2/upgrade/kubelet".into(), error: "boom".into() }));
        r.push(at(8_100, Event::Ended { completed: false, message: "worker/w2/upgrade/kubelet: boom".into() }));
        let s = state(&r);
        let v = view(&s, Lock::Free, 99_000);
        assert_eq!(
            v.state,
            RunState::Stopped {
                step: Some("worker/w2/upgrade/kubelet".into()),
                message: "worker/w2/upgrade/kubelet: boom".into()
            }
        );
        assert_eq!(v.node_progress[1].state, NodeState::Failed);
        // A format 1 journal has no `attached` record: a start after the end is a resume.
        r.push(at(9_000, Event::Started { step: "worker/w2/upgrade/kubelet".into() }));
        let s = state(&r);
        assert_eq!(s.ended, None);
        assert!(matches!(view(&s, Lock::Free, 99_000).state, RunState::Abandoned { .. }));
    }

    #[test]
    fn finished_run_has_no_resume_and_a_replanned_node_is_done() {
        let mut r = first_node_done();
        // The resumed run found w2's kubelet at its target and planned only its markers (not in the header).
        r.push(attached(10_000, 43, &["kismatic", "upgrade", "online"]));
        r.push(at(11_000, Event::Started { step: "worker/w2/markers".into() }));
        r.push(at(11_500, Event::Finished { step: "worker/w2/markers".into() }));
        r.push(at(12_000, Event::Started { step: "services/dns".into() }));
        r.push(at(13_000, Event::Finished { step: "services/dns".into() }));
        r.push(at(13_100, Event::Ended { completed: true, message: "ok".into() }));
        let s = state(&r);
        let v = view(&s, Lock::Free, 99_000);
        assert_eq!(v.state, RunState::Finished { message: "ok".into() });
        assert_eq!(v.nodes.done, vec!["w1", "w2"]);
        assert_eq!(v.attempts.len(), 2);
        assert_eq!(v.command.argv.as_deref(), Some(&["kismatic".to_string(), "upgrade".into(), "online".into()][..]));
        assert_eq!(v.resume, None);
        assert_eq!(v.elapsed_ms, 12_100);
    }

    #[test]
    fn snapshots_and_attached_records_round_trip() {
        let r = at(
            5,
            Event::Snapshot {
                cluster: "etcd".into(),
                node: "etcd01".into(),
                path: "/var/lib/kismatic/backups/x.db".into(),
            },
        );
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"at_ms":5,"event":"snapshot","cluster":"etcd","node":"etcd01","path":"/var/lib/kismatic/backups/x.db"}"#
        );
        let a = serde_json::to_string(&attached(6, 7, &["kismatic"])).unwrap();
        assert_eq!(
            a,
            r#"{"at_ms":6,"event":"attached","pid":7,"host":"admin1","command":["kismatic"],"cwd":"/srv/cluster","version":"0.1.0"}"#
        );
        let s = state(&[r]);
        assert_eq!(s.snapshots["etcd"].node, "etcd01");
    }

    #[test]
    fn format_1_journals_are_still_read() {
        let mut h = header(&["a"]);
        h.format = 1;
        let s = parse("j", &text(&h, &[started("a")])).expect("format 1 reads");
        assert_eq!(s.status("a"), StepStatus::Interrupted);
        let v = view(&s, Lock::Free, 10);
        assert!(v.resume.expect("resume").shell.starts_with("kismatic upgrade online -f PLAN --release DIR"));
    }
}
