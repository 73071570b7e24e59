//! `audittrail replay`: rebuilds the read models from the log.
//!
//! Streams span and rule-outcome records in log order from a reader connection, folds them
//! with the writer's own projection code and rewrites `traces` and `violations` in one
//! transaction, so a
//! reader sees either the old or the new projection, never a half-built one. Run it with the
//! server stopped: it holds the write lock for its whole duration.

use sea_query::{Expr, ExprTrait, Order, Query};

use super::db::Raw;
use super::projection::{self, TraceBatch};
use super::schema::{Events, Traces, Violations};
use super::violations;
use super::{Store, StoreError, parse_body};

/// Records read per query.
const PAGE: u64 = 20_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Span records folded into trace summaries.
    pub records: u64,
    /// Violation and rule-error records rebuilt.
    pub outcomes: u64,
    pub traces: u64,
}

pub async fn rebuild(
    store: &Store,
    mut progress: impl FnMut(u64),
) -> Result<ReplayReport, StoreError> {
    let mut conn = store.write_connection().await?;
    let mut tx = conn.begin_write().await?;
    let mut db = tx.exec();
    db.execute(&Query::delete().from_table(Traces::Table).to_owned())
        .await?;
    db.execute(&Query::delete().from_table(Violations::Table).to_owned())
        .await?;
    let mut report = ReplayReport::default();
    let mut batch = TraceBatch::default();
    // Traces that straddle the base after a retention sweep start from what it carried.
    for (project, trace_id, row) in super::sweep::carried_projections(&mut db).await? {
        batch.add(&project, trace_id, row);
    }
    let mut outcomes = Vec::new();
    let mut reader = store.reader().await?;
    let mut after = i64::MIN;
    loop {
        let q = Query::select()
            .columns([
                Events::Seq,
                Events::Project,
                Events::RecordType,
                Events::Body,
            ])
            .from(Events::Table)
            .and_where(Expr::col(Events::Seq).gt(after))
            .and_where(Expr::col(Events::RecordType).is_in(["span", "violation", "rule_error"]))
            .and_where(Expr::col(Events::Body).is_not_null())
            .order_by(Events::Seq, Order::Asc)
            .limit(PAGE)
            .to_owned();
        let page = reader.exec().fetch_all(&q).await?;
        if page.is_empty() {
            break;
        }
        for row in page {
            let seq = row.int("seq")?;
            after = seq;
            let project = row.text("project")?;
            let record_type = row.text("record_type")?;
            let body = parse_body(seq, &row.text("body")?)?;
            if record_type == "span" {
                if let Some((trace_id, facts)) = projection::span_facts(seq, &body) {
                    batch.add(&project, trace_id, facts);
                }
                report.records += 1;
            } else if let Some(v) = violations::row_from_body(seq, &body) {
                outcomes.push((project, v));
                report.outcomes += 1;
            }
        }
        std::mem::take(&mut batch).write(&mut db).await?;
        violations::insert(&mut db, &std::mem::take(&mut outcomes)).await?;
        progress(report.records + report.outcomes);
    }
    let n = db
        .fetch_optional(&Raw::new("SELECT COUNT(*) FROM traces", []))
        .await?
        .map(|r| r.first_int())
        .transpose()?
        .flatten();
    report.traces = u64::try_from(n.unwrap_or(0)).unwrap_or(0);
    tx.commit().await?;
    progress(report.records + report.outcomes);
    Ok(report)
}
