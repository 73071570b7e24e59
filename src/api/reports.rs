//! `POST /api/v1/reports` starts a compliance report job for the key's project;
//! `GET /api/v1/reports/{id}` shows it (as ablation jobs are shown, then the stored report's
//! facts once done); `GET /api/v1/reports/{id}.pdf` downloads it; `GET /api/v1/reports` lists
//! the project's reports. Reports are kept under `<data dir>/reports/`.

use std::sync::atomic::Ordering;

use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::auth::permission::Permission;
use crate::event::FieldError;
use crate::http::AppState;
use crate::http::body::{parse_json, read_limited};
use crate::http::error::ApiError;
use crate::report::{self, Params, ReportError, Standard, Stored};
use crate::store::chain::ChainKey;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/reports", post(start).get(list))
        // axum cannot put a parameter before `.pdf` in one segment: the segment is routed
        // whole and the suffix stripped.
        .route("/api/v1/reports/{id}", get(show))
}

fn invalid(path: &str, message: &str) -> ApiError {
    ApiError::validation(vec![FieldError {
        path: path.into(),
        message: message.into(),
    }])
}

fn time(body: &Value, field: &str) -> Result<DateTime<Utc>, ApiError> {
    match body.get(field) {
        Some(Value::String(s)) => {
            crate::event::parse_time(s).map_err(|message| invalid(field, message))
        }
        None | Some(Value::Null) => Err(invalid(field, "is required (an RFC 3339 timestamp)")),
        Some(_) => Err(invalid(field, "must be an RFC 3339 timestamp string")),
    }
}

/// The parameters of a report request for `project`, as of `now`.
pub fn params(
    state: &AppState,
    project: &str,
    global_audit: bool,
    body: &Value,
    now: DateTime<Utc>,
) -> Result<Params, ApiError> {
    let standard = match body.get("standard") {
        Some(Value::String(s)) => Standard::parse(s)
            .ok_or_else(|| invalid("standard", "must be one of soc2, gdpr, hipaa, eu-ai-act"))?,
        _ => {
            return Err(invalid(
                "standard",
                "is required: one of soc2, gdpr, hipaa, eu-ai-act",
            ));
        }
    };
    let from = time(body, "from")?;
    let to = time(body, "to")?;
    if to <= from {
        return Err(invalid("to", "must be later than `from`"));
    }
    if from > now {
        return Err(invalid("from", "lies in the future"));
    }
    let (rules, rules_digest) = report::rule_set_facts(&state.rules.current());
    Ok(Params {
        standard,
        projects: vec![project.to_owned()],
        from,
        to,
        now,
        retention_days: state.config.retention_days,
        pii_redaction: state.config.pii_redaction_enabled,
        rules,
        rules_digest,
        global_audit,
    })
}

async fn start(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> Result<Response, ApiError> {
    let project = principal.authorize(Permission::ReportsCreate, "reports.create")?;
    let body = parse_json(&read_limited(req.into_body(), 64 * 1024).await?)?;
    let view = submit(&state, &principal, &project, &body)?;
    let mut body = serde_json::to_value(&view).map_err(ApiError::internal)?;
    body["status_url"] = json!(format!("/api/v1/reports/{}", view.id));
    body["pdf_url"] = json!(format!("/api/v1/reports/{}.pdf", view.id));
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Starts a report job for `project` from a request body (`standard`, `from`, `to`); audited.
/// The caller has checked `reports:create`.
pub fn submit(
    state: &AppState,
    principal: &Principal,
    project: &str,
    body: &Value,
) -> Result<crate::jobs::View, ApiError> {
    // A key that holds every project also sees the security events that name none.
    let global = principal.key.projects.iter().any(|p| p == "*");
    let params = params(state, project, global, body, Utc::now())?;
    let store = state.store.clone();
    let key = ChainKey::derive(state.resolved.secret_key.expose().as_bytes());
    let dir = report::dir(&state.config.data_dir);
    let view = state
        .reports
        .submit(project, &principal.key.id, move |progress| async move {
            let id = progress.id.clone();
            let p = progress.clone();
            let mut tick = move |done: u64, total: u64| {
                p.total.store(total, Ordering::Relaxed);
                p.done.store(done, Ordering::Relaxed);
            };
            let facts = report::build(&store, &key, &params, &mut tick)
                .await
                .map_err(|e| match e {
                    ReportError::Cancelled => "cancelled".to_owned(),
                    other => {
                        tracing::error!(error = %other, "report job failed");
                        "the report could not be made; the server log has the details".to_owned()
                    }
                })?;
            let pdf = tokio::task::spawn_blocking({
                let facts = facts.clone();
                move || report::render(&facts)
            })
            .await
            .map_err(|e| e.to_string())?;
            let stored = Stored::of(&id, &facts, &pdf);
            report::save(&dir, &stored, &pdf).map_err(|e| {
                tracing::error!(error = %e, "report could not be stored");
                "the report could not be stored; the server log has the details".to_owned()
            })?;
            serde_json::to_value(&stored).map_err(|e| e.to_string())
        })?;
    let mut e = principal.entry("data_access", "reports.create", "success");
    e.resource = Some(view.id.clone());
    principal.record(e);
    Ok(view)
}

/// A stored report of `project`, if there is one.
pub fn stored(state: &AppState, id: &str, project: &str) -> Option<Stored> {
    report::find(&report::dir(&state.config.data_dir), id)
        .filter(|s| s.projects.iter().any(|p| p == project))
}

async fn show(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let project = principal.authorize(Permission::ReportsRead, "reports.read")?;
    if let Some(id) = id.strip_suffix(".pdf") {
        let Some(s) = stored(&state, id, &project) else {
            return Err(ApiError::not_found(
                "no such report (or it is not finished yet)",
            ));
        };
        let path = report::dir(&state.config.data_dir).join(format!("{}.pdf", s.id));
        let bytes = tokio::fs::read(&path).await.map_err(ApiError::internal)?;
        let name = format!(
            "audittrail-{}-{}-{}.pdf",
            s.standard.as_str(),
            project,
            s.cut_at.get(..10).unwrap_or("")
        );
        return Ok((
            [
                (header::CONTENT_TYPE, "application/pdf".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            bytes,
        )
            .into_response());
    }
    if let Some(view) = state.reports.view(&id, &project) {
        let mut body = serde_json::to_value(&view).map_err(ApiError::internal)?;
        if view.status == "done" {
            body["pdf_url"] = json!(format!("/api/v1/reports/{id}.pdf"));
        }
        return Ok(Json(body).into_response());
    }
    // Finished before the last restart (or expired from the job list): the stored summary.
    let s = stored(&state, &id, &project).ok_or_else(|| ApiError::not_found("no such report"))?;
    Ok(Json(json!({
        "id": s.id,
        "status": "done",
        "result": s,
        "pdf_url": format!("/api/v1/reports/{id}.pdf"),
    }))
    .into_response())
}

async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let project = principal.authorize(Permission::ReportsRead, "reports.list")?;
    let reports: Vec<Value> = report::list(&report::dir(&state.config.data_dir))
        .into_iter()
        .filter(|s| s.projects.iter().any(|p| p == &project))
        .map(|s| {
            let pdf_url = format!("/api/v1/reports/{}.pdf", s.id);
            let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
            v["pdf_url"] = json!(pdf_url);
            v
        })
        .collect();
    Ok(Json(json!({ "reports": reports })))
}
