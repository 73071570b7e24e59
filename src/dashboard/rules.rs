//! Violations (filtered, each linking to its span) and rules (what each reads, its hits and
//! errors, its read-only source, load problems), with the ablation form.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::json;

use super::error::{PageError, render};
use super::fmt;
use super::viewer::{Chrome, Viewer};
use crate::auth::permission::Permission;
use crate::http::AppState;
use crate::http::params::QueryErrors;
use crate::rules::Severity;
use crate::rules::live::LoadProblem;
use crate::store::violations::{self, ViolationFilter};

pub struct ViolationLine {
    pub at: String,
    pub rule_id: String,
    pub severity: String,
    pub message: String,
    pub agent: String,
    pub kind: String,
    pub span_url: String,
    pub trace_id: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct ViolationParams {
    rule: Option<String>,
    severity: Option<String>,
    agent: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "violations.html")]
struct ViolationsPage {
    chrome: Chrome,
    lines: Vec<ViolationLine>,
    next_url: Option<String>,
    rule: String,
    severity: String,
    agent: String,
    from: String,
    to: String,
    rule_ids: Vec<String>,
}

pub async fn violations(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(p): Query<ViolationParams>,
) -> Result<Response, PageError> {
    let project = viewer.project(Permission::TracesRead, "dashboard.violations")?;
    let rule = fmt::blank_none(p.rule);
    let severity_text = fmt::blank_none(p.severity);
    let agent = fmt::blank_none(p.agent);
    let from_text = fmt::form_time(p.from.as_deref());
    let to_text = fmt::form_time(p.to.as_deref());
    let mut errors = QueryErrors::default();
    let min_severity = severity_text.as_deref().and_then(|s| {
        Severity::parse(s).or_else(|| {
            errors.push("severity", "must be info, warning, high or critical");
            None
        })
    });
    let from = errors.time("from", from_text.as_deref());
    let to = errors.time("to", to_text.as_deref());
    let cursor = errors.cursor(p.cursor.as_deref(), |c| {
        c.parse::<i64>().ok().filter(|n| *n > 0)
    });
    errors.finish()?;
    let filter = ViolationFilter {
        rule_id: rule.clone(),
        min_severity,
        agent: agent
            .as_deref()
            .map(|a| state.pipeline.redaction.lookup_text("agent", a)),
        from,
        to,
        ..Default::default()
    };
    let (rows, next) = violations::list(&state.store, &project, &filter, cursor, 50).await?;
    let lines = rows
        .into_iter()
        .map(|v| {
            let trace = v.trace_id.clone().unwrap_or_default();
            ViolationLine {
                at: fmt::time(&v.at),
                span_url: format!(
                    "/traces/{}?at={}#s{}",
                    fmt::url(&trace),
                    v.event_seq,
                    v.event_seq
                ),
                trace_id: trace,
                rule_id: v.rule_id,
                severity: v.severity.unwrap_or_default(),
                message: v.message,
                agent: v.agent.unwrap_or_default(),
                kind: v.event_kind.unwrap_or_default(),
            }
        })
        .collect();
    let next_url = next.map(|n| {
        fmt::next_page_url(
            "/violations",
            &[
                ("rule", &rule),
                ("severity", &severity_text),
                ("agent", &agent),
                ("from", &from_text),
                ("to", &to_text),
            ],
            &n.to_string(),
        )
    });
    let page = ViolationsPage {
        chrome: viewer.chrome(&state, "violations", "/violations").await,
        lines,
        next_url,
        rule: rule.unwrap_or_default(),
        severity: severity_text.unwrap_or_default(),
        agent: agent.unwrap_or_default(),
        from: from_text
            .map(|t| t.trim_end_matches('Z').to_owned())
            .unwrap_or_default(),
        to: to_text
            .map(|t| t.trim_end_matches('Z').to_owned())
            .unwrap_or_default(),
        rule_ids: state
            .rules
            .current()
            .rules()
            .iter()
            .map(|r| r.id().to_owned())
            .collect(),
    };
    render(&page)
}

pub struct RuleCard {
    pub id: String,
    pub description: String,
    pub severity: &'static str,
    pub kinds: String,
    pub event_reads: String,
    pub trace_reads: String,
    pub hits: String,
    pub errors: String,
    pub last_error: String,
    pub source: String,
    pub violations_url: String,
}

#[derive(Template)]
#[template(path = "rules.html")]
struct RulesPage {
    chrome: Chrome,
    rules: Vec<RuleCard>,
    problems: Vec<LoadProblem>,
}

fn reads(r: Option<&[String]>) -> String {
    match r {
        None => "everything".into(),
        Some([]) => "nothing".into(),
        Some(fields) => fields.join(", "),
    }
}

pub async fn list(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PageError> {
    let project = viewer.project(Permission::RulesRead, "dashboard.rules")?;
    let set = state.rules.current();
    let stats = violations::rule_stats(&state.store, &project).await?;
    let runtime = state.rules.last_errors();
    let rules = set
        .rules()
        .iter()
        .map(|r| {
            let s = stats.iter().find(|s| s.0 == r.id());
            let (event, trace) = r.reads();
            RuleCard {
                id: r.id().to_owned(),
                description: r.description().to_owned(),
                severity: r.severity().as_str(),
                kinds: r.kinds().map_or("every kind".into(), |k| k.join(", ")),
                event_reads: reads(event),
                trace_reads: reads(trace),
                hits: fmt::count(s.map(|s| s.1).unwrap_or(0)),
                errors: fmt::count(s.map(|s| s.2).unwrap_or(0)),
                last_error: runtime
                    .get(r.id())
                    .cloned()
                    .or_else(|| s.and_then(|s| s.3.clone()))
                    .unwrap_or_default(),
                // Read-only: the file as it is on disk now.
                source: std::fs::read_to_string(r.path()).unwrap_or_default(),
                violations_url: format!("/violations?rule={}", fmt::url(r.id())),
            }
        })
        .collect();
    let page = RulesPage {
        chrome: viewer.chrome(&state, "rules", "/rules").await,
        rules,
        problems: state.rules.problems(),
    };
    render(&page)
}

#[derive(Debug, Default, Deserialize)]
pub struct AblationForm {
    #[serde(default)]
    csrf: String,
    /// Rule ids to leave out, one form field each (`disable=a&disable=b`).
    #[serde(default)]
    disable: Vec<String>,
    from: Option<String>,
    to: Option<String>,
}

pub async fn start_ablation(
    State(state): State<AppState>,
    viewer: Viewer,
    body: axum::body::Bytes,
) -> Result<Response, PageError> {
    // Repeated fields (`disable=a&disable=b`) need a list-aware decoder.
    let form: AblationForm = parse_repeated_form(&body)?;
    viewer.check_csrf(&state, &form.csrf)?;
    let project = viewer.project(Permission::RulesRead, "dashboard.ablation")?;
    let mut body = json!({ "disable": form.disable });
    if let Some(t) = fmt::form_time(form.from.as_deref()) {
        body["from"] = json!(t);
    }
    if let Some(t) = fmt::form_time(form.to.as_deref()) {
        body["to"] = json!(t);
    }
    let view = crate::api::ablation::submit(&state, &viewer.principal, &project, &body)?;
    Ok(Redirect::to(&format!("/rules/ablation/{}", fmt::url(&view.id))).into_response())
}

/// Decodes an `application/x-www-form-urlencoded` body whose `disable` field may repeat.
fn parse_repeated_form(bytes: &[u8]) -> Result<AblationForm, PageError> {
    let mut form = AblationForm::default();
    for (k, v) in form_pairs(bytes) {
        match k.as_str() {
            "csrf" => form.csrf = v,
            "disable" => form.disable.push(v),
            "from" => form.from = Some(v),
            "to" => form.to = Some(v),
            _ => {}
        }
    }
    if form.disable.len() > 1000 {
        return Err(PageError::bad_request("disable: at most 1,000 rules"));
    }
    Ok(form)
}

/// The pairs of a URL-encoded form (`+` is a space, `%XX` a byte).
pub fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => match (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(bytes)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

pub struct RuleDiff {
    pub rule_id: String,
    pub unchanged: String,
    pub would_fire: String,
    pub would_disappear: String,
}

#[derive(Template)]
#[template(path = "ablation.html")]
struct AblationPage {
    chrome: Chrome,
    id: String,
    status: String,
    running: bool,
    progress: String,
    error: String,
    diffs: Vec<RuleDiff>,
    identical: bool,
    events_compared: String,
}

pub async fn ablation(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let project = viewer.project(Permission::RulesRead, "dashboard.ablation")?;
    let view = state.ablations.view(&id, &project).ok_or_else(|| {
        PageError::not_found("No such ablation job (finished jobs are kept an hour).")
    })?;
    let n = |v: &serde_json::Value| fmt::count(v.as_i64().unwrap_or(0));
    let mut diffs = Vec::new();
    if let Some(rules) = view.result.as_ref().and_then(|r| r["rules"].as_object()) {
        for (rule_id, d) in rules {
            diffs.push(RuleDiff {
                rule_id: rule_id.clone(),
                unchanged: n(&d["unchanged"]),
                would_fire: n(&d["would_fire"]),
                would_disappear: n(&d["would_disappear"]),
            });
        }
    }
    let identical = view.result.is_some()
        && diffs
            .iter()
            .all(|d| d.would_fire == "0" && d.would_disappear == "0");
    let done = view.progress["done"].as_u64().unwrap_or(0);
    let total = view.progress["total"].as_u64().unwrap_or(0);
    let page = AblationPage {
        chrome: viewer.chrome(&state, "rules", "/rules").await,
        running: matches!(view.status, "queued" | "running"),
        status: view.status.to_owned(),
        progress: format!(
            "{} of {} records",
            fmt::count(done as i64),
            fmt::count(total as i64)
        ),
        error: view.error.clone().unwrap_or_default(),
        diffs,
        identical,
        events_compared: n(view
            .result
            .as_ref()
            .map_or(&serde_json::Value::Null, |r| &r["events_compared"])),
        id,
    };
    render(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_form_fields_decode() {
        let f = parse_repeated_form(
            b"csrf=ab&disable=cost_guard&disable=pii%5Fguard&from=2026-11-27T10%3A00&x=1",
        )
        .unwrap();
        assert_eq!(f.csrf, "ab");
        assert_eq!(f.disable, ["cost_guard", "pii_guard"]);
        assert_eq!(f.from.as_deref(), Some("2026-11-27T10:00"));
        assert_eq!(
            form_pairs(b"a=%zz&b=%4"),
            [("a".into(), "%zz".into()), ("b".into(), "%4".into())]
        );
    }
}
