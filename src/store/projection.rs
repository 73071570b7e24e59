//! Read models derived from the log: trace summaries.
//!
//! Both the writer (in the append transaction) and `replay` (from stored bodies) derive
//! [`SpanFacts`] from the *stored body* with the same function and fold them with the same
//! merge, in log order, so a replay rebuilds byte-identical rows whatever the batch boundaries.

use std::collections::BTreeMap;

use sea_query::{Expr, OnConflict, Query};
use serde_json::Value;

use super::StoreError;
use super::db::{Exec, storable};
use super::schema::Traces;

/// What one span contributes to its trace's summary.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TraceSummaryRow {
    pub agent: Option<String>,
    pub session_id: Option<String>,
    pub start_time: String,
    pub end_time: Option<String>,
    pub span_count: i64,
    pub error_count: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_nanos: i64,
    pub last_seq: i64,
}

/// Cost in integer nano-dollars: exact sums, identical on replay.
pub fn cost_to_nanos(cost_usd: f64) -> i64 {
    (cost_usd * 1e9).round() as i64
}

pub fn nanos_to_cost(nanos: i64) -> f64 {
    nanos as f64 / 1e9
}

/// Derives a span's contribution from its stored body. `None` for bodies that are not spans.
pub fn span_facts(seq: i64, body: &Value) -> Option<(String, TraceSummaryRow)> {
    let s = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let u = |k: &str| {
        body.get("usage")
            .and_then(|u| u.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let trace_id = s("trace_id")?;
    Some((
        trace_id,
        TraceSummaryRow {
            agent: s("agent"),
            session_id: s("session_id"),
            start_time: s("start_time")?,
            end_time: s("end_time"),
            span_count: 1,
            error_count: i64::from(body.get("status").and_then(Value::as_str) == Some("error")),
            input_tokens: u("input_tokens").min(i64::MAX as u64) as i64,
            output_tokens: u("output_tokens").min(i64::MAX as u64) as i64,
            cost_nanos: cost_to_nanos(
                body.get("usage")
                    .and_then(|u| u.get("cost_usd"))
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0),
            ),
            last_seq: seq,
        },
    ))
}

impl TraceSummaryRow {
    /// Folds a later contribution into this one; mirrors the SQL upsert exactly.
    pub fn merge(&mut self, later: TraceSummaryRow) {
        if self.agent.is_none() {
            self.agent = later.agent;
        }
        if self.session_id.is_none() {
            self.session_id = later.session_id;
        }
        if later.start_time < self.start_time {
            self.start_time = later.start_time;
        }
        self.end_time = match (self.end_time.take(), later.end_time) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.span_count = self.span_count.saturating_add(later.span_count);
        self.error_count = self.error_count.saturating_add(later.error_count);
        self.input_tokens = self.input_tokens.saturating_add(later.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(later.output_tokens);
        self.cost_nanos = self.cost_nanos.saturating_add(later.cost_nanos);
        self.last_seq = self.last_seq.max(later.last_seq);
    }
}

/// `traces.col + excluded.col`, saturating at the largest 64-bit integer instead of overflowing
/// (SQLite would turn the sum into a float; Postgres would fail the transaction). Mirrors
/// [`TraceSummaryRow::merge`].
fn saturating_sum(col: &str) -> String {
    format!(
        "CASE WHEN \"traces\".\"{col}\" > 9223372036854775807 - excluded.\"{col}\" \
         THEN 9223372036854775807 ELSE \"traces\".\"{col}\" + excluded.\"{col}\" END"
    )
}

/// Contributions of one transaction, folded per trace in log order.
#[derive(Default)]
pub struct TraceBatch {
    rows: BTreeMap<(String, String), TraceSummaryRow>,
}

impl TraceBatch {
    pub fn add(&mut self, project: &str, trace_id: String, row: TraceSummaryRow) {
        match self.rows.get_mut(&(project.to_owned(), trace_id.clone())) {
            Some(existing) => existing.merge(row),
            None => {
                self.rows.insert((project.to_owned(), trace_id), row);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Upserts the batch into `traces`, in chunks that stay under SQLite's bind limit. The SQL
    /// is the same on both backends (CASE instead of SQLite's MIN/MAX or Postgres' LEAST/GREATEST).
    pub async fn write(self, conn: &mut Exec<'_>) -> Result<(), StoreError> {
        let rows: Vec<_> = self.rows.into_iter().collect();
        for chunk in rows.chunks(256) {
            let mut q = Query::insert();
            q.into_table(Traces::Table).columns([
                Traces::Project,
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
            ]);
            for ((project, trace_id), r) in chunk {
                q.values_panic([
                    project.clone().into(),
                    trace_id.clone().into(),
                    r.agent.as_deref().map(|a| storable(a).into_owned()).into(),
                    r.session_id.clone().into(),
                    r.start_time.clone().into(),
                    r.end_time.clone().into(),
                    r.span_count.into(),
                    r.error_count.into(),
                    r.input_tokens.into(),
                    r.output_tokens.into(),
                    r.cost_nanos.into(),
                    r.last_seq.into(),
                ]);
            }
            q.on_conflict(
                OnConflict::columns([Traces::Project, Traces::TraceId])
                    .values([
                        (Traces::Agent, Expr::cust("COALESCE(\"traces\".\"agent\", excluded.\"agent\")")),
                        (Traces::SessionId, Expr::cust("COALESCE(\"traces\".\"session_id\", excluded.\"session_id\")")),
                        (Traces::StartTime, Expr::cust("CASE WHEN excluded.\"start_time\" < \"traces\".\"start_time\" THEN excluded.\"start_time\" ELSE \"traces\".\"start_time\" END")),
                        (
                            Traces::EndTime,
                            Expr::cust(
                                "CASE WHEN \"traces\".\"end_time\" IS NULL THEN excluded.\"end_time\" \
                                 WHEN excluded.\"end_time\" IS NULL THEN \"traces\".\"end_time\" \
                                 WHEN excluded.\"end_time\" > \"traces\".\"end_time\" THEN excluded.\"end_time\" \
                                 ELSE \"traces\".\"end_time\" END",
                            ),
                        ),
                        (Traces::SpanCount, Expr::cust(saturating_sum("span_count"))),
                        (Traces::ErrorCount, Expr::cust(saturating_sum("error_count"))),
                        (Traces::InputTokens, Expr::cust(saturating_sum("input_tokens"))),
                        (Traces::OutputTokens, Expr::cust(saturating_sum("output_tokens"))),
                        (Traces::CostNanos, Expr::cust(saturating_sum("cost_nanos"))),
                        (Traces::LastSeq, Expr::cust("CASE WHEN excluded.\"last_seq\" > \"traces\".\"last_seq\" THEN excluded.\"last_seq\" ELSE \"traces\".\"last_seq\" END")),
                    ])
                    .to_owned(),
            );
            conn.execute(&q).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_is_order_stable_and_exact() {
        let body = |start: &str,
                    end: Option<&str>,
                    cost: f64,
                    status: &str,
                    agent: Option<&str>| {
            json!({"trace_id": "t", "start_time": start, "end_time": end, "status": status, "agent": agent,
                   "usage": {"input_tokens": 3, "output_tokens": 4, "cost_usd": cost}})
        };
        let (_, mut a) =
            span_facts(1, &body("2026-01-01T00:00:02Z", None, 0.1, "ok", None)).unwrap();
        let (_, b) = span_facts(
            2,
            &body(
                "2026-01-01T00:00:01Z",
                Some("2026-01-01T00:00:05Z"),
                0.2,
                "error",
                Some("bot"),
            ),
        )
        .unwrap();
        a.merge(b);
        assert_eq!(a.start_time, "2026-01-01T00:00:01Z");
        assert_eq!(a.end_time.as_deref(), Some("2026-01-01T00:00:05Z"));
        assert_eq!(a.agent.as_deref(), Some("bot"));
        assert_eq!(
            (a.span_count, a.error_count, a.input_tokens, a.output_tokens),
            (2, 1, 6, 8)
        );
        assert_eq!(
            a.cost_nanos, 300_000_000,
            "0.1 + 0.2 is exact in nano-dollars"
        );
        assert_eq!(a.last_seq, 2);
    }
}
