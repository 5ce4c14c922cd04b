//! Plain-HTTP `/healthz` + `/version` listener for components that have one.

use axum::routing::get;
use std::net::SocketAddr;

pub fn spawn(addr: Option<SocketAddr>, component: &'static str) {
    let Some(addr) = addr else { return };
    tokio::spawn(async move {
        let app = axum::Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/livez", get(|| async { "ok" }))
            .route("/version", get(|| async { axum::Json(crate::version::info()) }));
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                tracing::info!(%addr, component, "health endpoint serving");
                if let Err(e) = axum::serve(l, app).await {
                    tracing::error!("{component} health endpoint: {e}");
                }
            }
            Err(e) => tracing::error!("{component} health endpoint: binding {addr}: {e}"),
        }
    });
}
