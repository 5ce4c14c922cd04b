//! kube-sim's API server: HTTPS with client-certificate authentication, objects in etcd.

pub mod defaults;
pub mod error;
pub mod patch;
pub mod rest;
pub mod store;
pub mod table;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

use crate::config::ApiServerConfig;
use crate::etcd::Etcd;
use crate::meta::{self, RESOURCES};
use error::ApiError;
use store::Store;

pub struct App {
    pub store: Store,
    pub advertise: String,
}

#[derive(Clone, Copy)]
struct Authenticated(bool);

pub async fn run(cfg: ApiServerConfig) -> anyhow::Result<()> {
    let tls = crate::tls::server_config(&cfg.tls.cert, &cfg.tls.key, &cfg.tls.client_ca)?;
    let etcd = Etcd::new(&cfg.etcd)?;
    let app = Arc::new(App { store: Store::new(etcd, &cfg.etcd.prefix), advertise: cfg.bind_address.to_string() });
    tokio::spawn(bootstrap(app.clone()));
    let router = axum::Router::new().fallback(dispatch).with_state(app);
    let listener = tokio::net::TcpListener::bind(cfg.bind_address)
        .await
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", cfg.bind_address))?;
    tracing::info!(address = %cfg.bind_address, version = crate::version::current(), "kube-sim apiserver serving");
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!("TLS handshake failed: {e}");
                    return;
                }
            };
            let authed = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(Authenticated(authed));
                let mut r = router.clone();
                async move { tower::Service::call(&mut r, req).await }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc).await;
        });
    }
}

/// Create the namespaces every cluster has, once etcd answers.
async fn bootstrap(app: Arc<App>) {
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        loop {
            let body = serde_json::to_vec(&json!({"metadata": {"name": ns}})).unwrap_or_default();
            match rest::create(&app.store, meta::res("namespaces"), None, &body, &HashMap::new()).await {
                Ok(_) => break,
                Err(e) if e.reason == "AlreadyExists" => break,
                Err(e) => {
                    tracing::debug!("bootstrap namespace {ns}: {}", e.message);
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }
}

fn ok_text(s: &str) -> Response {
    (StatusCode::OK, [("content-type", "text/plain; charset=utf-8")], s.to_string()).into_response()
}

fn json_ok(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let authed = req.extensions().get::<Authenticated>().is_some_and(|a| a.0);
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    let q: HashMap<String, String> = serde_urlencoded::from_str(req.uri().query().unwrap_or("")).unwrap_or_default();
    let headers = req.headers().clone();
    match path.as_str() {
        "/healthz" | "/livez" => return ok_text("ok"),
        "/readyz" => return readyz(&app).await,
        "/version" => return json_ok(crate::version::info()),
        _ => {}
    }
    if !authed {
        return ApiError::new(401, "Unauthorized", "Unauthorized").into_response();
    }
    let body = match axum::body::to_bytes(req.into_body(), 64 << 20).await {
        Ok(b) => b,
        Err(e) => return ApiError::bad_request(format!("reading body: {e}")).into_response(),
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get = method == Method::GET;
    match segs.as_slice() {
        ["api"] if get => json_ok(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": app.advertise}]})),
        ["apis"] if get => json_ok(api_groups()),
        ["api", "v1"] if get => json_ok(resource_list("", "v1")),
        ["apis", g] if get => match group(g) {
            Some(v) => json_ok(v),
            None => not_found(),
        },
        ["apis", g, v] if get => {
            if RESOURCES.iter().any(|r| r.group == *g && r.version == *v) {
                json_ok(resource_list(g, v))
            } else {
                not_found()
            }
        }
        ["openapi", "v3"] if get => json_ok(openapi_root()),
        ["openapi", "v3", "api", "v1"] if get => json_ok(openapi_gv("", "v1")),
        ["openapi", "v3", "apis", g, v] if get => json_ok(openapi_gv(g, v)),
        ["api", "v1", rest @ ..] => match rest::parse_target("", "v1", rest) {
            Some(t) => rest::handle(app, method, t, q, headers, body).await,
            None => not_found(),
        },
        ["apis", g, v, rest @ ..] => match rest::parse_target(g, v, rest) {
            Some(t) => rest::handle(app, method, t, q, headers, body).await,
            None => not_found(),
        },
        _ => not_found(),
    }
}

fn not_found() -> Response {
    ApiError::new(404, "NotFound", "the server could not find the requested resource").into_response()
}

async fn readyz(app: &App) -> Response {
    match tokio::time::timeout(std::time::Duration::from_secs(3), app.store.etcd.revision()).await {
        Ok(Ok(_)) => ok_text("ok"),
        Ok(Err(e)) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("[-]etcd failed: {e}\nreadyz check failed\n")).into_response()
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "[-]etcd failed: timeout\nreadyz check failed\n").into_response(),
    }
}

fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

fn group(g: &str) -> Option<Value> {
    let (_, v) = groups().into_iter().find(|(gg, _)| *gg == g)?;
    let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
    Some(json!({"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": [gv], "preferredVersion": gv}))
}

fn api_groups() -> Value {
    let gs: Vec<Value> = groups()
        .into_iter()
        .filter_map(|(g, _)| group(g))
        .map(|mut v| {
            if let Some(m) = v.as_object_mut() {
                m.remove("kind");
                m.remove("apiVersion");
            }
            v
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs})
}

const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

fn resource_list(g: &str, v: &str) -> Value {
    let mut out = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == g && r.version == v) {
        let mut e = json!({"name": r.name, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind, "verbs": VERBS});
        if !r.short.is_empty() {
            e["shortNames"] = json!(r.short);
        }
        if matches!(
            r.kind,
            "Pod"
                | "Service"
                | "ReplicationController"
                | "Deployment"
                | "ReplicaSet"
                | "StatefulSet"
                | "DaemonSet"
                | "Job"
        ) {
            e["categories"] = json!(["all"]);
        }
        out.push(e);
        let sub = |name: &str, kind: &str, verbs: &[&str]| json!({"name": format!("{}/{name}", r.name), "singularName": "", "namespaced": r.namespaced, "kind": kind, "verbs": verbs});
        if r.status {
            out.push(sub("status", r.kind, &["get", "patch", "update"]));
        }
        if matches!(r.kind, "Deployment" | "ReplicaSet" | "StatefulSet" | "ReplicationController") {
            let mut s = sub("scale", "Scale", &["get", "patch", "update"]);
            s["group"] = json!("autoscaling");
            s["version"] = json!("v1");
            out.push(s);
        }
        if r.kind == "Pod" {
            let mut ev = sub("eviction", "Eviction", &["create"]);
            ev["group"] = json!("policy");
            ev["version"] = json!("v1");
            out.push(ev);
            out.push(sub("binding", "Binding", &["create"]));
        }
        if r.kind == "Namespace" {
            out.push(sub("finalize", "Namespace", &["update"]));
        }
    }
    let gv = if g.is_empty() { v.to_string() } else { format!("{g}/{v}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out})
}

/// A minimal OpenAPI v3 index. It carries no schemas: only, per resource, a PATCH operation that declares the
/// `fieldValidation` query parameter, which is what kubectl looks for before letting the server validate (instead of
/// downloading schemas for client-side validation). kubectl then builds strategic merge patches from its built-in
/// types.
fn openapi_root() -> Value {
    let mut paths = serde_json::Map::new();
    paths.insert(
        "api/v1".into(),
        json!({"serverRelativeURL": format!("/openapi/v3/api/v1?hash={}", crate::version::current())}),
    );
    for (g, v) in groups() {
        paths.insert(
            format!("apis/{g}/{v}"),
            json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash={}", crate::version::current())}),
        );
    }
    json!({"paths": paths})
}

fn openapi_gv(g: &str, v: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for r in RESOURCES.iter().filter(|r| r.group == g && r.version == v) {
        let gvk = json!({"group": g, "version": v, "kind": r.kind});
        let op = json!({
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}],
            "responses": {"200": {"description": "OK"}},
        });
        let path = if r.namespaced {
            meta::res(r.name).path(Some("{namespace}"), Some("{name}"))
        } else {
            r.path(None, Some("{name}"))
        };
        paths.insert(path, json!({"patch": op.clone(), "put": op}));
        let coll = if r.namespaced { r.path(Some("{namespace}"), None) } else { r.path(None, None) };
        paths.insert(coll, json!({"post": {
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}}],
            "responses": {"201": {"description": "Created"}},
        }}));
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes (kube-sim)", "version": crate::version::current()}, "paths": paths, "components": {"schemas": {}}})
}
