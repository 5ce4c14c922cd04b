//! Analysis + planning on a generated 5,000-node / 150,000-pod cluster, against the floor: serde_json
//! deserialization of the same facts, measured in the same run. Target (issue 5): analysis + planning ≤ 1× the
//! floor; end-to-end ≤ 2×.
//!
//! Besides criterion's wall-clock figures, prints the ratios explicitly: medians of thread CPU time over interleaved
//! rounds (deserialize, analyse + plan, one after the other), so a machine shared with other work skews both sides
//! alike. Also planning with worker batches (`--max-unavailable 25%`, issue 13: ≤ 1× the floor) on the same
//! cluster with its workers spread over 8 zones and a PodDisruptionBudget on every other Deployment. `BENCH_NODES` / `BENCH_PODS` change the size; `BENCH_ROUNDS` the rounds of the ratio (default 7).
use criterion::{Criterion, criterion_group, criterion_main};
use kismatic_core::Release;
use kismatic_core::checks::{CheckOptions, Mode, analyze};
use kismatic_core::facts::{Facts, IntOrPercent, LabelSelector, PodDisruptionBudget};
use kismatic_core::planner::{PhaseKind, PlanOptions, UpgradePlan, plan};
use std::hint::black_box;
use std::time::Duration;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// On-CPU time of this thread from `/proc/thread-self/schedstat` (Linux), else wall time since the first call.
fn cpu() -> Duration {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .map_or_else(|| START.get_or_init(std::time::Instant::now).elapsed(), Duration::from_nanos)
}

fn analyse_and_plan(facts: &Facts, release: &Release, mode: Mode) -> UpgradePlan {
    let a = analyze(facts, release, &CheckOptions::new(mode)).expect("analysis");
    plan(facts, &a, release, &PlanOptions { partial_ok: true, ..PlanOptions::new(mode) })
}

/// Workers over 8 zones, and a budget allowing one disruption on every other Deployment: batching has work to do.
fn zoned_with_budgets(mut facts: Facts) -> Facts {
    let zones = ["a", "b", "c", "d", "e", "f", "g", "h"];
    if let Some(kube) = facts.kube.as_mut() {
        for (i, n) in kube.nodes.iter_mut().filter(|n| n.name.starts_with("worker")).enumerate() {
            n.labels = [("topology.kubernetes.io/zone", zones[i % zones.len()])].into();
        }
        let budgets: Vec<PodDisruptionBudget> = kube
            .deployments
            .iter()
            .step_by(2)
            .map(|d| (d, d.desired_replicas.unwrap_or(1)))
            .map(|(d, desired)| PodDisruptionBudget {
                namespace: d.namespace.clone(),
                name: d.name.clone(),
                selector: Some(LabelSelector { match_labels: [("app", d.name.as_str())].into(), ..Default::default() }),
                min_available: Some(IntOrPercent::Int(desired - 1)),
                max_unavailable: None,
                disruptions_allowed: 1,
                current_healthy: desired,
                desired_healthy: desired - 1,
                expected_pods: desired,
            })
            .collect();
        kube.pdbs.extend(budgets);
    }
    facts
}

fn batched_options() -> PlanOptions {
    // Every worker planned (the generated cluster's unsafe pods would flag most of them): batching sees them all.
    PlanOptions {
        ignore_safety_checks: true,
        max_unavailable: "25%".parse().expect("25%"),
        ..PlanOptions::new(Mode::Online)
    }
}

/// Interleaved rounds of deserialize and planning with batches (the analysis done once, outside).
fn batching_ratio(zoned: &Facts, release: &Release) {
    let json = serde_json::to_vec(zoned).expect("serialize");
    let analysis = analyze(zoned, release, &CheckOptions::new(Mode::Online)).expect("analysis");
    let opts = batched_options();
    let rounds = env("BENCH_ROUNDS", 7).max(1);
    let (mut de, mut pl) = (Vec::new(), Vec::new());
    let mut batches = 0;
    for _ in 0..rounds {
        let t = cpu();
        let f: Facts = serde_json::from_slice(black_box(&json)).expect("parse");
        de.push((cpu() - t).as_secs_f64());
        drop(black_box(f));
        let t = cpu();
        let p = plan(black_box(zoned), &analysis, release, &opts);
        pl.push((cpu() - t).as_secs_f64());
        batches = p.phases.iter().filter(|ph| ph.kind == PhaseKind::Worker).map(|ph| ph.batches.len()).sum();
    }
    let (de, pl) = (median(de), median(pl));
    eprintln!(
        "batching (median thread CPU of {rounds} rounds): deserialize {de:.3}s, planning with --max-unavailable 25% \
         {pl:.3}s ({batches} worker batches); planning / deserialize = {:.2} (target ≤ 1)",
        pl / de
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Interleaved rounds of: deserialize, analyse + plan (online), end-to-end (deserialize + analyse + plan + render).
fn ratios(json: &[u8], facts: &Facts, release: &Release) {
    let rounds = env("BENCH_ROUNDS", 7).max(1);
    let (mut de, mut ap, mut e2e) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = cpu();
        let f: Facts = serde_json::from_slice(black_box(json)).expect("parse");
        de.push((cpu() - t).as_secs_f64());
        drop(black_box(f));
        let t = cpu();
        black_box(analyse_and_plan(black_box(facts), release, Mode::Online));
        ap.push((cpu() - t).as_secs_f64());
        let t = cpu();
        let f: Facts = serde_json::from_slice(black_box(json)).expect("parse");
        let p = analyse_and_plan(&f, release, Mode::Online);
        black_box(kismatic_core::render::plan_json(&p));
        e2e.push((cpu() - t).as_secs_f64());
    }
    let (de, ap, e2e) = (median(de), median(ap), median(e2e));
    eprintln!(
        "ratios (median thread CPU of {rounds} rounds): deserialize {de:.3}s, analysis+planning {ap:.3}s, \
         end-to-end {e2e:.3}s; analysis+planning / deserialize = {:.2} (target ≤ 1), end-to-end / deserialize = \
         {:.2} (target ≤ 2)",
        ap / de,
        e2e / de
    );
}

fn bench(c: &mut Criterion) {
    let nodes = env("BENCH_NODES", 5000);
    let pods = env("BENCH_PODS", 150_000);
    let facts = kismatic_core::synth::generate(nodes, pods);
    let release = kismatic_core::synth::release();
    let json = serde_json::to_vec(&facts).expect("serialize");
    eprintln!(
        "facts: {} nodes, {} pods, {} bytes of JSON",
        nodes,
        facts.kube.as_ref().map_or(0, |k| k.pods.len()),
        json.len()
    );
    ratios(&json, &facts, &release);
    let zoned = zoned_with_budgets(facts.clone());
    batching_ratio(&zoned, &release);
    let mut g = c.benchmark_group(format!("cluster-{nodes}x{pods}"));
    g.sample_size(10);
    g.bench_function("floor: serde_json deserialize facts", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Facts>(black_box(&json)).expect("parse")))
    });
    for mode in [Mode::Online, Mode::Offline] {
        g.bench_function(format!("analysis+planning {mode}"), |b| {
            b.iter(|| black_box(analyse_and_plan(black_box(&facts), &release, mode)))
        });
    }
    {
        let analysis = analyze(&zoned, &release, &CheckOptions::new(Mode::Online)).expect("analysis");
        let opts = batched_options();
        g.bench_function("planning with batches (--max-unavailable 25%, 8 zones, budgets)", |b| {
            b.iter(|| black_box(plan(black_box(&zoned), &analysis, &release, &opts)))
        });
    }
    g.bench_function("end-to-end: deserialize + analysis + planning + render online", |b| {
        b.iter(|| {
            let f: Facts = serde_json::from_slice(black_box(&json)).expect("parse");
            let p = analyse_and_plan(&f, &release, Mode::Online);
            black_box(kismatic_core::render::plan_json(&p))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
