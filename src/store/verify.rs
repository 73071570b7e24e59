//! `audittrail verify`: walks the chain and names the first record that does not verify.
//!
//! What it proves, for someone without `AUDITTRAIL_SECRET_KEY`:
//! - an edited record (digest mismatch), and a deleted, inserted or reordered one (link
//!   mismatch, or a gap in positions), is named by its position;
//! - an erased body keeps its record's non-personal facts, which are still checked against the
//!   digest (record format v2, see `personal`); an erased or missing body is accepted only
//!   where a later erasure receipt — itself a verified record — lists that position; any other
//!   is tampering;
//! - the chain's base (after retention) and its head checkpoint are authenticated with the
//!   chain key: a forged base, or a tail cut off the log, is detected from the database file
//!   alone;
//! - the security audit log verifies along its own chain and matches every audit checkpoint
//!   the event log recorded.
//!
//! What it cannot prove: anything against someone who holds the secret key (they can re-chain
//! an edit), and a tail cut together with a rollback of the head checkpoint to an older genuine
//! copy of itself (taken from an earlier backup); the checkpoint file beside the database, when
//! present, is an extra check against the latter.
//!
//! Everything is read in one read transaction, so a server appending meanwhile is harmless.

use std::collections::HashMap;

use sea_query::{Expr, ExprTrait, Order, Query};

use super::StoreError;
use super::audit_log::{self, AuditAnchor, AuditFault, AuditReport};
use super::chain::{self, ChainKey, StateTag};
use super::chain_state;
use super::checkpoint::Checkpoint;
use super::db::{Conn, Exec};
use super::personal::{self, Form, Header};
use super::receipt::{ErasureReceipt, RetentionReceipt};
use super::schema::Events;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records whose links were checked.
    pub records: u64,
    /// Of those, records whose body was erased (covered by a receipt).
    pub erased: u64,
    /// Erasure receipts found in the log.
    pub receipts: u64,
    /// Position of the last record (or of the base when the log is empty).
    pub head_seq: i64,
    /// The link of the last record (or of the base), hex: two copies of one log agree on it.
    pub head_link: String,
    /// Position verification started after (0 unless retention removed a prefix).
    pub base_seq: i64,
    /// Whether the database holds an authenticated head checkpoint (older databases may not).
    pub head_checkpoint: bool,
    pub audit: AuditReport,
    /// The last retention sweep recorded in the log (its receipt verified with the rest).
    pub last_sweep: Option<SweepSeen>,
    /// Something worth saying that is not tampering (e.g. a stale checkpoint file).
    pub notes: Vec<String>,
}

/// A retention receipt as `verify` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweepSeen {
    pub receipt_seq: i64,
    pub base_seq: i64,
    pub removed: u64,
    pub at: String,
    pub days: u32,
    pub requested_by: String,
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
    #[error("records seq {from}..={to} are missing (deleted)")]
    Missing { from: i64, to: i64 },
    #[error(
        "record seq {seq} (event {event_id}): its body is missing and no later erasure receipt covers it (deleted evidence)"
    )]
    ErasedWithoutReceipt { seq: i64, event_id: String },
    #[error("erasure or retention receipt at seq {seq} is malformed")]
    BadReceipt { seq: i64 },
    #[error(
        "the chain base (seq {seq}) is not authenticated by the chain key: it was forged or edited"
    )]
    ForgedBase { seq: i64 },
    #[error(
        "the head checkpoint (seq {seq}) is not authenticated by the chain key: it was forged or edited"
    )]
    ForgedHead { seq: i64 },
    #[error(
        "the log ends at seq {head_seq} but its head checkpoint recorded seq {checkpoint_seq}: records were removed from the tail"
    )]
    Truncated { head_seq: i64, checkpoint_seq: i64 },
    #[error(
        "the record at checkpoint seq {seq} has a different link than the checkpoint recorded: the log was rewritten"
    )]
    CheckpointMismatch { seq: i64 },
    #[error("the log continues past its head checkpoint (seq {checkpoint_seq}) to seq {head_seq}")]
    BeyondHead { head_seq: i64, checkpoint_seq: i64 },
    #[error("security audit log: {0}")]
    Audit(#[from] AuditFault),
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Fault(#[from] ChainFault),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records read per query while verifying.
const PAGE: u64 = 5_000;

/// Positions covered by erasure receipts: position → the receipt's own position.
async fn erasure_cover(conn: &mut Exec<'_>) -> Result<(HashMap<i64, i64>, u64), VerifyError> {
    let mut cover = HashMap::new();
    let mut receipts = 0;
    let q = Query::select()
        .columns([Events::Seq, Events::Body])
        .from(Events::Table)
        .and_where(Expr::col(Events::RecordType).eq("erasure"))
        .order_by(Events::Seq, Order::Asc)
        .to_owned();
    for row in conn.fetch_all(&q).await? {
        let seq = row.int("seq")?;
        let body = row.opt_text("body")?;
        let Some(receipt) = body.as_deref().and_then(ErasureReceipt::parse) else {
            return Err(ChainFault::BadReceipt { seq }.into());
        };
        receipts += 1;
        for covered in receipt.seqs {
            // Only a *later* receipt can account for a missing body.
            if covered < seq {
                cover.entry(covered).or_insert(seq);
            }
        }
    }
    Ok((cover, receipts))
}

/// Verifies the whole log and the audit log. `side_file` is the checkpoint file kept beside the
/// database, if any. `progress` is called with the number of records checked so far.
pub async fn verify(
    conn: &mut Conn,
    key: &ChainKey,
    side_file: Option<&Checkpoint>,
    mut progress: impl FnMut(u64),
) -> Result<VerifyReport, VerifyError> {
    let mut tx = conn.begin_snapshot().await?;
    let mut db = tx.exec();
    let mut report = VerifyReport::default();
    let mut prev = chain::GENESIS;
    if let Some((base, authentic)) = chain_state::tagged_row(&mut db, StateTag::Base, key).await? {
        if !authentic {
            return Err(ChainFault::ForgedBase { seq: base.seq }.into());
        }
        report.base_seq = base.seq;
        report.head_seq = base.seq;
        prev = base.link;
    }
    let (cover, receipts) = erasure_cover(&mut db).await?;
    report.receipts = receipts;
    let mut anchors: Vec<(i64, AuditAnchor)> = Vec::new();
    let mut side_link_seen = None;
    loop {
        let q = Query::select()
            .columns([
                Events::Seq,
                Events::Project,
                Events::EventId,
                Events::RecordType,
                Events::RecordedAt,
                Events::Body,
                Events::Digest,
                Events::Link,
            ])
            .from(Events::Table)
            .and_where(Expr::col(Events::Seq).gt(report.head_seq))
            .order_by(Events::Seq, Order::Asc)
            .limit(PAGE)
            .to_owned();
        let page = db.fetch_all(&q).await?;
        if page.is_empty() {
            break;
        }
        for row in page {
            let seq = row.int("seq")?;
            let event_id = row.text("event_id")?;
            if seq != report.head_seq + 1 {
                return Err(ChainFault::Missing {
                    from: report.head_seq + 1,
                    to: seq - 1,
                }
                .into());
            }
            let stored_digest =
                chain::from_hex(&row.text("digest")?).ok_or(ChainFault::Malformed { seq })?;
            let stored_link =
                chain::from_hex(&row.text("link")?).ok_or(ChainFault::Malformed { seq })?;
            let body = row.opt_text("body")?;
            let record_type = row.text("record_type")?;
            let digest = match &body {
                Some(body) => {
                    let project = row.text("project")?;
                    let recorded_at = row.text("recorded_at")?;
                    let header = Header {
                        project: &project,
                        event_id: &event_id,
                        record_type: &record_type,
                        recorded_at: &recorded_at,
                    };
                    match personal::check(&header, body, &stored_digest, key.personal()) {
                        None => return Err(ChainFault::Edited { seq, event_id }.into()),
                        Some(Form::Erased) => {
                            // The facts verified; the personal part is gone, which only a
                            // later receipt may account for.
                            if !cover.contains_key(&seq) {
                                return Err(
                                    ChainFault::ErasedWithoutReceipt { seq, event_id }.into()
                                );
                            }
                            report.erased += 1;
                        }
                        Some(Form::V1 | Form::V2) => {}
                    }
                    stored_digest
                }
                None => {
                    if !cover.contains_key(&seq) {
                        return Err(ChainFault::ErasedWithoutReceipt { seq, event_id }.into());
                    }
                    report.erased += 1;
                    stored_digest
                }
            };
            let link = key.link(&prev, seq, &digest);
            if link != stored_link {
                return Err(ChainFault::BrokenLink { seq, event_id }.into());
            }
            if record_type == "audit_checkpoint"
                && let Some(anchor) = body
                    .as_deref()
                    .and_then(|b| serde_json::from_str::<AuditAnchor>(b).ok())
            {
                anchors.push((seq, anchor));
            }
            if record_type == "retention" {
                let Some(r) = body.as_deref().and_then(RetentionReceipt::parse) else {
                    return Err(ChainFault::BadReceipt { seq }.into());
                };
                report.last_sweep = Some(SweepSeen {
                    receipt_seq: seq,
                    base_seq: r.base_seq,
                    removed: r.removed,
                    at: r.at,
                    days: r.days,
                    requested_by: r.requested_by,
                });
            }
            if side_file.is_some_and(|cp| cp.seq == seq) {
                side_link_seen = Some(chain::to_hex(&link));
            }
            prev = link;
            report.records += 1;
            report.head_seq = seq;
            if report.records.is_multiple_of(10_000) {
                progress(report.records);
            }
        }
    }
    progress(report.records);
    report.head_link = chain::to_hex(&prev);
    match chain_state::tagged_row(&mut db, StateTag::Head, key).await? {
        Some((head, authentic)) => {
            if !authentic {
                return Err(ChainFault::ForgedHead { seq: head.seq }.into());
            }
            if head.seq > report.head_seq {
                return Err(ChainFault::Truncated {
                    head_seq: report.head_seq,
                    checkpoint_seq: head.seq,
                }
                .into());
            }
            if head.seq < report.head_seq {
                return Err(ChainFault::BeyondHead {
                    head_seq: report.head_seq,
                    checkpoint_seq: head.seq,
                }
                .into());
            }
            if head.link != prev {
                return Err(ChainFault::CheckpointMismatch { seq: head.seq }.into());
            }
            report.head_checkpoint = true;
        }
        None if report.records > 0 => report.notes.push(
            "no head checkpoint in the database (written by an older version); a cut-off tail is detected only by the checkpoint file".into(),
        ),
        None => {}
    }
    report.audit = audit_log::verify(&mut db, key, &anchors)
        .await?
        .map_err(ChainFault::Audit)?;
    if let Some(cp) = side_file {
        if cp.seq > report.head_seq {
            report.notes.push(format!(
                "the checkpoint file beside the database records seq {}, beyond this database's head {}: if the database was restored from a backup, the file is stale (the server rewrites it at start-up); otherwise records after seq {} were removed and the head checkpoint rolled back",
                cp.seq, report.head_seq, report.head_seq
            ));
        } else if cp.seq > report.base_seq && side_link_seen.as_deref() != Some(cp.link.as_str()) {
            return Err(ChainFault::CheckpointMismatch { seq: cp.seq }.into());
        }
    }
    tx.rollback().await?;
    Ok(report)
}
