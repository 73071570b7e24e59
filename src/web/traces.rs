//! Query routes: `GET /api/v1/traces` (summaries, filters, cursor pagination) and
//! `GET /api/v1/traces/{trace_id}` (one trace with its spans in order).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::auth::Principal;
use crate::auth::permission::Permission;
use crate::event::FieldError;
use crate::store::query::{self, Cursor, TraceFilter, TraceStatus};

/// Page size when the client gives none, and the most it may ask for.
const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 500;
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
    cursor: Option<String>,
    limit: Option<String>,
}

fn time_param(name: &str, v: Option<&str>, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
    let v = v?;
    match DateTime::parse_from_rfc3339(v) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            errors.push(FieldError {
                path: name.into(),
                message: "invalid RFC 3339 timestamp".into(),
            });
            None
        }
    }
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let project = principal.authorize(Permission::TracesRead, "traces.list")?;
    let mut errors = Vec::new();
    let status = match p.status.as_deref() {
        None => None,
        Some("ok") => Some(TraceStatus::Ok),
        Some("error") => Some(TraceStatus::Error),
        Some(_) => {
            errors.push(FieldError {
                path: "status".into(),
                message: "must be ok or error".into(),
            });
            None
        }
    };
    let from = time_param("from", p.from.as_deref(), &mut errors);
    let to = time_param("to", p.to.as_deref(), &mut errors);
    let limit = match p.limit.as_deref().map(str::parse::<u64>) {
        None => DEFAULT_LIMIT,
        Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
        Some(_) => {
            errors.push(FieldError {
                path: "limit".into(),
                message: format!("must be an integer from 1 to {MAX_LIMIT}"),
            });
            DEFAULT_LIMIT
        }
    };
    let cursor = match p.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => match Cursor::decode(c) {
            Some(c) => Some(c),
            None => {
                errors.push(FieldError {
                    path: "cursor".into(),
                    message: "is not a cursor this server issued".into(),
                });
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError {
            code: "invalid_query",
            ..ApiError::validation(errors)
        });
    }
    let filter = TraceFilter {
        agent: p.agent,
        session_id: p.session_id,
        status,
        from,
        to,
    };
    let (items, next) = query::list_traces(
        &state.store.readers,
        &project,
        &filter,
        cursor.as_ref(),
        limit,
    )
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
    let found = query::get_trace(&state.store.readers, &project, &trace_id, MAX_SPANS)
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
