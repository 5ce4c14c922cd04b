//! kube-proxy's place in the upgrade: a versioned service with a health endpoint (it proxies nothing).

use axum::routing::get;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::ProxyConfig;

pub async fn run(cfg: ProxyConfig) -> anyhow::Result<()> {
    let node = cfg.node_name.clone().unwrap_or_else(crate::config::hostname);
    let api_ok = Arc::new(AtomicBool::new(cfg.api.is_none()));
    if let Some(api) = &cfg.api {
        let kube = crate::client::Kube::new(api)?;
        let flag = api_ok.clone();
        tokio::spawn(async move {
            loop {
                let ok = kube.list_q(crate::meta::res("namespaces"), None, &[("limit", "1")]).await.is_ok();
                flag.store(ok, Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        });
    }
    let flag = api_ok.clone();
    let node2 = node.clone();
    let healthz = move || {
        let ok = flag.load(Ordering::Relaxed);
        let node = node2.clone();
        async move {
            let body = json!({"lastUpdated": crate::meta::now(), "currentTime": crate::meta::now(), "nodeName": node,
                "nodeEligible": true, "apiServerReachable": ok, "version": crate::version::current()});
            let code = if ok { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
            (code, axum::Json(body))
        }
    };
    let app = axum::Router::new()
        .route("/healthz", get(healthz.clone()))
        .route("/livez", get(healthz))
        .route("/version", get(|| async { axum::Json(crate::version::info()) }));
    let l = tokio::net::TcpListener::bind(cfg.healthz_address)
        .await
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", cfg.healthz_address))?;
    tracing::info!(address = %cfg.healthz_address, node = %node, version = crate::version::current(), "kube-sim proxy serving");
    axum::serve(l, app).await?;
    Ok(())
}
