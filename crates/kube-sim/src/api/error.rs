//! Kubernetes `Status` errors.

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::meta::Resource;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: None }
    }
    pub fn with_details(mut self, d: Value) -> ApiError {
        self.details = Some(d);
        self
    }
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", m)
    }
    pub fn not_found(r: &Resource, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{} \"{}\" not found", r.qualified(), name))
            .with_details(json!({"name": name, "group": r.group, "kind": r.name}))
    }
    pub fn already_exists(r: &Resource, name: &str) -> ApiError {
        ApiError::new(409, "AlreadyExists", format!("{} \"{}\" already exists", r.qualified(), name))
            .with_details(json!({"name": name, "group": r.group, "kind": r.name}))
    }
    pub fn conflict(r: &Resource, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{}\": {}", r.qualified(), name, why),
        )
        .with_details(json!({"name": name, "group": r.group, "kind": r.name}))
    }
    pub fn stale(r: &Resource, name: &str) -> ApiError {
        ApiError::conflict(
            r,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }
    pub fn invalid(r: &Resource, name: &str, msg: &str) -> ApiError {
        ApiError::new(422, "Invalid", format!("{} \"{}\" is invalid: {}", r.kind, name, msg))
            .with_details(json!({"name": name, "group": r.group, "kind": r.kind}))
    }
    pub fn internal(m: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", m)
    }
    pub fn unavailable(m: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", m)
    }
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl From<crate::etcd::EtcdError> for ApiError {
    fn from(e: crate::etcd::EtcdError) -> ApiError {
        match e {
            crate::etcd::EtcdError::Compacted(_) => {
                ApiError::new(410, "Expired", "The resourceVersion for the provided list is too old.")
            }
            crate::etcd::EtcdError::Unavailable(m) => ApiError::unavailable(format!("etcd: {m}")),
            crate::etcd::EtcdError::Protocol(m) => ApiError::internal(format!("etcd: {m}")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = axum::http::StatusCode::from_u16(self.code).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.status())).into_response()
    }
}
