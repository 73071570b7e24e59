//! The API's one error type, rendered as `application/problem+json` (RFC 9457).
//!
//! Every error has a stable snake_case `code` and a `detail` that names the field at fault,
//! never its value. 5xx responses carry no internal detail; the internal cause travels in a
//! response extension to the logging middleware, which logs it once.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::event::FieldError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub retry_after_secs: Option<u64>,
    /// Adds `WWW-Authenticate: Bearer` (401 responses).
    pub www_authenticate: bool,
    /// Operator-facing cause of a 5xx; logged, never sent.
    pub internal: Option<String>,
}

/// Carries the internal cause of a 5xx from the handler to the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalCause(pub String);

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after_secs: None,
            www_authenticate: false,
            internal: None,
        }
    }

    /// Cluster mode, on an ingest node: a write only the worker (the writer) can do.
    pub fn cluster_writer_only(what: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "cluster_mode",
            format!(
                "{what} writes through the log's single writer, which in cluster mode is `audittrail worker`: stop the workers, run the `audittrail` command on the database (ingest keeps acknowledging; the stream holds the batches meanwhile), then start them again. See \"Scaling out\" in the README"
            ),
        )
    }

    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// Validation failures: the first in `detail`, all of them in `errors`.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [] => "invalid request".to_owned(),
            [one] => one.to_string(),
            [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
        };
        ApiError {
            errors,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                detail,
            )
        }
    }

    pub fn unavailable(
        code: &'static str,
        detail: impl Into<String>,
        retry_after_secs: u64,
    ) -> Self {
        ApiError {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
        }
    }

    /// An internal failure: the client learns only that it happened.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError {
            internal: Some(cause.to_string()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "internal error; the server log has the details",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": "about:blank",
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "code": self.code,
            "detail": self.detail,
        });
        if !self.errors.is_empty() {
            body["errors"] = json!(self.errors);
        }
        let mut resp = (self.status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.www_authenticate {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"audittrail\""),
            );
        }
        if let Some(cause) = self.internal {
            resp.extensions_mut().insert(InternalCause(cause));
        }
        resp
    }
}

/// A background job refused (a key's job already waiting, or the queue full): 429 with
/// `Retry-After`.
impl From<crate::jobs::Refused> for ApiError {
    fn from(refused: crate::jobs::Refused) -> Self {
        ApiError {
            retry_after_secs: Some(refused.retry_after_secs()),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_jobs",
                refused.to_string(),
            )
        }
    }
}
