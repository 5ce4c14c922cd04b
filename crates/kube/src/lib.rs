//! Kubernetes API access for kismatic: connecting with a kubeconfig, gathering the cluster facts the checks read
//! (paginated, cluster-wide lists, never per-node queries), and the operations the executor needs (cordon,
//! drain through the Eviction API, waiting for nodes and rollouts).
//!
//! Conversion from API objects to the core's slim fact types lives in [`convert`] as pure functions, tested on
//! plain objects; everything else here does I/O.

pub mod apply;
pub mod convert;
pub mod deprecated;
mod gather;
pub mod ops;
pub mod served;
pub mod usage;

pub use gather::gather;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubeconfig {path}: {error}")]
    Kubeconfig { path: PathBuf, error: String },
    #[error("Kubernetes API: {context}: {source}")]
    Api {
        context: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Other(String),
    /// The caller's hook refused or failed (e.g. the drain's record of the workloads that will move).
    #[error("{0}")]
    Hook(#[source] HookError),
}

/// What a caller's hook may fail with (its own typed error, boxed).
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

impl KubeError {
    pub(crate) fn api(context: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeError {
        let context = context.into();
        move |source| KubeError::Api { context, source: Box::new(source) }
    }
}

/// Connects using a kubeconfig file (its current context).
pub async fn connect(kubeconfig: &Path) -> Result<kube::Client, KubeError> {
    client(kubeconfig, true).await
}

/// Like [`connect`], but without kube's built-in retry of 429/503/504 with long backoff: the drain loop handles
/// 429 from a PodDisruptionBudget itself, like `kubectl drain` does.
pub async fn connect_without_retry(kubeconfig: &Path) -> Result<kube::Client, KubeError> {
    client(kubeconfig, false).await
}

/// Connects to one API server directly (not through the load balancer), with the kubeconfig's credentials: the
/// health gate after upgrading a master asks that master itself.
pub async fn connect_to(kubeconfig: &Path, server: &str) -> Result<kube::Client, KubeError> {
    client_with(kubeconfig, true, Some(server)).await
}

/// The user agent of every request kismatic makes: `kismatic/<version>` ([`kismatic_core::removed_api::OWN_USER_AGENT`]).
pub const USER_AGENT: &str = concat!("kismatic/", env!("CARGO_PKG_VERSION"));

async fn client(kubeconfig: &Path, retry: bool) -> Result<kube::Client, KubeError> {
    client_with(kubeconfig, retry, None).await
}

async fn client_with(kubeconfig: &Path, retry: bool, server: Option<&str>) -> Result<kube::Client, KubeError> {
    let err = |error: String| KubeError::Kubeconfig { path: kubeconfig.to_path_buf(), error };
    // rustls needs one process-wide crypto provider; a second install attempt is harmless.
    let _ = rustls_provider();
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| err(e.to_string()))?;
    let mut config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| err(e.to_string()))?;
    config.default_retry = retry;
    if let Some(server) = server {
        config.cluster_url = server.parse().map_err(|e| err(format!("server URL {server}: {e}")))?;
    }
    config.connect_timeout = Some(std::time::Duration::from_secs(10));
    config.read_timeout = Some(std::time::Duration::from_secs(60));
    // Named in the API servers' audit logs, so the removed-api gate can tell the tool's own reads from clients.
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(USER_AGENT)));
    kube::Client::try_from(config).map_err(|e| err(e.to_string()))
}

/// `GET /readyz` and `GET /version` of the API server `client` points at: `Ok(gitVersion)` when ready.
pub async fn ready_version(client: &kube::Client) -> Result<String, KubeError> {
    let req = http::Request::get("/readyz").body(Vec::new()).map_err(|e| KubeError::Other(e.to_string()))?;
    let text = client.request_text(req).await.map_err(KubeError::api("GET /readyz"))?;
    if text.trim() != "ok" {
        return Err(KubeError::Other(format!("/readyz answered {:?}", text.trim())));
    }
    let v = client.apiserver_version().await.map_err(KubeError::api("GET /version"))?;
    Ok(v.git_version)
}

fn rustls_provider() -> Result<(), String> {
    rustls::crypto::ring::default_provider().install_default().map_err(|_| "already installed".to_string())
}

#[cfg(test)]
mod user_agent_tests {
    #[test]
    fn the_tools_user_agent_is_the_one_the_removed_api_gate_leaves_out() {
        assert!(super::USER_AGENT.starts_with(kismatic_core::removed_api::OWN_USER_AGENT));
        assert!(kismatic_core::removed_api::control_plane_caller("anyone", super::USER_AGENT));
    }
}
