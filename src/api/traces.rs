//! Query routes: `GET /api/v1/traces` (summaries, filters, cursor pagination) and
//! `GET /api/v1/traces/{trace_id}` (one trace with its spans in order).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::auth::permission::Permission;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::params::QueryErrors;
use crate::store::query::{self, Cursor, TraceFilter, TraceStatus};

/// Spans returned with one trace.
const MAX_SPANS: u64 = 10_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/traces", get(list))
        .route("/api/v1/traces/{trace_id}", get(one))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    agent: Option<String>,
    session_id: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    has_violations: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let project = principal.authorize(Permission::TracesRead, "traces.list")?;
    let mut errors = QueryErrors::default();
    let status = match p.status.as_deref() {
        None => None,
        Some("ok") => Some(TraceStatus::Ok),
        Some("error") => Some(TraceStatus::Error),
        Some(_) => {
            errors.push("status", "must be ok or error");
            None
        }
    };
    let has_violations = match p.has_violations.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => {
            errors.push("has_violations", "must be true or false");
            None
        }
    };
    let from = errors.time("from", p.from.as_deref());
    let to = errors.time("to", p.to.as_deref());
    let limit = errors.limit(p.limit.as_deref());
    let cursor = errors.cursor(p.cursor.as_deref(), Cursor::decode);
    errors.finish()?;
    // Filters match what is stored: ids holding personal data are stored as pseudonyms.
    let redaction = &state.pipeline.redaction;
    let filter = TraceFilter {
        agent: p.agent.map(|a| redaction.lookup_text("agent", &a)),
        session_id: p.session_id.map(|s| redaction.lookup_id("session_id", &s)),
        status,
        from,
        to,
        has_violations,
    };
    let (items, next) = query::list_traces(&state.store, &project, &filter, cursor.as_ref(), limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({ "traces": items, "next_cursor": next.map(|c| c.encode()) }),
    ))
}

async fn one(
    State(state): State<AppState>,
    principal: Principal,
    Path(trace_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = principal.authorize(Permission::TracesRead, "traces.get")?;
    let trace_id = state.pipeline.redaction.lookup_id("trace_id", &trace_id);
    let found = query::get_trace(&state.store, &project, &trace_id, MAX_SPANS)
        .await
        .map_err(ApiError::internal)?;
    let Some((summary, spans)) = found else {
        return Err(ApiError::not_found("no trace with this id"));
    };
    let truncated = spans.len() as u64 >= MAX_SPANS && summary.span_count as u64 > MAX_SPANS;
    Ok(Json(
        json!({ "trace": summary, "spans": spans, "spans_truncated": truncated }),
    ))
}
