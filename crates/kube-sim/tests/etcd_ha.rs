//! Restarting the members of a 3-member etcd cluster one at a time while a client writes and lists through the API
//! server: no acknowledged write is lost and `/readyz` recovers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{Cluster, wait_until};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn etcd_member_restarts_lose_no_acknowledged_write() {
    let Some(mut c) = Cluster::start_members(3) else { return };
    let port = c.api_ports[0];
    let ca = std::fs::read(&c.pki.ca).unwrap();
    let mut id = std::fs::read(&c.pki.admin_cert).unwrap();
    id.extend(std::fs::read(&c.pki.admin_key).unwrap());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .identity(reqwest::Identity::from_pem(&id).unwrap())
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{port}");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let failures = Arc::new(Mutex::new(0usize));
    let lists = Arc::new(Mutex::new(0usize));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (http, base, acked, failures, lists, stop) =
            (http.clone(), base.clone(), acked.clone(), failures.clone(), lists.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("w-{i:05}");
                    let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": i.to_string()}});
                    match http.post(format!("{base}/api/v1/namespaces/default/configmaps")).json(&cm).send().await {
                        Ok(r) if r.status().is_success() => acked.lock().unwrap().push(name),
                        _ => *failures.lock().unwrap() += 1,
                    }
                    if i.is_multiple_of(10)
                        && let Ok(r) = http.get(format!("{base}/api/v1/namespaces/default/configmaps?limit=50")).send().await
                        && r.status().is_success()
                    {
                        *lists.lock().unwrap() += 1;
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        })
    };
    let acked_count = || acked.lock().unwrap().len();
    wait_until("first writes", Duration::from_secs(30), || acked_count() >= 20);
    for m in 0..3 {
        let name = format!("etcd-{m}");
        c.stop(&name);
        let at_stop = acked_count();
        wait_until(&format!("writes continue while {name} is down"), Duration::from_secs(60), || {
            acked_count() >= at_stop + 20
        });
        c.start_etcd_member(m);
        let at_start = acked_count();
        wait_until(&format!("writes continue after {name} restarted"), Duration::from_secs(60), || {
            acked_count() >= at_start + 20
        });
        // Let the restarted member catch up before the next one goes down, keeping quorum.
        std::thread::sleep(Duration::from_secs(2));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    wait_until("/readyz ok", Duration::from_secs(30), || c.kubectl(&["get", "--raw", "/readyz"]).stdout == b"ok");
    let v = c.json(&["get", "configmaps", "-n", "default"]);
    let present: std::collections::HashSet<String> =
        v["items"].as_array().unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_string()).collect();
    let acked = acked.lock().unwrap();
    let lost: Vec<&String> = acked.iter().filter(|n| !present.contains(*n)).collect();
    println!(
        "acknowledged writes: {}, failed attempts: {}, successful lists: {}",
        acked.len(),
        failures.lock().unwrap(),
        lists.lock().unwrap()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(*lists.lock().unwrap() > 0);
}
