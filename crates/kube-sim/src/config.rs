//! Component configuration files (YAML). Every component reads `--config PATH`; TLS material is named by path.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config {path}: {message}")]
    Parse { path: String, message: String },
}

pub fn load<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ConfigError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: p.clone(), source })?;
    serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse { path: p, message: e.to_string() })
}

/// How a component reaches the API server (client-certificate authentication).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiClientConfig {
    /// e.g. `https://127.0.0.1:6443`.
    pub server: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn d_sync_ms() -> u64 {
    1_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaintConfig {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    pub effect: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubeletConfig {
    pub api: ApiClientConfig,
    /// Defaults to the host name (lower-cased), as the kubelet does.
    #[serde(default)]
    pub node_name: Option<String>,
    /// Each becomes a `node-role.kubernetes.io/<role>` label.
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Applied when the node registers (like `--register-with-taints`).
    #[serde(default)]
    pub taints: Vec<TaintConfig>,
    /// Reported as the node's InternalIP.
    #[serde(default)]
    pub address: Option<String>,
    /// Lease renewal period (Kubernetes: 10 s).
    #[serde(default = "d_heartbeat_ms")]
    pub heartbeat_interval_ms: u64,
    #[serde(default = "d_lease_seconds")]
    pub lease_duration_seconds: u64,
    /// How often bound pods are synced.
    #[serde(default = "d_sync_ms")]
    pub sync_interval_ms: u64,
    /// Pending → Running after this long.
    #[serde(default = "d_start_ms")]
    pub pod_start_delay_ms: u64,
    /// Running → Ready after this long.
    #[serde(default = "d_ready_ms")]
    pub pod_ready_delay_ms: u64,
    /// Simulated containers stop this long after a graceful delete (capped by the pod's grace period).
    #[serde(default = "d_stop_ms")]
    pub pod_stop_delay_ms: u64,
    /// Pods with restartPolicy Never/OnFailure succeed after this long unless annotated
    /// `kube-sim.kismatic.io/run-seconds`.
    #[serde(default = "d_run_ms")]
    pub run_to_completion_ms: u64,
    #[serde(default = "d_max_pods")]
    pub max_pods: u64,
    #[serde(default)]
    pub healthz_address: Option<SocketAddr>,
}

fn d_heartbeat_ms() -> u64 {
    10_000
}
fn d_lease_seconds() -> u64 {
    40
}
fn d_start_ms() -> u64 {
    1_000
}
fn d_ready_ms() -> u64 {
    1_000
}
fn d_stop_ms() -> u64 {
    1_000
}
fn d_run_ms() -> u64 {
    3_000
}
fn d_max_pods() -> u64 {
    110
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Optional: when given, the proxy checks it can reach the API server and reports it in `/healthz`.
    #[serde(default)]
    pub api: Option<ApiClientConfig>,
    #[serde(default)]
    pub node_name: Option<String>,
    /// kube-proxy's health port is 10256.
    #[serde(default = "d_proxy_addr")]
    pub healthz_address: SocketAddr,
}

fn d_proxy_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10256))
}

/// The host name, lower-cased, as the kubelet derives a node name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_config_defaults_and_unknown_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k.yaml");
        std::fs::write(&p, "api: {server: https://127.0.0.1:6443, ca: /ca, cert: /c, key: /k}\nroles: [worker]\n")
            .expect("write");
        let c: KubeletConfig = load(&p).expect("parse");
        assert_eq!(c.roles, vec!["worker"]);
        assert_eq!(c.heartbeat_interval_ms, 10_000);
        std::fs::write(&p, "api: {server: x, ca: /ca, cert: /c, key: /k}\nbogus: 1\n").expect("write");
        let e = load::<KubeletConfig>(&p).expect_err("unknown field");
        assert!(e.to_string().contains("bogus"), "{e}");
    }
}
