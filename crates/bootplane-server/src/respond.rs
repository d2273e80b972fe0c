//! Answers shared by every route: a JSON error, a store error as the status it means, and
//! the server URL a machine was reached at. A leaf of the crate's modules (issue 30: no
//! handler module imports another for these).

use crate::Shared;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bootplane_store::StoreError;
use serde_json::json;

pub(crate) fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, Json(json!({ "error": msg.to_string() }))).into_response()
}

pub(crate) fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::NotFound(_) => error(StatusCode::NOT_FOUND, e),
        StoreError::Transition(_) | StoreError::Conflict(_) | StoreError::NotEmpty(_) => error(StatusCode::CONFLICT, e),
        StoreError::Backend(_) | StoreError::Database(_) => {
            tracing::error!("{e:#}");
            error(StatusCode::SERVICE_UNAVAILABLE, "store unavailable; retry")
        }
    }
}

/// The URL machines use to reach us: the configured one, else the Host they used.
pub fn server_url(s: &Shared, headers: &HeaderMap) -> String {
    base_url(s, headers.get(header::HOST).and_then(|h| h.to_str().ok()))
}

/// The configured URL, else `http://` and the `host` a request named (when it is a plain
/// host name or address), else the listen address. TFTP has no Host: it passes `None`.
pub fn base_url(s: &Shared, host: Option<&str>) -> String {
    s.settings.advertise_url().unwrap_or_else(|| {
        let host = host
            .filter(|h| h.len() < 256 && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
            .map(str::to_string)
            .unwrap_or_else(|| s.settings.listen.to_string());
        format!("http://{host}")
    })
}
