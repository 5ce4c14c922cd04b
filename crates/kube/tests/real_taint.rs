//! The drain-soon taint of online worker batches against the real Kubernetes 1.20.2 kube-apiserver (the control
//! plane of real_apiserver.rs): added beside a node's other taints, idempotent, removed leaving the others, and
//! seen by the facts the live re-check reads. Run under `flock /tmp/kismatic-loopback.lock`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/real_control_plane.rs"]
mod support;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use std::time::{Duration, Instant};
use support::ControlPlane;

const KEY: &str = "upgrade.kismatic.io/drain-soon";

fn taints(n: &Node) -> Vec<(String, String)> {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|ts| ts.iter().map(|t| (t.key.clone(), t.effect.clone())).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_soon_taint_against_kubernetes_1_20() {
    let cp = ControlPlane::start(&[]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let client = loop {
        if let Ok(c) = kismatic_kube::connect_without_retry(&cp.kubeconfig).await
            && kismatic_kube::ready_version(&c).await.is_ok()
        {
            break c;
        }
        assert!(Instant::now() < deadline, "API server not ready\n{}", cp.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let n: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": "w1"},
        "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}))
    .unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();

    // The API server's admission adds its own (node.kubernetes.io/not-ready): every taint there is kept.
    let before = taints(&nodes.get("w1").await.unwrap());
    assert!(before.contains(&("dedicated".to_string(), "NoSchedule".to_string())));
    kismatic_kube::ops::set_taint(&client, "w1", KEY, Some("PreferNoSchedule")).await.unwrap();
    let after = nodes.get("w1").await.unwrap();
    let mut want = before.clone();
    want.push((KEY.to_string(), "PreferNoSchedule".to_string()));
    assert_eq!(taints(&after), want);
    // Again: nothing changes (not even the resourceVersion).
    kismatic_kube::ops::set_taint(&client, "w1", KEY, Some("PreferNoSchedule")).await.unwrap();
    assert_eq!(nodes.get("w1").await.unwrap().metadata.resource_version, after.metadata.resource_version);
    // The facts the live re-check reads see it.
    let facts = kismatic_kube::gather(&client, "test").await.unwrap();
    let w1 = facts.nodes.iter().find(|k| k.name == "w1").unwrap();
    assert!(w1.taints.iter().any(|t| t.key == KEY && t.effect == "PreferNoSchedule"));
    // Removed: the other taint stays; removing again is a no-op; an unknown node is an API error naming it.
    kismatic_kube::ops::set_taint(&client, "w1", KEY, None).await.unwrap();
    assert_eq!(taints(&nodes.get("w1").await.unwrap()), before);
    kismatic_kube::ops::set_taint(&client, "w1", KEY, None).await.unwrap();
    let e = kismatic_kube::ops::set_taint(&client, "gone", KEY, None).await.unwrap_err();
    assert!(e.to_string().contains("gone"), "{e}");
}
