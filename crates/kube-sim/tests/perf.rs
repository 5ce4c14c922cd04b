//! Measurements, not assertions on time (run with `--ignored --nocapture`):
//! - listing 10,000 pods through the API server;
//! - steady-state CPU of an idle 3-node simulated cluster, from /proc/<pid>/stat over 30 s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::Cluster;
use std::time::{Duration, Instant};

#[test]
#[ignore = "measurement; run explicitly"]
fn list_10000_pods() {
    let Some(c) = Cluster::start() else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let port = c.api_ports[0];
    let ca = std::fs::read(&c.pki.ca).unwrap();
    let mut id = std::fs::read(&c.pki.admin_cert).unwrap();
    id.extend(std::fs::read(&c.pki.admin_key).unwrap());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .identity(reqwest::Identity::from_pem(&id).unwrap())
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let total = 10_000usize;
    let created = Instant::now();
    rt.block_on(async {
        use futures_util::StreamExt;
        futures_util::stream::iter(0..total)
            .map(|i| {
                let http = http.clone();
                let url = format!("{base}/api/v1/namespaces/default/pods");
                async move {
                    let pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": format!("p-{i:05}"), "labels": {"app": "bulk", "n": (i % 10).to_string()}},
                        "spec": {"nodeName": format!("node{}", i % 3), "containers": [{"name": "c", "image": "busybox"}]}});
                    let r = http.post(url).json(&pod).send().await.unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
    });
    println!("created {total} pods in {} ms", created.elapsed().as_millis());
    for round in 0..3 {
        let t = Instant::now();
        let body =
            rt.block_on(async { http.get(format!("{base}/api/v1/pods")).send().await.unwrap().bytes().await.unwrap() });
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["items"].as_array().map(Vec::len), Some(total));
        println!(
            "round {round}: GET /api/v1/pods (10,000 items, {} bytes): {} ms",
            body.len(),
            t.elapsed().as_millis()
        );
    }
    let t = Instant::now();
    let o = c.k(&["get", "pods", "-A", "-o", "name"]);
    assert_eq!(o.lines().count(), total);
    println!("kubectl get pods -A -o name (paged by 500): {} ms", t.elapsed().as_millis());
    let t = Instant::now();
    let o = c.k(&["get", "pods", "-A", "--field-selector", "spec.nodeName=node1", "-o", "name"]);
    println!(
        "kubectl get pods -A --field-selector spec.nodeName=node1 ({} pods): {} ms",
        o.lines().count(),
        t.elapsed().as_millis()
    );
}

fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th fields.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
}

#[test]
#[ignore = "measurement; run explicitly"]
fn idle_cpu_3_nodes() {
    let Some(mut c) = Cluster::start() else { return };
    // Production-like intervals: 10 s heartbeats, 1 s sync loops.
    c.timing.heartbeat_ms = 10_000;
    c.timing.node_grace_ms = 40_000;
    c.start_control_plane();
    for n in ["node1", "node2", "node3"] {
        c.start_kubelet(n, None);
    }
    c.wait_nodes_ready(3);
    std::thread::sleep(Duration::from_secs(5));
    let pids: Vec<(String, u32)> = c.procs.iter().map(|(n, p)| (n.clone(), p.pid())).collect();
    let before: Vec<u64> = pids.iter().map(|(_, p)| cpu_ticks(*p)).collect();
    let window = 30.0;
    std::thread::sleep(Duration::from_secs(30));
    let hz = 100.0;
    let mut total = 0.0;
    for ((name, pid), b) in pids.iter().zip(before) {
        let pct = (cpu_ticks(*pid) - b) as f64 / hz / window * 100.0;
        total += pct;
        println!("{name:<20} {pct:6.2}% of one core");
    }
    println!("{:<20} {total:6.2}% of one core (idle 3-node cluster incl. etcd)", "total");
}
