//! `audittrail copy --to URL`: moves a whole log — records, chain state, keys, the audit log —
//! into another, empty database (SQLite to Postgres, typically), keeping the chain intact:
//! records are copied byte for byte with their digests and links, so `verify` on the target
//! reports the same head link and record count as on the source.
//!
//! The copy covers the source up to its head when the copy starts (the source server may keep
//! running). The target must be empty, or hold this very copy, interrupted: a `copy_state` row
//! names the source, and the copy resumes after what the target already holds. Projections are
//! rebuilt on the target from the copied records (`replay`), so they match them exactly; the
//! value index, carried totals and projects' retention limits are copied beside them.

use sea_query::{Expr, ExprTrait, OnConflict, Order, Query};

use super::chain::{self, ChainKey, StateTag};
use super::chain_state::{self, Head};
use super::db::{Exec, Raw, Row};
use super::schema::{ApiKeys, Events};
use super::{Store, StoreError, replay};

/// Records (and audit entries) per transaction on the target.
const PAGE: u64 = 5_000;

/// How a column is read and written.
#[derive(Clone, Copy)]
enum Col {
    Int(&'static str),
    Text(&'static str),
    OptText(&'static str),
    Flag(&'static str),
}

impl Col {
    fn name(self) -> &'static str {
        match self {
            Col::Int(n) | Col::Text(n) | Col::OptText(n) | Col::Flag(n) => n,
        }
    }

    fn read(self, row: &Row) -> Result<sea_query::Value, StoreError> {
        Ok(match self {
            Col::Int(n) => row.int(n)?.into(),
            Col::Text(n) => row.text(n)?.into(),
            Col::OptText(n) => row.opt_text(n)?.into(),
            Col::Flag(n) => row.flag(n)?.into(),
        })
    }
}

const EVENTS: &[Col] = &[
    Col::Int("seq"),
    Col::Text("project"),
    Col::Text("event_id"),
    Col::Text("record_type"),
    Col::OptText("trace_id"),
    Col::OptText("session_id"),
    Col::OptText("agent"),
    Col::OptText("event_time"),
    Col::Text("recorded_at"),
    Col::OptText("body"),
    Col::Text("digest"),
    Col::Text("link"),
];

const AUDIT: &[Col] = &[
    Col::Int("id"),
    Col::Text("timestamp"),
    Col::Text("event_type"),
    Col::OptText("principal"),
    Col::OptText("project"),
    Col::OptText("resource"),
    Col::Text("operation"),
    Col::Text("result"),
    Col::OptText("correlation_id"),
    Col::OptText("source_ip"),
    Col::Text("metadata"),
    Col::OptText("digest"),
    Col::OptText("link"),
];

const KEYS: &[Col] = &[
    Col::Text("id"),
    Col::Text("name"),
    Col::Text("secret_hash"),
    Col::Text("projects"),
    Col::Text("permissions"),
    Col::Text("created_at"),
    Col::OptText("expires_at"),
    Col::OptText("rotated_at"),
    Col::OptText("revoked_at"),
    Col::Flag("is_owner"),
];

const REDACTED_VALUES: &[Col] = &[
    Col::Text("project"),
    Col::Text("pseudonym"),
    Col::Int("seq"),
];

const CARRIED: &[Col] = &[
    Col::Text("project"),
    Col::Text("kind"),
    Col::Text("id"),
    Col::OptText("projection"),
    Col::Text("totals"),
];

const PROJECT_RETENTION: &[Col] = &[
    Col::Text("project"),
    Col::Int("days"),
    Col::Int("erased_through"),
    Col::Text("updated_at"),
    Col::Text("updated_by"),
];

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    pub records: u64,
    pub audit_entries: u64,
    pub keys: u64,
    /// The copy resumed an interrupted one.
    pub resumed: bool,
    pub until_seq: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(
        "the target database already holds data that is not an interrupted copy of this log; copy only into an empty database"
    )]
    TargetNotEmpty,
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn scalar(db: &mut Exec<'_>, sql: &str) -> Result<i64, StoreError> {
    Ok(db
        .fetch_optional(&Raw::new(sql, []))
        .await?
        .map(|r| r.first_int())
        .transpose()?
        .flatten()
        .unwrap_or(0))
}

/// The source log's identity: its first record's link.
async fn identity(db: &mut Exec<'_>) -> Result<String, StoreError> {
    let q = Query::select()
        .column(Events::Link)
        .from(Events::Table)
        .order_by(Events::Seq, Order::Asc)
        .limit(1)
        .to_owned();
    Ok(db
        .fetch_optional(&q)
        .await?
        .map(|r| r.text("link"))
        .transpose()?
        .unwrap_or_else(|| "empty".into()))
}

/// Copies `table`'s rows with `cols` whose `key` column is above `after` (and at most
/// `until`), `PAGE` at a time, each page in one target transaction; `on_page` gets the count.
#[allow(clippy::too_many_arguments)]
async fn copy_rows(
    source: &mut Exec<'_>,
    target: &Store,
    table: &'static str,
    cols: &[Col],
    key: &'static str,
    mut after: i64,
    until: Option<i64>,
    mut on_page: impl FnMut(u64),
) -> Result<u64, StoreError> {
    let names: Vec<sea_query::Alias> = cols
        .iter()
        .map(|c| sea_query::Alias::new(c.name()))
        .collect();
    let mut copied = 0;
    loop {
        let mut q = Query::select();
        q.columns(names.clone())
            .from(sea_query::Alias::new(table))
            .and_where(Expr::col(sea_query::Alias::new(key)).gt(after));
        if let Some(until) = until {
            q.and_where(Expr::col(sea_query::Alias::new(key)).lte(until));
        }
        q.order_by(sea_query::Alias::new(key), Order::Asc)
            .limit(PAGE);
        let rows = source.fetch_all(&q).await?;
        let Some(last) = rows.last() else { break };
        after = last.int(key)?;
        insert_rows(target, table, cols, &rows).await?;
        copied += rows.len() as u64;
        on_page(rows.len() as u64);
    }
    Ok(copied)
}

/// Copies every row of `table` (those with `seq` in `range` when given) in one transaction.
async fn copy_table(
    source: &mut Exec<'_>,
    target: &Store,
    table: &'static str,
    cols: &[Col],
    range: Option<(i64, i64)>,
) -> Result<(), StoreError> {
    let names: Vec<sea_query::Alias> = cols
        .iter()
        .map(|c| sea_query::Alias::new(c.name()))
        .collect();
    let mut q = Query::select();
    q.columns(names.clone()).from(sea_query::Alias::new(table));
    if let Some((after, through)) = range {
        q.and_where(Expr::col(sea_query::Alias::new("seq")).gt(after))
            .and_where(Expr::col(sea_query::Alias::new("seq")).lte(through));
    }
    let rows = source.fetch_all(&q).await?;
    if !rows.is_empty() {
        insert_rows(target, table, cols, &rows).await?;
    }
    Ok(())
}

/// Inserts `rows` (read with `cols`) into the target's `table` in one transaction.
async fn insert_rows(
    target: &Store,
    table: &'static str,
    cols: &[Col],
    rows: &[Row],
) -> Result<(), StoreError> {
    let names: Vec<sea_query::Alias> = cols
        .iter()
        .map(|c| sea_query::Alias::new(c.name()))
        .collect();
    let mut conn = target.write_connection().await?;
    let mut tx = conn.begin_write().await?;
    for chunk in rows.chunks(200) {
        let mut insert = Query::insert();
        insert
            .into_table(sea_query::Alias::new(table))
            .columns(names.clone());
        for row in chunk {
            let values = cols
                .iter()
                .map(|c| c.read(row))
                .collect::<Result<Vec<_>, _>>()?;
            insert.values_panic(values.into_iter().map(Into::into));
        }
        tx.exec().execute(&insert).await?;
    }
    tx.commit().await?;
    conn.close().await;
    Ok(())
}

/// The tables beside the log that replay cannot derive (the value index, totals carried over
/// a retention sweep, projects' own limits): copied whole, afresh on a resumed copy.
async fn copy_side_tables(
    source: &mut Exec<'_>,
    target: &Store,
    until: i64,
) -> Result<(), StoreError> {
    let mut conn = target.write_connection().await?;
    for t in ["redacted_values", "carried_totals", "project_retention"] {
        conn.exec()
            .execute_plain(&format!("DELETE FROM {t}"))
            .await?;
    }
    conn.close().await;
    copy_table(source, target, "carried_totals", CARRIED, None).await?;
    copy_table(source, target, "project_retention", PROJECT_RETENTION, None).await?;
    let first = scalar(source, "SELECT COALESCE(MIN(seq), 0) FROM redacted_values").await?;
    let mut after = first - 1;
    while after < until {
        let through = std::cmp::min(after + PAGE as i64, until);
        copy_table(
            source,
            target,
            "redacted_values",
            REDACTED_VALUES,
            Some((after, through)),
        )
        .await?;
        after = through;
    }
    Ok(())
}

/// Copies the log of `source` into `target`; `progress` gets the number of records copied.
pub async fn copy(
    source: &Store,
    target: &Store,
    key: &ChainKey,
    mut progress: impl FnMut(u64),
) -> Result<CopyReport, CopyError> {
    let mut src_conn = source.reader().await?;
    let mut src = src_conn.exec();
    let source_id = identity(&mut src).await?;
    let until = scalar(&mut src, "SELECT MAX(seq) FROM events").await?;

    let mut tgt_conn = target.write_connection().await?;
    let mut tgt = tgt_conn.exec();
    let state = tgt
        .fetch_optional(&Raw::new(
            "SELECT source, until_seq FROM copy_state WHERE id = 1",
            [],
        ))
        .await?;
    let mut report = CopyReport::default();
    let held = scalar(&mut tgt, "SELECT COUNT(*) FROM events").await?
        + scalar(&mut tgt, "SELECT COUNT(*) FROM api_keys").await?
        + scalar(&mut tgt, "SELECT COUNT(*) FROM audit_log").await?;
    let until = match state {
        Some(row) if row.text("source")? == source_id => {
            report.resumed = true;
            row.int("until_seq")?
        }
        Some(_) => return Err(CopyError::TargetNotEmpty),
        None if held > 0 => return Err(CopyError::TargetNotEmpty),
        None => {
            tgt.execute(&Raw::new(
                "INSERT INTO copy_state (id, source, until_seq) VALUES (1, ?, ?)",
                [source_id.clone().into(), until.into()],
            ))
            .await?;
            until
        }
    };
    report.until_seq = until;
    tgt_conn.close().await;

    // Keys: all of them (an interrupted copy may hold some already).
    let rows = src
        .fetch_all(
            &Query::select()
                .columns(KEYS.iter().map(|c| sea_query::Alias::new(c.name())))
                .from(ApiKeys::Table)
                .to_owned(),
        )
        .await?;
    let mut conn = target.write_connection().await?;
    for row in &rows {
        let values = KEYS
            .iter()
            .map(|c| c.read(row))
            .collect::<Result<Vec<_>, _>>()?;
        let q = Query::insert()
            .into_table(ApiKeys::Table)
            .columns(KEYS.iter().map(|c| sea_query::Alias::new(c.name())))
            .values_panic(values.into_iter().map(Into::into))
            .on_conflict(OnConflict::column(ApiKeys::Id).do_nothing().to_owned())
            .to_owned();
        conn.exec().execute(&q).await?;
    }
    report.keys = rows.len() as u64;

    // The audit log, after what the target holds.
    let audit_after = scalar(&mut conn.exec(), "SELECT MAX(id) FROM audit_log").await?;
    report.audit_entries = copy_rows(
        &mut src,
        target,
        "audit_log",
        AUDIT,
        "id",
        audit_after,
        None,
        |_| {},
    )
    .await?;

    // The chain's base (after a retention sweep): copied as it is, it stays authentic.
    if let Some((base, _)) = chain_state::tagged_row(&mut src, StateTag::Base, key).await? {
        chain_state::write_base(&mut conn.exec(), key, &base).await?;
    }

    // The records, after what the target holds, up to the source's head when the copy began.
    let events_after = scalar(&mut conn.exec(), "SELECT MAX(seq) FROM events").await?;
    let mut done =
        u64::try_from(scalar(&mut conn.exec(), "SELECT COUNT(*) FROM events").await?).unwrap_or(0);
    progress(done);
    report.records = copy_rows(
        &mut src,
        target,
        "events",
        EVENTS,
        "seq",
        events_after,
        Some(until),
        |n| {
            done += n;
            progress(done);
        },
    )
    .await?;

    // The head checkpoint of what was copied, tagged with the same key.
    let last = conn
        .exec()
        .fetch_optional(
            &Query::select()
                .columns([Events::Seq, Events::Link])
                .from(Events::Table)
                .order_by(Events::Seq, Order::Desc)
                .limit(1)
                .to_owned(),
        )
        .await?;
    if let Some(row) = last {
        let seq = row.int("seq")?;
        let link = chain::from_hex(&row.text("link")?).ok_or(StoreError::Corrupt {
            seq,
            reason: "link is not 64 hex digits".into(),
        })?;
        chain_state::write_head(&mut conn.exec(), key, &Head { seq, link }).await?;
    }
    conn.close().await;

    // What replay cannot derive, then projections from the copied records; then it is done.
    copy_side_tables(&mut src, target, until).await?;
    replay::rebuild(target, |_| {}).await?;
    let mut conn = target.write_connection().await?;
    conn.exec()
        .execute(&Raw::new(
            "UPDATE copy_state SET finished_at = ? WHERE id = 1",
            [crate::event::format_time(&chrono::Utc::now()).into()],
        ))
        .await?;
    conn.close().await;
    Ok(report)
}
