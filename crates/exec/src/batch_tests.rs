//! Online worker batches driven by fakes of both I/O interfaces: a real plan (core's planner, `--max-unavailable
//! 3` over six workers of one zone: two batches of three), a real journal in a temporary folder. The live state
//! the re-check reads, a drain that times out and an interrupt are injected; each test checks what the run did,
//! what the journal says and what a rerun does.

use super::*;
use crate::run::interp_tests::{Fake, Fault, Interrupt, test_config};
use kismatic_core::checks::{CheckOptions, Mode};
use kismatic_core::facts::{KubeFacts, PodDisruptionBudget};
use kismatic_core::planner::PlanOptions;
use kismatic_core::synth;
use kismatic_journal::StepStatus;

const ZONE: &str = "topology.kubernetes.io/zone";

struct Harness {
    _dir: tempfile::TempDir,
    plan: UpgradePlan,
    inventory: Inventory,
    release: Release,
    cfg: ExecConfig,
    /// The cluster as planned (what the live re-check sees unless a test changes it).
    kube: KubeFacts,
}

/// 3 etcd, 3 masters, six workers `worker00006..11` in zone `a`, planned online with `--max-unavailable 3`.
fn harness(on_drain_timeout: OnDrainTimeout) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut release = synth::release();
    release.dir = dir.path().join("release");
    std::fs::create_dir_all(&release.dir).unwrap();
    std::fs::write(release.dir.join(kismatic_release::RELEASE_FILE), "synthetic\n").unwrap();
    let mut facts = synth::generate(12, 0);
    let kube = facts.kube.as_mut().unwrap();
    for n in kube.nodes.iter_mut().filter(|n| n.name.starts_with("worker")) {
        n.labels = [(ZONE, "a")].into();
    }
    let opts = PlanOptions {
        ignore_safety_checks: true,
        max_unavailable: kismatic_core::batching::MaxUnavailable::Count(3),
        ..PlanOptions::new(Mode::Online)
    };
    let analysis = kismatic_core::checks::analyze(&facts, &release, &CheckOptions::new(Mode::Online)).unwrap();
    let plan = kismatic_core::planner::plan(&facts, &analysis, &release, &opts);
    assert!(!plan.is_blocked(), "{:?}", plan.status);
    let workers = plan.phases.iter().find(|p| p.kind == PhaseKind::Worker).unwrap();
    let sizes: Vec<usize> = workers.batches.iter().map(|b| b.nodes.len()).collect();
    assert_eq!(sizes, [3, 3], "two batches of three");
    let cfg = test_config(dir.path(), BTreeMap::new(), on_drain_timeout);
    let kube = facts.kube.clone().unwrap();
    Harness { _dir: dir, plan, inventory: facts.inventory, release, cfg, kube }
}

impl Harness {
    async fn run(&self, fake: &Fake) -> Outcome {
        let runs = RunsDir::new(&self.cfg.runs_dir);
        let mut interrupts = Interrupt(fake.interrupt.clone());
        interpret(&self.plan, &self.inventory, &self.release, &self.cfg, &runs, fake, fake, &mut interrupts)
            .await
            .expect("the run ends with an outcome")
    }

    fn journal(&self) -> kismatic_journal::JournalState {
        RunsDir::new(&self.cfg.runs_dir).latest_journal().unwrap().expect("a journal").1
    }

    /// The live state with a Deployment `web` whose ready pods sit on `on`, under a budget allowing `allowed`.
    fn live_with_budget(&self, on: &[&str], allowed: i64) -> KubeFacts {
        let mut k = self.kube.clone();
        k.deployments.push(synth::controller("default", "web", "d-web", on.len() as i64, vec![]));
        k.replica_sets.push(synth::controller(
            "default",
            "web-rs",
            "rs-web",
            on.len() as i64,
            vec![synth::owner("Deployment", "web", "d-web")],
        ));
        for (i, n) in on.iter().enumerate() {
            let owners = vec![synth::owner("ReplicaSet", "web-rs", "rs-web")];
            k.pods.push(synth::pod("default", &format!("web-{i}"), n, owners, "web"));
        }
        let healthy = on.len() as i64;
        k.pdbs.push(PodDisruptionBudget {
            namespace: "default".into(),
            name: "web".into(),
            selector: Some(kismatic_core::facts::LabelSelector {
                match_labels: [("app", "web")].into(),
                ..Default::default()
            }),
            min_available: Some(kismatic_core::facts::IntOrPercent::Int(healthy - allowed)),
            max_unavailable: None,
            disruptions_allowed: allowed,
            current_healthy: healthy,
            desired_healthy: healthy - allowed,
            expected_pods: healthy,
        });
        k
    }
}

const W: [&str; 6] = ["worker00006", "worker00007", "worker00008", "worker00009", "worker00010", "worker00011"];

#[tokio::test]
async fn a_batch_the_live_state_permits_runs_whole_with_the_next_batch_tainted_until_its_uncordon() {
    let h = harness(OnDrainTimeout::Stop);
    let fake = Fake::with_live(&[], Some(h.kube.clone()));
    let out = h.run(&fake).await;
    assert!(out.completed, "{}", out.message);
    // Re-checked before the batch is cordoned; the whole batch cordoned before any drain; the next batch tainted
    // before the first drain.
    assert!(fake.pos("live facts") < fake.pos("cordon worker00006"));
    for w in &W[..3] {
        assert!(fake.pos(&format!("cordon {w}")) < fake.pos("drain worker00006"));
    }
    for w in &W[3..] {
        assert!(fake.pos(&format!("taint {w} PreferNoSchedule")) < fake.pos("drain worker00006"));
        // Removed just before its uncordon; never tainted twice.
        assert!(fake.pos(&format!("untaint {w}")) < fake.pos(&format!("uncordon {w}")));
        assert_eq!(fake.calls().iter().filter(|c| **c == format!("untaint {w}")).count(), 1);
    }
    assert!(
        W[..3].iter().all(|w| !fake.called(&format!("taint {w} PreferNoSchedule"))),
        "the first batch is not tainted"
    );
    let j = h.journal();
    assert!(j.tainted.is_empty() && j.cordoned.is_empty() && j.left_out.is_empty() && j.splits.is_empty());
    assert_eq!(j.steps.get("batch/worker00006/prefer-no-schedule"), Some(&StepStatus::Done));
    assert_eq!(j.steps.get("worker/worker00009/untaint"), Some(&StepStatus::Done));
}

#[tokio::test]
async fn the_live_recheck_splits_a_batch_the_live_state_no_longer_permits() {
    let h = harness(OnDrainTimeout::Stop);
    // Planned with no budget; live, web has pods on 06 and 07 and its budget allows one disruption.
    let live = h.live_with_budget(&["worker00006", "worker00007", "worker00009"], 1);
    let fake = Fake::with_live(&[], Some(live));
    let out = h.run(&fake).await;
    assert!(out.completed, "{}", out.message);
    let j = h.journal();
    let parts = |ws: &[&[&str]]| ws.iter().map(|p| p.iter().map(|s| s.to_string()).collect()).collect::<Vec<_>>();
    assert_eq!(j.splits.get("worker/batch-1"), Some(&parts(&[&["worker00006", "worker00008"], &["worker00007"]])));
    // The parts run one after another: 07 is cordoned only once 06 and 08 are back with their workloads.
    assert!(fake.pos("workloads web-worker00006") < fake.pos("cordon worker00007"));
    assert!(fake.pos("workloads web-worker00008") < fake.pos("cordon worker00007"));
    // The second batch (09 with a budget pod, 10, 11) is permitted whole: not split.
    assert!(!j.splits.contains_key("worker/batch-2"));
    assert!(W.iter().all(|w| fake.called(&format!("markers {w}"))));
}

#[tokio::test]
async fn a_node_whose_drain_times_out_is_left_out_with_skip_and_retried_by_the_rerun() {
    let h = harness(OnDrainTimeout::Skip);
    let fake = Fake::with_live(&[("drain worker00010", Fault::DrainTimeout)], Some(h.kube.clone()));
    let out = h.run(&fake).await;
    assert!(!out.completed, "left out: the run is unfinished (exit 1)");
    assert!(out.message.contains("worker00010") && out.message.contains("PodDisruptionBudget default/web"));
    assert!(out.message.contains("left out"), "{}", out.message);
    assert_eq!(out.left_out.keys().collect::<Vec<_>>(), ["worker00010"]);
    // Untainted, then uncordoned (the other order races the node lifecycle controller's own taint patch), nothing
    // of it installed; every other worker upgraded; no service applied.
    assert!(fake.called("uncordon worker00010") && fake.called("untaint worker00010"));
    assert!(fake.pos("untaint worker00010") < fake.pos("uncordon worker00010"), "untainted before its uncordon");
    assert!(!fake.called("install worker00010 kubelet"));
    assert!(W.iter().filter(|w| **w != "worker00010").all(|w| fake.called(&format!("markers {w}"))));
    assert!(!fake.called("apply dns"), "the on-cluster services wait for the left-out node");
    let j = h.journal();
    assert!(j.left_out.get("worker00010").is_some_and(|r| r.contains("refused by PodDisruptionBudget")));
    assert!(j.cordoned.is_empty() && j.tainted.is_empty());
    assert_eq!(j.ended, Some(false));
    // The rerun retries it: cordon and drain again, upgrade, services; the others are not redone.
    let again = Fake::with_live(&[], Some(h.kube.clone()));
    let out = h.run(&again).await;
    assert!(out.completed && out.resumed, "{}", out.message);
    assert!(again.called("cordon worker00010") && again.called("drain worker00010"));
    assert!(again.called("markers worker00010") && again.called("apply dns"));
    assert!(!again.called("drain worker00006") && !again.called("live facts"), "finished steps are not redone");
    assert!(h.journal().left_out.is_empty());
}

#[tokio::test]
async fn with_stop_a_drain_timeout_stops_the_run_and_untaints_the_next_batch() {
    let h = harness(OnDrainTimeout::Stop);
    let fake = Fake::with_live(&[("drain worker00007", Fault::DrainTimeout)], Some(h.kube.clone()));
    let out = h.run(&fake).await;
    assert!(!out.completed && out.left_out.is_empty(), "{}", out.message);
    assert!(out.message.contains("worker/worker00007/drain"), "{}", out.message);
    // The abort's clean-up: the next batch's taint removed, this batch uncordoned.
    for w in &W[3..] {
        assert!(fake.called(&format!("taint {w} PreferNoSchedule")) && fake.called(&format!("untaint {w}")));
    }
    let j = h.journal();
    assert!(j.tainted.is_empty() && j.cordoned.is_empty(), "{:?} {:?}", j.tainted, j.cordoned);
    assert!(!fake.called("cordon worker00009"), "the run stopped before the next batch");
}

#[tokio::test]
async fn a_run_interrupted_in_the_middle_of_a_split_batch_resumes_exactly() {
    let h = harness(OnDrainTimeout::Stop);
    let live = h.live_with_budget(&["worker00006", "worker00007"], 1);
    let fake = Fake::with_live(&[("install worker00007 kubelet", Fault::Hang)], Some(live));
    let out = h.run(&fake).await;
    assert!(!out.completed);
    let j = h.journal();
    assert!(j.splits.contains_key("worker/batch-1"));
    assert_eq!(j.steps.get("worker/worker00006/uncordon"), Some(&StepStatus::Done), "part 1 finished");
    assert!(j.cordoned.is_empty() && j.tainted.is_empty(), "the abort uncordoned and untainted");
    // The rerun sees a live state that would permit the batch whole, yet follows the journaled split: no new
    // re-check, part 1 not redone, 07's cordon (undone by the abort) and drain redone.
    let again = Fake::with_live(&[], Some(h.kube.clone()));
    let out = h.run(&again).await;
    assert!(out.completed && out.resumed, "{}", out.message);
    assert!(!again.called("live facts") || again.pos("live facts") > again.pos("markers worker00007"));
    assert!(!again.called("drain worker00006") && !again.called("drain worker00008"));
    assert!(again.called("cordon worker00007") && again.called("drain worker00007"));
    assert!(again.pos("markers worker00007") < again.pos("cordon worker00009"));
    // The taint step was done before the interrupt; the abort removed the taint. The second batch still runs,
    // each node's untaint a no-op.
    assert!(W[3..].iter().all(|w| again.called(&format!("markers {w}"))));
    assert!(h.journal().tainted.is_empty());
}

#[test]
fn a_journaled_split_is_followed_only_for_the_batch_it_split() {
    let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let parts = vec![v(&["w1", "w3"]), v(&["w2"])];
    let whole = v(&["w1", "w2", "w3", "w4"]);
    // w4 drains nothing (not registered): it joins the first part.
    let draining: BTreeSet<&str> = ["w1", "w2", "w3"].into();
    assert_eq!(split_of(parts.clone(), &draining, &whole), Some(vec![v(&["w1", "w3", "w4"]), v(&["w2"])]));
    // A resumed run re-planned: its batch of this id holds other nodes; the old split does not apply.
    let replanned: BTreeSet<&str> = ["w2", "w3", "w5"].into();
    assert_eq!(split_of(parts, &replanned, &v(&["w2", "w3", "w5"])), None);
}
