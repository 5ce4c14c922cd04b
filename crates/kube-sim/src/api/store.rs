//! Objects as JSON in etcd: keys, resourceVersion = mod_revision, create-only and compare-and-swap writes.

use serde_json::{Value, json};

use super::error::ApiError;
use crate::etcd::{Etcd, Kv};
use crate::meta::{self, Resource};

pub struct Store {
    pub etcd: Etcd,
    prefix: String,
}

/// An object as read, with its mod_revision.
pub struct Stored {
    pub obj: Value,
    pub rev: i64,
}

impl Store {
    pub fn new(etcd: Etcd, prefix: &str) -> Store {
        Store { etcd, prefix: prefix.trim_end_matches('/').to_string() }
    }

    fn group_seg(r: &Resource) -> &'static str {
        if r.group.is_empty() { "core" } else { r.group }
    }

    /// `/registry/<group>/<resource>/<namespace>/<name>` (cluster-scoped objects have no namespace segment).
    pub fn key(&self, r: &Resource, ns: &str, name: &str) -> String {
        if r.namespaced {
            format!("{}/{}/{}/{}/{}", self.prefix, Self::group_seg(r), r.name, ns, name)
        } else {
            format!("{}/{}/{}/{}", self.prefix, Self::group_seg(r), r.name, name)
        }
    }

    /// Prefix of a collection (all namespaces when `ns` is None), ending in `/`.
    pub fn collection(&self, r: &Resource, ns: Option<&str>) -> String {
        match ns.filter(|_| r.namespaced) {
            Some(ns) => format!("{}/{}/{}/{}/", self.prefix, Self::group_seg(r), r.name, ns),
            None => format!("{}/{}/{}/", self.prefix, Self::group_seg(r), r.name),
        }
    }

    pub fn decode(kv: &Kv) -> Result<Value, ApiError> {
        let mut v: Value = serde_json::from_slice(&kv.value)
            .map_err(|e| ApiError::internal(format!("corrupt object at {}: {e}", kv.key)))?;
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            m.insert("resourceVersion".into(), json!(kv.mod_revision.to_string()));
        }
        Ok(v)
    }

    fn encode(obj: &Value) -> Vec<u8> {
        let mut o = obj.clone();
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        serde_json::to_vec(&o).unwrap_or_default()
    }

    pub async fn get_opt(&self, r: &Resource, ns: &str, name: &str) -> Result<Option<Stored>, ApiError> {
        let (kv, _) = self.etcd.get(&self.key(r, ns, name)).await?;
        match kv {
            Some(kv) => Ok(Some(Stored { obj: Self::decode(&kv)?, rev: kv.mod_revision })),
            None => Ok(None),
        }
    }

    pub async fn get(&self, r: &Resource, ns: &str, name: &str) -> Result<Stored, ApiError> {
        self.get_opt(r, ns, name).await?.ok_or_else(|| ApiError::not_found(r, name))
    }

    pub async fn create(&self, r: &Resource, obj: Value) -> Result<Value, ApiError> {
        let (ns, name) = (meta::namespace(&obj).to_string(), meta::name(&obj).to_string());
        match self.etcd.create(&self.key(r, &ns, &name), &Self::encode(&obj)).await? {
            Some(rev) => Ok(with_rv(obj, rev)),
            None => Err(ApiError::already_exists(r, &name)),
        }
    }

    /// Write `obj` if the stored mod_revision is still `rev`. An object being deleted whose finalizers are all gone
    /// (and whose grace period is over) is removed instead, as Kubernetes does on update.
    pub async fn put(&self, r: &Resource, obj: Value, rev: i64) -> Result<Value, ApiError> {
        let (ns, name) = (meta::namespace(&obj).to_string(), meta::name(&obj).to_string());
        let key = self.key(r, &ns, &name);
        if should_delete_on_update(&obj) {
            return match self.etcd.delete(&key, rev).await? {
                Some(_) => Ok(obj),
                None => Err(ApiError::stale(r, &name)),
            };
        }
        match self.etcd.update(&key, &Self::encode(&obj), rev).await? {
            Some(new_rev) => Ok(with_rv(obj, new_rev)),
            None => Err(ApiError::stale(r, &name)),
        }
    }

    pub async fn remove(&self, r: &Resource, ns: &str, name: &str, rev: i64) -> Result<bool, ApiError> {
        Ok(self.etcd.delete(&self.key(r, ns, name), rev).await?.is_some())
    }

    /// Read-modify-write with retries on conflict. `f` returns false when nothing needs writing.
    pub async fn update_with<F>(&self, r: &Resource, ns: &str, name: &str, mut f: F) -> Result<Value, ApiError>
    where
        F: FnMut(&mut Value) -> Result<bool, ApiError>,
    {
        for _ in 0..20 {
            let cur = self.get(r, ns, name).await?;
            let mut obj = cur.obj.clone();
            if !f(&mut obj)? {
                return Ok(cur.obj);
            }
            match self.put(r, obj, cur.rev).await {
                Err(e) if e.code == 409 => continue,
                other => return other,
            }
        }
        Err(ApiError::stale(r, name))
    }
}

pub fn with_rv(mut obj: Value, rev: i64) -> Value {
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), json!(rev.to_string()));
    }
    obj
}

pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

fn should_delete_on_update(obj: &Value) -> bool {
    if !meta::is_deleting(obj) || !finalizers(obj).is_empty() {
        return false;
    }
    if obj.get("kind").and_then(Value::as_str) == Some("Namespace")
        && obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty())
    {
        return false;
    }
    meta::i64_at(obj, "/metadata/deletionGracePeriodSeconds").unwrap_or(0) == 0
}
