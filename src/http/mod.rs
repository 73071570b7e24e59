//! The HTTP shell every door shares: the state handlers see, errors as responses, the
//! principal extractor, request limits, and the middleware around every route.
//!
//! The doors ([`crate::ingest`], [`crate::api`], [`crate::dashboard`]) each build their own
//! router over [`AppState`]; [`app`] takes them as [`Doors`] and adds the layers: request ids,
//! timeouts, security headers, CORS, the rate budgets, the latency histogram and the one place
//! errors are logged. Nothing here names a door, so imports only go downward.

pub mod body;
pub mod error;
pub mod limits;
pub mod params;
pub mod principal;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::auth::Authenticator;
use crate::config::{Config, Resolved};
use crate::pipeline::Pipeline;
use crate::rules::live::LiveRules;
use crate::store::{Store, WriterHandle};
use error::{ApiError, InternalCause};

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Cluster mode (an ingest node): the NATS connection.
    pub cluster: Option<crate::cluster::Cluster>,
    pub config: Arc<Config>,
    pub resolved: Arc<Resolved>,
    pub store: Store,
    /// The store's writer (erasure, probes, the committed stream).
    pub writer: WriterHandle,
    /// The append path's door (the evaluation stage in front of the writer).
    pub appender: crate::pipeline::Sink,
    pub pipeline: Arc<Pipeline>,
    pub rules: Arc<LiveRules>,
    pub auth: Arc<Authenticator>,
    /// Background ablation jobs.
    pub ablations: Arc<crate::jobs::Jobs>,
    /// Background report jobs.
    pub reports: Arc<crate::jobs::Jobs>,
    /// Live WebSocket ingest connections (`connected_agents`).
    pub connected_agents: Arc<std::sync::atomic::AtomicUsize>,
    pub metrics: PrometheusHandle,
    pub started: Instant,
    /// Signs dashboard session cookies and CSRF tokens.
    pub sessions: crate::auth::session::SessionKeys,
    /// The overview's per-minute counters (fed by the committed stream).
    pub activity: Arc<crate::feed::activity::Activity>,
}

/// The routers of the doors, as [`app`] composes them.
pub struct Doors {
    /// Agent-facing ingest routes (the ingest rate budget).
    pub ingest: Router<AppState>,
    /// Query, admin and operations API routes (the query budget).
    pub api: Router<AppState>,
    /// Routes without a key or a budget (health probe, metrics).
    pub public: Router<AppState>,
    /// Dashboard pages and the live feed (the query budget). They set their own
    /// `Content-Security-Policy`; everything else gets the API's `default-src 'none'`.
    pub dashboard: Router<AppState>,
    /// Answers requests no route matched.
    pub fallback: axum::routing::MethodRouter<AppState>,
}

/// The whole application, ready to serve. Tests drive this directly.
pub fn app(state: AppState, doors: Doors) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = Duration::from_secs(state.config.request_timeout_secs.max(1));
    let cors = cors_layer(&state.resolved.cors_origins);
    let proxies = &state.config.trusted_proxies;
    let ingest = doors.ingest.layer(limits::layer(
        "ingest",
        state.config.rate_limit_ingest,
        proxies,
    ));
    let queries = Router::new()
        .merge(doors.api)
        .merge(doors.dashboard)
        .layer(limits::layer(
            "queries",
            state.config.rate_limit_queries,
            proxies,
        ));
    Router::new()
        .merge(ingest)
        .merge(queries)
        .merge(doors.public)
        .fallback_service(doors.fallback.with_state(state.clone()))
        // A panicking handler answers 500 problem+json instead of dropping the connection;
        // the panic hook (main.rs) logs where, never the message (it may hold request data).
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            state.config.max_concurrent_requests.max(1),
        ))
        .layer(cors)
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        // The dashboard sets `same-origin` (browsers then send a real `Origin` on its forms).
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // An API that serves no pages: nothing may be loaded, framed or scripted from it.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ))
        .layer(middleware::from_fn_with_state(state.clone(), hsts))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            drop_unsafe_request_id,
        ))
        .with_state(state)
}

/// The answer to a request whose handler panicked.
fn panic_response(_payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    metrics::counter!("audittrail_handler_panics_total").increment(1);
    ApiError::internal("a request handler panicked; see the panic's location in the log")
        .into_response()
}

/// Longest client `X-Request-Id` kept.
const MAX_REQUEST_ID: usize = 64;

/// Keeps a client's `X-Request-Id` only if it is a short token of safe characters in which
/// the redactor finds no personal data (it is logged and stored in the audit log); otherwise
/// it is removed and one is generated.
async fn drop_unsafe_request_id(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let safe = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
            && v.to_str()
                .is_ok_and(|s| state.pipeline.redaction.lookup_id("request_id", s).as_str() == s)
    };
    if req.headers().get("x-request-id").is_some_and(|v| !safe(v)) {
        req.headers_mut().remove("x-request-id");
    }
    next.run(req).await
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter(|o| o.as_str() != "*")
        .filter_map(|o| o.parse().ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-audittrail-project"),
        ])
}

/// Records the latency histogram and logs each failed request once, with its internal cause.
/// HSTS when the request reached us over TLS: nginx terminates TLS and says so in
/// `X-Forwarded-Proto`, which is believed only from a trusted proxy.
/// Whether the request reached nginx over TLS: a trusted proxy said so in
/// `X-Forwarded-Proto` (the server itself never terminates TLS).
pub fn via_tls(state: &AppState, peer: Option<std::net::IpAddr>, headers: &HeaderMap) -> bool {
    peer.is_some_and(|p| state.auth.trusts(p))
        && headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            == Some("https")
}

async fn hsts(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let tls = via_tls(&state, peer, req.headers());
    let mut resp = next.run(req).await;
    if tls {
        resp.headers_mut().insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    resp
}

async fn observe(State(_state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut resp = next.run(req).await;
    let status = resp.status();
    metrics::histogram!(
        "audittrail_http_request_duration_seconds",
        "method" => method.to_string(),
        "route" => route.clone(),
        "status" => status.as_u16().to_string()
    )
    .record(started.elapsed().as_secs_f64());
    if let Some(InternalCause(cause)) = resp.extensions_mut().remove::<InternalCause>() {
        tracing::error!(%method, %route, %request_id, status = status.as_u16(), cause, "request failed");
    } else if status.is_server_error() {
        tracing::warn!(%method, %route, %request_id, status = status.as_u16(), "request failed");
    } else if status.is_client_error() {
        tracing::debug!(%method, %route, %request_id, status = status.as_u16(), "request rejected");
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_panicking_handler_answers_500_problem_json_without_its_message() {
        let app: Router = Router::new()
            .route(
                "/boom",
                get(|| async {
                    let raw = String::from("jane.roe@example.org");
                    if raw.len() > 3 {
                        panic!("sliced {raw}");
                    }
                    "unreachable"
                }),
            )
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                panic_response,
            ));
        let resp = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("\"code\":\"internal_error\""), "{text}");
        assert!(!text.contains("jane.roe"), "{text}");
    }
}
