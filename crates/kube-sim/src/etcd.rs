//! A small etcd v3 client over the JSON gateway (`/v3/kv/*`, `/v3/watch`), HTTPS with client certificates.
//! Works with etcd 3.4 and 3.5 and needs no protoc.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::EtcdConfig;

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd unavailable: {0}")]
    Unavailable(String),
    #[error("etcd answered unexpectedly: {0}")]
    Protocol(String),
    #[error("required revision has been compacted (compact revision {0})")]
    Compacted(i64),
}

#[derive(Debug, Clone)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
}

#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub deleted: bool,
    pub kv: Kv,
    pub prev: Option<Kv>,
}

pub struct Etcd {
    unary: reqwest::Client,
    streaming: reqwest::Client,
    endpoints: Vec<String>,
    current: AtomicUsize,
}

/// etcd's JSON gateway encodes int64 as strings and omits zero values.
pub fn num(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

fn b64(s: &str) -> String {
    B64.encode(s.as_bytes())
}

/// The end of the range of keys starting with `prefix`.
pub fn prefix_end(prefix: &str) -> String {
    let mut b = prefix.as_bytes().to_vec();
    while let Some(last) = b.pop() {
        if last < 0xff {
            b.push(last + 1);
            return B64.encode(&b);
        }
    }
    B64.encode([0u8])
}

fn parse_kv(v: &Value) -> Result<Kv, EtcdError> {
    let key = v.get("key").and_then(Value::as_str).unwrap_or("");
    let key = B64.decode(key).map_err(|e| EtcdError::Protocol(format!("key: {e}")))?;
    let value = match v.get("value").and_then(Value::as_str) {
        Some(s) => B64.decode(s).map_err(|e| EtcdError::Protocol(format!("value: {e}")))?,
        None => Vec::new(),
    };
    Ok(Kv {
        key: String::from_utf8_lossy(&key).into_owned(),
        value,
        create_revision: num(v.get("create_revision")),
        mod_revision: num(v.get("mod_revision")),
    })
}

fn parse_kvs(v: &Value) -> Result<Vec<Kv>, EtcdError> {
    v.get("kvs").and_then(Value::as_array).map(|a| a.iter().map(parse_kv).collect()).unwrap_or(Ok(Vec::new()))
}

fn header_rev(v: &Value) -> i64 {
    num(v.pointer("/header/revision"))
}

pub struct RangeResult {
    pub kvs: Vec<Kv>,
    pub revision: i64,
    pub more: bool,
}

impl Etcd {
    pub fn new(cfg: &EtcdConfig) -> Result<Etcd, crate::tls::TlsError> {
        Ok(Etcd {
            unary: crate::tls::client(&cfg.ca, &cfg.cert, &cfg.key, Some(std::time::Duration::from_secs(10)))?,
            streaming: crate::tls::client(&cfg.ca, &cfg.cert, &cfg.key, None)?,
            endpoints: cfg.endpoints.iter().map(|e| e.trim_end_matches('/').to_string()).collect(),
            current: AtomicUsize::new(0),
        })
    }

    async fn send(&self, client: &reqwest::Client, path: &str, body: &Value) -> Result<reqwest::Response, EtcdError> {
        let n = self.endpoints.len().max(1);
        let start = self.current.load(Ordering::Relaxed);
        let mut last = String::from("no etcd endpoints configured");
        for i in 0..self.endpoints.len() {
            let idx = (start + i) % n;
            let url = format!("{}{}", self.endpoints[idx], path);
            match client.post(&url).json(body).send().await {
                Ok(resp) if resp.status().is_success() => {
                    self.current.store(idx, Ordering::Relaxed);
                    return Ok(resp);
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    // gRPC code 14 (unavailable) or a 5xx: a member without quorum or shutting down; try the next.
                    if status.is_server_error() {
                        last = format!("{url}: {status} {text}");
                        continue;
                    }
                    return Err(EtcdError::Protocol(format!("{url}: {status} {text}")));
                }
                Err(e) => last = format!("{url}: {e}"),
            }
        }
        Err(EtcdError::Unavailable(last))
    }

    async fn call(&self, path: &str, body: Value) -> Result<Value, EtcdError> {
        let resp = self.send(&self.unary, path, &body).await?;
        let v: Value = resp.json().await.map_err(|e| EtcdError::Protocol(e.to_string()))?;
        if let Some(err) = v.get("error").or_else(|| v.get("message")).filter(|_| v.get("header").is_none()) {
            let text = err.as_str().unwrap_or_default().to_string();
            if text.contains("compacted") {
                return Err(EtcdError::Compacted(0));
            }
            return Err(EtcdError::Protocol(text));
        }
        Ok(v)
    }

    pub async fn get(&self, key: &str) -> Result<(Option<Kv>, i64), EtcdError> {
        let v = self.call("/v3/kv/range", json!({"key": b64(key)})).await?;
        Ok((parse_kvs(&v)?.into_iter().next(), header_rev(&v)))
    }

    /// Keys in `[from, prefix_end(prefix))`, at `revision` (0 = latest), at most `limit` (0 = all).
    pub async fn range(&self, prefix: &str, from: &str, revision: i64, limit: i64) -> Result<RangeResult, EtcdError> {
        let mut body = json!({"key": b64(from), "range_end": prefix_end(prefix)});
        if revision > 0 {
            body["revision"] = json!(revision.to_string());
        }
        if limit > 0 {
            body["limit"] = json!(limit.to_string());
        }
        let v = self.call("/v3/kv/range", body).await?;
        Ok(RangeResult {
            kvs: parse_kvs(&v)?,
            revision: header_rev(&v),
            more: v.get("more").and_then(Value::as_bool).unwrap_or(false),
        })
    }

    /// Revision of the store (a cheap liveness probe).
    pub async fn revision(&self) -> Result<i64, EtcdError> {
        let v = self.call("/v3/kv/range", json!({"key": b64("/kube-sim-health"), "count_only": true})).await?;
        Ok(header_rev(&v))
    }

    /// Create `key` only if absent. `Ok(Some(rev))` on success, `Ok(None)` if it exists.
    pub async fn create(&self, key: &str, value: &[u8]) -> Result<Option<i64>, EtcdError> {
        let body = json!({
            "compare": [{"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            "success": [{"request_put": {"key": b64(key), "value": B64.encode(value)}}],
        });
        let v = self.call("/v3/kv/txn", body).await?;
        if v.get("succeeded").and_then(Value::as_bool).unwrap_or(false) { Ok(Some(header_rev(&v))) } else { Ok(None) }
    }

    /// Compare-and-swap on mod_revision. `Ok(Some(rev))` on success, `Ok(None)` on conflict or absence.
    pub async fn update(&self, key: &str, value: &[u8], mod_revision: i64) -> Result<Option<i64>, EtcdError> {
        let body = json!({
            "compare": [{"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": mod_revision.to_string()}],
            "success": [{"request_put": {"key": b64(key), "value": B64.encode(value)}}],
        });
        let v = self.call("/v3/kv/txn", body).await?;
        if v.get("succeeded").and_then(Value::as_bool).unwrap_or(false) { Ok(Some(header_rev(&v))) } else { Ok(None) }
    }

    /// Delete `key` if its mod_revision is still `mod_revision`. `Ok(Some(rev))` on success.
    pub async fn delete(&self, key: &str, mod_revision: i64) -> Result<Option<i64>, EtcdError> {
        let body = json!({
            "compare": [{"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": mod_revision.to_string()}],
            "success": [{"request_delete_range": {"key": b64(key)}}],
        });
        let v = self.call("/v3/kv/txn", body).await?;
        if v.get("succeeded").and_then(Value::as_bool).unwrap_or(false) { Ok(Some(header_rev(&v))) } else { Ok(None) }
    }

    /// Watch keys under `prefix` from `start_revision`. The stream ends when etcd closes it.
    pub async fn watch(
        &self,
        prefix: &str,
        start_revision: i64,
    ) -> Result<impl futures_util::Stream<Item = Result<Vec<WatchEvent>, EtcdError>> + Send + 'static, EtcdError> {
        let body = json!({"create_request": {
            "key": b64(prefix), "range_end": prefix_end(prefix),
            "start_revision": start_revision.to_string(), "prev_kv": true,
        }});
        let resp = self.send(&self.streaming, "/v3/watch", &body).await?;
        let bytes = resp.bytes_stream();
        let stream =
            futures_util::stream::unfold((bytes, Vec::<u8>::new(), false), |(mut bytes, mut buf, done)| async move {
                if done {
                    return None;
                }
                loop {
                    if let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = buf.drain(..=pos).collect();
                        let line = String::from_utf8_lossy(&line);
                        let line = line.trim();
                        if line.is_empty() {
                            continue;
                        }
                        let item = parse_watch_line(line);
                        let stop = item.is_err();
                        return Some((item, (bytes, buf, stop)));
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                        Some(Err(e)) => return Some((Err(EtcdError::Unavailable(e.to_string())), (bytes, buf, true))),
                        None => return None,
                    }
                }
            });
        Ok(stream)
    }
}

fn parse_watch_line(line: &str) -> Result<Vec<WatchEvent>, EtcdError> {
    let v: Value = serde_json::from_str(line).map_err(|e| EtcdError::Protocol(format!("watch: {e}")))?;
    if let Some(err) = v.get("error") {
        return Err(EtcdError::Protocol(format!("watch: {err}")));
    }
    let r = v.get("result").unwrap_or(&Value::Null);
    let compact = num(r.get("compact_revision"));
    if compact > 0 {
        return Err(EtcdError::Compacted(compact));
    }
    if r.get("canceled").and_then(Value::as_bool).unwrap_or(false) {
        return Err(EtcdError::Protocol(format!("watch canceled: {}", r.get("cancel_reason").unwrap_or(&Value::Null))));
    }
    let mut out = Vec::new();
    for e in r.get("events").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        let kv = parse_kv(e.get("kv").unwrap_or(&Value::Null))?;
        let prev = match e.get("prev_kv") {
            Some(p) => Some(parse_kv(p)?),
            None => None,
        };
        out.push(WatchEvent { deleted: e.get("type").and_then(Value::as_str) == Some("DELETE"), kv, prev });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(B64.decode(prefix_end("/registry/pods/")).expect("b64"), b"/registry/pods0");
    }

    #[test]
    fn watch_lines_parse() {
        let l = r#"{"result":{"header":{"revision":"3"},"events":[{"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"3"},"prev_kv":{"key":"Zm9v","create_revision":"2","mod_revision":"2","value":"YmFy"}}]}}"#;
        let ev = parse_watch_line(l).expect("parse");
        assert!(ev[0].deleted);
        assert_eq!(ev[0].prev.as_ref().map(|p| p.value.clone()), Some(b"bar".to_vec()));
        assert!(matches!(parse_watch_line(r#"{"result":{"compact_revision":"5"}}"#), Err(EtcdError::Compacted(5))));
    }
}
