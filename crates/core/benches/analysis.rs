//! Analysis + planning on a generated 5,000-node / 150,000-pod cluster, against the floor: serde_json
//! deserialization of the same facts, measured in the same run. Target: analysis + planning ≤ 1× the floor.
use criterion::{Criterion, criterion_group, criterion_main};
use kismatic_core::checks::{CheckOptions, Mode, analyze};
use kismatic_core::facts::Facts;
use kismatic_core::planner::{PlanOptions, plan};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let nodes = std::env::var("BENCH_NODES").ok().and_then(|s| s.parse().ok()).unwrap_or(5000);
    let pods = std::env::var("BENCH_PODS").ok().and_then(|s| s.parse().ok()).unwrap_or(150_000);
    let facts = kismatic_core::synth::generate(nodes, pods);
    let release = kismatic_core::synth::release();
    let json = serde_json::to_vec(&facts).expect("serialize");
    eprintln!(
        "facts: {} nodes, {} pods, {} bytes of JSON",
        nodes,
        facts.kube.as_ref().map_or(0, |k| k.pods.len()),
        json.len()
    );
    let mut g = c.benchmark_group("cluster-5000x150000");
    g.sample_size(10);
    g.bench_function("floor: serde_json deserialize facts", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Facts>(black_box(&json)).expect("parse")))
    });
    for mode in [Mode::Online, Mode::Offline] {
        g.bench_function(format!("analysis+planning {mode}"), |b| {
            b.iter(|| {
                let a = analyze(black_box(&facts), &release, &CheckOptions::new(mode)).expect("analysis");
                let opts = PlanOptions { partial_ok: true, ..PlanOptions::new(mode) };
                black_box(plan(&facts, &a, &release, &opts))
            })
        });
    }
    g.bench_function("end-to-end: deserialize + analysis + planning online", |b| {
        b.iter(|| {
            let f: Facts = serde_json::from_slice(black_box(&json)).expect("parse");
            let a = analyze(&f, &release, &CheckOptions::new(Mode::Online)).expect("analysis");
            black_box(plan(&f, &a, &release, &PlanOptions { partial_ok: true, ..PlanOptions::new(Mode::Online) }))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
