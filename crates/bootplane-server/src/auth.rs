//! The admin bearer token and the check every admin route makes. Comparison is constant
//! time so response timing does not leak the token prefix by prefix.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// Shortest admin token `serve` accepts: the generated one is 64 hex digits; a chosen
/// one shorter than this is guessable even at the throttled rate of wrong tokens.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Clone)]
pub struct AdminToken(String);

impl AdminToken {
    pub fn new(token: impl Into<String>) -> Self {
        AdminToken(token.into().trim().to_string())
    }
    /// For deriving the dashboard's session key: rotating the token ends every session.
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && !a.is_empty() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The token from `Authorization: Bearer ...`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub fn unauthorized(msg: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        format!("{msg}\n"),
    )
        .into_response()
}

/// `Ok(())` when the request carries the admin token.
// The error is the finished response, returned as is by every handler with `?`; boxing
// it would only add an allocation to refused requests.
#[allow(clippy::result_large_err)]
pub fn require_admin(state: &crate::AppState, headers: &HeaderMap) -> Result<(), Response> {
    match bearer(headers) {
        Some(t) if state.admin_token.matches(t) => Ok(()),
        Some(_) => Err(unauthorized("admin token is wrong")),
        None => Err(unauthorized(
            "admin API needs `Authorization: Bearer <token>` (BOOTPLANE_TOKEN, or the token printed at first start)",
        )),
    }
}
