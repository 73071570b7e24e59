//! Rate limits (tower_governor) with separate budgets for ingest and queries, keyed on the API
//! key (a digest of the presented token), or on the client address for requests without one —
//! behind nginx that is the `X-Forwarded-For` address, when nginx is a trusted proxy.
//! Over budget: `429` + `Retry-After`, counted in `audittrail_rate_limited_total`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use governor::clock::QuantaInstant;
use governor::middleware::NoOpMiddleware;
use sha2::{Digest, Sha256};
use tower_governor::GovernorError;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;

use super::error::ApiError;
use crate::auth::proxies::{self, ProxyNet};

/// What a budget is keyed on.
#[derive(Clone, Debug)]
pub struct CallerKey {
    trusted_proxies: Arc<Vec<ProxyNet>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Caller {
    Key([u8; 16]),
    Ip(IpAddr),
}

impl KeyExtractor for CallerKey {
    type Key = Caller;

    fn extract<T>(&self, req: &Request<T>) -> Result<Caller, GovernorError> {
        let authorization = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Some(token) = crate::auth::presented_token(authorization) {
            let d = Sha256::digest(token.as_bytes());
            let mut k = [0u8; 16];
            k.copy_from_slice(&d[..16]);
            return Ok(Caller::Key(k));
        }
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .ok_or(GovernorError::UnableToExtractKey)?;
        if proxies::trusted(&self.trusted_proxies, peer) {
            let fwd = req
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok());
            if let Some(ip) = fwd
                .and_then(|f| f.rsplit(',').next())
                .and_then(|s| s.trim().parse().ok())
            {
                return Ok(Caller::Ip(ip));
            }
        }
        Ok(Caller::Ip(peer))
    }
}

pub type Limit = GovernorLayer<CallerKey, NoOpMiddleware<QuantaInstant>, Body>;

/// A budget of `per_second` requests per caller with bursts of twice that. `budget` names it
/// in metrics.
pub fn layer(budget: &'static str, per_second: u32, trusted_proxies: &[ProxyNet]) -> Limit {
    let per_second = per_second.max(1);
    let config = GovernorConfigBuilder::default()
        .key_extractor(CallerKey {
            trusted_proxies: Arc::new(trusted_proxies.to_vec()),
        })
        .per_nanosecond(1_000_000_000 / u64::from(per_second))
        .burst_size(per_second.saturating_mul(2))
        .finish()
        .expect("a positive period and burst always make a valid rate limit");
    let limiter = config.limiter().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.retain_recent();
        }
    });
    GovernorLayer::new(config).error_handler(move |e| rejection(budget, e))
}

fn rejection(budget: &'static str, e: GovernorError) -> Response<Body> {
    match e {
        GovernorError::TooManyRequests { wait_time, .. } => {
            metrics::counter!("audittrail_rate_limited_total", "budget" => budget).increment(1);
            ApiError {
                retry_after_secs: Some(wait_time.max(1)),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    format!("{budget} rate limit exceeded; retry after the indicated delay"),
                )
            }
            .into_response()
        }
        other => ApiError::internal(other).into_response(),
    }
}
