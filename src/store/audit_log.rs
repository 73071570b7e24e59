//! The security audit log's table: appending entries to its own hash chain, listing them, and
//! verifying the chain.
//!
//! Each entry gets `digest` = SHA-256 over its fields and `link` = HMAC(audit key, previous link
//! ‖ id ‖ digest) (see [`ChainKey::audit_link`]), so an edited, deleted, inserted or reordered
//! entry breaks the chain at a named id. The writer anchors the audit chain's head in the event
//! chain with `audit_checkpoint` records (see [`AuditAnchor`]), which is what detects entries cut
//! off the tail. Entries are appended inside the caller's transaction, which must hold the
//! audit chain's lock ([`lock`]: SQLite's write lock via `BEGIN IMMEDIATE`, a transaction-level
//! advisory lock on Postgres), so two writers never fork the chain.

use sea_query::{Expr, ExprTrait, Order, Query};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::chain::{self, ChainKey, Hash};
use super::db::{Exec, Row};
use super::schema::AuditLog;
use super::{Store, StoreError};
use crate::auth::audit::AuditEntry;

/// The audit chain's head: the last chained entry's id and link (id 0 and the genesis link
/// before the first entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditHead {
    pub id: i64,
    pub link: Hash,
}

/// What an `audit_checkpoint` record in the event log says about the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditAnchor {
    /// Id of the last audit entry covered.
    pub audit_id: i64,
    /// Its link, hex.
    pub audit_link: String,
    /// Entries added since the previous checkpoint.
    pub entries: i64,
}

fn digest(id: i64, e: &AuditEntry) -> Hash {
    let mut h = Sha256::new();
    h.update(b"audittrail/audit-entry/v1");
    h.update(id.to_be_bytes());
    let metadata = e.metadata.to_string();
    let fields: [Option<&str>; 10] = [
        Some(&e.timestamp),
        Some(&e.event_type),
        e.principal.as_deref(),
        e.project.as_deref(),
        e.resource.as_deref(),
        Some(&e.operation),
        Some(&e.result),
        e.correlation_id.as_deref(),
        e.source_ip.as_deref(),
        Some(&metadata),
    ];
    for f in fields {
        match f {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    h.finalize().into()
}

/// Serialises appends to the audit chain across processes for the rest of the transaction
/// (a no-op on SQLite, whose `BEGIN IMMEDIATE` already holds the database's write lock).
pub async fn lock(conn: &mut Exec<'_>) -> Result<(), StoreError> {
    if conn.backend() == super::Backend::Postgres {
        conn.execute_plain("SELECT pg_advisory_xact_lock(7243301)")
            .await?;
    }
    Ok(())
}

/// The current head of the audit chain, read inside the caller's transaction.
pub async fn head(conn: &mut Exec<'_>) -> Result<AuditHead, StoreError> {
    let q = Query::select()
        .columns([AuditLog::Id, AuditLog::Link])
        .from(AuditLog::Table)
        .and_where(Expr::col(AuditLog::Link).is_not_null())
        .order_by(AuditLog::Id, Order::Desc)
        .limit(1)
        .to_owned();
    let row = conn.fetch_optional(&q).await?;
    let legacy = Query::select()
        .expr(Expr::col(AuditLog::Id).max())
        .from(AuditLog::Table)
        .to_owned();
    let legacy_max = conn
        .fetch_optional(&legacy)
        .await?
        .map(|r| r.first_int())
        .transpose()?
        .flatten();
    Ok(match row {
        Some(row) => {
            let id = row.int("id")?;
            let link = row.text("link")?;
            AuditHead {
                id,
                link: chain::from_hex(&link).ok_or(StoreError::Corrupt {
                    seq: 0,
                    reason: format!("audit entry {id}: link is not 64 hex digits"),
                })?,
            }
        }
        // Entries from before audit chaining start the chain after themselves.
        None => AuditHead {
            id: legacy_max.unwrap_or(0),
            link: chain::GENESIS,
        },
    })
}

/// Appends `entries` to the audit chain; returns the new head. Run it inside a transaction that
/// holds the write lock.
pub async fn append(
    conn: &mut Exec<'_>,
    key: &ChainKey,
    entries: &[AuditEntry],
) -> Result<AuditHead, StoreError> {
    lock(conn).await?;
    let mut head = head(conn).await?;
    for chunk in entries.chunks(200) {
        let mut q = Query::insert();
        q.into_table(AuditLog::Table).columns([
            AuditLog::Id,
            AuditLog::Timestamp,
            AuditLog::EventType,
            AuditLog::Principal,
            AuditLog::Project,
            AuditLog::Resource,
            AuditLog::Operation,
            AuditLog::Result,
            AuditLog::CorrelationId,
            AuditLog::SourceIp,
            AuditLog::Metadata,
            AuditLog::Digest,
            AuditLog::Link,
        ]);
        for e in chunk {
            // Stored exactly as hashed: the digest covers this very text.
            let e = storable_entry(e);
            let id = head.id + 1;
            let d = digest(id, &e);
            let link = key.audit_link(&head.link, id, &d);
            q.values_panic([
                id.into(),
                e.timestamp.clone().into(),
                e.event_type.clone().into(),
                e.principal.clone().into(),
                e.project.clone().into(),
                e.resource.clone().into(),
                e.operation.clone().into(),
                e.result.clone().into(),
                e.correlation_id.clone().into(),
                e.source_ip.clone().into(),
                e.metadata.to_string().into(),
                chain::to_hex(&d).into(),
                chain::to_hex(&link).into(),
            ]);
            head = AuditHead { id, link };
        }
        conn.execute(&q).await?;
    }
    Ok(head)
}

/// The entry as it can be stored on both backends (no NUL in text columns).
fn storable_entry(e: &AuditEntry) -> AuditEntry {
    let text = |s: &str| super::db::storable(s).into_owned();
    let opt = |s: &Option<String>| s.as_deref().map(text);
    AuditEntry {
        timestamp: text(&e.timestamp),
        event_type: text(&e.event_type),
        principal: opt(&e.principal),
        project: opt(&e.project),
        resource: opt(&e.resource),
        operation: text(&e.operation),
        result: text(&e.result),
        correlation_id: opt(&e.correlation_id),
        source_ip: opt(&e.source_ip),
        metadata: e.metadata.clone(),
    }
}

/// Appends `entries` in a transaction of their own (the CLI's key commands).
pub async fn append_now(
    store: &Store,
    key: &ChainKey,
    entries: &[AuditEntry],
) -> Result<(), StoreError> {
    let mut conn = store.write_connection().await?;
    let mut tx = conn.begin_write().await?;
    append(&mut tx.exec(), key, entries).await?;
    tx.commit().await?;
    conn.close().await;
    Ok(())
}

/// Backups `audittrail backup` recorded (newest first, at most 1,000): `(timestamp, file)`.
pub async fn backups(store: &Store) -> Result<Vec<(String, String)>, StoreError> {
    let q = Query::select()
        .columns([AuditLog::Timestamp, AuditLog::Resource])
        .from(AuditLog::Table)
        .and_where(Expr::col(AuditLog::EventType).eq("backup"))
        .and_where(Expr::col(AuditLog::Result).eq("success"))
        .order_by(AuditLog::Id, Order::Desc)
        .limit(1000)
        .to_owned();
    let mut out = Vec::new();
    for r in store.readers().fetch_all(&q).await? {
        out.push((
            r.text("timestamp")?,
            r.opt_text("resource")?.unwrap_or_default(),
        ));
    }
    Ok(out)
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub event_type: Option<String>,
    pub principal: Option<String>,
    pub result: Option<String>,
    /// Only entries about these projects (None: all, for keys scoped to every project).
    pub projects: Option<Vec<String>>,
}

/// Newest first; the cursor is the last entry's id.
pub async fn list(
    store: &Store,
    f: &AuditFilter,
    before_id: Option<i64>,
    limit: i64,
) -> Result<(Vec<Value>, Option<i64>), StoreError> {
    let mut q = Query::select();
    q.columns(ENTRY_COLUMNS).from(AuditLog::Table);
    if let Some(t) = &f.event_type {
        q.and_where(Expr::col(AuditLog::EventType).eq(t.as_str()));
    }
    if let Some(p) = &f.principal {
        q.and_where(Expr::col(AuditLog::Principal).eq(p.as_str()));
    }
    if let Some(r) = &f.result {
        q.and_where(Expr::col(AuditLog::Result).eq(r.as_str()));
    }
    if let Some(id) = before_id {
        q.and_where(Expr::col(AuditLog::Id).lt(id));
    }
    // The key's projects, so the scope is applied before the LIMIT.
    if let Some(projects) = &f.projects {
        q.and_where(Expr::col(AuditLog::Project).is_in(projects.iter().map(String::as_str)));
    }
    q.order_by(AuditLog::Id, Order::Desc)
        .limit(u64::try_from(limit).unwrap_or(0) + 1);
    let rows = store.readers().fetch_all(&q).await?;
    let mut out = Vec::new();
    let mut last = None;
    for r in rows.iter().take(usize::try_from(limit).unwrap_or(0)) {
        let id = r.int("id")?;
        last = Some(id);
        out.push(entry_json(r)?);
    }
    let next = if rows.len() as i64 > limit {
        last
    } else {
        None
    };
    Ok((out, next))
}

const ENTRY_COLUMNS: [AuditLog; 13] = [
    AuditLog::Id,
    AuditLog::Timestamp,
    AuditLog::EventType,
    AuditLog::Principal,
    AuditLog::Project,
    AuditLog::Resource,
    AuditLog::Operation,
    AuditLog::Result,
    AuditLog::CorrelationId,
    AuditLog::SourceIp,
    AuditLog::Metadata,
    AuditLog::Digest,
    AuditLog::Link,
];

fn entry_from_row(r: &Row) -> Result<AuditEntry, StoreError> {
    let metadata = r.text("metadata")?;
    Ok(AuditEntry {
        timestamp: r.text("timestamp")?,
        event_type: r.text("event_type")?,
        principal: r.opt_text("principal")?,
        project: r.opt_text("project")?,
        resource: r.opt_text("resource")?,
        operation: r.text("operation")?,
        result: r.text("result")?,
        correlation_id: r.opt_text("correlation_id")?,
        source_ip: r.opt_text("source_ip")?,
        // Stored as the text of a JSON value; a non-JSON text is kept as a string so that its
        // digest (over the text) is still what is checked.
        metadata: serde_json::from_str(&metadata).unwrap_or(Value::String(metadata)),
    })
}

fn entry_json(r: &Row) -> Result<Value, StoreError> {
    let id = r.int("id")?;
    let mut v = serde_json::to_value(entry_from_row(r)?).unwrap_or(Value::Null);
    v["id"] = id.into();
    Ok(v)
}

/// A way the audit chain fails to verify, naming the first entry concerned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditFault {
    #[error("audit entry {id}: content does not match its digest (edited)")]
    Edited { id: i64 },
    #[error(
        "audit entry {id}: link does not follow from the previous entry (an entry was inserted, deleted or reordered before it, or its link was edited)"
    )]
    BrokenLink { id: i64 },
    #[error("audit entries {from}..={to} are missing (deleted)")]
    Missing { from: i64, to: i64 },
    #[error(
        "audit entry {id} has no link although earlier entries are chained (its link was removed)"
    )]
    Unlinked { id: i64 },
    #[error(
        "the audit log ends at entry {tail} but the event log's audit checkpoint at seq {seq} covers entry {audit_id}: entries were removed from its tail"
    )]
    Truncated { tail: i64, audit_id: i64, seq: i64 },
    #[error(
        "audit entry {audit_id} differs from what the event log's audit checkpoint at seq {seq} recorded"
    )]
    CheckpointMismatch { audit_id: i64, seq: i64 },
}

/// Entries read per query while verifying.
const VERIFY_PAGE: u64 = 5_000;

/// What verifying the audit chain found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditReport {
    /// Entries whose links were checked.
    pub chained: u64,
    /// Entries from before audit chaining (not covered).
    pub legacy: u64,
    /// Checkpoints in the event log that matched.
    pub checkpoints: u64,
}

/// Walks the audit chain and checks it against the anchors the event log recorded (each
/// `(event seq, anchor)`, from records that verified). Runs inside the caller's read
/// transaction, so it sees the same snapshot as the event walk.
pub async fn verify(
    conn: &mut Exec<'_>,
    key: &ChainKey,
    anchors: &[(i64, AuditAnchor)],
) -> Result<Result<AuditReport, AuditFault>, StoreError> {
    let mut report = AuditReport::default();
    let mut prev = chain::GENESIS;
    let mut last_id: Option<i64> = None;
    let mut chained_from: Option<i64> = None;
    let mut links: std::collections::HashMap<i64, Hash> = anchors
        .iter()
        .map(|(_, a)| (a.audit_id, chain::GENESIS))
        .collect();
    let mut after = i64::MIN;
    loop {
        let page = conn
            .fetch_all(
                &Query::select()
                    .columns(ENTRY_COLUMNS)
                    .from(AuditLog::Table)
                    .and_where(Expr::col(AuditLog::Id).gt(after))
                    .order_by(AuditLog::Id, Order::Asc)
                    .limit(VERIFY_PAGE)
                    .to_owned(),
            )
            .await?;
        let Some(last) = page.last() else { break };
        after = last.int("id")?;
        for row in page {
            let id = row.int("id")?;
            let digest_hex = row.opt_text("digest")?;
            let link_hex = row.opt_text("link")?;
            let (Some(digest_hex), Some(link_hex)) = (digest_hex, link_hex) else {
                if chained_from.is_some() {
                    return Ok(Err(AuditFault::Unlinked { id }));
                }
                report.legacy += 1;
                last_id = Some(id);
                continue;
            };
            if let Some(prev_id) = last_id
                && chained_from.is_some()
                && id != prev_id + 1
            {
                return Ok(Err(AuditFault::Missing {
                    from: prev_id + 1,
                    to: id - 1,
                }));
            }
            if chained_from.is_none() {
                chained_from = Some(id);
            }
            let entry = entry_from_row(&row)?;
            let stored_digest = chain::from_hex(&digest_hex);
            if stored_digest != Some(digest(id, &entry)) {
                return Ok(Err(AuditFault::Edited { id }));
            }
            let link = key.audit_link(&prev, id, &digest(id, &entry));
            if chain::from_hex(&link_hex) != Some(link) {
                return Ok(Err(AuditFault::BrokenLink { id }));
            }
            if let Some(slot) = links.get_mut(&id) {
                *slot = link;
            }
            prev = link;
            last_id = Some(id);
            report.chained += 1;
        }
    }
    let tail = last_id.unwrap_or(0);
    for (seq, anchor) in anchors {
        if anchor.audit_id > tail {
            return Ok(Err(AuditFault::Truncated {
                tail,
                audit_id: anchor.audit_id,
                seq: *seq,
            }));
        }
        let recorded = chain::from_hex(&anchor.audit_link);
        if anchor.audit_id > 0 && recorded != links.get(&anchor.audit_id).copied() {
            return Ok(Err(AuditFault::CheckpointMismatch {
                audit_id: anchor.audit_id,
                seq: *seq,
            }));
        }
        report.checkpoints += 1;
    }
    Ok(Ok(report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_covers_every_field_and_the_id() {
        let e = AuditEntry::new("authentication", "GET /api/v1/traces", "failure");
        let base = digest(1, &e);
        assert_ne!(base, digest(2, &e), "the id");
        let mut other = e.clone();
        other.source_ip = Some("10.0.0.1".into());
        assert_ne!(base, digest(1, &other), "an optional field");
        let mut other = e.clone();
        other.metadata = serde_json::json!({"reason": "x"});
        assert_ne!(base, digest(1, &other), "the metadata");
        let mut a = e.clone();
        a.principal = Some(String::new());
        assert_ne!(base, digest(1, &a), "absent and empty differ");
    }
}
