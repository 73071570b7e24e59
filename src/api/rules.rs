//! Rule routes: `GET /api/v1/rules`, `GET /api/v1/violations`, `POST /api/v1/evaluate` (guard).

use axum::extract::{Query, Request, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::auth::permission::Permission;
use crate::http::AppState;
use crate::http::body::{parse_json, read_limited};
use crate::http::error::ApiError;
use crate::http::params::QueryErrors;
use crate::ingest::http::ingest_error;
use crate::rules::{Decision, RuleOutcome, Severity, decision};
use crate::store::violations::{self, ViolationFilter, ViolationRow};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/rules", get(list_rules))
        .route("/api/v1/violations", get(list_violations))
}

/// Guard requests share the ingest budget.
pub fn ingest_router() -> Router<AppState> {
    Router::new().route("/api/v1/evaluate", post(evaluate))
}

async fn list_rules(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Value>, ApiError> {
    let project = principal.authorize(Permission::RulesRead, "rules.list")?;
    let set = state.rules.current();
    let stats = violations::rule_stats(&state.store, &project)
        .await
        .map_err(ApiError::internal)?;
    let runtime = state.rules.last_errors();
    let rules: Vec<Value> = set
        .rules()
        .iter()
        .map(|r| {
            let s = stats.iter().find(|s| s.0 == r.id());
            json!({
                "id": r.id(),
                "description": r.description(),
                "severity": r.severity().as_str(),
                "kinds": r.kinds(),
                "reads": reads_json(r),
                "hits": s.map(|s| s.1).unwrap_or(0),
                "errors": s.map(|s| s.2).unwrap_or(0),
                "last_error": runtime.get(r.id()).cloned().or_else(|| s.and_then(|s| s.3.clone())),
            })
        })
        .collect();
    Ok(Json(
        json!({ "rules": rules, "load_problems": state.rules.problems() }),
    ))
}

/// `{"event": ["kind", ...], "trace": "*"}`: the fields a rule is given (`*`: all of them).
fn reads_json(rule: &crate::rules::Rule) -> Value {
    let list = |r: Option<&[String]>| r.map_or(json!("*"), |f| json!(f));
    let (event, trace) = rule.reads();
    json!({ "event": list(event), "trace": list(trace) })
}

#[derive(Debug, Deserialize)]
struct ViolationParams {
    rule: Option<String>,
    severity: Option<String>,
    agent: Option<String>,
    trace_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    outcome: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

async fn list_violations(
    State(state): State<AppState>,
    principal: Principal,
    Query(p): Query<ViolationParams>,
) -> Result<Json<Value>, ApiError> {
    let project = principal.authorize(Permission::TracesRead, "violations.list")?;
    let mut errors = QueryErrors::default();
    let min_severity = p.severity.as_deref().and_then(|s| {
        Severity::parse(s).or_else(|| {
            errors.push("severity", "must be info, warning, high or critical");
            None
        })
    });
    if p.outcome
        .as_deref()
        .is_some_and(|o| !["violation", "rule_error"].contains(&o))
    {
        errors.push("outcome", "must be violation or rule_error");
    }
    let from = errors.time("from", p.from.as_deref());
    let to = errors.time("to", p.to.as_deref());
    let limit = errors.limit(p.limit.as_deref());
    let cursor = errors.cursor(p.cursor.as_deref(), |c| {
        c.parse::<i64>().ok().filter(|n| *n > 0)
    });
    errors.finish()?;
    let redaction = &state.pipeline.redaction;
    let filter = ViolationFilter {
        rule_id: p.rule,
        min_severity,
        agent: p.agent.map(|a| redaction.lookup_text("agent", &a)),
        trace_id: p.trace_id.map(|t| redaction.lookup_id("trace_id", &t)),
        from,
        to,
        outcome: p.outcome,
    };
    let (items, next) = violations::list(&state.store, &project, &filter, cursor, limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({ "violations": items, "next_cursor": next.map(|n| n.to_string()) }),
    ))
}

/// Guard mode: `critical` → deny, `high`/`warning` → warn, otherwise allow.
async fn evaluate(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let project = principal.authorize(Permission::TracesWrite, "evaluate")?;
    let bytes = read_limited(req.into_body(), state.config.max_body_bytes).await?;
    let body = parse_json(&bytes)?;
    let outcome = state
        .pipeline
        .guard(&state.appender, &project, body)
        .await
        .map_err(ingest_error)?;
    let outcomes: Vec<RuleOutcome> = outcome.violations.iter().filter_map(to_outcome).collect();
    let d = match decision(&outcomes) {
        Decision::Allow => "allow",
        Decision::Warn => "warn",
        Decision::Deny => "deny",
    };
    Ok(Json(json!({
        "decision": d,
        "event_id": outcome.event_ids.first(),
        "violations": outcome.violations.iter().filter(|v| v.outcome == "violation").collect::<Vec<_>>(),
        "rule_errors": outcome.violations.iter().filter(|v| v.outcome == "rule_error").collect::<Vec<_>>(),
    })))
}

fn to_outcome(v: &ViolationRow) -> Option<RuleOutcome> {
    Some(match v.outcome.as_str() {
        "violation" => RuleOutcome::Violation {
            rule_id: v.rule_id.clone(),
            severity: Severity::parse(v.severity.as_deref()?)?,
            message: v.message.clone(),
        },
        _ => RuleOutcome::RuleError {
            rule_id: v.rule_id.clone(),
            message: v.message.clone(),
        },
    })
}
