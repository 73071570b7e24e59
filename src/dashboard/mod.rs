//! The dashboard door: server-rendered pages (askama templates in `web/templates`, compiled
//! into the binary), their static assets (`web/static`, also compiled in), and the live feed
//! over WebSocket.
//!
//! Pages are scoped like the API: a signed-in key sees its projects only and needs the same
//! permissions. Sessions are cookies holding a signed random id (see
//! [`crate::auth::session`]); every POST carries the session's CSRF token and must come from
//! this origin. Errors are HTML pages. The dashboard's `Content-Security-Policy` allows only
//! this origin and no inline script or style; nothing is loaded from anywhere else.

pub mod activity;
pub mod assets;
pub mod audit;
pub mod error;
pub mod fmt;
pub mod keys;
pub mod live;
pub mod reports;
pub mod rules;
pub mod traces;
pub mod viewer;

use axum::Router;
use axum::extract::{OriginalUri, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::http::AppState;
use crate::http::error::ApiError;
pub use error::PageError;

/// The dashboard's policy: this origin only, no inline script or style, no framing.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(activity::overview))
        .route("/login", get(viewer::login_page).post(viewer::login))
        .route("/logout", post(viewer::logout))
        .route("/project", post(viewer::pick_project))
        .route("/live", get(live::page))
        .route("/ws/live", get(live::socket))
        .route("/api/v1/live", get(live::since))
        .route("/traces", get(traces::list))
        .route("/traces/{trace_id}", get(traces::detail))
        .route("/traces/{trace_id}/spans/{seq}", get(traces::span))
        .route("/sessions/{session_id}", get(traces::session))
        .route("/violations", get(rules::violations))
        .route("/rules", get(rules::list))
        .route("/rules/ablation", post(rules::start_ablation))
        .route("/rules/ablation/{id}", get(rules::ablation))
        .route("/keys", get(keys::list).post(keys::create))
        .route("/keys/{id}/rotate", post(keys::rotate))
        .route("/keys/{id}/revoke", post(keys::revoke))
        .route("/audit", get(audit::list))
        .route("/reports", get(reports::list).post(reports::create))
        .route("/reports/{file}", get(reports::download))
        .route("/static/{file}", get(assets::serve))
        .layer(middleware::from_fn(same_origin_posts))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        // With `no-referrer` browsers send `Origin: null` on form posts; same-origin keeps
        // the origin check possible and still sends nothing to other sites.
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ))
}

/// Answers requests no route matched: an HTML page for browsers, problem+json for the API.
pub async fn not_found(OriginalUri(uri): OriginalUri, req: Request) -> Response {
    let path = uri.path();
    let api = path.starts_with("/api/") || path.starts_with("/v1/") || path.starts_with("/ws/");
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if api || !wants_html {
        return ApiError::not_found("no such route").into_response();
    }
    let mut resp = PageError::not_found("There is no page at this address.").into_response();
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    resp
}

/// Cross-site form posts are refused before any handler runs: a POST must carry an `Origin`
/// (or, failing that, a `Referer`) of this host. The CSRF token is checked as well, by each
/// handler; this is the second lock.
async fn same_origin_posts(req: Request, next: Next) -> Response {
    if req.method() == Method::POST && !same_origin(req.headers()) {
        return PageError::forbidden("This form was sent from another site and was refused.")
            .into_response();
    }
    next.run(req).await
}

/// Whether `Origin` (or `Referer`) names the host the request was sent to.
pub fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .and_then(|v| v.to_str().ok());
    match source {
        // Browsers send Origin on every POST and WebSocket handshake; a client without
        // either (curl, an SDK) is not a browser riding a cookie.
        None => true,
        Some(s) => {
            let rest = s
                .strip_prefix("https://")
                .or_else(|| s.strip_prefix("http://"));
            let authority = rest.map(|r| r.split('/').next().unwrap_or_default());
            !host.is_empty() && authority == Some(host)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn posts_from_another_origin_are_refused() {
        assert!(same_origin(&headers(&[
            ("host", "at.example:8000"),
            ("origin", "http://at.example:8000")
        ])));
        assert!(same_origin(&headers(&[
            ("host", "at.example"),
            ("referer", "https://at.example/keys")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "at.example"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "at.example"),
            ("origin", "https://at.example.evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "at.example"),
            ("origin", "null")
        ])));
        assert!(same_origin(&headers(&[("host", "at.example")])));
    }
}
