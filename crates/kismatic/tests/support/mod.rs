//! What the testbed end-to-end tests share (`mod support;` in e2e_upgrade.rs, e2e_faults.rs and e2e_scale.rs):
//! a testbed brought up from an example plan, kismatic and kubectl run against it with deadlines, and the helpers
//! that read its state. Each test binary uses a part of it.
#![allow(dead_code)]

use kismatic_release::Release;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use testbed::{Guard, Options};

/// A run that takes longer than this has hung (a full online upgrade takes a few minutes here).
pub const RUN_DEADLINE: Duration = Duration::from_secs(1200);

pub struct Cluster {
    pub guard: Guard,
    pub plan: PathBuf,
    pub release_new: PathBuf,
    pub new: Release,
    pub old: Release,
    /// Added to every `kismatic upgrade` (deadlines a test may change).
    pub upgrade_args: Vec<String>,
}

impl Cluster {
    pub fn up(example: &str, work: &Path) -> Cluster {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(example);
        std::fs::create_dir_all(work).expect("work dir");
        let plan = work.join(example);
        std::fs::copy(&src, &plan).expect("copy plan");
        let opts = Options { quiet: true, ..Options::default() };
        let guard = Guard::up(&plan, opts).expect("testbed up");
        let state = guard.testbed.load_state().expect("state").expect("testbed state exists");
        let release_new = state.release_new.expect("testbed built the new release");
        let release_old = state.release_old.expect("testbed built the old release");
        let new = kismatic_release::load_dir(&release_new).expect("new release loads");
        let old = kismatic_release::load_dir(&release_old).expect("old release loads");
        let upgrade_args = ["--drain-timeout", "60", "--node-timeout", "120"].map(String::from).to_vec();
        Cluster { guard, plan, release_new, new, old, upgrade_args }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.guard.testbed.kubeconfig_path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kismatic"));
        cmd.args(args).arg("-f").arg(&self.plan);
        if args.first() == Some(&"upgrade") {
            cmd.arg("--release").arg(&self.release_new).arg("--kubeconfig").arg(self.kubeconfig());
            // A flag the caller gives itself wins over the default deadline of the same flag.
            for pair in self.upgrade_args.chunks(2) {
                if !args.contains(&pair[0].as_str()) {
                    cmd.args(pair);
                }
            }
        } else if args.first() == Some(&"info") {
            cmd.arg("--release").arg(&self.release_new);
        }
        cmd
    }

    /// Runs kismatic to its end; a run still going after `deadline` has hung: it is killed and the test fails.
    pub fn kismatic_within(&self, args: &[&str], deadline: Duration) -> Output {
        let started = Instant::now();
        let child = self.command(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("kismatic starts");
        let out = wait_output(child, deadline).unwrap_or_else(|| panic!("kismatic {} hung", args.join(" ")));
        eprintln!(
            "$ kismatic {}  ({:.1} s, {})\n{}{}",
            args.join(" "),
            started.elapsed().as_secs_f64(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    pub fn kismatic(&self, args: &[&str]) -> Output {
        self.kismatic_within(args, RUN_DEADLINE)
    }

    /// Starts `kismatic upgrade ...` in the background, its events to `events`, its output to `log`.
    pub fn spawn_upgrade(&self, args: &[&str], events: &Path, log: &Path) -> Child {
        let out = std::fs::File::create(log).expect("log file");
        self.command(args)
            .arg("--events")
            .arg(events)
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("kismatic starts")
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(out.status.success(), "kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The PodDisruptionBudget version the API server serves: `policy/v1` from Kubernetes 1.21, else `policy/v1beta1`.
    pub fn pdb_version(&self) -> &'static str {
        let served = self.kubectl(&["api-versions"]);
        if served.lines().any(|l| l.trim() == "policy/v1") { "policy/v1" } else { "policy/v1beta1" }
    }

    /// The tests' protected workload: Deployment `default/web` of 3 replicas (one per worker of `ha`) and its
    /// PodDisruptionBudget `minAvailable: 2` (one disruption at a time), in the version the server serves.
    pub fn apply_web(&self) {
        self.kubectl_apply(&WEB.replace("PDB_VERSION", self.pdb_version()));
    }

    pub fn kubectl_apply(&self, yaml: &str) {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child.stdin.take().expect("stdin").write_all(yaml.as_bytes()).expect("write manifest");
        let out = child.wait_with_output().expect("kubectl apply");
        assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn ssh(&self, host: &str, args: &[&str]) -> String {
        let n = self.guard.testbed.inv.nodes.iter().find(|n| n.host == host).expect("node in plan");
        self.guard.testbed.ssh().run(&n.ip, args).expect("ssh command")
    }

    pub fn marker(&self, host: &str) -> String {
        self.ssh(host, &["cat", kismatic_ops::contract::KISMATIC_VERSION_FILE])
    }

    /// Where the runs' folders (journal, events, timeline) are: `runs/` beside the plan.
    pub fn runs_dir(&self) -> PathBuf {
        self.plan.parent().expect("plan folder").join("runs")
    }

    /// The journal of the cluster's latest run.
    pub fn latest_journal(&self) -> PathBuf {
        let mut runs: Vec<PathBuf> = std::fs::read_dir(self.runs_dir())
            .expect("runs folder")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("journal.jsonl").is_file())
            .collect();
        runs.sort();
        runs.pop().expect("a run").join("journal.jsonl")
    }

    /// Until the budget's status (the disruption controller's count) allows a disruption again.
    pub fn wait_disruption_allowed(&self, pdb: &str) {
        let get = ["get", "pdb", pdb, "-o", "jsonpath={.status.disruptionsAllowed}"];
        self.wait_for(
            &get,
            120,
            |v| v.parse::<usize>().unwrap_or(0) >= 1,
            &format!("budget {pdb} allows no disruption"),
        );
    }

    pub fn hosts(&self) -> Vec<String> {
        self.guard.testbed.inv.nodes.iter().map(|n| n.host.clone()).collect()
    }

    pub fn wait_ready(&self, deployment: &str, want: usize) {
        let get = ["get", "deployment", deployment, "-o", "jsonpath={.status.readyReplicas}"];
        self.wait_for(
            &get,
            180,
            |v| v.parse::<usize>().unwrap_or(0) >= want,
            &format!("deployment {deployment} not ready"),
        );
    }

    /// Waits until the Kubernetes Node of `host` is Ready (its kubelet came back after the node did).
    pub fn wait_node_ready(&self, host: &str) {
        let get = ["get", "node", host, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"];
        self.wait_for(&get, 180, |v| v == "True", &format!("node {host} not Ready"));
    }

    /// Polls `kubectl ARGS` every 500 ms until its trimmed output satisfies `done`; fails with `what` and the last
    /// output after `seconds`.
    fn wait_for(&self, args: &[&str], seconds: u64, done: impl Fn(&str) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        loop {
            let out = self.kubectl(args);
            if done(out.trim()) {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {out}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// A fresh folder for one test's testbed plan, key, kubeconfig and runs: `kismatic-NAME-PID` in the temp dir.
pub fn work_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kismatic-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Waits for a child's end and collects its output; `None` (after killing it) when it is still running at the
/// deadline. Pipes are drained by threads so a chatty child never blocks on a full pipe.
pub fn wait_output(mut child: Child, deadline: Duration) -> Option<Output> {
    use std::io::Read;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let status = wait_status(&mut child, deadline)?;
    Some(Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() })
}

pub fn wait_status(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + deadline;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Names of nodes whose `spec.unschedulable` is true.
pub fn cordoned_nodes(c: &Cluster) -> Vec<String> {
    let nodes: serde_json::Value = serde_json::from_str(&c.kubectl(&["get", "nodes", "-o", "json"])).expect("json");
    nodes["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|n| n["spec"]["unschedulable"].as_bool() == Some(true))
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// Samples the PodDisruptionBudget `default/NAME` of a Deployment (the tests name both alike) and the API through
/// the load balancer every 250 ms until [`Sampler::finish`] (`testbed::sample`: healthy pods counted from the pods,
/// the desired count the disruption controller's).
pub struct Sampler {
    inner: testbed::sample::Sampler,
    budget: String,
}

impl Sampler {
    pub fn start(kubeconfig: PathBuf, deployment: &str) -> Sampler {
        let inner = testbed::sample::Sampler::start(&kubeconfig, Duration::from_millis(250));
        Sampler { inner, budget: format!("default/{deployment}") }
    }

    /// (fewest healthy pods of the budget seen — `usize::MAX` when never sampled —, failed samples, answered samples)
    pub fn finish(self) -> (usize, usize, usize) {
        let summary = self.inner.finish().expect("the sampler connects to the testbed");
        eprint!("sampler: {}", summary.report());
        let fewest =
            summary.budgets.get(&self.budget).map_or(usize::MAX, |b| usize::try_from(b.min_healthy).unwrap_or(0));
        let failed = usize::try_from(summary.api_failures).unwrap_or(usize::MAX);
        let answered = usize::try_from(summary.samples - summary.api_failures).unwrap_or(usize::MAX);
        (fewest, failed, answered)
    }
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: nginx:1.27}]}
---
apiVersion: PDB_VERSION
kind: PodDisruptionBudget
metadata: {name: web, namespace: default}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: web}}
"#;
