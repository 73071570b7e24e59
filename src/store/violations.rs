//! Projection and queries of rule outcomes (violations and rule errors).
//!
//! The writer inserts rows in the append transaction; `replay` rebuilds them from the log's
//! `violation` and `rule_error` records with the same [`row_from_body`].

use chrono::{DateTime, Utc};
use sea_query::{Expr, ExprTrait, Order, Query};
use serde::Serialize;
use serde_json::Value;

use super::db::{Exec, Raw, storable};
use super::schema::Violations;
use super::{Store, StoreError};
use crate::event::format_time;
use crate::rules::Severity;

const COLUMNS: [Violations; 16] = [
    Violations::Seq,
    Violations::Project,
    Violations::ViolationId,
    Violations::Outcome,
    Violations::RuleId,
    Violations::Severity,
    Violations::SeverityRank,
    Violations::Message,
    Violations::EventId,
    Violations::EventSeq,
    Violations::EventKind,
    Violations::TraceId,
    Violations::SpanId,
    Violations::Agent,
    Violations::SessionId,
    Violations::At,
];

/// One rule outcome as the API shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ViolationRow {
    pub seq: i64,
    pub violation_id: String,
    pub outcome: String,
    pub rule_id: String,
    pub severity: Option<String>,
    pub message: String,
    pub event_id: String,
    pub event_seq: i64,
    pub event_kind: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub agent: Option<String>,
    pub session_id: Option<String>,
    pub at: String,
}

fn rank(severity: Option<&str>) -> Option<i64> {
    severity
        .and_then(Severity::parse)
        .map(|s| Severity::ALL.iter().position(|x| *x == s).unwrap_or(0) as i64)
}

/// Derives the projection row from a stored outcome record.
pub fn row_from_body(seq: i64, body: &Value) -> Option<ViolationRow> {
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    Some(ViolationRow {
        seq,
        violation_id: s("violation_id")?,
        outcome: s("outcome")?,
        rule_id: s("rule_id")?,
        severity: s("severity"),
        message: s("message").unwrap_or_default(),
        event_id: s("event_id")?,
        event_seq: body.get("event_seq").and_then(Value::as_i64)?,
        event_kind: s("event_kind"),
        trace_id: s("trace_id"),
        span_id: s("span_id"),
        agent: s("agent"),
        session_id: s("session_id"),
        at: s("at")?,
    })
}

pub async fn insert(
    conn: &mut Exec<'_>,
    project_rows: &[(String, ViolationRow)],
) -> Result<(), StoreError> {
    for chunk in project_rows.chunks(200) {
        let mut q = Query::insert();
        q.into_table(Violations::Table).columns(COLUMNS);
        for (project, r) in chunk {
            q.values_panic([
                r.seq.into(),
                project.clone().into(),
                r.violation_id.clone().into(),
                r.outcome.clone().into(),
                r.rule_id.clone().into(),
                r.severity.clone().into(),
                rank(r.severity.as_deref()).into(),
                storable(&r.message).into_owned().into(),
                r.event_id.clone().into(),
                r.event_seq.into(),
                r.event_kind.clone().into(),
                r.trace_id.clone().into(),
                r.span_id.clone().into(),
                r.agent.as_deref().map(|a| storable(a).into_owned()).into(),
                r.session_id.clone().into(),
                r.at.clone().into(),
            ]);
        }
        conn.execute(&q).await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct ViolationFilter {
    pub rule_id: Option<String>,
    /// At least this severity.
    pub min_severity: Option<Severity>,
    pub agent: Option<String>,
    pub trace_id: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// `violation` (default) or `rule_error`.
    pub outcome: Option<String>,
}

/// Newest first; the cursor is the last row's log position.
pub async fn list(
    store: &Store,
    project: &str,
    f: &ViolationFilter,
    before_seq: Option<i64>,
    limit: u64,
) -> Result<(Vec<ViolationRow>, Option<i64>), StoreError> {
    let mut q = Query::select();
    q.columns(COLUMNS)
        .from(Violations::Table)
        .and_where(Expr::col(Violations::Project).eq(project))
        .and_where(Expr::col(Violations::Outcome).eq(f.outcome.as_deref().unwrap_or("violation")));
    if let Some(r) = &f.rule_id {
        q.and_where(Expr::col(Violations::RuleId).eq(r.as_str()));
    }
    if let Some(s) = f.min_severity {
        q.and_where(Expr::col(Violations::SeverityRank).gte(rank(Some(s.as_str())).unwrap_or(0)));
    }
    if let Some(a) = &f.agent {
        q.and_where(Expr::col(Violations::Agent).eq(a.as_str()));
    }
    if let Some(t) = &f.trace_id {
        q.and_where(Expr::col(Violations::TraceId).eq(t.as_str()));
    }
    if let Some(from) = &f.from {
        q.and_where(Expr::col(Violations::At).gte(format_time(from)));
    }
    if let Some(to) = &f.to {
        q.and_where(Expr::col(Violations::At).lt(format_time(to)));
    }
    if let Some(seq) = before_seq {
        q.and_where(Expr::col(Violations::Seq).lt(seq));
    }
    q.order_by(Violations::Seq, Order::Desc).limit(limit + 1);
    let rows = store.readers().fetch_all(&q).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(ViolationRow {
            seq: r.int("seq")?,
            violation_id: r.text("violation_id")?,
            outcome: r.text("outcome")?,
            rule_id: r.text("rule_id")?,
            severity: r.opt_text("severity")?,
            message: r.text("message")?,
            event_id: r.text("event_id")?,
            event_seq: r.int("event_seq")?,
            event_kind: r.opt_text("event_kind")?,
            trace_id: r.opt_text("trace_id")?,
            span_id: r.opt_text("span_id")?,
            agent: r.opt_text("agent")?,
            session_id: r.opt_text("session_id")?,
            at: r.text("at")?,
        });
    }
    let next = if out.len() as u64 > limit {
        out.truncate(limit as usize);
        out.last().map(|r| r.seq)
    } else {
        None
    };
    Ok((out, next))
}

/// Per rule: how many violations and rule errors the project's log holds, and the last error.
pub async fn rule_stats(
    store: &Store,
    project: &str,
) -> Result<Vec<(String, i64, i64, Option<String>)>, StoreError> {
    let rows = store
        .readers()
        .fetch_all(&Raw::new(
            "SELECT rule_id, \
                    SUM(CASE WHEN outcome = 'violation' THEN 1 ELSE 0 END) AS hits, \
                    SUM(CASE WHEN outcome = 'rule_error' THEN 1 ELSE 0 END) AS errors, \
                    (SELECT message FROM violations v2 WHERE v2.project = v.project AND v2.rule_id = v.rule_id \
                       AND v2.outcome = 'rule_error' ORDER BY seq DESC LIMIT 1) AS last_error \
             FROM violations v WHERE project = ? GROUP BY project, rule_id",
            [project.into()],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.text("rule_id")?,
                r.int("hits")?,
                r.int("errors")?,
                r.opt_text("last_error")?,
            ))
        })
        .collect()
}
