//! The API door: query, admin and operations routes under `/api/v1` (problem+json errors,
//! Bearer keys). Ingest routes live in [`crate::ingest`]; the pages in [`crate::dashboard`].

pub mod ablation;
pub mod audit;
pub mod erasure;
pub mod keys;
pub mod ops;
pub mod reports;
pub mod retention;
pub mod rules;
pub mod traces;

use axum::Router;

use crate::http::AppState;

/// Routes that read or administer (the query budget).
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(traces::router())
        .merge(rules::router())
        .merge(keys::router())
        .merge(audit::router())
        .merge(ablation::router())
        .merge(reports::router())
        .merge(erasure::router())
        .merge(retention::router())
        .merge(ops::router())
        .merge(crate::ingest::otlp::langfuse_router())
}

/// Routes that write traces or ask the rules (the ingest budget).
pub fn ingest_router() -> Router<AppState> {
    Router::new()
        .merge(crate::ingest::http::router())
        .merge(crate::ingest::otlp::router())
        .merge(crate::ingest::ws::router())
        .merge(rules::ingest_router())
}

/// Routes without a key (health probe, metrics).
pub fn public_router() -> Router<AppState> {
    ops::public_router()
}
