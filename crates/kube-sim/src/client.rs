//! A minimal API client for the simulated components (client-certificate auth, JSON).

use serde_json::{Value, json};

use crate::config::ApiClientConfig;
use crate::meta::Resource;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("{code} {reason}: {message}")]
    Status { code: u16, reason: String, message: String },
    #[error("transport: {0}")]
    Transport(String),
}

impl KubeError {
    pub fn code(&self) -> u16 {
        match self {
            KubeError::Status { code, .. } => *code,
            KubeError::Transport(_) => 0,
        }
    }
}

#[derive(Clone)]
pub struct Kube {
    http: reqwest::Client,
    /// Without an overall timeout, for watches.
    streaming: reqwest::Client,
    base: String,
}

/// A "something changed" flag set by watches, so that loops can sleep until there is work.
#[derive(Default)]
pub struct Trigger {
    dirty: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Trigger {
    pub fn fire(&self) {
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        self.notify.notify_one();
    }

    /// Whether anything fired since the last call (and reset).
    pub fn take(&self) -> bool {
        self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed)
    }

    /// Wait until fired or `d` elapsed.
    pub async fn wait(&self, d: std::time::Duration) {
        if self.dirty.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let _ = tokio::time::timeout(d, self.notify.notified()).await;
    }
}

pub type R<T> = Result<T, KubeError>;

impl Kube {
    pub fn new(cfg: &ApiClientConfig) -> Result<Kube, crate::tls::TlsError> {
        Ok(Kube {
            http: crate::tls::client(&cfg.ca, &cfg.cert, &cfg.key, Some(std::time::Duration::from_secs(30)))?,
            streaming: crate::tls::client(&cfg.ca, &cfg.cert, &cfg.key, None)?,
            base: cfg.server.trim_end_matches('/').to_string(),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> R<Value> {
        let resp = req.send().await.map_err(|e| KubeError::Transport(e.to_string()))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        Err(KubeError::Status {
            code: status.as_u16(),
            reason: body.get("reason").and_then(Value::as_str).unwrap_or("").to_string(),
            message: body.get("message").and_then(Value::as_str).unwrap_or("").to_string(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, r: &Resource, ns: Option<&str>, name: &str) -> R<Option<Value>> {
        match self.send(self.http.get(self.url(&r.path(ns, Some(name))))).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.code() == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// List (all pages) with an optional query, returning items and the list resourceVersion.
    pub async fn list_q(&self, r: &Resource, ns: Option<&str>, query: &[(&str, &str)]) -> R<(Vec<Value>, String)> {
        let v = self.send(self.http.get(self.url(&r.path(ns, None))).query(query)).await?;
        let rv = v.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("").to_string();
        Ok((v.get("items").and_then(Value::as_array).cloned().unwrap_or_default(), rv))
    }

    pub async fn create(&self, r: &Resource, ns: Option<&str>, obj: &Value) -> R<Value> {
        self.send(self.http.post(self.url(&r.path(ns, None))).json(obj)).await
    }

    pub async fn replace(&self, r: &Resource, obj: &Value) -> R<Value> {
        let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str);
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        self.send(self.http.put(self.url(&r.path(ns, Some(name)))).json(obj)).await
    }

    pub async fn merge_patch(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        patch: &Value,
    ) -> R<Value> {
        let mut url = self.url(&r.path(ns, Some(name)));
        if let Some(s) = sub {
            url.push('/');
            url.push_str(s);
        }
        let body = serde_json::to_vec(patch).unwrap_or_default();
        self.send(self.http.patch(url).header("content-type", "application/merge-patch+json").body(body)).await
    }

    pub async fn delete(
        &self,
        r: &Resource,
        ns: Option<&str>,
        name: &str,
        grace: Option<i64>,
        uid: Option<&str>,
    ) -> R<()> {
        let mut opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"});
        if let Some(g) = grace {
            opts["gracePeriodSeconds"] = json!(g);
        }
        if let Some(u) = uid {
            opts["preconditions"] = json!({"uid": u});
        }
        match self.send(self.http.delete(self.url(&r.path(ns, Some(name)))).json(&opts)).await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Keep a watch on `r` (all namespaces, with `query`) open and fire `trigger` on every event (and on every
    /// (re)connection, since events may have been missed in between).
    pub fn watch_trigger(&self, r: &'static Resource, query: Vec<(String, String)>, trigger: std::sync::Arc<Trigger>) {
        let kube = self.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            loop {
                let q: Vec<(&str, &str)> =
                    query.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain([("limit", "1")]).collect();
                let rv = match kube.list_q(r, None, &q).await {
                    Ok((_, rv)) => rv,
                    Err(e) => {
                        tracing::debug!(resource = r.name, "watch: listing: {e}");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                };
                trigger.fire();
                let mut q: Vec<(&str, &str)> = query.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                q.extend([("watch", "true"), ("resourceVersion", rv.as_str()), ("timeoutSeconds", "600")]);
                match kube.streaming.get(kube.url(&r.path(None, None))).query(&q).send().await {
                    Ok(resp) if resp.status().is_success() => {
                        let mut body = resp.bytes_stream();
                        while let Some(chunk) = body.next().await {
                            if chunk.is_err() {
                                break;
                            }
                            trigger.fire();
                        }
                    }
                    Ok(resp) => tracing::debug!(resource = r.name, status = %resp.status(), "watch refused"),
                    Err(e) => tracing::debug!(resource = r.name, "watch: {e}"),
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        });
    }
}
