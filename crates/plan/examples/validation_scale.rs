//! Plan validation against parsing, at scale (issue 12: validation must be linear in the nodes).
//! `cargo run --release -p kismatic-plan --example validation_scale -- 2500 10000 20000` (scripts/plan-validation-scale.sh).
//! Prints, per size: parse+migrate time, validation time and their ratio, best of three runs each.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

fn plan_text(workers: usize) -> String {
    let mut t = String::from(
        "cluster:\n  name: scale\n  version: v1.33.5\n  networking:\n    pod_cidr_block: 172.16.0.0/16\n    \
         service_cidr_block: 172.20.0.0/16\n  certificates:\n    expiry: 17520h\n  ssh:\n    user: root\n    \
         ssh_key: id_rsa\n    ssh_port: 22\netcd:\n  expected_count: 3\n  nodes:\n",
    );
    let node = |t: &mut String, host: &str, i: usize| {
        let ip = format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255);
        let _ = write!(t, "  - host: {host}\n    ip: {ip}\n    internalip: {ip}\n    labels: {{zone: z{}}}\n", i % 3);
    };
    for i in 0..3 {
        node(&mut t, &format!("etcd{i}"), i + 1);
    }
    t.push_str("master:\n  load_balancer: 10.255.255.250:6443\n  expected_count: 3\n  nodes:\n");
    for i in 0..3 {
        node(&mut t, &format!("master{i}"), i + 10);
    }
    let _ = writeln!(t, "worker:\n  expected_count: {workers}\n  nodes:");
    for i in 0..workers {
        node(&mut t, &format!("worker{i:06}"), i + 100);
    }
    t
}

fn best<T>(f: impl Fn() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..3 {
        let start = Instant::now();
        let v = f();
        best = best.min(start.elapsed());
        out = Some(v);
    }
    (best, out.expect("ran"))
}

fn main() {
    let sizes: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("node count")).collect();
    let sizes = if sizes.is_empty() { vec![2_500, 10_000, 20_000] } else { sizes };
    println!(
        "{:>7} {:>10} {:>10} {:>12} {:>15} {:>16}",
        "nodes", "bytes", "parse ms", "validate ms", "parse() all ms", "validate/parse"
    );
    for n in sizes {
        let text = plan_text(n.saturating_sub(6));
        let path = Path::new("/nonexistent/plan.yaml");
        let (parse, plan) = best(|| kismatic_plan::read(&text, path).expect("parses"));
        let (validate, diags) = best(|| kismatic_plan::validate(&plan));
        assert!(diags.is_empty(), "{:?}", diags.first());
        // read + validate + derive the inventory: what `kismatic` does with a plan file (key file aside).
        let (all, _) = best(|| kismatic_plan::parse(&text, path).expect("valid"));
        println!(
            "{n:>7} {:>10} {:>10.1} {:>12.1} {:>15.1} {:>16.2}",
            text.len(),
            parse.as_secs_f64() * 1e3,
            validate.as_secs_f64() * 1e3,
            all.as_secs_f64() * 1e3,
            validate.as_secs_f64() / parse.as_secs_f64()
        );
    }
}
