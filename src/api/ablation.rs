//! `POST /api/v1/ablation`, `GET /api/v1/ablation/{id}` and `DELETE /api/v1/ablation/{id}`:
//! re-evaluate the project's stored log through a modified rule set, as a bounded background
//! job (see [`crate::jobs`]) whose progress and result can be fetched, or which can be
//! cancelled. Read only: the log is never changed.
//!
//! Body: `{"disable": ["cost_guard"], "rules": {"my_rule": "<rhai source>"}, "from": T, "to": T}`
//! — the candidate is the rules directory's current files, with `rules` added or replacing
//! files of the same id, minus `disable`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::ablation::{self, AblationError, AblationRange};
use crate::auth::Principal;
use crate::auth::permission::Permission;
use crate::event::FieldError;
use crate::http::AppState;
use crate::http::body::{parse_json, read_limited};
use crate::http::error::ApiError;
use crate::rules::RuleSet;
use crate::rules::live::LoadProblem;
use crate::store::history;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/ablation", post(start))
        .route("/api/v1/ablation/{id}", get(status).delete(cancel))
}

fn candidate(state: &AppState, body: &Value) -> Result<(RuleSet, AblationRange), ApiError> {
    let invalid = |path: &str, message: &str| {
        ApiError::validation(vec![FieldError {
            path: path.into(),
            message: message.into(),
        }])
    };
    let mut sources: BTreeMap<String, (PathBuf, String)> = BTreeMap::new();
    let dir = state.rules.dir().to_owned();
    for entry in std::fs::read_dir(&dir).map_err(ApiError::internal)? {
        let path = entry.map_err(ApiError::internal)?.path();
        if path.extension().is_some_and(|e| e == "rhai") {
            let id = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = std::fs::read_to_string(&path).map_err(ApiError::internal)?;
            sources.insert(id, (path, text));
        }
    }
    if let Some(rules) = body.get("rules") {
        let Some(rules) = rules.as_object() else {
            return Err(invalid(
                "rules",
                "must be an object of rule id → Rhai source",
            ));
        };
        for (id, src) in rules {
            if !crate::auth::permission::valid_project_id(id) {
                return Err(invalid(
                    "rules",
                    "rule ids are 1-64 letters, digits, `-`, `_` or `.`",
                ));
            }
            // Ids are echoed in problems and results: none may carry personal data.
            if state.pipeline.redaction.lookup_id("rule_id", id) != *id {
                return Err(invalid(
                    "rules",
                    "a rule id looks like personal data; rename it",
                ));
            }
            let Some(src) = src.as_str() else {
                return Err(invalid(
                    &format!("rules.{id}"),
                    "must be a string of Rhai source",
                ));
            };
            sources.insert(id.clone(), (dir.join(format!("{id}.rhai")), src.to_owned()));
        }
    }
    if let Some(disable) = body.get("disable") {
        let Some(list) = disable.as_array() else {
            return Err(invalid("disable", "must be a list of rule ids"));
        };
        for id in list {
            sources.remove(id.as_str().unwrap_or_default());
        }
    }
    let time = |field: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
        match body.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => crate::event::parse_time(s)
                .map(Some)
                .map_err(|message| invalid(field, message)),
            Some(_) => Err(invalid(field, "must be an RFC 3339 timestamp string")),
        }
    };
    let range = AblationRange {
        from: time("from")?,
        to: time("to")?,
    };
    let set = RuleSet::from_sources(sources.into_values()).map_err(|errors| {
        let problems: Vec<LoadProblem> = errors.iter().map(LoadProblem::from).collect();
        ApiError::validation(
            problems
                .iter()
                .map(|p| FieldError {
                    path: format!(
                        "rules ({}:{}:{})",
                        p.file,
                        p.line.unwrap_or(0),
                        p.column.unwrap_or(0)
                    ),
                    message: p.message.clone(),
                })
                .collect(),
        )
    })?;
    Ok((set, range))
}

async fn start(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> Result<Response, ApiError> {
    let project = principal.authorize(Permission::RulesRead, "ablation.start")?;
    let body = parse_json(&read_limited(req.into_body(), 1 << 20).await?)?;
    let view = submit(&state, &principal, &project, &body)?;
    let status_url = format!("/api/v1/ablation/{}", view.id);
    let mut body = serde_json::to_value(&view).map_err(ApiError::internal)?;
    body["status_url"] = json!(status_url);
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Starts an ablation job for `project` from a request body (see the module docs); audited.
pub fn submit(
    state: &AppState,
    principal: &Principal,
    project: &str,
    body: &Value,
) -> Result<crate::jobs::View, ApiError> {
    let (set, range) = candidate(state, body)?;
    let set = std::sync::Arc::new(set);
    let store = state.store.clone();
    let job_project = project.to_owned();
    let view = state
        .ablations
        .submit(project, &principal.key.id, move |progress| async move {
            // A job reads on the store's job connections, never the request path's readers.
            let mut conn = store.job_connection().await.map_err(|e| {
                tracing::error!(error = %e, "ablation job: no job connection");
                "the store is unavailable; retry later".to_owned()
            })?;
            let until = history::head_seq(&mut conn.exec())
                .await
                .map_err(internal)?;
            let total = history::count_project_records(&mut conn.exec(), &job_project, until)
                .await
                .map_err(internal)?;
            progress.total.store(total, Ordering::Relaxed);
            let p = progress.clone();
            let report = ablation::run(
                &mut conn,
                &job_project,
                &set,
                &range,
                &progress.cancel,
                |n| p.done.store(n, Ordering::Relaxed),
            )
            .await
            .map_err(|e| match e {
                AblationError::Cancelled => "cancelled".to_owned(),
                AblationError::Store(e) => internal(e),
            })?;
            serde_json::to_value(report).map_err(internal)
        })?;
    let mut e = principal.entry("configuration", "ablation.start", "success");
    e.resource = Some(view.id.clone());
    principal.record(e);
    Ok(view)
}

/// A store failure inside a job: logged in full, reported to the client without detail.
fn internal(e: impl std::fmt::Display) -> String {
    tracing::error!(error = %e, "ablation job failed");
    "the job failed reading the log; the server log has the details".to_owned()
}

async fn status(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = principal.authorize(Permission::RulesRead, "ablation.status")?;
    let view = state
        .ablations
        .view(&id, &project)
        .ok_or_else(|| ApiError::not_found("no such ablation job"))?;
    let mut body = serde_json::to_value(&view).map_err(ApiError::internal)?;
    if let Some(report) = &view.result {
        // The candidate reproduces the stored violations exactly.
        let identical = report["rules"].as_object().is_some_and(|rules| {
            rules
                .values()
                .all(|d| d["would_fire"] == 0 && d["would_disappear"] == 0)
        });
        body["identical"] = json!(identical);
    }
    Ok(Json(body))
}

async fn cancel(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = principal.authorize(Permission::RulesRead, "ablation.cancel")?;
    let view = state
        .ablations
        .cancel(&id, &project)
        .ok_or_else(|| ApiError::not_found("no such ablation job"))?;
    let mut e = principal.entry("configuration", "ablation.cancel", "success");
    e.resource = Some(id);
    principal.record(e);
    Ok(Json(
        serde_json::to_value(view).map_err(ApiError::internal)?,
    ))
}
