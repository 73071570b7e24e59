//! Retention sweeps: removing the log's prefix older than the retention limit, in bounded
//! chunks through the single writer, so ingest keeps flowing during a large sweep.
//!
//! Each chunk, in one transaction: folds what its span records contributed to the running
//! totals of their traces and sessions into `carried_totals`, deletes the records and their
//! projection rows, and moves the authenticated chain base to its last record's link (so
//! `verify` passes between chunks). The sweep's last step drops the carried totals and trace
//! rows of traces and sessions left with no record, and appends a chained *retention receipt*
//! (who, when, the limit, the new base, how many records, and the carried totals of the
//! traces and sessions that straddle the base). Replay and the evaluation stage start from the
//! carried totals, so rules and projections answer after a sweep as before it.

use std::collections::{BTreeMap, HashMap};

use sea_query::{Expr, ExprTrait, OnConflict, Order, Query};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Store;
use super::StoreError;
use super::chain::{self, ChainKey};
use super::chain_state::{self, Head};
use super::db::{Exec, Raw, Row};
use super::projection::{self, TraceSummaryRow};
use super::schema::{CarriedTotals, Events, ProjectRetention, RedactedValues, Traces, Violations};

/// Folds one span body into a running-totals state (JSON, so the store need not know the
/// rules' types; the caller provides it, as for `history::rebuild`).
pub type Fold = fn(&mut Value, &Value);

/// How to carry the running totals of traces and sessions over a sweep.
#[derive(Clone, Copy)]
pub struct Carry {
    pub trace: Fold,
    pub session: Fold,
}

/// What a sweep up to a cut-off would remove.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The chain's base now (records after it are in the log).
    pub base_seq: i64,
    /// The base after the sweep: the last record recorded before the cut-off.
    pub target_seq: i64,
    /// Records to remove.
    pub records: u64,
    /// Recorded time of the oldest record kept (none when the log would be empty).
    pub oldest_kept: Option<String>,
}

/// Where a sweep to `cutoff` (RFC 3339 in the log's format) would put the base.
pub async fn plan(conn: &mut Exec<'_>, cutoff: &str) -> Result<Plan, StoreError> {
    let row = conn
        .fetch_optional(&Raw::new(
            "SELECT MIN(seq) AS lo, MAX(seq) AS hi FROM events",
            [],
        ))
        .await?;
    let (lo, hi) = match row {
        Some(r) => (r.opt_int("lo")?, r.opt_int("hi")?),
        None => (None, None),
    };
    let (Some(lo), Some(hi)) = (lo, hi) else {
        let base = current_base(conn).await?;
        return Ok(Plan {
            base_seq: base,
            target_seq: base,
            records: 0,
            oldest_kept: None,
        });
    };
    let first_kept = super::report::first_at_or_after(conn, lo, hi, cutoff).await?;
    let oldest_kept = super::report::recorded_at(conn, first_kept).await?;
    Ok(Plan {
        base_seq: lo - 1,
        target_seq: first_kept - 1,
        records: u64::try_from(first_kept - lo).unwrap_or(0),
        oldest_kept,
    })
}

async fn current_base(conn: &mut Exec<'_>) -> Result<i64, StoreError> {
    let row = conn
        .fetch_optional(&Raw::new("SELECT seq FROM chain_base WHERE id = 1", []))
        .await?;
    Ok(row.map(|r| r.int("seq")).transpose()?.unwrap_or(0))
}

/// One carried entry: what removed records contributed to a trace's or session's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    pub project: String,
    /// `trace` or `session`.
    pub kind: String,
    pub id: String,
    /// The trace summary row of the removed spans (traces only).
    pub projection: Option<Value>,
    /// The rules' running totals of the removed spans.
    pub totals: Value,
}

type CarryKey = (String, &'static str, String);

/// Removes the records after `from` up to `to` (inclusive) in the caller's transaction and
/// moves the base to `to`. Returns the number of records removed. Both bounds are given so
/// every statement reads only the chunk's own range: on Postgres the rows earlier chunks
/// deleted stay in the indexes until vacuumed, and an open-ended `seq <= to` would walk them
/// all again in every chunk.
pub async fn chunk(
    db: &mut Exec<'_>,
    key: &ChainKey,
    from: i64,
    to: i64,
    carry: &Carry,
) -> Result<u64, StoreError> {
    let link = db
        .fetch_optional(
            &Query::select()
                .column(Events::Link)
                .from(Events::Table)
                .and_where(Expr::col(Events::Seq).eq(to))
                .to_owned(),
        )
        .await?
        .map(|r| r.text("link"))
        .transpose()?;
    let Some(link) = link.as_deref().and_then(chain::from_hex) else {
        // Already removed (a sweep running twice): nothing to do.
        return Ok(0);
    };
    let rows = db
        .fetch_all(
            &Query::select()
                .columns([
                    Events::Seq,
                    Events::Project,
                    Events::TraceId,
                    Events::SessionId,
                    Events::Body,
                ])
                .from(Events::Table)
                .and_where(Expr::col(Events::Seq).gt(from))
                .and_where(Expr::col(Events::Seq).lte(to))
                .and_where(Expr::col(Events::RecordType).eq("span"))
                .and_where(Expr::col(Events::Body).is_not_null())
                .order_by(Events::Seq, Order::Asc)
                .to_owned(),
        )
        .await?;
    let mut folded: BTreeMap<CarryKey, Carried> = BTreeMap::new();
    let mut spans = Vec::with_capacity(rows.len());
    for row in rows {
        let seq = row.int("seq")?;
        let body = super::parse_body(seq, &row.text("body")?)?;
        spans.push((
            seq,
            row.text("project")?,
            row.text("trace_id")?,
            row.opt_text("session_id")?,
            body,
        ));
    }
    // Earlier carried state first (a trace may straddle several sweeps), then these spans.
    let mut wanted: Vec<CarryKey> = Vec::new();
    for (_, project, trace, session, _) in &spans {
        wanted.push((project.clone(), "trace", trace.clone()));
        if let Some(s) = session {
            wanted.push((project.clone(), "session", s.clone()));
        }
    }
    wanted.sort();
    wanted.dedup();
    for c in load(db, &wanted).await? {
        let kind = if c.kind == "trace" {
            "trace"
        } else {
            "session"
        };
        folded.insert((c.project.clone(), kind, c.id.clone()), c);
    }
    for (seq, project, trace, session, body) in &spans {
        let entry = folded
            .entry((project.clone(), "trace", trace.clone()))
            .or_insert_with(|| empty(project, "trace", trace));
        if let Some((_, facts)) = projection::span_facts(*seq, body) {
            let row = match entry.projection.take() {
                Some(v) => {
                    let mut earlier: TraceSummaryRow =
                        serde_json::from_value(v).map_err(|e| StoreError::Corrupt {
                            seq: *seq,
                            reason: format!("carried totals: {e}"),
                        })?;
                    earlier.merge(facts);
                    earlier
                }
                None => facts,
            };
            entry.projection = Some(serde_json::to_value(row).unwrap_or(Value::Null));
        }
        (carry.trace)(&mut entry.totals, body);
        if let Some(s) = session {
            let entry = folded
                .entry((project.clone(), "session", s.clone()))
                .or_insert_with(|| empty(project, "session", s));
            (carry.session)(&mut entry.totals, body);
        }
    }
    store(db, folded.values()).await?;
    let removed = db
        .execute(
            &Query::delete()
                .from_table(Events::Table)
                .and_where(Expr::col(Events::Seq).gt(from))
                .and_where(Expr::col(Events::Seq).lte(to))
                .to_owned(),
        )
        .await?;
    for q in [
        Query::delete()
            .from_table(Violations::Table)
            .and_where(Expr::col(Violations::Seq).gt(from))
            .and_where(Expr::col(Violations::Seq).lte(to))
            .to_owned(),
        Query::delete()
            .from_table(RedactedValues::Table)
            .and_where(Expr::col(RedactedValues::Seq).gt(from))
            .and_where(Expr::col(RedactedValues::Seq).lte(to))
            .to_owned(),
    ] {
        db.execute(&q).await?;
    }
    chain_state::write_base(db, key, &Head { seq: to, link }).await?;
    Ok(removed)
}

fn empty(project: &str, kind: &str, id: &str) -> Carried {
    Carried {
        project: project.to_owned(),
        kind: kind.to_owned(),
        id: id.to_owned(),
        projection: None,
        totals: Value::Null,
    }
}

const CARRIED_COLUMNS: [CarriedTotals; 5] = [
    CarriedTotals::Project,
    CarriedTotals::Kind,
    CarriedTotals::Id,
    CarriedTotals::Projection,
    CarriedTotals::Totals,
];

fn carried_from(r: &Row) -> Result<Carried, StoreError> {
    Ok(Carried {
        project: r.text("project")?,
        kind: r.text("kind")?,
        id: r.text("id")?,
        projection: r
            .opt_text("projection")?
            .and_then(|t| serde_json::from_str(&t).ok()),
        totals: serde_json::from_str(&r.text("totals")?).unwrap_or(Value::Null),
    })
}

async fn load(db: &mut Exec<'_>, keys: &[CarryKey]) -> Result<Vec<Carried>, StoreError> {
    let mut out = Vec::new();
    let mut by: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for (p, k, id) in keys {
        by.entry((p.as_str(), k)).or_default().push(id.as_str());
    }
    for ((project, kind), ids) in by {
        for chunk in ids.chunks(500) {
            let q = Query::select()
                .columns(CARRIED_COLUMNS)
                .from(CarriedTotals::Table)
                .and_where(Expr::col(CarriedTotals::Project).eq(project))
                .and_where(Expr::col(CarriedTotals::Kind).eq(kind))
                .and_where(Expr::col(CarriedTotals::Id).is_in(chunk.iter().copied()))
                .to_owned();
            for r in db.fetch_all(&q).await? {
                out.push(carried_from(&r)?);
            }
        }
    }
    Ok(out)
}

async fn store<'a>(
    db: &mut Exec<'_>,
    entries: impl Iterator<Item = &'a Carried>,
) -> Result<(), StoreError> {
    let entries: Vec<&Carried> = entries.collect();
    for chunk in entries.chunks(200) {
        let mut q = Query::insert();
        q.into_table(CarriedTotals::Table).columns([
            CarriedTotals::Project,
            CarriedTotals::Kind,
            CarriedTotals::Id,
            CarriedTotals::Projection,
            CarriedTotals::Totals,
        ]);
        for c in chunk {
            q.values_panic([
                c.project.clone().into(),
                c.kind.clone().into(),
                c.id.clone().into(),
                c.projection.as_ref().map(Value::to_string).into(),
                c.totals.to_string().into(),
            ]);
        }
        q.on_conflict(
            OnConflict::columns([
                CarriedTotals::Project,
                CarriedTotals::Kind,
                CarriedTotals::Id,
            ])
            .update_columns([CarriedTotals::Projection, CarriedTotals::Totals])
            .to_owned(),
        );
        db.execute(&q).await?;
    }
    Ok(())
}

/// The sweep's last step, in the transaction that appends its receipt: drops the summary rows
/// of traces whose every span was removed, and the carried totals of traces and sessions left
/// with no record; returns the carried totals that remain (those straddling the base).
pub async fn finish(db: &mut Exec<'_>, base: i64) -> Result<Vec<Carried>, StoreError> {
    db.execute(
        &Query::delete()
            .from_table(Traces::Table)
            .and_where(Expr::col(Traces::LastSeq).lte(base))
            .to_owned(),
    )
    .await?;
    for (kind, column) in [("trace", "trace_id"), ("session", "session_id")] {
        db.execute(&Raw::new(
            &format!(
                "DELETE FROM carried_totals WHERE kind = ? AND NOT EXISTS \
                 (SELECT 1 FROM events e WHERE e.project = carried_totals.project \
                  AND e.{column} = carried_totals.id AND e.record_type = 'span')"
            ),
            [kind.into()],
        ))
        .await?;
    }
    let all = db
        .fetch_all(
            &Query::select()
                .columns(CARRIED_COLUMNS)
                .from(CarriedTotals::Table)
                .order_by(CarriedTotals::Project, Order::Asc)
                .order_by(CarriedTotals::Kind, Order::Asc)
                .order_by(CarriedTotals::Id, Order::Asc)
                .to_owned(),
        )
        .await?;
    let mut out = Vec::with_capacity(all.len());
    for r in all {
        out.push(carried_from(&r)?);
    }
    Ok(out)
}

/// Carried running totals of `ids` (values of `kind`: `trace` or `session`) in `project`, as
/// the caller's totals type (which must read the JSON its own fold wrote).
pub async fn carried_totals<T: DeserializeOwned>(
    db: &mut Exec<'_>,
    project: &str,
    kind: &'static str,
    ids: &[&str],
) -> Result<HashMap<String, T>, StoreError> {
    let keys: Vec<CarryKey> = ids
        .iter()
        .map(|id| (project.to_owned(), kind, (*id).to_owned()))
        .collect();
    let mut out = HashMap::new();
    // Most logs were never swept: skip the lookups when the table is empty.
    if !any(db).await? {
        return Ok(out);
    }
    for c in load(db, &keys).await? {
        if let Ok(t) = serde_json::from_value::<T>(c.totals) {
            out.insert(c.id, t);
        }
    }
    Ok(out)
}

async fn any(db: &mut Exec<'_>) -> Result<bool, StoreError> {
    Ok(db
        .fetch_optional(&Raw::new("SELECT 1 AS one FROM carried_totals LIMIT 1", []))
        .await?
        .is_some())
}

/// The carried trace summary rows (replay starts from them).
pub async fn carried_projections(
    db: &mut Exec<'_>,
) -> Result<Vec<(String, String, TraceSummaryRow)>, StoreError> {
    let q = Query::select()
        .columns([
            CarriedTotals::Project,
            CarriedTotals::Id,
            CarriedTotals::Projection,
        ])
        .from(CarriedTotals::Table)
        .and_where(Expr::col(CarriedTotals::Kind).eq("trace"))
        .and_where(Expr::col(CarriedTotals::Projection).is_not_null())
        .order_by(CarriedTotals::Project, Order::Asc)
        .order_by(CarriedTotals::Id, Order::Asc)
        .to_owned();
    let mut out = Vec::new();
    for r in db.fetch_all(&q).await? {
        if let Some(row) = r
            .opt_text("projection")?
            .and_then(|t| serde_json::from_str::<TraceSummaryRow>(&t).ok())
        {
            out.push((r.text("project")?, r.text("id")?, row));
        }
    }
    Ok(out)
}

/// A project's own retention limit (shorter than the log's; its older records are erased).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectLimit {
    pub project: String,
    pub days: u32,
    /// Records up to this position have already been erased under the limit.
    pub erased_through: i64,
    pub updated_at: String,
    pub updated_by: String,
}

/// Every project's own limit.
pub async fn project_limits(store: &Store) -> Result<Vec<ProjectLimit>, StoreError> {
    let q = Query::select()
        .columns([
            ProjectRetention::Project,
            ProjectRetention::Days,
            ProjectRetention::ErasedThrough,
            ProjectRetention::UpdatedAt,
            ProjectRetention::UpdatedBy,
        ])
        .from(ProjectRetention::Table)
        .order_by(ProjectRetention::Project, Order::Asc)
        .to_owned();
    let mut out = Vec::new();
    for r in store.readers().fetch_all(&q).await? {
        out.push(ProjectLimit {
            project: r.text("project")?,
            days: u32::try_from(r.int("days")?).unwrap_or(0),
            erased_through: r.int("erased_through")?,
            updated_at: r.text("updated_at")?,
            updated_by: r.text("updated_by")?,
        });
    }
    Ok(out)
}

/// Sets (`Some(days)`) or removes (`None`) a project's own limit.
pub async fn set_project_limit(
    store: &Store,
    project: &str,
    days: Option<u32>,
    by: &str,
    at: &str,
) -> Result<(), StoreError> {
    let mut conn = store.write_connection().await?;
    let mut tx = conn.begin_write().await?;
    let mut db = tx.exec();
    match days {
        Some(days) => {
            db.execute(
                &Query::insert()
                    .into_table(ProjectRetention::Table)
                    .columns([
                        ProjectRetention::Project,
                        ProjectRetention::Days,
                        ProjectRetention::UpdatedAt,
                        ProjectRetention::UpdatedBy,
                    ])
                    .values_panic([project.into(), i64::from(days).into(), at.into(), by.into()])
                    .on_conflict(
                        OnConflict::column(ProjectRetention::Project)
                            .update_columns([
                                ProjectRetention::Days,
                                ProjectRetention::UpdatedAt,
                                ProjectRetention::UpdatedBy,
                            ])
                            .to_owned(),
                    )
                    .to_owned(),
            )
            .await?;
        }
        None => {
            db.execute(
                &Query::delete()
                    .from_table(ProjectRetention::Table)
                    .and_where(Expr::col(ProjectRetention::Project).eq(project))
                    .to_owned(),
            )
            .await?;
        }
    }
    tx.commit().await?;
    conn.close().await;
    Ok(())
}

/// The project's records up to `through` (after `after`) that still hold a personal part
/// and may be erased, at most `limit`, ascending.
pub async fn erasable(
    store: &Store,
    project: &str,
    after: i64,
    through: i64,
    limit: u64,
) -> Result<Vec<i64>, StoreError> {
    let q = Query::select()
        .column(Events::Seq)
        .from(Events::Table)
        .and_where(Expr::col(Events::Project).eq(project))
        .and_where(Expr::col(Events::Seq).gt(after))
        .and_where(Expr::col(Events::Seq).lte(through))
        .and_where(Expr::col(Events::RecordType).is_in([
            "span",
            "guard",
            "violation",
            "rule_error",
        ]))
        .and_where(Expr::col(Events::Body).is_not_null())
        .order_by(Events::Seq, Order::Asc)
        .limit(limit)
        .to_owned();
    let mut out = Vec::new();
    for r in store.readers().fetch_all(&q).await? {
        out.push(r.int("seq")?);
    }
    Ok(out)
}

/// Records that a project's limit has erased everything up to `through`.
pub async fn mark_erased_through(
    store: &Store,
    project: &str,
    through: i64,
) -> Result<(), StoreError> {
    let mut conn = store.write_connection().await?;
    conn.exec()
        .execute(
            &Query::update()
                .table(ProjectRetention::Table)
                .value(ProjectRetention::ErasedThrough, through)
                .and_where(Expr::col(ProjectRetention::Project).eq(project))
                .to_owned(),
        )
        .await?;
    conn.close().await;
    Ok(())
}

/// Where a cut-off falls in the whole log: the last position recorded before it (the base
/// when none is), and the head.
pub async fn last_before(store: &Store, cutoff: &str) -> Result<i64, StoreError> {
    let mut conn = store.reader().await?;
    Ok(plan(&mut conn.exec(), cutoff).await?.target_seq)
}
