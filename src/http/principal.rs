//! The principal extractor: turns a request's credentials into an [`auth::Principal`], and
//! the auth module's errors into API errors.
//!
//! Missing, malformed, unknown, revoked or expired keys are 401 (audited, with the route's
//! template, never the raw path); a key that could not be checked is 503 with `Retry-After`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath};
use axum::http::StatusCode;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::auth::audit::AuditEntry;
use crate::auth::{AuthError, Denied, PROJECT_HEADER, Principal, presented_token};

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        let code = match &d {
            Denied::MissingPermission(_) => {
                return ApiError::new(StatusCode::FORBIDDEN, "forbidden", d.to_string());
            }
            Denied::ProjectRequired => "project_required",
            Denied::InvalidProject => "invalid_project",
            Denied::OutOfScope => return ApiError::not_found(d.to_string()),
        };
        ApiError::bad_request(code, d.to_string())
    }
}

/// A request header as text, if present and printable.
pub fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// The client's address as the audit log records it (nginx's `X-Forwarded-For` when the peer
/// is a trusted proxy).
pub fn source_ip(state: &AppState, parts: &Parts) -> Option<String> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    state
        .auth
        .client_ip(peer, header(parts, "x-forwarded-for"))
        .map(|ip| ip.to_string())
}

/// Records a failed authentication (route template only) and answers 401, or 503 when the key
/// could not be checked.
pub fn auth_failure(state: &AppState, parts: &Parts, err: AuthError) -> ApiError {
    if matches!(err, AuthError::Unavailable) {
        return ApiError::unavailable("auth_unavailable", err.to_string(), 2);
    }
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let mut e = AuditEntry::new(
        "authentication",
        &format!("{} {route}", parts.method),
        "failure",
    );
    e.source_ip = source_ip(state, parts);
    e.correlation_id = header(parts, "x-request-id").map(str::to_owned);
    e.metadata = serde_json::json!({ "reason": err.to_string() });
    state.auth.audit().record(e);
    metrics::counter!("audittrail_auth_failures_total").increment(1);
    let mut api = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", err.to_string());
    api.www_authenticate = true;
    api
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let result = match presented_token(header(parts, "authorization")) {
            None => Err(AuthError::Missing),
            Some(token) => state.auth.verify(&token).await,
        };
        match result {
            Ok(key) => Ok(Principal {
                key,
                source_ip: source_ip(state, parts),
                correlation_id: header(parts, "x-request-id").map(str::to_owned),
                requested_project: header(parts, PROJECT_HEADER).map(str::to_owned),
                audit: state.auth.audit().clone(),
            }),
            Err(err) => Err(auth_failure(state, parts, err)),
        }
    }
}
