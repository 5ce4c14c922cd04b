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
