//! Read queries for the API: trace summaries (filtered, cursor-paginated) and one trace's spans.
//!
//! Pagination is keyset-based on `(start_time DESC, trace_id DESC)`: stable under concurrent
//! appends and as cheap on page 1,000 as on page 1. The cursor is opaque to clients.

use chrono::{DateTime, Utc};
use sea_query::{Cond, Expr, ExprTrait, Order, Query};
use serde::Serialize;
use serde_json::Value;

use super::chain::to_hex;
use super::db::Row;
use super::projection::nanos_to_cost;
use super::schema::{Events, Traces, Violations};
use super::{Store, StoreError};
use crate::event::format_time;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceStatus {
    Ok,
    Error,
}

#[derive(Debug, Clone, Default)]
pub struct TraceFilter {
    pub agent: Option<String>,
    pub session_id: Option<String>,
    pub status: Option<TraceStatus>,
    /// Traces that started at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Traces that started before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only traces with (`true`) or without (`false`) a rule violation.
    pub has_violations: Option<bool>,
}

/// Position after the last trace of a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    start_time: String,
    trace_id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        to_hex(format!("{}\n{}", self.start_time, self.trace_id).as_bytes())
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        if !s.len().is_multiple_of(2) || s.len() > 1024 {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
            .collect();
        let text = String::from_utf8(bytes?).ok()?;
        let (start_time, trace_id) = text.split_once('\n')?;
        Some(Cursor {
            start_time: start_time.to_owned(),
            trace_id: trace_id.to_owned(),
        })
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TraceSummary {
    pub trace_id: String,
    pub agent: Option<String>,
    pub session_id: Option<String>,
    pub start_time: String,
    pub end_time: Option<String>,
    pub span_count: i64,
    pub error_count: i64,
    pub status: &'static str,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub cost_usd: f64,
}

const SUMMARY_COLUMNS: [Traces; 11] = [
    Traces::TraceId,
    Traces::Agent,
    Traces::SessionId,
    Traces::StartTime,
    Traces::EndTime,
    Traces::SpanCount,
    Traces::ErrorCount,
    Traces::InputTokens,
    Traces::OutputTokens,
    Traces::CostNanos,
    Traces::LastSeq,
];

fn summary(row: &Row) -> Result<TraceSummary, StoreError> {
    let error_count = row.int("error_count")?;
    let input_tokens = row.int("input_tokens")?;
    let output_tokens = row.int("output_tokens")?;
    Ok(TraceSummary {
        trace_id: row.text("trace_id")?,
        agent: row.opt_text("agent")?,
        session_id: row.opt_text("session_id")?,
        start_time: row.text("start_time")?,
        end_time: row.opt_text("end_time")?,
        span_count: row.int("span_count")?,
        error_count,
        status: if error_count > 0 { "error" } else { "ok" },
        input_tokens,
        output_tokens,
        total_tokens: input_tokens.saturating_add(output_tokens),
        cost_usd: nanos_to_cost(row.int("cost_nanos")?),
    })
}

/// One page of trace summaries, newest first, and the cursor of the next page if any.
pub async fn list_traces(
    store: &Store,
    project: &str,
    filter: &TraceFilter,
    after: Option<&Cursor>,
    limit: u64,
) -> Result<(Vec<TraceSummary>, Option<Cursor>), StoreError> {
    let mut q = Query::select();
    q.columns(SUMMARY_COLUMNS)
        .from(Traces::Table)
        .and_where(Expr::col(Traces::Project).eq(project));
    if let Some(agent) = &filter.agent {
        q.and_where(Expr::col(Traces::Agent).eq(agent.as_str()));
    }
    if let Some(session) = &filter.session_id {
        q.and_where(Expr::col(Traces::SessionId).eq(session.as_str()));
    }
    match filter.status {
        Some(TraceStatus::Ok) => {
            q.and_where(Expr::col(Traces::ErrorCount).eq(0));
        }
        Some(TraceStatus::Error) => {
            q.and_where(Expr::col(Traces::ErrorCount).gt(0));
        }
        None => {}
    }
    if let Some(from) = &filter.from {
        q.and_where(Expr::col(Traces::StartTime).gte(format_time(from)));
    }
    if let Some(to) = &filter.to {
        q.and_where(Expr::col(Traces::StartTime).lt(format_time(to)));
    }
    if let Some(has) = filter.has_violations {
        let violated = Query::select()
            .expr(Expr::val(1))
            .from(Violations::Table)
            .and_where(
                Expr::col((Violations::Table, Violations::Project))
                    .equals((Traces::Table, Traces::Project)),
            )
            .and_where(
                Expr::col((Violations::Table, Violations::TraceId))
                    .equals((Traces::Table, Traces::TraceId)),
            )
            .and_where(Expr::col((Violations::Table, Violations::Outcome)).eq("violation"))
            .to_owned();
        q.and_where(if has {
            Expr::exists(violated)
        } else {
            Expr::not_exists(violated)
        });
    }
    if let Some(c) = after {
        q.cond_where(
            Cond::any()
                .add(Expr::col(Traces::StartTime).lt(c.start_time.as_str()))
                .add(
                    Cond::all()
                        .add(Expr::col(Traces::StartTime).eq(c.start_time.as_str()))
                        .add(Expr::col(Traces::TraceId).lt(c.trace_id.as_str())),
                ),
        );
    }
    q.order_by(Traces::StartTime, Order::Desc)
        .order_by(Traces::TraceId, Order::Desc)
        .limit(limit + 1);
    let rows = store.readers().fetch_all(&q).await?;
    let mut items = rows.iter().map(summary).collect::<Result<Vec<_>, _>>()?;
    let next = if items.len() as u64 > limit {
        items.truncate(limit as usize);
        items.last().map(|t| Cursor {
            start_time: t.start_time.clone(),
            trace_id: t.trace_id.clone(),
        })
    } else {
        None
    };
    Ok((items, next))
}

/// A trace's summary and its spans ordered by start time (then log order), at most
/// `max_spans` of them; `None` if the project has no such trace.
pub async fn get_trace(
    store: &Store,
    project: &str,
    trace_id: &str,
    max_spans: u64,
) -> Result<Option<(TraceSummary, Vec<Value>)>, StoreError> {
    let q = Query::select()
        .columns(SUMMARY_COLUMNS)
        .from(Traces::Table)
        .and_where(Expr::col(Traces::Project).eq(project))
        .and_where(Expr::col(Traces::TraceId).eq(trace_id))
        .to_owned();
    let mut conn = store.reader().await?;
    let Some(row) = conn.exec().fetch_optional(&q).await? else {
        return Ok(None);
    };
    let summary = summary(&row)?;
    let q = Query::select()
        .columns([Events::Seq, Events::Body])
        .from(Events::Table)
        .and_where(Expr::col(Events::Project).eq(project))
        .and_where(Expr::col(Events::TraceId).eq(trace_id))
        .and_where(Expr::col(Events::RecordType).eq("span"))
        .and_where(Expr::col(Events::Body).is_not_null())
        .order_by(Events::EventTime, Order::Asc)
        .order_by(Events::Seq, Order::Asc)
        .limit(max_spans)
        .to_owned();
    let rows = conn.exec().fetch_all(&q).await?;
    let mut spans = Vec::with_capacity(rows.len());
    for row in rows {
        let seq = row.int("seq")?;
        let body = row.text("body")?;
        let mut v = super::parse_body(seq, &body)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("seq".into(), seq.into());
        }
        spans.push(v);
    }
    Ok(Some((summary, spans)))
}

/// The projects that have traces, in order, at most `limit` (a loose index scan: one probe
/// per project, however many traces each has).
pub async fn project_ids(store: &Store, limit: u64) -> Result<Vec<String>, StoreError> {
    let rows = store
        .readers()
        .fetch_all(&super::db::Raw::new(
            "WITH RECURSIVE p(project) AS ( \
                 SELECT MIN(project) FROM traces \
                 UNION ALL \
                 SELECT (SELECT MIN(t.project) FROM traces t WHERE t.project > p.project) \
                 FROM p WHERE p.project IS NOT NULL) \
             SELECT project FROM p WHERE project IS NOT NULL LIMIT ?",
            [(limit as i64).into()],
        ))
        .await?;
    rows.iter().map(|r| r.text("project")).collect()
}

/// A stored record as the live feed shows it (see [`super::record::live_summary`]).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LiveRecord {
    pub seq: i64,
    pub project: String,
    pub record_type: String,
    pub trace_id: String,
    pub summary: Value,
}

const LIVE_TYPES: [&str; 4] = ["span", "guard", "violation", "rule_error"];

fn live_record(row: &Row) -> Result<Option<LiveRecord>, StoreError> {
    let seq = row.int("seq")?;
    let record_type = row.text("record_type")?;
    let Some(body) = row.opt_text("body")? else {
        return Ok(None); // erased
    };
    let body = super::parse_body(seq, &body)?;
    let Some(summary) = super::record::live_summary(&record_type, seq, &body) else {
        return Ok(None);
    };
    Ok(Some(LiveRecord {
        seq,
        project: row.text("project")?,
        record_type,
        trace_id: row.opt_text("trace_id")?.unwrap_or_default(),
        summary,
    }))
}

/// The live records after log position `after_seq`, oldest first, at most `limit`: the live
/// feed's catch-up. `scope` limits the projects (`None`: every tenant project).
pub async fn records_after(
    store: &Store,
    scope: Option<&[String]>,
    after_seq: i64,
    limit: u64,
) -> Result<Vec<LiveRecord>, StoreError> {
    let mut q = Query::select();
    q.columns([
        Events::Seq,
        Events::Project,
        Events::RecordType,
        Events::TraceId,
        Events::Body,
    ])
    .from(Events::Table)
    .and_where(Expr::col(Events::Seq).gt(after_seq))
    .and_where(Expr::col(Events::RecordType).is_in(LIVE_TYPES));
    match scope {
        Some(projects) => {
            q.and_where(Expr::col(Events::Project).is_in(projects.iter().map(String::as_str)));
        }
        None => {
            q.and_where(Expr::col(Events::Project).ne(super::schema::SYSTEM_PROJECT));
        }
    }
    q.order_by(Events::Seq, Order::Asc).limit(limit);
    let rows = store.readers().fetch_all(&q).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.extend(live_record(row)?);
    }
    Ok(out)
}

/// A project's newest live records, newest first.
pub async fn latest_records(
    store: &Store,
    project: &str,
    limit: u64,
) -> Result<Vec<LiveRecord>, StoreError> {
    let q = Query::select()
        .columns([
            Events::Seq,
            Events::Project,
            Events::RecordType,
            Events::TraceId,
            Events::Body,
        ])
        .from(Events::Table)
        .and_where(Expr::col(Events::Project).eq(project))
        .and_where(Expr::col(Events::RecordType).is_in(LIVE_TYPES))
        .order_by(Events::Seq, Order::Desc)
        .limit(limit)
        .to_owned();
    let rows = store.readers().fetch_all(&q).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        out.extend(live_record(row)?);
    }
    Ok(out)
}

/// What the trace view draws of a span: everything but its input, output and attributes.
#[derive(Debug, Clone, Default, serde::Deserialize, PartialEq)]
pub struct SpanOutline {
    #[serde(skip)]
    pub seq: i64,
    #[serde(default)]
    pub span_id: String,
    pub parent_span_id: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub status: String,
    pub agent: Option<String>,
    pub model: Option<String>,
    #[serde(default)]
    pub start_time: String,
    pub end_time: Option<String>,
    pub duration_ms: Option<f64>,
    #[serde(default)]
    pub usage: OutlineUsage,
}

#[derive(Debug, Clone, Default, serde::Deserialize, PartialEq)]
pub struct OutlineUsage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default)]
    pub cost_usd: f64,
}

/// A trace's spans without their bodies' payloads, by start time then log order, at most
/// `max_spans`. Bodies are parsed into [`SpanOutline`] directly (input and output are skipped,
/// never built), which keeps a 10,000-span trace cheap to draw.
pub async fn span_outlines(
    store: &Store,
    project: &str,
    trace_id: &str,
    max_spans: u64,
) -> Result<Vec<SpanOutline>, StoreError> {
    let q = Query::select()
        .columns([Events::Seq, Events::Body])
        .from(Events::Table)
        .and_where(Expr::col(Events::Project).eq(project))
        .and_where(Expr::col(Events::TraceId).eq(trace_id))
        .and_where(Expr::col(Events::RecordType).eq("span"))
        .and_where(Expr::col(Events::Body).is_not_null())
        .order_by(Events::EventTime, Order::Asc)
        .order_by(Events::Seq, Order::Asc)
        .limit(max_spans)
        .to_owned();
    let rows = store.readers().fetch_all(&q).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let seq = row.int("seq")?;
        let body = row.text("body")?;
        let mut outline: SpanOutline =
            serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                seq,
                reason: e.to_string(),
            })?;
        outline.seq = seq;
        out.push(outline);
    }
    Ok(out)
}

/// One span record of a trace, with its redacted input and output; `None` if the project has
/// no such span in that trace (or its body was erased).
pub async fn span_record(
    store: &Store,
    project: &str,
    trace_id: &str,
    seq: i64,
) -> Result<Option<Value>, StoreError> {
    let q = Query::select()
        .columns([Events::Seq, Events::Body])
        .from(Events::Table)
        .and_where(Expr::col(Events::Seq).eq(seq))
        .and_where(Expr::col(Events::Project).eq(project))
        .and_where(Expr::col(Events::TraceId).eq(trace_id))
        .and_where(Expr::col(Events::RecordType).eq("span"))
        .to_owned();
    let Some(row) = store.readers().fetch_optional(&q).await? else {
        return Ok(None);
    };
    match row.opt_text("body")? {
        Some(body) => Ok(Some(super::parse_body(seq, &body)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            start_time: "2026-11-22T10:00:00.000000Z".into(),
            trace_id: "abc".into(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("zz"), None);
        assert_eq!(Cursor::decode("abc"), None);
    }
}
