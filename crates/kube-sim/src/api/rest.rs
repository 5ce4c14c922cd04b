//! Resource endpoints: list, watch, get, create, update, patch, delete, and the status/scale/binding/eviction
//! subresources.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;

use super::App;
use super::defaults;
use super::error::ApiError;
use super::patch;
use super::store::{Store, finalizers, with_rv};
use crate::meta::{self, FieldSelector, Resource, Selector, res};

pub struct Target {
    pub r: &'static Resource,
    pub ns: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

/// Parse the segments after `/api/v1` or `/apis/<g>/<v>`.
pub fn parse_target(group: &str, version: &str, segs: &[&str]) -> Option<Target> {
    let find = |n: &str| meta::find(group, version, n);
    let own = |s: &&str| s.to_string();
    if segs.len() >= 3 && segs[0] == "namespaces" && find(segs[2]).is_some_and(|r| r.namespaced) {
        if segs.len() > 5 {
            return None;
        }
        return Some(Target {
            r: find(segs[2])?,
            ns: Some(segs[1].to_string()),
            name: segs.get(3).map(own),
            sub: segs.get(4).map(own),
        });
    }
    if segs.is_empty() || segs.len() > 3 {
        return None;
    }
    Some(Target { r: find(segs[0])?, ns: None, name: segs.get(1).map(own), sub: segs.get(2).map(own) })
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, [("content-type", "application/json")], serde_json::to_vec(v).unwrap_or_default()).into_response()
}

fn success_status(code: u16, details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code, "details": details})
}

pub async fn handle(
    app: Arc<App>,
    method: Method,
    t: Target,
    q: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match handle_inner(app, method, t, q, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle_inner(
    app: Arc<App>,
    method: Method,
    t: Target,
    q: HashMap<String, String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r = t.r;
    if r.namespaced && t.ns.is_none() && t.name.is_some() {
        return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    }
    let ns = t.ns.clone().unwrap_or_default();
    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_string();
    let accept = headers.get("accept").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let store = &app.store;
    if !body.is_empty() && (ct.starts_with("application/vnd.kubernetes.protobuf") || ct.starts_with("application/cbor"))
    {
        // client-go falls back to JSON when a server answers 415 to a binary encoding.
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {ct})"
            ),
        ));
    }
    match (method.clone(), t.name.as_deref(), t.sub.as_deref()) {
        (Method::GET, None, None) => {
            if matches!(q.get("watch").map(String::as_str), Some("true" | "1")) {
                watch(app.clone(), r, t.ns.clone(), &q, super::table::wants_table(&accept)).await
            } else {
                let l = list(store, r, t.ns.as_deref(), &q).await?;
                if super::table::wants_table(&accept) {
                    let items = l["items"].as_array().cloned().unwrap_or_default();
                    let rv = l["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
                    let t = super::table::table(
                        r,
                        &items,
                        &rv,
                        l["metadata"]["continue"].as_str(),
                        q.get("includeObject").map(String::as_str).unwrap_or("Metadata"),
                    );
                    return Ok(json_response(StatusCode::OK, &t));
                }
                Ok(json_response(StatusCode::OK, &l))
            }
        }
        (Method::POST, None, None) => {
            let (code, obj) = create(store, r, t.ns.as_deref(), &body, &q).await?;
            Ok(json_response(code, &obj))
        }
        (Method::DELETE, None, None) => {
            let l = list(store, r, t.ns.as_deref(), &q).await?;
            let opts = DeleteOpts::parse(&q, &body)?;
            for item in l["items"].as_array().cloned().unwrap_or_default() {
                match delete(store, r, meta::namespace(&item), meta::name(&item), &opts).await {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(json_response(StatusCode::OK, &l))
        }
        (Method::GET, Some(name), None | Some("status")) => {
            let o = store.get(r, &ns, name).await?.obj;
            if super::table::wants_table(&accept) {
                let rv = o["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
                let t = super::table::table(
                    r,
                    std::slice::from_ref(&o),
                    &rv,
                    None,
                    q.get("includeObject").map(String::as_str).unwrap_or("Metadata"),
                );
                return Ok(json_response(StatusCode::OK, &t));
            }
            Ok(json_response(StatusCode::OK, &o))
        }
        (Method::PUT, Some(name), sub @ (None | Some("status") | Some("finalize"))) => {
            let new: Value = parse_json(&body)?;
            Ok(json_response(StatusCode::OK, &update(store, r, &ns, name, new, sub).await?))
        }
        (Method::PATCH, Some(name), sub @ (None | Some("status"))) => {
            Ok(json_response(StatusCode::OK, &patch_object(store, r, &ns, name, &ct, &body, sub).await?))
        }
        (Method::DELETE, Some(name), None) => {
            let opts = DeleteOpts::parse(&q, &body)?;
            let (obj, gone) = delete(store, r, &ns, name, &opts).await?;
            if gone && r.kind != "Pod" {
                Ok(json_response(
                    StatusCode::OK,
                    &success_status(
                        200,
                        json!({"name": name, "group": r.group, "kind": r.name, "uid": meta::uid(&obj)}),
                    ),
                ))
            } else {
                Ok(json_response(StatusCode::OK, &obj))
            }
        }
        (m, Some(name), Some("scale"))
            if matches!(r.kind, "Deployment" | "ReplicaSet" | "StatefulSet" | "ReplicationController") =>
        {
            Ok(json_response(StatusCode::OK, &scale(store, r, &ns, name, m, &ct, &body).await?))
        }
        (Method::POST, Some(name), Some("eviction")) if r.kind == "Pod" => {
            let ev: Value = parse_json(&body)?;
            evict(store, &ns, name, &ev).await?;
            Ok(json_response(StatusCode::CREATED, &success_status(201, json!({}))))
        }
        (Method::POST, Some(name), Some("binding")) if r.kind == "Pod" => {
            let b: Value = parse_json(&body)?;
            bind(store, &ns, name, &b).await?;
            Ok(json_response(StatusCode::CREATED, &success_status(201, json!({}))))
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({method} {}{})",
                r.name,
                t.sub.map(|s| format!("/{s}")).unwrap_or_default()
            ),
        )),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded as JSON: {e}")))?;
    Ok(v)
}

// ---------------- list & watch ----------------

struct Filter {
    labels: Selector,
    fields: FieldSelector,
}

impl Filter {
    fn parse(r: &Resource, q: &HashMap<String, String>) -> Result<Filter, ApiError> {
        let labels =
            Selector::parse(q.get("labelSelector").map(String::as_str).unwrap_or("")).map_err(ApiError::bad_request)?;
        let fields = FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""), r)
            .map_err(ApiError::bad_request)?;
        Ok(Filter { labels, fields })
    }
    fn matches(&self, o: &Value) -> bool {
        self.labels.matches(&meta::labels(o)) && self.fields.matches(o)
    }
}

pub async fn list(
    store: &Store,
    r: &Resource,
    ns: Option<&str>,
    q: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let filter = Filter::parse(r, q)?;
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    let prefix = store.collection(r, ns);
    let (mut from, mut rev) = (prefix.clone(), 0i64);
    if let Some(tok) = q.get("continue").filter(|c| !c.is_empty()) {
        let bad = || ApiError::bad_request("continue key is not valid");
        let raw = B64.decode(tok).map_err(|_| bad())?;
        let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
        from = v["start"].as_str().filter(|s| s.starts_with(&prefix)).ok_or_else(bad)?.to_string();
        rev = v["rv"].as_i64().ok_or_else(bad)?;
    }
    let mut items = Vec::new();
    let mut next: Option<String> = None;
    'outer: loop {
        let batch = if limit > 0 { (limit - items.len()).max(100) as i64 + 1 } else { 0 };
        let res = match store.etcd.range(&prefix, &from, rev, batch).await {
            Err(crate::etcd::EtcdError::Compacted(_)) if rev > 0 => {
                return Err(ApiError::new(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            other => other?,
        };
        if rev == 0 {
            rev = res.revision;
        }
        for kv in &res.kvs {
            let obj = Store::decode(kv)?;
            if !filter.matches(&obj) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                next = Some(kv.key.clone());
                break 'outer;
            }
            items.push(obj);
        }
        match (res.more, res.kvs.last()) {
            (true, Some(last)) => from = format!("{}\0", last.key),
            _ => break,
        }
    }
    let mut md = json!({"resourceVersion": rev.to_string()});
    if let Some(n) = next {
        md["continue"] = json!(B64.encode(serde_json::to_vec(&json!({"rv": rev, "start": n})).unwrap_or_default()));
    }
    Ok(json!({"kind": format!("{}List", r.kind), "apiVersion": r.api_version(), "metadata": md, "items": items}))
}

async fn watch(
    app: Arc<App>,
    r: &'static Resource,
    ns: Option<String>,
    q: &HashMap<String, String>,
    as_table: bool,
) -> Result<Response, ApiError> {
    let include = q.get("includeObject").cloned().unwrap_or_else(|| "Metadata".into());
    let filter = Filter::parse(r, q)?;
    let mut rv: i64 = q.get("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(0);
    // WatchList (client-go's WatchListClient): initial state as ADDED events, then a bookmark marking its end.
    let send_bookmark = q.get("sendInitialEvents").is_some_and(|v| v == "true");
    if send_bookmark {
        rv = 0;
    }
    let (kind, api_version) = (r.kind.to_string(), r.api_version());
    let timeout = q.get("timeoutSeconds").and_then(|v| v.parse::<u64>().ok()).unwrap_or(1800);
    let store = &app.store;
    let (initial, start) = if rv == 0 {
        let mut lq = q.clone();
        lq.remove("limit");
        lq.remove("continue");
        let l = list(store, r, ns.as_deref(), &lq).await?;
        let rev: i64 = l["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        (l["items"].as_array().cloned().unwrap_or_default(), rev + 1)
    } else {
        (Vec::new(), rv + 1)
    };
    let prefix = store.collection(r, ns.as_deref());
    let mut stream = Box::pin(store.etcd.watch(&prefix, start).await?);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(64);
    let line = move |t: &str, o: &Value| {
        let wrapped;
        let o = if as_table && t != "ERROR" && t != "BOOKMARK" {
            wrapped = super::table::table(
                r,
                std::slice::from_ref(o),
                o["metadata"]["resourceVersion"].as_str().unwrap_or(""),
                None,
                &include,
            );
            &wrapped
        } else {
            o
        };
        let mut b = serde_json::to_vec(&json!({"type": t, "object": o})).unwrap_or_default();
        b.push(b'\n');
        Ok(Bytes::from(b))
    };
    tokio::spawn(async move {
        for o in &initial {
            if tx.send(line("ADDED", o)).await.is_err() {
                return;
            }
        }
        if send_bookmark {
            let bm = json!({"kind": kind, "apiVersion": api_version,
                "metadata": {"resourceVersion": (start - 1).to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}});
            if tx.send(line("BOOKMARK", &bm)).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::sleep(std::time::Duration::from_secs(timeout));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                _ = &mut deadline => return,
                item = stream.next() => {
                    let events = match item {
                        None => return,
                        Some(Ok(e)) => e,
                        Some(Err(e)) => {
                            let st = match e {
                                crate::etcd::EtcdError::Compacted(c) => ApiError::new(410, "Expired", format!("too old resource version: {} ({})", start - 1, c)),
                                other => ApiError::internal(other.to_string()),
                            };
                            let _ = tx.send(line("ERROR", &st.status())).await;
                            return;
                        }
                    };
                    for ev in events {
                        let out = translate(&ev, &filter);
                        if let Some((t, o)) = out
                            && tx.send(line(t, &o)).await.is_err()
                        {
                            return;
                        }
                    }
                }
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache")
        .body(body)
        .unwrap_or_else(|_| ApiError::internal("building watch response").into_response()))
}

fn translate(ev: &crate::etcd::WatchEvent, filter: &Filter) -> Option<(&'static str, Value)> {
    let prev = ev.prev.as_ref().and_then(|p| Store::decode(p).ok());
    if ev.deleted {
        let p = prev?;
        return filter.matches(&p).then(|| ("DELETED", with_rv(p, ev.kv.mod_revision)));
    }
    let new = Store::decode(&ev.kv).ok()?;
    let new_match = filter.matches(&new);
    let prev_match = prev.as_ref().is_some_and(|p| filter.matches(p));
    match (ev.kv.create_revision == ev.kv.mod_revision || prev.is_none(), prev_match, new_match) {
        (true, _, true) => Some(("ADDED", new)),
        (true, _, false) => None,
        (false, true, true) => Some(("MODIFIED", new)),
        (false, false, true) => Some(("ADDED", new)),
        (false, true, false) => Some(("DELETED", new)),
        (false, false, false) => None,
    }
}

// ---------------- create / update / patch ----------------

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' || b == b':')
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

async fn check_namespace(store: &Store, ns: &str) -> Result<(), ApiError> {
    let nsr = res("namespaces");
    match store.get_opt(nsr, "", ns).await? {
        None => Err(ApiError::not_found(nsr, ns)),
        Some(s) if meta::is_deleting(&s.obj) => Err(ApiError::new(
            403,
            "Forbidden",
            format!("unable to create new content in namespace {ns} because it is being terminated"),
        )),
        Some(_) => Ok(()),
    }
}

pub async fn create(
    store: &Store,
    r: &Resource,
    ns: Option<&str>,
    body: &[u8],
    q: &HashMap<String, String>,
) -> Result<(StatusCode, Value), ApiError> {
    let mut obj = parse_json(body)?;
    if !obj.is_object() {
        return Err(ApiError::bad_request("the body of the request must be an object"));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && k != r.kind
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({}) does not match the expected API version ({}) / kind {k} is not {}",
            obj.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
            r.api_version(),
            r.kind
        )));
    }
    obj["kind"] = json!(r.kind);
    obj["apiVersion"] = json!(r.api_version());
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    if r.namespaced {
        let ns = ns.ok_or_else(|| ApiError::bad_request("a namespace is required"))?;
        if let Some(bns) = obj.pointer("/metadata/namespace").and_then(Value::as_str)
            && !bns.is_empty()
            && bns != ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        obj["metadata"]["namespace"] = json!(ns);
        check_namespace(store, ns).await?;
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    let generate = obj.pointer("/metadata/generateName").and_then(Value::as_str).map(String::from);
    let given = obj.pointer("/metadata/name").and_then(Value::as_str).filter(|n| !n.is_empty()).map(String::from);
    if given.is_none() && generate.is_none() {
        return Err(ApiError::invalid(r, "", "metadata.name: Required value: name or generateName is required"));
    }
    if let Some(m) = obj["metadata"].as_object_mut() {
        for k in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"] {
            m.remove(k);
        }
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(meta::now()));
        m.insert("generation".into(), json!(1));
    }
    for attempt in 0..8 {
        let name = match (&given, &generate) {
            (Some(n), _) => n.clone(),
            (None, Some(g)) => format!("{g}{}", random_suffix()),
            (None, None) => String::new(),
        };
        if !valid_name(&name) {
            return Err(ApiError::invalid(
                r,
                &name,
                "metadata.name: Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
            ));
        }
        let mut o = obj.clone();
        o["metadata"]["name"] = json!(name);
        defaults::on_create(r, &mut o)?;
        if q.get("dryRun").is_some_and(|d| d == "All") {
            return Ok((StatusCode::CREATED, o));
        }
        match store.create(r, o).await {
            Err(e) if e.reason == "AlreadyExists" && given.is_none() && attempt < 7 => continue,
            Err(e) => return Err(e),
            Ok(v) => return Ok((StatusCode::CREATED, v)),
        }
    }
    Err(ApiError::internal("could not generate a unique name"))
}

pub fn random_suffix() -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHA[fastrand::usize(..ALPHA.len())] as char).collect()
}

/// Combine the stored object and a new version according to the subresource written.
fn merge_update(r: &Resource, cur: &Value, new: Value, sub: Option<&str>) -> Value {
    match sub {
        Some("status") => {
            let mut out = cur.clone();
            out["status"] = new.get("status").cloned().unwrap_or(json!({}));
            out
        }
        Some("finalize") => {
            let mut out = cur.clone();
            out["spec"]["finalizers"] = new.pointer("/spec/finalizers").cloned().unwrap_or(json!([]));
            out
        }
        _ => {
            let mut out = new;
            out["kind"] = json!(r.kind);
            out["apiVersion"] = json!(r.api_version());
            if !out.get("metadata").is_some_and(Value::is_object) {
                out["metadata"] = json!({});
            }
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "name",
                "generation",
            ] {
                match cur["metadata"].get(k) {
                    Some(v) => out["metadata"][k] = v.clone(),
                    None => {
                        if let Some(m) = out["metadata"].as_object_mut() {
                            m.remove(k);
                        }
                    }
                }
            }
            if let Some(m) = out["metadata"].as_object_mut() {
                m.remove("managedFields");
            }
            if r.status {
                out["status"] = cur.get("status").cloned().unwrap_or(json!({}));
            }
            if r.kind == "Pod"
                && let Some(n) = cur.pointer("/spec/nodeName")
            {
                out["spec"]["nodeName"] = n.clone();
            }
            if defaults::spec_of(cur) != defaults::spec_of(&out) {
                let g = meta::i64_at(cur, "/metadata/generation").unwrap_or(1);
                out["metadata"]["generation"] = json!(g + 1);
            }
            out
        }
    }
}

pub async fn update(
    store: &Store,
    r: &Resource,
    ns: &str,
    name: &str,
    new: Value,
    sub: Option<&str>,
) -> Result<Value, ApiError> {
    if let Some(n) = new.pointer("/metadata/name").and_then(Value::as_str)
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    let want_rv =
        new.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty()).map(String::from);
    loop {
        let cur = store.get(r, ns, name).await?;
        if let Some(w) = &want_rv
            && *w != cur.rev.to_string()
        {
            return Err(ApiError::stale(r, name));
        }
        let merged = merge_update(r, &cur.obj, new.clone(), sub);
        match store.put(r, merged, cur.rev).await {
            Err(e) if e.code == 409 && want_rv.is_none() => continue,
            other => return other,
        }
    }
}

pub async fn patch_object(
    store: &Store,
    r: &Resource,
    ns: &str,
    name: &str,
    ct: &str,
    body: &[u8],
    sub: Option<&str>,
) -> Result<Value, ApiError> {
    for _ in 0..20 {
        let cur = store.get(r, ns, name).await?;
        let patched = patch::apply(&cur.obj, ct, body)?;
        let cur_rv = cur.rev.to_string();
        let explicit_rv =
            patched.pointer("/metadata/resourceVersion").and_then(Value::as_str).is_some_and(|v| v != cur_rv);
        if explicit_rv {
            return Err(ApiError::stale(r, name));
        }
        let merged = merge_update(r, &cur.obj, patched, sub);
        match store.put(r, merged, cur.rev).await {
            Err(e) if e.code == 409 => continue,
            other => return other,
        }
    }
    Err(ApiError::stale(r, name))
}

async fn scale(
    store: &Store,
    r: &Resource,
    ns: &str,
    name: &str,
    m: Method,
    ct: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let to_scale = |o: &Value| {
        let sel = match r.kind {
            "ReplicationController" => {
                meta::map_at(o, "/spec/selector").iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
            }
            _ => meta::map_at(o, "/spec/selector/matchLabels")
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        };
        json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {"name": meta::name(o), "namespace": meta::namespace(o), "uid": meta::uid(o),
                "resourceVersion": o["metadata"]["resourceVersion"], "creationTimestamp": o["metadata"]["creationTimestamp"]},
            "spec": {"replicas": o.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
            "status": {"replicas": o.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": sel}})
    };
    if m == Method::GET {
        return Ok(to_scale(&store.get(r, ns, name).await?.obj));
    }
    for _ in 0..20 {
        let cur = store.get(r, ns, name).await?;
        let sc = to_scale(&cur.obj);
        let new = match m {
            Method::PUT => parse_json(body)?,
            Method::PATCH => patch::apply(&sc, ct, body)?,
            _ => return Err(ApiError::new(405, "MethodNotAllowed", "method not allowed on scale")),
        };
        let replicas = new
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .ok_or_else(|| ApiError::invalid(r, name, "spec.replicas: Required value"))?;
        if replicas < 0 {
            return Err(ApiError::invalid(r, name, "spec.replicas: Invalid value: must be greater than or equal to 0"));
        }
        let mut obj = cur.obj.clone();
        obj["spec"]["replicas"] = json!(replicas);
        if replicas != meta::i64_at(&cur.obj, "/spec/replicas").unwrap_or(1) {
            obj["metadata"]["generation"] = json!(meta::i64_at(&cur.obj, "/metadata/generation").unwrap_or(1) + 1);
        }
        match store.put(r, obj, cur.rev).await {
            Err(e) if e.code == 409 => continue,
            Err(e) => return Err(e),
            Ok(v) => return Ok(to_scale(&v)),
        }
    }
    Err(ApiError::stale(r, name))
}

// ---------------- delete ----------------

#[derive(Debug, Default, Clone)]
pub struct DeleteOpts {
    pub grace: Option<i64>,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOpts {
    pub fn from_value(b: &Value) -> DeleteOpts {
        let mut o = DeleteOpts {
            grace: b.get("gracePeriodSeconds").and_then(Value::as_i64),
            propagation: b.get("propagationPolicy").and_then(Value::as_str).map(String::from),
            uid: b.pointer("/preconditions/uid").and_then(Value::as_str).map(String::from),
            rv: b.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(String::from),
            dry_run: b.get("dryRun").and_then(Value::as_array).is_some_and(|a| !a.is_empty()),
        };
        if o.propagation.is_none() {
            match b.get("orphanDependents").and_then(Value::as_bool) {
                Some(true) => o.propagation = Some("Orphan".into()),
                Some(false) => o.propagation = Some("Background".into()),
                None => {}
            }
        }
        o
    }

    fn parse(q: &HashMap<String, String>, body: &[u8]) -> Result<DeleteOpts, ApiError> {
        let mut o = if body.is_empty() { DeleteOpts::default() } else { DeleteOpts::from_value(&parse_json(body)?) };
        if let Some(g) = q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()) {
            o.grace = Some(g);
        }
        if let Some(p) = q.get("propagationPolicy") {
            o.propagation = Some(p.clone());
        }
        if q.get("dryRun").is_some_and(|d| d == "All") {
            o.dry_run = true;
        }
        Ok(o)
    }
}

/// Delete (or start deleting) an object. Returns the object and whether it is gone from storage.
pub async fn delete(
    store: &Store,
    r: &Resource,
    ns: &str,
    name: &str,
    opts: &DeleteOpts,
) -> Result<(Value, bool), ApiError> {
    for _ in 0..20 {
        let cur = store.get(r, ns, name).await?;
        let obj = &cur.obj;
        if let Some(u) = &opts.uid
            && u != meta::uid(obj)
        {
            return Err(ApiError::conflict(
                r,
                name,
                &format!("Precondition failed: UID in precondition: {u}, UID in object meta: {}", meta::uid(obj)),
            ));
        }
        if let Some(v) = &opts.rv
            && *v != cur.rev.to_string()
        {
            return Err(ApiError::conflict(
                r,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {v}, ResourceVersion in object meta: {}",
                    cur.rev
                ),
            ));
        }
        if opts.dry_run {
            return Ok((obj.clone(), false));
        }
        let mut new = obj.clone();
        let mut fins = finalizers(obj);
        let fin_for = match opts.propagation.as_deref() {
            Some("Orphan") => Some("orphan"),
            Some("Foreground") => Some("foregroundDeletion"),
            Some("Background") | None => None,
            Some(other) => return Err(ApiError::bad_request(format!("unsupported propagationPolicy {other:?}"))),
        };
        if let Some(f) = fin_for
            && !meta::is_deleting(obj)
            && !fins.iter().any(|x| x == f)
        {
            fins.push(f.to_string());
        }
        new["metadata"]["finalizers"] = json!(fins);
        if fins.is_empty()
            && let Some(m) = new["metadata"].as_object_mut()
        {
            m.remove("finalizers");
        }
        let mut grace = 0i64;
        if r.kind == "Pod" {
            grace =
                opts.grace.or_else(|| meta::i64_at(obj, "/spec/terminationGracePeriodSeconds")).unwrap_or(30).max(0);
            let unscheduled = meta::str_at(obj, "/spec/nodeName").is_none_or(str::is_empty);
            if unscheduled || meta::pod_terminal(obj) {
                grace = 0;
            }
            if meta::is_deleting(obj) {
                let existing = meta::i64_at(obj, "/metadata/deletionGracePeriodSeconds").unwrap_or(0);
                if grace >= existing && fins == finalizers(obj) {
                    return Ok((obj.clone(), false));
                }
                grace = grace.min(existing);
            }
        }
        let ns_finalizers = r.kind == "Namespace"
            && obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        if grace > 0 || !fins.is_empty() || ns_finalizers {
            let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
            if !meta::is_deleting(obj) || r.kind == "Pod" {
                new["metadata"]["deletionTimestamp"] = json!(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            }
            new["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            if r.kind == "Namespace" {
                new["status"]["phase"] = json!("Terminating");
            }
            if new == *obj {
                return Ok((obj.clone(), false));
            }
            match store.put(r, new, cur.rev).await {
                Err(e) if e.code == 409 => continue,
                Err(e) => return Err(e),
                Ok(v) => return Ok((v, false)),
            }
        }
        if store.remove(r, ns, name, cur.rev).await? {
            return Ok((obj.clone(), true));
        }
    }
    Err(ApiError::stale(r, name))
}

// ---------------- pods/binding and pods/eviction ----------------

async fn bind(store: &Store, ns: &str, name: &str, b: &Value) -> Result<(), ApiError> {
    let node = b
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid(res("pods"), name, "target.name: Required value"))?
        .to_string();
    let pods = res("pods");
    store
        .update_with(pods, ns, name, |p| {
            if let Some(cur) = meta::str_at(p, "/spec/nodeName").filter(|n| !n.is_empty()) {
                return Err(ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{cur}\"")));
            }
            if meta::is_deleting(p) {
                return Err(ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is being deleted, cannot be assigned to a host")));
            }
            p["spec"]["nodeName"] = json!(node);
            set_condition(p, "PodScheduled", "True", None, None);
            Ok(true)
        })
        .await?;
    Ok(())
}

pub fn set_condition(o: &mut Value, kind: &str, status: &str, reason: Option<&str>, message: Option<&str>) {
    let now = meta::now();
    if !o["status"].is_object() {
        o["status"] = json!({});
    }
    let conds = o["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    let mut found = false;
    for c in conds {
        if c.get("type").and_then(Value::as_str) == Some(kind) {
            found = true;
            let mut n = c.clone();
            if c.get("status").and_then(Value::as_str) != Some(status) {
                n["lastTransitionTime"] = json!(now);
            }
            n["status"] = json!(status);
            set_opt(&mut n, "reason", reason);
            set_opt(&mut n, "message", message);
            out.push(n);
        } else {
            out.push(c);
        }
    }
    if !found {
        let mut n = json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
        set_opt(&mut n, "reason", reason);
        set_opt(&mut n, "message", message);
        out.push(n);
    }
    o["status"]["conditions"] = Value::Array(out);
}

fn set_opt(v: &mut Value, k: &str, s: Option<&str>) {
    match s {
        Some(s) => v[k] = json!(s),
        None => {
            if let Some(m) = v.as_object_mut() {
                m.remove(k);
            }
        }
    }
}

const EVICTION_BLOCKED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn too_many(cause: String) -> ApiError {
    ApiError::new(429, "TooManyRequests", EVICTION_BLOCKED)
        .with_details(json!({"causes": [{"reason": "DisruptionBudget", "message": cause}], "retryAfterSeconds": 10}))
}

/// The Eviction API: like Kubernetes, checks the pod's PodDisruptionBudget (at most one), decrements
/// `disruptionsAllowed` with compare-and-swap and records the pod in `disruptedPods` before deleting it.
async fn evict(store: &Store, ns: &str, name: &str, ev: &Value) -> Result<(), ApiError> {
    let pods = res("pods");
    let pdbs = res("poddisruptionbudgets");
    let opts = DeleteOpts::from_value(ev.get("deleteOptions").unwrap_or(&Value::Null));
    for _ in 0..10 {
        let pod = store.get(pods, ns, name).await?.obj;
        // Terminal, pending or already-deleting pods are evicted without consulting budgets.
        if meta::pod_terminal(&pod) || meta::pod_phase(&pod) == "Pending" || meta::is_deleting(&pod) {
            delete(store, pods, ns, name, &opts).await?;
            return Ok(());
        }
        let pl = meta::labels(&pod);
        let all = list(store, pdbs, Some(ns), &HashMap::new()).await?;
        let matching: Vec<Value> = all["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|p| Selector::from_label_selector(p.pointer("/spec/selector")).matches(&pl))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if matching.len() > 1 {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        let Some(pdb) = matching.into_iter().next() else {
            delete(store, pods, ns, name, &opts).await?;
            return Ok(());
        };
        let pdb_name = meta::name(&pdb).to_string();
        let current = meta::i64_at(&pdb, "/status/currentHealthy").unwrap_or(0);
        let desired = meta::i64_at(&pdb, "/status/desiredHealthy").unwrap_or(0);
        if !meta::pod_ready(&pod) {
            let policy = meta::str_at(&pdb, "/spec/unhealthyPodEvictionPolicy").unwrap_or("IfHealthyBudget");
            if policy == "AlwaysAllow" || (current >= desired && desired > 0) {
                delete(store, pods, ns, name, &opts).await?;
                return Ok(());
            }
        }
        if meta::i64_at(&pdb, "/status/observedGeneration").unwrap_or(0)
            < meta::i64_at(&pdb, "/metadata/generation").unwrap_or(1)
        {
            return Err(too_many(format!("The disruption budget {pdb_name} is still being processed by the server.")));
        }
        let allowed = meta::i64_at(&pdb, "/status/disruptionsAllowed").unwrap_or(0);
        if allowed < 0 {
            return Err(ApiError::new(403, "Forbidden", "pdb disruptions allowed is negative"));
        }
        if allowed == 0 {
            return Err(too_many(format!(
                "The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently"
            )));
        }
        let mut new = pdb.clone();
        new["status"]["disruptionsAllowed"] = json!(allowed - 1);
        if !new["status"]["disruptedPods"].is_object() {
            new["status"]["disruptedPods"] = json!({});
        }
        new["status"]["disruptedPods"][name] = json!(meta::now());
        let rev: i64 = pdb["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        match store.put(pdbs, new, rev).await {
            Err(e) if e.code == 409 => continue,
            Err(e) => return Err(e),
            Ok(_) => {}
        }
        delete(store, pods, ns, name, &opts).await?;
        return Ok(());
    }
    Err(ApiError::stale(pdbs, name))
}
