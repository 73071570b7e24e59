//! Reads of the log's history, for the stages that re-derive state from it: the running
//! totals of a trace or session (the writer after a restart or an eviction; ablation after its
//! own eviction), and a project's records page by page (ablation).
//!
//! Both read through indexes on `(project, …, seq)` and never the whole log. The page scan
//! holds no cursor between pages, so a long job neither pins one read snapshot (which would
//! keep SQLite's WAL from being checkpointed) nor blocks its own connection for other reads.

use std::collections::{BTreeSet, HashMap};

use sea_query::{Expr, ExprTrait, Order, Query};
use serde_json::Value;

use super::StoreError;
use super::db::{Exec, Raw};
use super::schema::{Events, RecordType, SYSTEM_PROJECT};

/// The totals of each of `ids` (values of `column` in `project`), folded from its stored spans
/// in log order — only those before position `before_seq` when given; an id with no stored
/// span gets empty totals. Traces and sessions that straddle the chain's base after a
/// retention sweep start from the totals the sweep carried over (`sweep::carried_totals`,
/// written by the caller's own fold, hence `DeserializeOwned`).
pub async fn rebuild<'i, T: Default + serde::de::DeserializeOwned>(
    conn: &mut Exec<'_>,
    project: &str,
    column: Events,
    ids: &BTreeSet<&'i str>,
    before_seq: Option<i64>,
    apply: fn(&mut T, &Value),
) -> Result<Vec<(&'i str, T)>, StoreError> {
    let kind = match column {
        Events::SessionId => "session",
        _ => "trace",
    };
    let list: Vec<&str> = ids.iter().copied().collect();
    let mut found: HashMap<String, T> =
        super::sweep::carried_totals(conn, project, kind, &list).await?;
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
    conn: &mut Exec<'_>,
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
        // By id, then log order: the (project, id, seq) index answers it without a sort. (An
        // ORDER BY seq alone lets the planner prefer (project, seq) and scan the project.)
        q.order_by(column, Order::Asc)
            .order_by(Events::Seq, Order::Asc);
        let id_column = match column {
            Events::SessionId => "session_id",
            Events::Agent => "agent",
            _ => "trace_id",
        };
        for row in conn.fetch_all(&q).await? {
            let id = row.text(id_column)?;
            if let Ok(v) = serde_json::from_str::<Value>(&row.text("body")?) {
                out.push((id, v));
            }
        }
    }
    Ok(out)
}

/// Which of `ids` (client-chosen event ids of `project`) the log already holds.
pub async fn existing_event_ids(
    conn: &mut Exec<'_>,
    project: &str,
    ids: &[&str],
) -> Result<Vec<String>, StoreError> {
    let mut found = Vec::new();
    for chunk in ids.chunks(500) {
        let q = Query::select()
            .column(Events::EventId)
            .from(Events::Table)
            .and_where(Expr::col(Events::Project).eq(project))
            .and_where(Expr::col(Events::EventId).is_in(chunk.iter().copied()))
            .to_owned();
        for row in conn.fetch_all(&q).await? {
            found.push(row.text("event_id")?);
        }
    }
    Ok(found)
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
pub async fn head_seq(conn: &mut Exec<'_>) -> Result<i64, StoreError> {
    let row = conn
        .fetch_optional(&Raw::new("SELECT MAX(seq) FROM events", []))
        .await?;
    Ok(row
        .map(|r| r.first_int())
        .transpose()?
        .flatten()
        .unwrap_or(0))
}

/// Every project that has records (tenant projects only).
pub async fn projects(conn: &mut Exec<'_>) -> Result<Vec<String>, StoreError> {
    let rows = conn
        .fetch_all(&Raw::new(
            "SELECT DISTINCT project FROM events WHERE project <> ? ORDER BY project",
            [SYSTEM_PROJECT.into()],
        ))
        .await?;
    rows.iter().map(|r| r.text("project")).collect()
}

/// How many span, guard and violation records `project` has up to `until_seq`.
pub async fn count_project_records(
    conn: &mut Exec<'_>,
    project: &str,
    until_seq: i64,
) -> Result<u64, StoreError> {
    let row = conn
        .fetch_optional(&Raw::new(
            "SELECT COUNT(*) FROM events WHERE project = ? AND seq <= ? \
             AND record_type IN ('span', 'guard', 'violation')",
            [project.into(), until_seq.into()],
        ))
        .await?;
    let n = row.map(|r| r.first_int()).transpose()?.flatten();
    Ok(u64::try_from(n.unwrap_or(0)).unwrap_or(0))
}

/// The next page of `project`'s span, guard and violation records after `after_seq` and up to
/// `until_seq`, in log order (index `events_project_seq`).
pub async fn project_page(
    conn: &mut Exec<'_>,
    project: &str,
    after_seq: i64,
    until_seq: i64,
    limit: u64,
) -> Result<Vec<HistoryRecord>, StoreError> {
    records_page(
        conn,
        &[project.to_owned()],
        &["span", "guard", "violation"],
        after_seq,
        until_seq,
        limit,
    )
    .await
}

/// The next page of `projects`' records of `types` after `after_seq` and up to `until_seq`, in
/// log order (index `events_project_seq`).
pub async fn records_page(
    conn: &mut Exec<'_>,
    projects: &[String],
    types: &[&str],
    after_seq: i64,
    until_seq: i64,
    limit: u64,
) -> Result<Vec<HistoryRecord>, StoreError> {
    let q = Query::select()
        .columns([
            Events::Seq,
            Events::RecordType,
            Events::EventTime,
            Events::Body,
        ])
        .from(Events::Table)
        .and_where(Expr::col(Events::Project).is_in(projects.iter().map(String::as_str)))
        .and_where(Expr::col(Events::Seq).gt(after_seq))
        .and_where(Expr::col(Events::Seq).lte(until_seq))
        .and_where(Expr::col(Events::RecordType).is_in(types.iter().copied()))
        .order_by(Events::Seq, Order::Asc)
        .limit(limit)
        .to_owned();
    let rows = conn.fetch_all(&q).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let seq = row.int("seq")?;
        let body = row.opt_text("body")?;
        out.push(HistoryRecord {
            seq,
            record_type: row.text("record_type")?,
            event_time: row.opt_text("event_time")?,
            body: match body {
                Some(b) => Some(super::parse_body(seq, &b)?),
                None => None,
            },
        });
    }
    Ok(out)
}
