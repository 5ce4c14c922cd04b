//! kube-sim against a real etcd, driven and checked with the real kubectl.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use harness::{Cluster, SIM_VERSION, ready_status, stamped, wait_until};
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(90);

fn pods(c: &Cluster, selector: &str) -> Vec<Value> {
    let v = c.json(&["get", "pods", "-A", "-l", selector]);
    v["items"].as_array().cloned().unwrap_or_default()
}

fn ready_pods_on(c: &Cluster, selector: &str) -> Vec<(String, String)> {
    pods(c, selector)
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter(|p| {
            p["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn deployment(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: c, image: busybox}}]}}\n"
    )
}

const WORKLOADS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: "nginx:1.27"}]
      volumes: [{name: cache, emptyDir: {}}]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web, namespace: shop}
spec: {minAvailable: 3, selector: {matchLabels: {app: web}}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-a}
spec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], storageClassName: manual, hostPath: {path: /tmp/pv-a}}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-b}
spec: {capacity: {storage: 1Gi}, accessModes: [ReadWriteOnce], storageClassName: manual, hostPath: {path: /tmp/pv-b}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: pg, image: "postgres:16"}]}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], storageClassName: manual, resources: {requests: {storage: 1Gi}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: shop}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: "agent:1"}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: once, namespace: shop}
spec:
  template:
    spec: {restartPolicy: Never, containers: [{name: job, image: "busybox"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: loner, namespace: shop, labels: {app: loner}}
spec:
  nodeName: node3
  containers: [{name: c, image: "busybox"}]
"#;

/// The kubectl fidelity suite: apply, get, rollout status, wait, cordon, drain (blocked by a PDB, then allowed),
/// uncordon, delete with garbage collection.
#[test]
fn kubectl_fidelity() {
    let Some(mut c) = Cluster::start() else { return };
    c.start_control_plane();
    for n in ["node1", "node2", "node3"] {
        c.start_kubelet(n, None);
    }
    c.wait_nodes_ready(3);
    c.k(&["wait", "--for=condition=Ready", "node", "--all", "--timeout=60s"]);

    // get -o wide / -o json / selectors on nodes.
    let wide = c.k(&["get", "nodes", "-o", "wide"]);
    assert!(wide.contains("node1") && wide.contains("node3"), "{wide}");
    // Server-side printing: kubectl's usual columns.
    let header = wide.lines().next().unwrap_or("");
    for col in ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "CONTAINER-RUNTIME"] {
        assert!(header.contains(col), "{wide}");
    }
    assert!(
        wide.lines().filter(|l| l.contains(" Ready ") && l.contains(SIM_VERSION) && l.contains("worker")).count() == 3,
        "{wide}"
    );
    let labelled = c.json(&["get", "nodes", "-l", "node-role.kubernetes.io/worker,kismatic/test=yes"]);
    assert_eq!(labelled["items"].as_array().map(Vec::len), Some(3));
    let node1 = c.json(&["get", "node", "node1"]);
    assert_eq!(node1["status"]["nodeInfo"]["kubeletVersion"], SIM_VERSION);

    let out = c.apply("workloads", WORKLOADS);
    for expect in [
        "namespace/shop created",
        "deployment.apps/web created",
        "poddisruptionbudget.policy/web created",
        "statefulset.apps/db created",
        "daemonset.apps/agent created",
        "job.batch/once created",
        "pod/loner created",
        "persistentvolume/pv-a created",
    ] {
        assert!(out.contains(expect), "apply output lacks {expect:?}: {out}");
    }
    // Re-applying an unchanged Deployment changes nothing.
    let again = c.apply("workloads", WORKLOADS);
    assert!(again.contains("deployment.apps/web unchanged"), "{again}");

    c.k(&["rollout", "status", "deployment/web", "-n", "shop", "--timeout=60s"]);
    c.k(&["rollout", "status", "statefulset/db", "-n", "shop", "--timeout=60s"]);
    c.k(&["rollout", "status", "daemonset/agent", "-n", "shop", "--timeout=60s"]);
    c.k(&["wait", "--for=condition=complete", "job/once", "-n", "shop", "--timeout=60s"]);
    c.k(&["wait", "--for=condition=Ready", "pod/loner", "-n", "shop", "--timeout=60s"]);
    let table = c.k(&["get", "pods", "-n", "shop", "-o", "wide"]);
    assert!(table.lines().next().unwrap_or("").contains("READY   STATUS"), "{table}");
    assert!(table.contains("Completed") && table.contains("Running") && table.contains("1/1"), "{table}");

    // Spread: a 3-replica Deployment lands on 3 nodes; the DaemonSet has one pod per node.
    let web = ready_pods_on(&c, "app=web");
    assert_eq!(web.iter().map(|(_, n)| n.clone()).collect::<HashSet<_>>().len(), 3, "{web:?}");
    assert_eq!(ready_pods_on(&c, "app=agent").len(), 3);
    // StatefulSet pods are ordinal-named and their claims bound to the PVs.
    let db: HashSet<String> = ready_pods_on(&c, "app=db").into_iter().map(|(n, _)| n).collect();
    assert_eq!(db, HashSet::from(["db-0".to_string(), "db-1".to_string()]));
    wait_until("claims bound", LONG, || {
        let v = c.json(&["get", "pvc", "-n", "shop"]);
        v["items"].as_array().is_some_and(|a| a.len() == 2 && a.iter().all(|p| p["status"]["phase"] == "Bound"))
    });

    // -A, field selectors, paging.
    let all = c.json(&["get", "pods", "-A"]);
    assert_eq!(all["items"].as_array().map(Vec::len), Some(3 + 2 + 3 + 1 + 1));
    let on1 = c.json(&["get", "pods", "-A", "--field-selector", "spec.nodeName=node1"]);
    assert!(on1["items"].as_array().is_some_and(|a| a.iter().all(|p| p["spec"]["nodeName"] == "node1")));
    let done = c.json(&["get", "pods", "-n", "shop", "--field-selector", "status.phase=Succeeded"]);
    assert_eq!(done["items"].as_array().map(Vec::len), Some(1));
    let paged = c.k(&["get", "pods", "-A", "--chunk-size=2", "-o", "name"]);
    assert_eq!(paged.lines().count(), 10, "{paged}");

    // The PDB allows no disruption: draining node1 is refused until the timeout, the pod stays.
    wait_until("pdb status", LONG, || c.json(&["get", "pdb", "web", "-n", "shop"])["status"]["currentHealthy"] == 3);
    assert_eq!(c.json(&["get", "pdb", "web", "-n", "shop"])["status"]["disruptionsAllowed"], 0);
    let blocked = c.kubectl(&["drain", "node1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=8s"]);
    assert!(!blocked.status.success());
    let err = String::from_utf8_lossy(&blocked.stderr).into_owned() + &String::from_utf8_lossy(&blocked.stdout);
    assert!(err.contains("Cannot evict pod as it would violate the pod's disruption budget"), "{err}");
    assert!(c.json(&["get", "node", "node1"])["spec"]["unschedulable"] == true, "drain cordons first");
    assert!(ready_pods_on(&c, "app=web").iter().any(|(_, n)| n == "node1"));

    // Draining node3 is refused outright because of the unmanaged pod (as Kubernetes does without --force).
    let unmanaged = c.kubectl(&["drain", "node3", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=5s"]);
    assert!(!unmanaged.status.success());
    assert!(
        String::from_utf8_lossy(&unmanaged.stderr).contains("loner"),
        "{}",
        String::from_utf8_lossy(&unmanaged.stderr)
    );
    c.k(&["uncordon", "node3"]);

    // Relax the budget: the drain goes through, the replicas move to other nodes.
    c.k(&["patch", "pdb", "web", "-n", "shop", "--type=merge", "-p", r#"{"spec":{"minAvailable":2}}"#]);
    wait_until("disruption allowed", LONG, || {
        c.json(&["get", "pdb", "web", "-n", "shop"])["status"]["disruptionsAllowed"] == 1
    });
    let drained = c.k(&["drain", "node1", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=60s"]);
    assert!(drained.contains("node/node1 drained"), "{drained}");
    wait_until("web back to 3 ready replicas off node1", LONG, || {
        let w = ready_pods_on(&c, "app=web");
        w.len() == 3 && w.iter().all(|(_, n)| n != "node1")
    });
    assert!(
        pods(&c, "app=db")
            .iter()
            .all(|p| p["spec"]["nodeName"] != "node1" || !p["metadata"]["deletionTimestamp"].is_null())
    );
    // DaemonSet pods stay on the cordoned node.
    assert!(ready_pods_on(&c, "app=agent").iter().any(|(_, n)| n == "node1"));
    c.k(&["uncordon", "node1"]);
    assert!(c.json(&["get", "node", "node1"])["spec"]["unschedulable"].is_null());

    // Rolling update through kubectl set image; rollout status waits for it.
    c.k(&["set", "image", "deployment/web", "-n", "shop", "nginx=nginx:1.28"]);
    c.k(&["rollout", "status", "deployment/web", "-n", "shop", "--timeout=90s"]);
    let imgs: HashSet<String> = pods(&c, "app=web")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["spec"]["containers"][0]["image"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(imgs, HashSet::from(["nginx:1.28".to_string()]));
    let rs = c.json(&["get", "rs", "-n", "shop", "-l", "app=web"]);
    assert_eq!(rs["items"].as_array().map(Vec::len), Some(2), "old ReplicaSet kept at 0 for rollback");

    // Deleting the Deployment garbage-collects its ReplicaSets and pods.
    c.k(&["delete", "deployment", "web", "-n", "shop"]);
    wait_until("dependents collected", LONG, || {
        c.json(&["get", "rs", "-n", "shop", "-l", "app=web"])["items"].as_array().is_some_and(Vec::is_empty)
            && pods(&c, "app=web").is_empty()
    });
    c.k(&["delete", "pod", "loner", "-n", "shop", "--wait=true", "--timeout=30s"]);
    assert!(!c.kubectl(&["get", "pod", "loner", "-n", "shop"]).status.success());
}

/// Two API servers on one etcd serve the same objects; resourceVersion conflicts are 409s; no client cert is 401.
#[test]
fn two_apiservers_one_etcd() {
    let Some(mut c) = Cluster::start() else { return };
    let second = c.add_apiserver();
    let kc2 = c.path(&format!("kubeconfig-{second}"));
    c.apply("shared", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: shared, namespace: default}\ndata: {k: v}\n");
    let o = c.kubectl_with(&kc2, &["get", "configmap", "shared", "-o", "jsonpath={.data.k}"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "v");
    // A stale resourceVersion is refused.
    let cm = c.json(&["get", "configmap", "shared"]);
    c.k(&["patch", "configmap", "shared", "--type=merge", "-p", r#"{"data":{"k":"w"}}"#]);
    let mut stale = cm.clone();
    stale["data"]["k"] = Value::from("stale");
    let p = c.path("stale.json");
    std::fs::write(&p, serde_json::to_vec(&stale).unwrap()).unwrap();
    let r = c.kubectl_with(&kc2, &["replace", "-f", p.to_str().unwrap()]);
    assert!(!r.status.success());
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("the object has been modified"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    // Watches through one server see writes through the other.
    let mut w = std::process::Command::new(harness::kubectl_path())
        .args(["get", "configmaps", "--watch-only", "-o", "name"])
        .env("KUBECONFIG", &kc2)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    c.apply("seen", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: seen-by-watch, namespace: default}\n");
    let out = w.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let mut got = false;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(500))
            && l.contains("seen-by-watch")
        {
            got = true;
            break;
        }
    }
    let _ = w.kill();
    let _ = w.wait();
    assert!(got, "watch through the second API server did not see the new object");
    // No client certificate (only a bogus bearer token): 401.
    let anon = c.path("anon.kubeconfig");
    std::fs::write(&anon, format!("apiVersion: v1\nkind: Config\nclusters: [{{name: s, cluster: {{server: \"https://127.0.0.1:{second}\", certificate-authority: {}}}}}]\nusers: [{{name: u, user: {{token: not-a-valid-token}}}}]\ncontexts: [{{name: s, context: {{cluster: s, user: u}}}}]\ncurrent-context: s\n", c.pki.ca.display())).unwrap();
    let r = c.kubectl_with(&anon, &["get", "pods"]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("Unauthorized"), "{}", String::from_utf8_lossy(&r.stderr));
    // A client certificate from another CA fails the TLS handshake.
    let intruder = c.path("intruder.kubeconfig");
    std::fs::write(&intruder, format!("apiVersion: v1\nkind: Config\nclusters: [{{name: s, cluster: {{server: \"https://127.0.0.1:{second}\", certificate-authority: {}}}}}]\nusers: [{{name: u, user: {{client-certificate: {}, client-key: {}}}}}]\ncontexts: [{{name: s, context: {{cluster: s, user: u}}}}]\ncurrent-context: s\n", c.pki.ca.display(), c.pki.other_cert.display(), c.pki.other_key.display())).unwrap();
    let r = c.kubectl_with(&intruder, &["get", "pods"]);
    assert!(!r.status.success());
    // /readyz and /version stay public, like kube-apiserver's defaults.
    let r = c.kubectl_with(&anon, &["get", "--raw", "/readyz"]);
    assert_eq!(String::from_utf8_lossy(&r.stdout), "ok");
}

/// A stopped kubelet's node turns NotReady while its pods stay bound; a kubelet started from another stamped
/// artifact re-registers the node with that version.
#[test]
fn stopped_kubelet_makes_node_not_ready_and_versions_follow_the_artifact() {
    let Some(mut c) = Cluster::start() else { return };
    c.start_control_plane();
    for n in ["node1", "node2"] {
        c.start_kubelet(n, None);
    }
    c.wait_nodes_ready(2);
    c.apply("app", &deployment("app", 2));
    c.k(&["rollout", "status", "deployment/app", "--timeout=60s"]);
    let before: HashSet<(String, String)> = ready_pods_on(&c, "app=app").into_iter().collect();
    assert_eq!(before.iter().map(|(_, n)| n.clone()).collect::<HashSet<_>>().len(), 2);

    c.stop("kubelet-node2");
    wait_until("node2 NotReady", LONG, || ready_status(&c.json(&["get", "node", "node2"])) == "Unknown");
    wait_until("node2 tainted unreachable", LONG, || {
        let node2 = c.json(&["get", "node", "node2"]);
        node2["spec"]["taints"].as_array().is_some_and(|ts| {
            ts.iter().any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute")
        })
    });
    // Pods stay where they are (no eviction within the toleration period).
    let still: HashSet<String> =
        pods(&c, "app=app").iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(still, before.iter().map(|(p, _)| p.clone()).collect());
    assert_eq!(ready_status(&c.json(&["get", "node", "node1"])), "True");

    // "Upgrade" the kubelet: a different artifact, same unit-file-style command line.
    let newer = stamped(c.dir.path(), "v1.34.1");
    let v = std::process::Command::new(&newer).arg("version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&v.stdout).trim(), "v1.34.1");
    assert_ne!(std::fs::read(&newer).unwrap(), std::fs::read(&c.bin).unwrap());
    c.start_kubelet("node2", Some(newer));
    wait_until("node2 Ready at v1.34.1", LONG, || {
        let n = c.json(&["get", "node", "node2"]);
        ready_status(&n) == "True"
            && n["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.1"
            && n["spec"]["taints"].is_null()
    });
    assert_eq!(c.json(&["get", "node", "node1"])["status"]["nodeInfo"]["kubeletVersion"], SIM_VERSION);
    let version = c.k(&["get", "--raw", "/version"]);
    assert!(version.contains(SIM_VERSION), "{version}");
}

/// Evicting a Deployment's pods through the Eviction API reschedules them on other nodes; a second PDB matching the
/// same pods makes evictions fail with 500 as in Kubernetes.
#[test]
fn evictions_reschedule_and_multiple_pdbs_are_refused() {
    let Some(mut c) = Cluster::start() else { return };
    c.start_control_plane();
    for n in ["node1", "node2", "node3"] {
        c.start_kubelet(n, None);
    }
    c.wait_nodes_ready(3);
    c.apply("api", &deployment("api", 2));
    c.k(&["rollout", "status", "deployment/api", "--timeout=60s"]);
    c.k(&["cordon", "node1"]);
    c.k(&["cordon", "node2"]);
    let victims: Vec<(String, String)> =
        ready_pods_on(&c, "app=api").into_iter().filter(|(_, n)| n != "node3").collect();
    let ev = |pod: &str| {
        let body = format!(
            r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}}}}"#
        );
        let p = c.path("eviction.json");
        std::fs::write(&p, body).unwrap();
        c.kubectl(&[
            "create",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{pod}/eviction"),
            "-f",
            p.to_str().unwrap(),
        ])
    };
    for (pod, _) in &victims {
        let o = ev(pod);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    wait_until("api replicas all on node3", LONG, || {
        let r = ready_pods_on(&c, "app=api");
        r.len() == 2 && r.iter().all(|(_, n)| n == "node3")
    });
    c.apply("pdbs", "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: one, namespace: default}\nspec: {minAvailable: 1, selector: {matchLabels: {app: api}}}\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: two, namespace: default}\nspec: {maxUnavailable: 1, selector: {matchLabels: {app: api}}}\n");
    let (pod, _) = ready_pods_on(&c, "app=api").remove(0);
    let o = ev(&pod);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("more than one PodDisruptionBudget"), "{err}");
}
