//! `GET /`: the overview — events per minute, violations by severity, guard decisions over
//! the last hour; the rules loaded and their load problems; health; the latest events.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::Utc;

use super::error::{PageError, render};
use super::fmt;
use super::viewer::{Chrome, Viewer};
use crate::auth::permission::Permission;
use crate::http::AppState;
use crate::rules::live::LoadProblem;
use crate::rules::{Decision, Severity};
use crate::store::query::{self, LiveRecord};

/// One bar of the events-per-minute chart (SVG coordinates, 0..100 high).
pub struct Bar {
    pub x: usize,
    pub y: u64,
    pub height: u64,
    pub label: String,
}

/// A row of the latest-events table.
pub struct EventRow {
    pub seq: i64,
    pub record_type: String,
    pub trace_id: String,
    pub trace_url: String,
    pub name: String,
    pub agent: String,
    pub status: String,
    pub severity: String,
}

impl EventRow {
    pub fn from_record(r: &LiveRecord) -> EventRow {
        let s = |k: &str| {
            r.summary
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        let outcome = r.record_type == "violation" || r.record_type == "rule_error";
        EventRow {
            seq: r.seq,
            record_type: r.record_type.clone(),
            trace_url: format!("/traces/{}", fmt::url(&r.trace_id)),
            trace_id: r.trace_id.clone(),
            name: if outcome { s("rule_id") } else { s("name") },
            agent: s("agent"),
            status: if outcome { s("outcome") } else { s("status") },
            severity: s("severity"),
        }
    }
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    chrome: Chrome,
    events_hour: String,
    errors_hour: String,
    peak: String,
    bars: Vec<Bar>,
    severities: Vec<(&'static str, String)>,
    rule_errors: String,
    guards: Vec<(&'static str, String)>,
    rules_loaded: usize,
    problems: Vec<LoadProblem>,
    healthy: bool,
    standby: bool,
    /// Cluster mode: this node publishes to NATS; the worker writes.
    cluster: bool,
    backend: &'static str,
    head_seq: String,
    uptime: String,
    latest: Vec<EventRow>,
}

pub async fn overview(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Response, PageError> {
    // A key that cannot read traces (a compliance officer's, say) starts where it can look.
    if !viewer.may(Permission::TracesRead) {
        for (p, page) in [
            (Permission::RulesRead, "/rules"),
            (Permission::ReportsRead, "/reports"),
            (Permission::KeysAdmin, "/keys"),
        ] {
            if viewer.may(p) {
                return Ok(axum::response::Redirect::to(page).into_response());
            }
        }
    }
    let project = viewer.project(Permission::TracesRead, "dashboard.overview")?;
    let hour = state.activity.hour(&project, Utc::now().timestamp() / 60);
    let peak = hour.minutes.iter().map(|m| m.events).max().unwrap_or(0);
    let bars = hour
        .minutes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let height = (m.events * 100).checked_div(peak).unwrap_or(0);
            Bar {
                x: i * 10,
                y: 100 - height,
                height,
                label: format!(
                    "{} events at {}",
                    m.events,
                    chrono::DateTime::from_timestamp(m.minute * 60, 0)
                        .map(|t| t.format("%H:%M UTC").to_string())
                        .unwrap_or_default()
                ),
            }
        })
        .collect();
    let latest = query::latest_records(&state.store, &project, 20).await?;
    let status = &state.writer.status;
    let set = state.rules.current();
    let page = Overview {
        chrome: viewer.chrome(&state, "overview", "/").await,
        events_hour: fmt::count(hour.events() as i64),
        errors_hour: fmt::count(hour.minutes.iter().map(|m| m.errors).sum::<u64>() as i64),
        peak: fmt::count(peak as i64),
        bars,
        severities: Severity::ALL
            .iter()
            .rev()
            .map(|s| (s.as_str(), fmt::count(hour.violations(*s) as i64)))
            .collect(),
        rule_errors: fmt::count(hour.rule_errors() as i64),
        guards: [
            ("allow", Decision::Allow),
            ("warn", Decision::Warn),
            ("deny", Decision::Deny),
        ]
        .into_iter()
        .map(|(n, d)| (n, fmt::count(hour.guards(d) as i64)))
        .collect(),
        rules_loaded: set.rules().len(),
        problems: state.rules.problems(),
        healthy: status.healthy(),
        standby: status.standby(),
        cluster: state.cluster.is_some(),
        backend: state.store.backend().name(),
        head_seq: fmt::count(status.head_seq()),
        uptime: fmt::duration_ms(Some(state.started.elapsed().as_secs_f64() * 1000.0)),
        latest: latest.iter().map(EventRow::from_record).collect(),
    };
    render(&page)
}
