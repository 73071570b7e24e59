//! Reads of the log's history, for the stages that re-derive state from it: the running
//! totals of a trace or session (the writer after a restart or an eviction; ablation after its
//! own eviction), and a project's records page by page (ablation).
//!
//! Both read through indexes on `(project, …, seq)` and never the whole log. The page scan
//! holds no cursor between pages, so a long job neither pins one read snapshot (which would
//! keep SQLite's WAL from being checkpointed) nor blocks its own connection for other reads.

use std::collections::{BTreeSet, HashMap};

use sea_query::{Expr, ExprTrait, Order, Query, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use serde_json::Value;
use sqlx::{Row, SqliteConnection};

use super::StoreError;
use super::schema::{Events, RecordType};

/// The totals of each of `ids` (values of `column` in `project`), folded from its stored spans
/// in log order — only those before position `before_seq` when given; an id with no stored
/// span gets empty totals.
pub async fn rebuild<'i, T: Default>(
    conn: &mut SqliteConnection,
    project: &str,
    column: Events,
    ids: &BTreeSet<&'i str>,
    before_seq: Option<i64>,
    apply: fn(&mut T, &Value),
) -> Result<Vec<(&'i str, T)>, StoreError> {
    let mut found: HashMap<String, T> = HashMap::new();
    for (id, body) in stored_bodies(conn, project, column, ids, before_seq).await? {
        apply(found.entry(id).or_default(), &body);
    }
    Ok(ids
        .iter()
        .map(|id| (*id, found.remove(*id).unwrap_or_default()))
        .collect())
}

/// The stored span bodies of `project` whose `column` is one of `ids`, in log order, with the
/// id each belongs to.
async fn stored_bodies(
    conn: &mut SqliteConnection,
    project: &str,
    column: Events,
    ids: &BTreeSet<&str>,
    before_seq: Option<i64>,
) -> Result<Vec<(String, Value)>, StoreError> {
    let ids: Vec<&str> = ids.iter().copied().collect();
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let mut q = Query::select();
        q.columns([column, Events::Body])
            .from(Events::Table)
            .and_where(Expr::col(Events::Project).eq(project))
            .and_where(Expr::col(column).is_in(chunk.iter().copied()))
            .and_where(Expr::col(Events::RecordType).eq(RecordType::Span.as_str()))
            .and_where(Expr::col(Events::Body).is_not_null());
        if let Some(seq) = before_seq {
            q.and_where(Expr::col(Events::Seq).lt(seq));
        }
        let (sql, values) = q
            .order_by(Events::Seq, Order::Asc)
            .build_sqlx(SqliteQueryBuilder);
        for row in sqlx::query_with(sqlx::AssertSqlSafe(sql), values)
            .fetch_all(&mut *conn)
            .await?
        {
            let id: String = row.try_get(0)?;
            let body: String = row.try_get(1)?;
            if let Ok(v) = serde_json::from_str::<Value>(&body) {
                out.push((id, v));
            }
        }
    }
    Ok(out)
}

/// One record of a project's history, as ablation reads it.
#[derive(Debug, Clone)]
pub struct HistoryRecord {
    pub seq: i64,
    pub record_type: String,
    pub event_time: Option<String>,
    /// `None` once erased.
    pub body: Option<Value>,
}

/// The log's last position now (ablation stops there, so a job has a fixed end).
pub async fn head_seq(conn: &mut SqliteConnection) -> Result<i64, StoreError> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
        .fetch_one(&mut *conn)
        .await?;
    Ok(seq.unwrap_or(0))
}

/// Every project that has records (tenant projects only).
pub async fn projects(conn: &mut SqliteConnection) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT project FROM events WHERE project <> ?1 ORDER BY project",
    )
    .bind(super::schema::SYSTEM_PROJECT)
    .fetch_all(&mut *conn)
    .await?)
}

/// How many span, guard and violation records `project` has up to `until_seq`.
pub async fn count_project_records(
    conn: &mut SqliteConnection,
    project: &str,
    until_seq: i64,
) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE project = ?1 AND seq <= ?2 \
         AND record_type IN ('span', 'guard', 'violation')",
    )
    .bind(project)
    .bind(until_seq)
    .fetch_one(&mut *conn)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The next page of `project`'s span, guard and violation records after `after_seq` and up to
/// `until_seq`, in log order (index `events_project_seq`).
pub async fn project_page(
    conn: &mut SqliteConnection,
    project: &str,
    after_seq: i64,
    until_seq: i64,
    limit: u64,
) -> Result<Vec<HistoryRecord>, StoreError> {
    let rows = sqlx::query(
        "SELECT seq, record_type, event_time, body FROM events \
         WHERE project = ?1 AND seq > ?2 AND seq <= ?3 \
         AND record_type IN ('span', 'guard', 'violation') ORDER BY seq LIMIT ?4",
    )
    .bind(project)
    .bind(after_seq)
    .bind(until_seq)
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.try_get("seq")?;
        let body: Option<String> = row.try_get("body")?;
        out.push(HistoryRecord {
            seq,
            record_type: row.try_get("record_type")?,
            event_time: row.try_get("event_time")?,
            body: match body {
                Some(b) => Some(super::parse_body(seq, &b)?),
                None => None,
            },
        });
    }
    Ok(out)
}
