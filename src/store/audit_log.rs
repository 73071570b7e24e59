//! The security audit log's table: appending entries to its own hash chain, listing them, and
//! verifying the chain.
//!
//! Each entry gets `digest` = SHA-256 over its fields and `link` = HMAC(audit key, previous link
//! ‖ id ‖ digest) (see [`ChainKey::audit_link`]), so an edited, deleted, inserted or reordered
//! entry breaks the chain at a named id. The writer anchors the audit chain's head in the event
//! chain with `audit_checkpoint` records (see [`AuditAnchor`]), which is what detects entries cut
//! off the tail. Entries are appended inside the caller's transaction, which must hold the
//! database's write lock (SQLite `BEGIN IMMEDIATE`), so two writers never fork the chain.

use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::StoreError;
use super::chain::{self, ChainKey, Hash};
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

/// The current head of the audit chain, read inside the caller's transaction.
pub async fn head(conn: &mut SqliteConnection) -> Result<AuditHead, StoreError> {
    let row = sqlx::query(
        "SELECT id, link FROM audit_log WHERE link IS NOT NULL ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let legacy_max: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM audit_log")
        .fetch_one(&mut *conn)
        .await?;
    Ok(match row {
        Some(row) => {
            let id: i64 = row.try_get("id")?;
            let link: String = row.try_get("link")?;
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
    conn: &mut SqliteConnection,
    key: &ChainKey,
    entries: &[AuditEntry],
) -> Result<AuditHead, StoreError> {
    let mut head = head(conn).await?;
    for e in entries {
        let id = head.id + 1;
        let d = digest(id, e);
        let link = key.audit_link(&head.link, id, &d);
        sqlx::query(
            "INSERT INTO audit_log (id, timestamp, event_type, principal, project, resource, operation, result, correlation_id, source_ip, metadata, digest, link) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(&e.timestamp)
        .bind(&e.event_type)
        .bind(&e.principal)
        .bind(&e.project)
        .bind(&e.resource)
        .bind(&e.operation)
        .bind(&e.result)
        .bind(&e.correlation_id)
        .bind(&e.source_ip)
        .bind(e.metadata.to_string())
        .bind(chain::to_hex(&d))
        .bind(chain::to_hex(&link))
        .execute(&mut *conn)
        .await?;
        head = AuditHead { id, link };
    }
    Ok(head)
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
    pool: &SqlitePool,
    f: &AuditFilter,
    before_id: Option<i64>,
    limit: i64,
) -> Result<(Vec<Value>, Option<i64>), StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM audit_log WHERE (?1 IS NULL OR event_type = ?1) AND (?2 IS NULL OR principal = ?2) \
         AND (?3 IS NULL OR result = ?3) AND (?4 IS NULL OR id < ?4) \
         AND (?6 IS NULL OR project IN (SELECT value FROM json_each(?6))) ORDER BY id DESC LIMIT ?5",
    )
    .bind(&f.event_type)
    .bind(&f.principal)
    .bind(&f.result)
    .bind(before_id)
    .bind(limit + 1)
    // The key's projects as a JSON list, so the scope is applied before the LIMIT.
    .bind(f.projects.as_ref().map(|p| serde_json::to_string(p).unwrap_or_default()))
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    let mut last = None;
    for r in rows.iter().take(limit.max(0) as usize) {
        let id: i64 = r.try_get("id")?;
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

fn entry_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<AuditEntry, sqlx::Error> {
    let metadata: String = r.try_get("metadata")?;
    Ok(AuditEntry {
        timestamp: r.try_get("timestamp")?,
        event_type: r.try_get("event_type")?,
        principal: r.try_get("principal")?,
        project: r.try_get("project")?,
        resource: r.try_get("resource")?,
        operation: r.try_get("operation")?,
        result: r.try_get("result")?,
        correlation_id: r.try_get("correlation_id")?,
        source_ip: r.try_get("source_ip")?,
        // Stored as the text of a JSON value; a non-JSON text is kept as a string so that its
        // digest (over the text) is still what is checked.
        metadata: serde_json::from_str(&metadata).unwrap_or(Value::String(metadata)),
    })
}

fn entry_json(r: &sqlx::sqlite::SqliteRow) -> Result<Value, sqlx::Error> {
    let id: i64 = r.try_get("id")?;
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
    conn: &mut SqliteConnection,
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
    let mut rows = sqlx::query("SELECT * FROM audit_log ORDER BY id").fetch(&mut *conn);
    while let Some(row) = rows.try_next().await? {
        let id: i64 = row.try_get("id")?;
        let digest_hex: Option<String> = row.try_get("digest")?;
        let link_hex: Option<String> = row.try_get("link")?;
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
