//! Retention routes (`admin:all`): `POST /api/v1/retention/apply` runs a sweep now (or, with
//! `{"dry_run": true}`, says what it would remove); `PUT /api/v1/projects/{project}/retention`
//! sets a project's own, shorter limit (`{"days": N}`; `0` or `null` removes it) and `GET`
//! shows it.

use axum::extract::{Path, Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::auth::permission::{Permission, valid_project_id};
use crate::event::FieldError;
use crate::http::AppState;
use crate::http::body::{parse_json, read_limited};
use crate::http::error::ApiError;
use crate::retention::{self, SweepReport};
use crate::store::sweep;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/retention/apply", post(apply))
        .route("/api/v1/projects/{project}/retention", get(show).put(set))
}

fn invalid(path: &str, message: &str) -> ApiError {
    ApiError::validation(vec![FieldError {
        path: path.into(),
        message: message.into(),
    }])
}

/// The longest project limit accepted (100 years).
const MAX_DAYS: u64 = 36_500;

async fn apply(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> Result<Json<SweepReport>, ApiError> {
    principal.authorize(Permission::AdminAll, "retention.apply")?;
    if state.cluster.is_some() {
        return Err(ApiError::cluster_writer_only(
            "an on-demand sweep (`audittrail retention apply`; the workers also sweep hourly)",
        ));
    }
    let raw = read_limited(req.into_body(), 4 * 1024).await?;
    let body = if raw.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_json(&raw)?
    };
    let dry_run = match body.get("dry_run") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("dry_run", "must be true or false")),
    };
    if let Some(k) = body
        .as_object()
        .and_then(|m| m.keys().find(|k| k.as_str() != "dry_run"))
    {
        return Err(invalid(k, "unknown field: only dry_run is accepted"));
    }
    let report = retention::apply(
        &state.store,
        &state.writer,
        state.config.retention_days,
        Utc::now(),
        dry_run,
        &principal.key.id,
        |_, _| {},
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "retention sweep failed");
        ApiError::unavailable(
            "retention_failed",
            "the sweep could not finish; what it removed is recorded and verified. Retry it.",
            30,
        )
    })?;
    if !dry_run {
        let mut e = principal.entry("retention", "retention.apply", "success");
        e.metadata = json!({
            "records_removed": report.records_removed,
            "base_seq": report.base_seq,
            "receipt_seq": report.receipt_seq,
            "projects_erased": report.projects.iter().map(|p| p.records_erased).sum::<u64>(),
        });
        principal.record(e);
    }
    Ok(Json(report))
}

fn project_in_scope(principal: &Principal, project: &str) -> Result<(), ApiError> {
    if !valid_project_id(project) {
        return Err(invalid("project", "1-64 letters, digits, `-`, `_` or `.`"));
    }
    if !principal.in_scope(project) {
        return Err(ApiError::not_found("no such project"));
    }
    Ok(())
}

async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(project): Path<String>,
) -> Result<Json<Value>, ApiError> {
    principal.authorize(Permission::AdminAll, "retention.show")?;
    project_in_scope(&principal, &project)?;
    let own = sweep::project_limits(&state.store)
        .await
        .map_err(ApiError::internal)?
        .into_iter()
        .find(|l| l.project == project);
    Ok(Json(view(&state, &project, own.map(|l| l.days))))
}

fn view(state: &AppState, project: &str, own: Option<u32>) -> Value {
    let log = state.config.retention_days;
    let effective = match (own, log) {
        (Some(d), 0) => d,
        (Some(d), l) => d.min(l),
        (None, l) => l,
    };
    json!({
        "project": project,
        "days": own,
        "log_days": log,
        "effective_days": effective,
        "erases_older_records": own.is_some_and(|d| log == 0 || d < log),
        "eu_ai_act_warning": retention::short_retention_warning(effective),
    })
}

async fn set(
    State(state): State<AppState>,
    principal: Principal,
    Path(project): Path<String>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    principal.authorize(Permission::AdminAll, "retention.set")?;
    project_in_scope(&principal, &project)?;
    let body = parse_json(&read_limited(req.into_body(), 4 * 1024).await?)?;
    let days = match body.get("days") {
        Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => None,
            Some(d) if d <= MAX_DAYS => Some(d as u32),
            _ => {
                return Err(invalid(
                    "days",
                    &format!(
                        "a whole number of days from 1 to {MAX_DAYS} (0 or null removes the project's own limit)"
                    ),
                ));
            }
        },
        None => return Err(invalid("days", "is required")),
        Some(_) => return Err(invalid("days", "must be a whole number of days")),
    };
    sweep::set_project_limit(
        &state.store,
        &project,
        days,
        &principal.key.id,
        &crate::event::format_time(&Utc::now()),
    )
    .await
    .map_err(ApiError::internal)?;
    let mut e = principal.entry("configuration", "retention.set", "success");
    e.project = Some(project.clone());
    e.metadata = json!({ "days": days });
    principal.record(e);
    Ok(Json(view(&state, &project, days)))
}
