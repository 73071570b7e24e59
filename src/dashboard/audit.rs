//! `GET /audit` (admin:all): the security audit log, newest first, with its filters.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::error::{PageError, render};
use super::fmt;
use super::viewer::{Chrome, Viewer};
use crate::auth::permission::Permission;
use crate::http::AppState;
use crate::http::params::QueryErrors;
use crate::store::audit_log::{self, AuditFilter};

pub struct AuditLine {
    pub time: String,
    pub event_type: String,
    pub operation: String,
    pub result: String,
    pub principal: String,
    pub project: String,
    pub resource: String,
    pub source_ip: String,
    pub metadata: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Params {
    event_type: Option<String>,
    result: Option<String>,
    principal: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    lines: Vec<AuditLine>,
    next_url: Option<String>,
    event_type: String,
    result: String,
    principal: String,
}

pub async fn list(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<Params>,
) -> Result<Response, PageError> {
    viewer.project(Permission::AdminAll, "dashboard.audit")?;
    let event_type = fmt::blank_none(p.event_type);
    let result = fmt::blank_none(p.result);
    let principal = fmt::blank_none(p.principal);
    let mut errors = QueryErrors::default();
    let cursor = errors.cursor(p.cursor.as_deref(), |c| {
        c.parse::<i64>().ok().filter(|n| *n > 0)
    });
    errors.finish()?;
    let filter = AuditFilter {
        event_type: event_type.clone(),
        principal: principal.clone(),
        result: result.clone(),
        projects: viewer.principal.scope(),
    };
    let (entries, next) = audit_log::list(&state.store, &filter, cursor, 100).await?;
    let s = |e: &Value, k: &str| e[k].as_str().unwrap_or_default().to_owned();
    let lines = entries
        .iter()
        .map(|e| AuditLine {
            time: fmt::time(&s(e, "timestamp")),
            event_type: s(e, "event_type"),
            operation: s(e, "operation"),
            result: s(e, "result"),
            principal: s(e, "principal"),
            project: s(e, "project"),
            resource: s(e, "resource"),
            source_ip: s(e, "source_ip"),
            metadata: match &e["metadata"] {
                Value::Null => String::new(),
                Value::Object(m) if m.is_empty() => String::new(),
                m => m.to_string(),
            },
        })
        .collect();
    let next_url = next.map(|n| {
        fmt::next_page_url(
            "/audit",
            &[
                ("event_type", &event_type),
                ("result", &result),
                ("principal", &principal),
            ],
            &n.to_string(),
        )
    });
    let page = AuditPage {
        chrome: viewer.chrome(&state, "audit", "/audit").await,
        lines,
        next_url,
        event_type: event_type.unwrap_or_default(),
        result: result.unwrap_or_default(),
        principal: principal.unwrap_or_default(),
    };
    render(&page)
}
