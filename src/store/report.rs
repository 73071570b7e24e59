//! Reads for compliance reports: which log positions a period covers, the records of some
//! projects over a range of positions (page by page, through the `(project, seq)` index), the
//! erasure receipts of a range, the chain link at a position, and the security audit log's
//! entries of a period counted by kind.
//!
//! A report is a function of these reads over one fixed range of positions, so the same range
//! read again (by `audittrail report verify`) gives the same figures unless the log changed.

use sea_query::{Expr, ExprTrait, Order, Query};

use super::StoreError;
use super::db::Exec;
use super::history::HistoryRecord;
use super::receipt::{ErasureReceipt, RetentionReceipt};
use super::schema::{AuditLog, Events, RecordType};

/// The record types a report counts (its populations and the violations on them).
const COUNTED: [&str; 4] = ["span", "guard", "violation", "rule_error"];

/// The recorded time of the record at `seq`, if there is one.
pub async fn recorded_at(conn: &mut Exec<'_>, seq: i64) -> Result<Option<String>, StoreError> {
    let q = Query::select()
        .column(Events::RecordedAt)
        .from(Events::Table)
        .and_where(Expr::col(Events::Seq).eq(seq))
        .to_owned();
    conn.fetch_optional(&q)
        .await?
        .map(|r| r.text("recorded_at"))
        .transpose()
}

/// Whether the log still holds the record at `seq` (retention removes a prefix).
pub async fn exists(conn: &mut Exec<'_>, seq: i64) -> Result<bool, StoreError> {
    Ok(recorded_at(conn, seq).await?.is_some())
}

/// The first and last position (of the whole log) recorded in `[from, to)`, both RFC 3339 in
/// the log's format; `None` when no record was. Found by bisection over positions (recording
/// times follow positions, to within one group commit), so it costs a few dozen lookups by
/// primary key, whatever the log's size.
pub async fn seq_range(
    conn: &mut Exec<'_>,
    from: &str,
    to: &str,
) -> Result<Option<(i64, i64)>, StoreError> {
    let bounds = Query::select()
        .expr_as(Expr::col(Events::Seq).min(), "lo")
        .expr_as(Expr::col(Events::Seq).max(), "hi")
        .from(Events::Table)
        .to_owned();
    let Some(row) = conn.fetch_optional(&bounds).await? else {
        return Ok(None);
    };
    let (Some(lo), Some(hi)) = (row.opt_int("lo")?, row.opt_int("hi")?) else {
        return Ok(None);
    };
    let first = first_at_or_after(conn, lo, hi, from).await?;
    let after_last = first_at_or_after(conn, first, hi, to).await?;
    Ok((first < after_last).then_some((first, after_last - 1)))
}

/// First position in `lo..=hi` whose recorded time is >= `bound` (`hi + 1` when none), by
/// bisection (positions are dense between the base and the head; verify checks it).
pub async fn first_at_or_after(
    conn: &mut Exec<'_>,
    mut lo: i64,
    hi: i64,
    bound: &str,
) -> Result<i64, StoreError> {
    let mut end = hi + 1;
    while lo < end {
        let mid = lo + (end - lo) / 2;
        let at = recorded_at(conn, mid).await?.unwrap_or_default();
        if at.as_str() >= bound {
            end = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

/// The next page of `projects`' span, guard, violation and rule-error records after
/// `after_seq` and up to `until_seq`, in log order.
pub async fn range_page(
    conn: &mut Exec<'_>,
    projects: &[String],
    after_seq: i64,
    until_seq: i64,
    limit: u64,
) -> Result<Vec<HistoryRecord>, StoreError> {
    super::history::records_page(conn, projects, &COUNTED, after_seq, until_seq, limit).await
}

/// The erasure receipts recorded between `first` and `last` (inclusive), with their positions
/// and recorded times.
pub async fn erasures(
    conn: &mut Exec<'_>,
    first: i64,
    last: i64,
) -> Result<Vec<(i64, String, ErasureReceipt)>, StoreError> {
    let q = Query::select()
        .columns([Events::Seq, Events::RecordedAt, Events::Body])
        .from(Events::Table)
        .and_where(Expr::col(Events::RecordType).eq(RecordType::Erasure.as_str()))
        .and_where(Expr::col(Events::Seq).gte(first))
        .and_where(Expr::col(Events::Seq).lte(last))
        .order_by(Events::Seq, Order::Asc)
        .to_owned();
    let mut out = Vec::new();
    for row in conn.fetch_all(&q).await? {
        let seq = row.int("seq")?;
        let body = row.opt_text("body")?.unwrap_or_default();
        let receipt = ErasureReceipt::parse(&body).ok_or(StoreError::Corrupt {
            seq,
            reason: "erasure receipt does not parse".into(),
        })?;
        out.push((seq, row.text("recorded_at")?, receipt));
    }
    Ok(out)
}

/// The retention receipts recorded between `first` and `last` (inclusive), with their
/// positions.
pub async fn sweeps(
    conn: &mut Exec<'_>,
    first: i64,
    last: i64,
) -> Result<Vec<(i64, RetentionReceipt)>, StoreError> {
    let q = Query::select()
        .columns([Events::Seq, Events::Body])
        .from(Events::Table)
        .and_where(Expr::col(Events::RecordType).eq(RecordType::Retention.as_str()))
        .and_where(Expr::col(Events::Seq).gte(first))
        .and_where(Expr::col(Events::Seq).lte(last))
        .order_by(Events::Seq, Order::Asc)
        .to_owned();
    let mut out = Vec::new();
    for row in conn.fetch_all(&q).await? {
        let seq = row.int("seq")?;
        let body = row.opt_text("body")?.unwrap_or_default();
        let receipt = RetentionReceipt::parse(&body).ok_or(StoreError::Corrupt {
            seq,
            reason: "retention receipt does not parse".into(),
        })?;
        out.push((seq, receipt));
    }
    Ok(out)
}

/// The stored chain link (hex) of the record at `seq`.
pub async fn link_at(conn: &mut Exec<'_>, seq: i64) -> Result<Option<String>, StoreError> {
    let q = Query::select()
        .column(Events::Link)
        .from(Events::Table)
        .and_where(Expr::col(Events::Seq).eq(seq))
        .to_owned();
    conn.fetch_optional(&q)
        .await?
        .map(|r| r.text("link"))
        .transpose()
}

/// Security audit entries of one kind, counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCount {
    pub event_type: String,
    pub operation: String,
    pub result: String,
    pub count: u64,
}

/// The last audit entry's id now (0 when there is none): a report counts entries up to it, so
/// entries written after the report (the audit log is written asynchronously) never change it.
pub async fn audit_last_id(conn: &mut Exec<'_>) -> Result<i64, StoreError> {
    let q = Query::select()
        .expr_as(Expr::col(AuditLog::Id).max(), "n")
        .from(AuditLog::Table)
        .to_owned();
    Ok(conn
        .fetch_optional(&q)
        .await?
        .map(|r| r.opt_int("n"))
        .transpose()?
        .flatten()
        .unwrap_or(0))
}

/// The audit log's entries up to id `last_id`, timestamped in `[from, to)`, about `projects`
/// (and, with `global`, those naming no project: failed authentications, the owner's actions),
/// counted by type, operation and result.
pub async fn audit_counts(
    conn: &mut Exec<'_>,
    projects: &[String],
    global: bool,
    last_id: i64,
    from: &str,
    to: &str,
) -> Result<Vec<AuditCount>, StoreError> {
    let in_projects = Expr::col(AuditLog::Project).is_in(projects.iter().map(String::as_str));
    let scope = if global {
        Expr::col(AuditLog::Project).is_null().or(in_projects)
    } else {
        in_projects
    };
    let q = Query::select()
        .columns([AuditLog::EventType, AuditLog::Operation, AuditLog::Result])
        .expr_as(Expr::col(AuditLog::Id).count(), "n")
        .from(AuditLog::Table)
        .and_where(Expr::col(AuditLog::Id).lte(last_id))
        .and_where(Expr::col(AuditLog::Timestamp).gte(from))
        .and_where(Expr::col(AuditLog::Timestamp).lt(to))
        .and_where(scope)
        .group_by_columns([AuditLog::EventType, AuditLog::Operation, AuditLog::Result])
        .order_by(AuditLog::EventType, Order::Asc)
        .order_by(AuditLog::Operation, Order::Asc)
        .order_by(AuditLog::Result, Order::Asc)
        .to_owned();
    let mut out = Vec::new();
    for row in conn.fetch_all(&q).await? {
        out.push(AuditCount {
            event_type: row.text("event_type")?,
            operation: row.text("operation")?,
            result: row.text("result")?,
            count: u64::try_from(row.int("n")?).unwrap_or(0),
        });
    }
    Ok(out)
}
