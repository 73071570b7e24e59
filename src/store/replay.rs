//! `audittrail replay`: rebuilds the read models from the log.
//!
//! Streams span and rule-outcome records in log order from a reader connection, folds them
//! with the writer's own projection code and rewrites `traces` and `violations` in one
//! transaction, so a
//! reader sees either the old or the new projection, never a half-built one. Run it with the
//! server stopped: it holds the write lock for its whole duration.

use futures_util::TryStreamExt;
use sqlx::{Connection, Row};

use super::projection::{self, TraceBatch};
use super::violations;
use super::{Store, StoreError, parse_body};

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
    let mut tx = conn.begin().await?;
    sqlx::query("DELETE FROM traces").execute(&mut *tx).await?;
    sqlx::query("DELETE FROM violations")
        .execute(&mut *tx)
        .await?;
    let mut report = ReplayReport::default();
    let mut batch = TraceBatch::default();
    let mut outcomes = Vec::new();
    let mut rows = sqlx::query(
        "SELECT seq, project, record_type, body FROM events          WHERE record_type IN ('span', 'violation', 'rule_error') AND body IS NOT NULL ORDER BY seq",
    )
    .fetch(&store.readers);
    while let Some(row) = rows.try_next().await? {
        let seq: i64 = row.try_get("seq")?;
        let project: String = row.try_get("project")?;
        let record_type: String = row.try_get("record_type")?;
        let body: String = row.try_get("body")?;
        let body = parse_body(seq, &body)?;
        if record_type == "span" {
            if let Some((trace_id, facts)) = projection::span_facts(seq, &body) {
                batch.add(&project, trace_id, facts);
            }
            report.records += 1;
        } else if let Some(v) = violations::row_from_body(seq, &body) {
            outcomes.push((project, v));
            report.outcomes += 1;
        }
        if (report.records + report.outcomes).is_multiple_of(20_000) {
            std::mem::take(&mut batch).write(&mut tx).await?;
            violations::insert(&mut tx, &std::mem::take(&mut outcomes)).await?;
            progress(report.records + report.outcomes);
        }
    }
    batch.write(&mut tx).await?;
    violations::insert(&mut tx, &outcomes).await?;
    report.traces = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM traces")
        .fetch_one(&mut *tx)
        .await?
        .max(0) as u64;
    tx.commit().await?;
    progress(report.records + report.outcomes);
    Ok(report)
}
