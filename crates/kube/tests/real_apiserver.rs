//! kismatic's Kubernetes access against the real Kubernetes 1.20.2 kube-apiserver (built by
//! scripts/build-kubernetes.sh from Debian's source) on a real etcd, with the real controller-manager's disruption
//! controller computing the budgets' status: facts in the served API versions, cordon, a drain refused by a
//! `policy/v1beta1` budget naming the pod and the budget, and a v1beta1 budget with an empty selector (which in
//! v1beta1 protects no pod). Run under `flock /tmp/kismatic-loopback.lock`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/real_control_plane.rs"]
mod support;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::ControlPlane;

async fn until<T, F: std::future::Future<Output = Option<T>>>(
    cp: &ControlPlane,
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} not within {limit:?}\n{}", cp.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A client of the control plane once its API server answers `/readyz`.
async fn ready_client(cp: &ControlPlane) -> kube::Client {
    until(cp, "the API server's /readyz", Duration::from_secs(120), || async {
        let c = kismatic_kube::connect_without_retry(&cp.kubeconfig).await.ok()?;
        kismatic_kube::ready_version(&c).await.ok().map(|_| c)
    })
    .await
}

fn obj<K: serde::de::DeserializeOwned>(v: serde_json::Value) -> K {
    serde_json::from_value(v).unwrap()
}

/// A ready pod on `node`, without owner, deleted at once when evicted (grace 0: no kubelet runs here).
async fn ready_pod(client: &kube::Client, ns: &str, name: &str, node: &str, app: &str) {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let pod: Pod = obj(serde_json::json!({"metadata": {"name": name, "labels": {"app": app}},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 0, "automountServiceAccountToken": false, "containers": [{"name": "c", "image": "busybox"}]}}));
    api.create(&PostParams::default(), &pod).await.unwrap();
    let status = serde_json::json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_cordon_and_drains_against_kubernetes_1_20() {
    let started = Instant::now();
    let cp = ControlPlane::start(&["disruption"]);
    let bin = cp.bin.clone();
    let client = until(&cp, "the API server's /readyz", Duration::from_secs(120), || async {
        let c = kismatic_kube::connect_without_retry(&cp.kubeconfig).await.ok()?;
        let v = kismatic_kube::ready_version(&c).await.ok()?;
        assert_eq!(v, "v1.20.2");
        Some(c)
    })
    .await;
    eprintln!("kube-apiserver v1.20.2 ready {:.1} s after start", started.elapsed().as_secs_f64());

    for ns in ["shop", "other"] {
        let n: Namespace = obj(serde_json::json!({"metadata": {"name": ns}}));
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &n).await.unwrap();
        // What the serviceaccount controller would create (the ServiceAccount admission plugin wants it).
        let sa: ServiceAccount = obj(serde_json::json!({"metadata": {"name": "default"}}));
        Api::<ServiceAccount>::namespaced(client.clone(), ns).create(&PostParams::default(), &sa).await.unwrap();
    }
    for node in ["w1", "w2"] {
        let n: Node = obj(serde_json::json!({"metadata": {"name": node}}));
        Api::<Node>::all(client.clone()).create(&PostParams::default(), &n).await.unwrap();
    }
    ready_pod(&client, "shop", "web-0", "w1", "web").await;
    ready_pod(&client, "shop", "web-1", "w2", "web").await;
    ready_pod(&client, "other", "lone", "w2", "lone").await;

    // A policy/v1 manifest applies on 1.20 as policy/v1beta1; a v1beta1 manifest applies as written, here with an
    // empty selector, which in v1beta1 protects no pod.
    let applied = kismatic_kube::apply::apply(
        &client,
        "budgets.yaml",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web, namespace: shop}\n\
         spec: {minAvailable: 2, selector: {matchLabels: {app: web}}}\n---\n\
         apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: everything, namespace: other}\n\
         spec: {minAvailable: 1, selector: {}}\n",
    )
    .await
    .unwrap();
    assert_eq!(applied.len(), 2);
    // The disruption controller has judged both budgets once the web budget counts its two pods.
    until(&cp, "the disruption controller's budget status", Duration::from_secs(120), || async {
        let f = kismatic_kube::gather(&client, "test").await.ok()?;
        let web = f.pdbs.iter().find(|b| b.name == "web")?;
        (web.current_healthy == 2 && web.expected_pods == 2).then_some(())
    })
    .await;

    let t = Instant::now();
    let facts = kismatic_kube::gather(&client, "test").await.unwrap();
    eprintln!("gather: {:.0} ms", t.elapsed().as_secs_f64() * 1000.0);
    assert_eq!(facts.list_errors, vec![], "every list reads on 1.20");
    assert_eq!(facts.api_servers[0].version.as_deref(), Some("v1.20.2"));
    assert_eq!(facts.api_versions["poddisruptionbudgets"], "policy/v1beta1");
    assert_eq!(facts.api_versions["pods"], "v1");
    assert_eq!(facts.api_versions["deployments"], "apps/v1");
    assert_eq!(facts.nodes.len(), 2);
    assert_eq!(facts.pods.len(), 3);
    let web = facts.pdbs.iter().find(|b| b.name == "web").unwrap();
    assert_eq!((web.disruptions_allowed, web.current_healthy), (0, 2));
    assert_eq!(web.selector.as_ref().unwrap().match_labels["app"], "web");
    let everything = facts.pdbs.iter().find(|b| b.name == "everything").unwrap();
    assert_eq!(everything.selector, None, "an empty v1beta1 selector matches no pod");
    assert_eq!(everything.expected_pods, 0, "the real disruption controller agrees: it counts no pod");

    // Cordon and a drain the budget refuses: the error names the pod and the budget.
    kismatic_kube::ops::cordon(&client, "w1").await.unwrap();
    let w1 = Api::<Node>::all(client.clone()).get("w1").await.unwrap();
    assert_eq!(w1.spec.unwrap().unschedulable, Some(true));
    let drain = kismatic_kube::ops::drain(&client, "w1", Duration::from_secs(6), |_| Ok(())).await;
    let err = drain.unwrap_err().to_string();
    assert!(
        err.contains("evicting pod shop/web-0 is refused by PodDisruptionBudget shop/web")
            && err.contains("disruptions allowed 0, healthy 2/2"),
        "{err}"
    );
    assert!(Api::<Pod>::namespaced(client.clone(), "shop").get_opt("web-0").await.unwrap().is_some());

    // Cross-check with kubectl v1.20.2 (built from the same tree): it is refused by the same budget.
    let kubectl = Command::new(bin.join("kubectl"))
        .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
        .args(["drain", "w1", "--force", "--timeout=6s"])
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&kubectl.stdout), String::from_utf8_lossy(&kubectl.stderr));
    assert!(!kubectl.status.success(), "{said}");
    assert!(said.contains("Cannot evict pod as it would violate the pod's disruption budget"), "{said}");

    // The empty-selector budget does not hold `lone`; web-1 on w2 is held by the web budget, so lift that first.
    let relax = serde_json::json!({"spec": {"minAvailable": 0}});
    let ar = kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("policy", "v1beta1", "PodDisruptionBudget"),
        "poddisruptionbudgets",
    );
    Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), "shop", &ar)
        .patch("web", &PatchParams::default(), &Patch::Merge(&relax))
        .await
        .unwrap();
    until(&cp, "the relaxed budget's status", Duration::from_secs(120), || async {
        let f = kismatic_kube::gather(&client, "test").await.ok()?;
        (f.pdbs.iter().find(|b| b.name == "web")?.disruptions_allowed == 2).then_some(())
    })
    .await;
    kismatic_kube::ops::cordon(&client, "w2").await.unwrap();
    let t = Instant::now();
    let moved = kismatic_kube::ops::drain(&client, "w2", Duration::from_secs(30), |_| Ok(())).await.unwrap();
    eprintln!("drain of w2 (2 pods): {:.0} ms", t.elapsed().as_secs_f64() * 1000.0);
    assert_eq!(moved, BTreeSet::new(), "owner-less pods move no workload");
    let left = Api::<Pod>::all(client.clone()).list(&Default::default()).await.unwrap();
    let names: Vec<String> = left.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert_eq!(names, vec!["web-0".to_string()], "w2's pods were evicted, w1's refused one stays");

    kismatic_kube::ops::uncordon(&client, "w1").await.unwrap();
}

/// Measurement, not an assertion on time (run with `--run-ignored only --no-capture` under the loopback lock): the
/// Kubernetes part of `kismatic facts` (connect + [`kismatic_kube::gather`]) against kubectl v1.20.2 reading the same
/// lists as JSON, on the real API server holding 10,000 pods, alternating, in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn gather_10000_pods_against_kubectl() {
    use futures::StreamExt;
    let cp = ControlPlane::start(&[]);
    let bin = cp.bin.clone();
    let client = ready_client(&cp).await;
    let sa: ServiceAccount = obj(serde_json::json!({"metadata": {"name": "default"}}));
    Api::<ServiceAccount>::namespaced(client.clone(), "default").create(&PostParams::default(), &sa).await.unwrap();
    for i in 0..4 {
        let n: Node = obj(serde_json::json!({"metadata": {"name": format!("node{i}")}}));
        Api::<Node>::all(client.clone()).create(&PostParams::default(), &n).await.unwrap();
    }
    let total = 10_000usize;
    let t = Instant::now();
    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..total)
        .map(|i| {
            let api = api.clone();
            async move {
                let pod: Pod = obj(serde_json::json!({"metadata": {"name": format!("p-{i:05}"),
                    "labels": {"app": "bulk", "n": (i % 10).to_string()}},
                    "spec": {"nodeName": format!("node{}", i % 4), "automountServiceAccountToken": false,
                        "containers": [{"name": "c", "image": "busybox"}]}}));
                api.create(&PostParams::default(), &pod).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    eprintln!("created {total} pods in {:.1} s", t.elapsed().as_secs_f64());
    let lists = "nodes,pods,replicasets,deployments,statefulsets,daemonsets,jobs,replicationcontrollers,pvc,pv,pdb";
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let c = kismatic_kube::connect(&cp.kubeconfig).await.unwrap();
        let f = kismatic_kube::gather(&c, "bench").await.unwrap();
        ours.push(t.elapsed().as_secs_f64());
        assert_eq!(f.pods.len(), total);
        assert!(f.list_errors.is_empty(), "{:?}", f.list_errors);
        let t = Instant::now();
        let out = Command::new(bin.join("kubectl"))
            .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
            .args(["get", lists, "-A", "-o", "json"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        theirs.push(t.elapsed().as_secs_f64());
        assert!(out.success());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (o, k) = (median(&mut ours), median(&mut theirs));
    eprintln!(
        "10,000 pods, median of 5: kismatic gather {:.0} ms, kubectl v1.20.2 get {lists} -A -o json {:.0} ms: {:.2}x",
        o * 1000.0,
        k * 1000.0,
        o / k
    );
}

/// The live part of the `removed-api` gate on 1.20: an Ingress applied by kubectl in `networking.k8s.io/v1beta1`
/// (removed in 1.22) and a client listing `extensions/v1beta1` Ingresses are both found — the object by its
/// last-applied configuration and managed fields, the calls by the API server's own
/// `apiserver_requested_deprecated_apis` metric — and the gate's rules name both for a move to 1.22.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_api_uses_against_kubernetes_1_20() {
    use kismatic_core::removed_api;
    let cp = ControlPlane::start(&[]);
    let bin = cp.bin.clone();
    let client = ready_client(&cp).await;
    let served = kismatic_kube::served::discover(&client).await.unwrap();
    let later: Vec<&removed_api::RemovedApi> = removed_api::crossed(20, u64::MAX).collect();
    // Nothing uses a removed API yet: no object, and no removed-API call in the metric.
    let (uses, errors) = kismatic_kube::usage::object_uses(&client, &served, &later).await;
    assert_eq!((uses.len(), errors), (0, vec![]), "{uses:?}");

    let ns: Namespace = obj(serde_json::json!({"metadata": {"name": "shop"}}));
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.unwrap();
    let manifest = cp.dir.path().join("ingress.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: networking.k8s.io/v1beta1\nkind: Ingress\nmetadata: {name: web, namespace: shop}\n\
         spec: {backend: {serviceName: web, servicePort: 80}}\n",
    )
    .unwrap();
    let kubectl = Command::new(bin.join("kubectl"))
        .arg(format!("--kubeconfig={}", cp.kubeconfig.display()))
        .arg("apply")
        .arg("-f")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(kubectl.status.success(), "{}", String::from_utf8_lossy(&kubectl.stderr));
    // Another client still calls the extensions/v1beta1 API.
    let req = http::Request::get("/apis/extensions/v1beta1/ingresses").body(Vec::new()).unwrap();
    client.request_text(req).await.unwrap();

    let requests = kismatic_kube::usage::deprecated_requests(&client).await.unwrap();
    let called: Vec<(String, String, String)> =
        requests.iter().map(|r| (r.group.clone(), r.version.clone(), r.resource.clone())).collect();
    eprintln!("deprecated APIs requested: {called:?}");
    for group in ["networking.k8s.io", "extensions"] {
        assert!(
            requests.iter().any(|r| r.group == group
                && r.version == "v1beta1"
                && r.resource == "ingresses"
                && r.removed_release == "1.22"),
            "{group}/v1beta1 ingresses in the metric: {called:?}"
        );
    }
    let (uses, errors) = kismatic_kube::usage::object_uses(&client, &served, &later).await;
    assert_eq!(errors, vec![], "every removed kind lists on 1.20");
    eprintln!("object uses: {uses:?}");
    assert!(
        uses.iter().any(|u| u.kind == "Ingress"
            && u.group == "networking.k8s.io"
            && u.version == "v1beta1"
            && u.namespace.as_deref() == Some("shop")
            && u.name == "web"),
        "{uses:?}"
    );

    // The gate's rules for 1.20 → 1.22 name the calls (per API server) and the object; for 1.20 → 1.21, nothing.
    let calls: Vec<String> =
        removed_api::from_calls(20, 22, "master01", &requests, None).into_iter().map(|u| u.message).collect();
    assert!(calls.iter().any(|m| m.contains("ingresses") && m.contains("networking.k8s.io/v1")), "{calls:?}");
    let objects: Vec<String> = removed_api::from_objects(20, 22, &uses).map(|u| u.object).collect();
    assert!(objects.contains(&"Ingress shop/web".to_string()), "{objects:?}");
    assert!(removed_api::from_calls(20, 21, "master01", &requests, None).is_empty());
    assert_eq!(removed_api::from_objects(20, 21, &uses).count(), 0);
}
