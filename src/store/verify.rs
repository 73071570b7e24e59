//! `audittrail verify`: walks the chain and names the first record that does not verify.
//!
//! Detects an edited record (digest mismatch), a deleted, inserted or reordered record (link
//! mismatch: the link covers the previous link and the position), an edited
//! digest or link, and a truncated tail (the log ends before, or disagrees with, the last
//! checkpoint recorded outside the events table). Erased records (body cleared, digest kept)
//! verify through their stored digest and are counted.

use futures_util::TryStreamExt;
use sqlx::{Row, SqlitePool};

use super::StoreError;
use super::chain::{self, ChainKey, RecordContent};
use super::checkpoint::Checkpoint;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records whose links were checked.
    pub records: u64,
    /// Of those, records whose body was erased (verified by stored digest).
    pub erased: u64,
    /// Position of the last record (or of the base when the log is empty).
    pub head_seq: i64,
    /// Position verification started after (0 unless retention removed a prefix).
    pub base_seq: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainFault {
    #[error("record seq {seq} (event {event_id}): content does not match its digest (edited)")]
    Edited { seq: i64, event_id: String },
    #[error(
        "record seq {seq} (event {event_id}): link does not follow from the previous record (a record was inserted, deleted or reordered before it, or its link was edited)"
    )]
    BrokenLink { seq: i64, event_id: String },
    #[error("record seq {seq}: stored digest or link is malformed")]
    Malformed { seq: i64 },
    #[error(
        "the log ends at seq {head_seq} but a checkpoint recorded seq {checkpoint_seq}: records were removed from the tail"
    )]
    Truncated { head_seq: i64, checkpoint_seq: i64 },
    #[error(
        "the record at checkpoint seq {seq} has a different link than the checkpoint recorded: the log was rewritten"
    )]
    CheckpointMismatch { seq: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Fault(#[from] ChainFault),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for VerifyError {
    fn from(e: sqlx::Error) -> Self {
        VerifyError::Store(e.into())
    }
}

/// Verifies the whole log. `progress` is called with the number of records checked so far.
pub async fn verify(
    pool: &SqlitePool,
    key: &ChainKey,
    checkpoint: Option<&Checkpoint>,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, VerifyError> {
    let base = sqlx::query("SELECT seq, link FROM chain_base WHERE id = 1")
        .fetch_optional(pool)
        .await?;
    let (mut report, mut prev) = match base {
        None => (VerifyReport::default(), chain::GENESIS),
        Some(row) => {
            let seq: i64 = row.try_get("seq")?;
            let link = chain::from_hex(&row.try_get::<String, _>("link")?)
                .ok_or(ChainFault::Malformed { seq })?;
            (
                VerifyReport {
                    base_seq: seq,
                    head_seq: seq,
                    ..Default::default()
                },
                link,
            )
        }
    };
    let mut checkpoint_link_seen = None;
    let mut rows = sqlx::query(
        "SELECT seq, project, event_id, record_type, recorded_at, body, digest, link FROM events ORDER BY seq",
    )
    .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let seq: i64 = row.try_get("seq")?;
        let event_id: String = row.try_get("event_id")?;
        let stored_digest = chain::from_hex(&row.try_get::<String, _>("digest")?)
            .ok_or(ChainFault::Malformed { seq })?;
        let link_hex: String = row.try_get("link")?;
        let stored_link = chain::from_hex(&link_hex).ok_or(ChainFault::Malformed { seq })?;
        let body: Option<String> = row.try_get("body")?;
        let digest = match &body {
            Some(body) => {
                let project: String = row.try_get("project")?;
                let record_type: String = row.try_get("record_type")?;
                let recorded_at: String = row.try_get("recorded_at")?;
                let d = chain::digest(&RecordContent {
                    project: &project,
                    event_id: &event_id,
                    record_type: &record_type,
                    recorded_at: &recorded_at,
                    body,
                });
                if d != stored_digest {
                    return Err(ChainFault::Edited { seq, event_id }.into());
                }
                d
            }
            None => {
                report.erased += 1;
                stored_digest
            }
        };
        let link = key.link(&prev, seq, &digest);
        if link != stored_link {
            return Err(ChainFault::BrokenLink { seq, event_id }.into());
        }
        if checkpoint.is_some_and(|cp| cp.seq == seq) {
            checkpoint_link_seen = Some(link_hex);
        }
        prev = link;
        report.records += 1;
        report.head_seq = seq;
        if report.records.is_multiple_of(10_000) {
            progress(report.records);
        }
    }
    progress(report.records);
    if let Some(cp) = checkpoint {
        if cp.seq > report.head_seq {
            return Err(ChainFault::Truncated {
                head_seq: report.head_seq,
                checkpoint_seq: cp.seq,
            }
            .into());
        }
        // A checkpoint older than the retention base cannot be checked; one inside the log must match.
        if cp.seq > report.base_seq && checkpoint_link_seen.as_deref() != Some(cp.link.as_str()) {
            return Err(ChainFault::CheckpointMismatch { seq: cp.seq }.into());
        }
    }
    Ok(report)
}

/// Number of records in the log, for progress bars.
pub async fn count_records(pool: &SqlitePool) -> Result<u64, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(n.max(0) as u64)
}
