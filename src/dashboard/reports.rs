//! `GET /reports`: the project's compliance reports (running and stored) and a form to make
//! one; `POST /reports` starts one (CSRF-checked, `reports:create`); `GET /reports/{id}.pdf`
//! downloads one with the session (`reports:read`).

use askama::Template;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::error::{PageError, render};
use super::fmt;
use super::rules::form_pairs;
use super::viewer::{Chrome, Viewer};
use crate::auth::permission::Permission;
use crate::http::AppState;
use crate::report::{self, Standard};

pub struct ReportLine {
    pub id: String,
    pub standard: String,
    pub period: String,
    pub generated_at: String,
    pub range: String,
    pub events: String,
    pub violations: String,
    pub verified: bool,
}

#[derive(Template)]
#[template(path = "reports.html")]
struct ReportsPage {
    chrome: Chrome,
    lines: Vec<ReportLine>,
    running: Vec<(String, String)>,
    may_create: bool,
    standards: Vec<(&'static str, &'static str)>,
}

pub async fn list(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PageError> {
    let project = viewer.project(Permission::ReportsRead, "dashboard.reports")?;
    let lines = report::list(&report::dir(&state.config.data_dir))
        .into_iter()
        .filter(|s| s.projects.iter().any(|p| p == &project))
        .take(200)
        .map(|s| ReportLine {
            standard: s.standard.title().to_owned(),
            period: format!("{} – {}", fmt::time(&s.from), fmt::time(&s.cut_at)),
            generated_at: fmt::time(&s.generated_at),
            range: match (s.first_seq, s.last_seq) {
                (Some(a), Some(b)) => format!("{a}–{b}"),
                _ => "-".into(),
            },
            events: s.populations["events"].to_string(),
            violations: s.populations["violations"].to_string(),
            verified: s.chain_verified,
            id: s.id,
        })
        .collect();
    let running = state
        .reports
        .unfinished(&project)
        .into_iter()
        .map(|v| {
            let done = v.progress["done"].as_u64().unwrap_or(0);
            let total = v.progress["total"].as_u64().unwrap_or(0);
            let pct = (done * 100).checked_div(total).unwrap_or(0);
            (v.id, format!("{} · {pct} %", v.status))
        })
        .collect();
    let page = ReportsPage {
        chrome: viewer.chrome(&state, "reports", "/reports").await,
        lines,
        running,
        may_create: viewer.may(Permission::ReportsCreate),
        standards: Standard::ALL
            .iter()
            .map(|s| (s.as_str(), s.title()))
            .collect(),
    };
    render(&page)
}

pub async fn create(
    State(state): State<AppState>,
    viewer: Viewer,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    let mut csrf = String::new();
    let mut req = json!({});
    for (k, v) in form_pairs(&body) {
        match k.as_str() {
            "csrf" => csrf = v,
            "standard" => req["standard"] = json!(v),
            "from" | "to" => {
                if let Some(t) = fmt::form_time(Some(&v)) {
                    req[k] = json!(t);
                }
            }
            _ => {}
        }
    }
    viewer.check_csrf(&state, &csrf)?;
    let project = viewer.project(Permission::ReportsCreate, "dashboard.reports.create")?;
    crate::api::reports::submit(&state, &viewer.principal, &project, &req)?;
    Ok(Redirect::to("/reports").into_response())
}

pub async fn download(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(file): Path<String>,
) -> Result<Response, PageError> {
    let project = viewer.project(Permission::ReportsRead, "dashboard.reports.download")?;
    let s = file
        .strip_suffix(".pdf")
        .and_then(|id| crate::api::reports::stored(&state, id, &project))
        .ok_or_else(|| PageError::not_found("no such report"))?;
    let path = report::dir(&state.config.data_dir).join(format!("{}.pdf", s.id));
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|_| PageError::not_found("no such report"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"audittrail-{}-{}.pdf\"",
                    s.standard.as_str(),
                    s.cut_at.get(..10).unwrap_or("")
                ),
            ),
        ],
        bytes,
    )
        .into_response())
}
