//! `POST /api/v1/ablation` and `GET /api/v1/ablation/{id}`: re-evaluate the project's stored
//! log through a modified rule set, as a background job whose progress and result can be
//! fetched. Read only: the log is never changed.
//!
//! Body: `{"disable": ["cost_guard"], "rules": {"my_rule": "<rhai source>"}, "from": T, "to": T}`
//! — the candidate is the rules directory's current files, with `rules` added or replacing
//! files of the same id, minus `disable`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::ablation::{self, AblationRange, AblationReport};
use crate::auth::Principal;
use crate::auth::permission::Permission;
use crate::event::FieldError;
use crate::ingest::body::{parse_json, read_limited};
use crate::rules::RuleSet;
use crate::rules::live::LoadProblem;

/// Jobs kept in memory; the oldest finished ones are forgotten beyond this.
const MAX_JOBS: usize = 100;

struct Job {
    project: String,
    read: Arc<AtomicU64>,
    total: u64,
    started: String,
    outcome: Option<Result<AblationReport, String>>,
}

#[derive(Default)]
pub struct Jobs {
    map: Mutex<HashMap<String, Job>>,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/ablation", post(start))
        .route("/api/v1/ablation/{id}", get(status))
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
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| invalid(field, "invalid RFC 3339 timestamp")),
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
    let (set, range) = candidate(&state, &body)?;
    let total = crate::store::verify::count_records(&state.store.readers)
        .await
        .map_err(ApiError::internal)?;
    let id = uuid::Uuid::now_v7().to_string();
    let read = Arc::new(AtomicU64::new(0));
    {
        let mut jobs = state.jobs.map.lock().unwrap_or_else(|p| p.into_inner());
        if jobs.len() >= MAX_JOBS {
            let oldest = jobs
                .iter()
                .filter(|(_, j)| j.outcome.is_some())
                .min_by(|a, b| a.1.started.cmp(&b.1.started))
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    jobs.remove(&k);
                }
                None => {
                    return Err(ApiError::unavailable(
                        "too_many_jobs",
                        "too many ablation jobs are running; retry later",
                        10,
                    ));
                }
            }
        }
        jobs.insert(
            id.clone(),
            Job {
                project: project.clone(),
                read: read.clone(),
                total,
                started: crate::event::format_time(&Utc::now()),
                outcome: None,
            },
        );
    }
    let job_id = id.clone();
    tokio::spawn(async move {
        let progress = read.clone();
        let result = ablation::run(
            &state.store.readers,
            Some(&project),
            &set,
            &range,
            move |n| progress.store(n, Ordering::Relaxed),
        )
        .await
        .map_err(|e| e.to_string());
        if let Some(job) = state
            .jobs
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&job_id)
        {
            job.outcome = Some(result);
        }
    });
    let mut e = principal.entry("configuration", "ablation.start", "success");
    e.resource = Some(id.clone());
    principal.record(e);
    Ok((StatusCode::ACCEPTED, Json(json!({ "id": id, "status": "running", "status_url": format!("/api/v1/ablation/{id}") }))).into_response())
}

async fn status(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = principal.authorize(Permission::RulesRead, "ablation.status")?;
    let jobs = state.jobs.map.lock().unwrap_or_else(|p| p.into_inner());
    let job = jobs
        .get(&id)
        .filter(|j| j.project == project)
        .ok_or_else(|| ApiError::not_found("no such ablation job"))?;
    let progress =
        json!({ "records_read": job.read.load(Ordering::Relaxed), "records_total": job.total });
    Ok(Json(match &job.outcome {
        None => {
            json!({ "id": id, "status": "running", "started": job.started, "progress": progress })
        }
        Some(Ok(report)) => {
            json!({ "id": id, "status": "done", "started": job.started, "progress": progress, "identical": report.is_identical(), "result": report })
        }
        Some(Err(e)) => json!({ "id": id, "status": "failed", "started": job.started, "error": e }),
    }))
}
