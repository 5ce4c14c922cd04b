//! The availability sampler of the end-to-end tests and the batch benchmark (issue 13): every interval it lists
//! the PodDisruptionBudgets and pods through the testbed's load balancer (the kubeconfig's server) and records, per
//! budget, the healthy pods it finds against the healthy count the budget desires, and every request that failed.
//!
//! Healthy is counted here, from the pods themselves, as the disruption controller counts it (a pod the budget
//! selects, in its namespace, Ready and not being deleted); the desired count is the controller's own
//! (`status.desiredHealthy`), so the sampler shares no arithmetic with the planner it checks.

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kismatic_core::facts::{LabelSelector, Labels};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A sample's requests that take longer than this count as failed (the API did not answer).
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// Breaches kept with their details (all are counted).
const BREACHES_KEPT: usize = 50;
/// Failed samples kept with their reason.
const ERRORS_KEPT: usize = 5;

/// One budget's health in one sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetHealth {
    /// `namespace/name`.
    pub budget: String,
    pub healthy: i64,
    pub desired: i64,
}

/// What a sampling run saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Samples attempted.
    pub samples: u64,
    /// Samples in which a request failed or timed out.
    pub api_failures: u64,
    pub interval_ms: u64,
    pub seconds: f64,
    /// Per budget: the fewest healthy pods seen and the desired count then.
    pub budgets: BTreeMap<String, BudgetMinimum>,
    /// Samples in which some budget had fewer healthy pods than it desires.
    pub breach_count: u64,
    pub breaches: Vec<Breach>,
    /// Why the first failed samples failed (a refused API told apart from a slow one).
    pub api_errors: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BudgetMinimum {
    pub min_healthy: i64,
    pub desired_at_min: i64,
    pub samples: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Breach {
    /// Milliseconds since sampling started.
    pub at_ms: u64,
    pub budget: String,
    pub healthy: i64,
    pub desired: i64,
}

impl Summary {
    /// The share of samples in which the API answered, in percent.
    pub fn availability_percent(&self) -> f64 {
        if self.samples == 0 {
            return 0.0;
        }
        (self.samples - self.api_failures) as f64 * 100.0 / self.samples as f64
    }

    /// One line per budget and a total, for logs and the benchmark's report.
    pub fn report(&self) -> String {
        let mut s = format!(
            "{} samples every {} ms over {:.0} s: API answered {:.2} % ({} failed); budget breaches: {}\n",
            self.samples,
            self.interval_ms,
            self.seconds,
            self.availability_percent(),
            self.api_failures,
            self.breach_count
        );
        for (name, b) in &self.budgets {
            s.push_str(&format!(
                "  {name}: fewest healthy {} (desired {}), {} samples\n",
                b.min_healthy, b.desired_at_min, b.samples
            ));
        }
        for e in &self.api_errors {
            s.push_str(&format!("  API failed: {e}\n"));
        }
        for b in &self.breaches {
            s.push_str(&format!(
                "  BREACH at {} ms: {} healthy {} < desired {}\n",
                b.at_ms, b.budget, b.healthy, b.desired
            ));
        }
        s
    }

    fn fail(&mut self, why: String) {
        self.api_failures += 1;
        if self.api_errors.len() < ERRORS_KEPT {
            self.api_errors.push(why);
        }
    }

    fn record(&mut self, at_ms: u64, health: &[BudgetHealth]) {
        let mut breached = false;
        for h in health {
            let m = self.budgets.entry(h.budget.clone()).or_insert(BudgetMinimum {
                min_healthy: h.healthy,
                desired_at_min: h.desired,
                samples: 0,
            });
            m.samples += 1;
            if h.healthy < m.min_healthy {
                m.min_healthy = h.healthy;
                m.desired_at_min = h.desired;
            }
            if h.healthy < h.desired {
                breached = true;
                if self.breaches.len() < BREACHES_KEPT {
                    self.breaches.push(Breach {
                        at_ms,
                        budget: h.budget.clone(),
                        healthy: h.healthy,
                        desired: h.desired,
                    });
                }
            }
        }
        if breached {
            self.breach_count += 1;
        }
    }
}

/// Per budget, the pods that count as healthy and the desired count. A budget whose status the controller has not
/// computed yet (no expected pods) is left out: there is nothing to compare with.
pub fn budget_health(pdbs: &[PodDisruptionBudget], pods: &[Pod]) -> Vec<BudgetHealth> {
    pdbs.iter()
        .filter_map(|p| {
            let status = p.status.as_ref()?;
            if status.expected_pods <= 0 {
                return None;
            }
            let slim = kismatic_kube::convert::pdb(p);
            let namespace = slim.namespace.to_string();
            // No selector selects nothing (v1beta1's empty selector arrives converted to none).
            let selector: Option<LabelSelector> = slim.selector;
            let healthy = pods
                .iter()
                .filter(|pod| pod.metadata.namespace.as_deref() == Some(namespace.as_str()))
                .filter(|pod| pod.metadata.deletion_timestamp.is_none())
                .filter(|pod| selector.as_ref().is_some_and(|s| s.matches(&pod_labels(pod))))
                .filter(|pod| pod_ready(pod))
                .count();
            Some(BudgetHealth {
                budget: format!("{namespace}/{}", slim.name),
                healthy: i64::try_from(healthy).unwrap_or(i64::MAX),
                desired: i64::from(status.desired_healthy),
            })
        })
        .collect()
}

fn pod_labels(pod: &Pod) -> Labels {
    pod.metadata.labels.iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Samples in a thread of its own until [`Sampler::finish`].
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Result<Summary>>>,
}

impl Sampler {
    pub fn start(kubeconfig: &Path, interval: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let kubeconfig = kubeconfig.to_path_buf();
        let handle = std::thread::spawn(move || run(&kubeconfig, interval, &flag));
        Sampler { stop, handle: Some(handle) }
    }

    /// A handle that stops the sampler when set (a signal handler's flag).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn finish(mut self) -> Result<Summary> {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().context("sampler already finished")?;
        handle.join().map_err(|_| anyhow::anyhow!("the sampler thread panicked"))?
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn run(kubeconfig: &Path, interval: Duration, stop: &AtomicBool) -> Result<Summary> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")?;
    rt.block_on(async {
        let client = kismatic_kube::connect_without_retry(kubeconfig).await?;
        let policy = kismatic_kube::served::discover(&client).await?.policy()?;
        let pods_api: kube::Api<Pod> = kube::Api::all(client.clone());
        let started = Instant::now();
        let mut summary =
            Summary { interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX), ..Summary::default() };
        while !stop.load(Ordering::Relaxed) {
            let tick = Instant::now();
            let lists = tokio::time::timeout(REQUEST_DEADLINE, async {
                let pdbs = kismatic_kube::served::list_pdbs(&client, policy, None).await?;
                let pods = pods_api.list(&kube::api::ListParams::default()).await?;
                Ok::<_, kube::Error>((pdbs, pods.items))
            })
            .await;
            summary.samples += 1;
            let at_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            match lists {
                Ok(Ok((pdbs, pods))) => summary.record(at_ms, &budget_health(&pdbs, &pods)),
                Ok(Err(e)) => summary.fail(e.to_string()),
                Err(_) => summary.fail(format!("no answer within {} s", REQUEST_DEADLINE.as_secs())),
            }
            if let Some(rest) = interval.checked_sub(tick.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(ns: &str, name: &str, app: &str, desired: i32, expected: i32) -> PodDisruptionBudget {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": {"selector": {"matchLabels": {"app": app}}, "minAvailable": desired},
            "status": {"desiredHealthy": desired, "currentHealthy": expected, "disruptionsAllowed": 0,
                       "expectedPods": expected}
        }))
        .unwrap()
    }

    fn pod(ns: &str, app: &str, ready: bool, deleting: bool) -> Pod {
        let mut v = serde_json::json!({
            "metadata": {"namespace": ns, "name": format!("{app}-x"), "labels": {"app": app}},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
        });
        if deleting {
            v["metadata"]["deletionTimestamp"] = "2026-12-02T00:00:00Z".into();
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn healthy_counts_ready_selected_pods_of_the_namespace_that_are_not_being_deleted() {
        let pdbs = [pdb("shop", "web", "web", 2, 4)];
        let pods = [
            pod("shop", "web", true, false),
            pod("shop", "web", true, false),
            pod("shop", "web", false, false), // not ready
            pod("shop", "web", true, true),   // being deleted
            pod("other", "web", true, false), // another namespace
            pod("shop", "api", true, false),  // not selected
        ];
        assert_eq!(
            budget_health(&pdbs, &pods),
            vec![BudgetHealth { budget: "shop/web".into(), healthy: 2, desired: 2 }]
        );
    }

    #[test]
    fn a_budget_without_computed_status_is_left_out_and_no_selector_selects_nothing() {
        let mut fresh = pdb("shop", "new", "web", 1, 0);
        fresh.status.as_mut().unwrap().expected_pods = 0;
        let mut open = pdb("shop", "open", "web", 1, 1);
        open.spec.as_mut().unwrap().selector = None;
        let h = budget_health(&[fresh, open], &[pod("shop", "web", true, false)]);
        assert_eq!(h, vec![BudgetHealth { budget: "shop/open".into(), healthy: 0, desired: 1 }]);
    }

    #[test]
    fn the_summary_keeps_each_budgets_minimum_and_counts_breaching_samples() {
        let mut s = Summary { interval_ms: 250, ..Summary::default() };
        let h = |healthy, desired| vec![BudgetHealth { budget: "shop/web".into(), healthy, desired }];
        s.samples = 3;
        s.record(0, &h(4, 3));
        s.record(250, &h(3, 3));
        s.record(500, &h(2, 3));
        let m = &s.budgets["shop/web"];
        assert_eq!((m.min_healthy, m.desired_at_min, m.samples), (2, 3, 3));
        assert_eq!(s.breach_count, 1);
        assert_eq!(s.breaches[0].at_ms, 500);
        assert!(s.report().contains("BREACH at 500 ms: shop/web healthy 2 < desired 3"), "{}", s.report());
        s.api_failures = 1;
        assert!((s.availability_percent() - 66.666).abs() < 0.01);
    }
}
