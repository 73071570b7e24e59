//! `GET /api/v1/audit` (admin:all): the security audit log, newest first, with filters.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::auth::permission::Permission;
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::params::QueryErrors;
use crate::store::audit_log::{self as audit, AuditFilter};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/audit", get(list))
}

#[derive(Debug, Deserialize)]
struct Params {
    event_type: Option<String>,
    principal: Option<String>,
    result: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<Params>,
) -> Result<Json<Value>, ApiError> {
    principal.authorize(Permission::AdminAll, "audit.list")?;
    let mut errors = QueryErrors::default();
    let limit = match p.limit.as_deref().map(str::parse::<i64>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            errors.push("limit", "must be an integer from 1 to 1000");
            100
        }
    };
    let cursor = errors.cursor(p.cursor.as_deref(), |c| {
        c.parse::<i64>().ok().filter(|n| *n > 0)
    });
    errors.finish()?;
    let filter = AuditFilter {
        event_type: p.event_type,
        principal: p.principal,
        result: p.result,
        projects: principal.scope(),
    };
    let (entries, next) = audit::list(&state.store, &filter, cursor, limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({ "entries": entries, "next_cursor": next.map(|n| n.to_string()) }),
    ))
}
