//! Retention and erasure: what the log keeps, for how long, and how a data subject is erased,
//! as acts in the log (chained receipts) carried out by the store's single writer.
//!
//! A sweep (`apply`) runs at start-up and hourly, on `audittrail retention apply` and on
//! `POST /api/v1/retention/apply`: it removes the log's prefix recorded before the limit
//! (`AUDITTRAIL_RETENTION_DAYS`; 0 keeps everything) in bounded chunks through the writer,
//! so appends interleave with it, then appends a retention receipt. Projects with a shorter
//! limit of their own have their older records *erased* (not removed), so the shared chain
//! stays whole.

pub mod erasure;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::event::format_time;
use crate::rules::{SessionTotals, TraceTotals};
use crate::store::receipt::{EraseRequest, EraseSelector};
use crate::store::sweep::{self, Carry};
use crate::store::writer::{SweepEnd, WriterHandle};
use crate::store::{Store, StoreError};

/// Records removed per writer transaction: small enough that appends waiting behind a chunk
/// wait milliseconds, not seconds.
pub const CHUNK: i64 = 2_000;
/// Records erased per erasure under a project's limit.
const ERASE_CHUNK: u64 = 2_000;
/// How often the server sweeps.
pub const EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
/// The EU AI Act (Art. 19/26) asks deployers of high-risk systems to keep logs at least six
/// months.
pub const EU_AI_ACT_MIN_DAYS: u32 = 183;

/// One sweep at a time per process (the scheduled one, the API's, the CLI's).
static SWEEPING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the writer refused the sweep: {0}")]
    Writer(String),
}

/// What a sweep removed (or, dry, would remove).
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub dry_run: bool,
    /// The log's limit in days (0: keep everything).
    pub days: u32,
    /// Records recorded before this were (or would be) removed.
    pub cutoff: Option<String>,
    pub base_seq_before: i64,
    pub base_seq: i64,
    pub records_removed: u64,
    pub oldest_kept: Option<String>,
    /// The retention receipt's position (none when nothing was removed, or dry).
    pub receipt_seq: Option<i64>,
    /// Traces and sessions straddling the new base whose totals were carried over.
    pub carried: usize,
    /// Projects with a shorter limit of their own: records erased under it.
    pub projects: Vec<ProjectSweep>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProjectSweep {
    pub project: String,
    pub days: u32,
    pub cutoff: String,
    pub records_erased: u64,
    /// Receipts of the erasures it made.
    pub receipt_seqs: Vec<i64>,
}

/// Folds a span into carried trace totals (the rules' own type, as JSON).
fn carry_trace(state: &mut Value, body: &Value) {
    let mut t: TraceTotals = serde_json::from_value(state.take()).unwrap_or_default();
    t.apply(body);
    *state = serde_json::to_value(&t).unwrap_or(Value::Null);
}

fn carry_session(state: &mut Value, body: &Value) {
    let mut t: SessionTotals = serde_json::from_value(state.take()).unwrap_or_default();
    t.apply(body);
    *state = serde_json::to_value(&t).unwrap_or(Value::Null);
}

pub const CARRY: Carry = Carry {
    trace: carry_trace,
    session: carry_session,
};

/// The cut-off of a limit of `days` at `now`.
pub fn cutoff(days: u32, now: DateTime<Utc>) -> String {
    format_time(&(now - Duration::days(i64::from(days))))
}

/// Runs a sweep (or, `dry_run`, says what it would do). `progress(done, total)` follows the
/// removal.
pub async fn apply(
    store: &Store,
    writer: &WriterHandle,
    days: u32,
    now: DateTime<Utc>,
    dry_run: bool,
    requested_by: &str,
    mut progress: impl FnMut(u64, u64),
) -> Result<SweepReport, RetentionError> {
    let _one = SWEEPING.lock().await;
    let mut report = SweepReport {
        dry_run,
        days,
        cutoff: None,
        base_seq_before: 0,
        base_seq: 0,
        records_removed: 0,
        oldest_kept: None,
        receipt_seq: None,
        carried: 0,
        projects: Vec::new(),
    };
    if days > 0 {
        let cut = cutoff(days, now);
        let plan = {
            let mut conn = store.reader().await?;
            sweep::plan(&mut conn.exec(), &cut).await?
        };
        report.cutoff = Some(cut.clone());
        report.base_seq_before = plan.base_seq;
        report.base_seq = plan.target_seq;
        report.oldest_kept = plan.oldest_kept.clone();
        report.records_removed = plan.records;
        if !dry_run && plan.records > 0 {
            let mut at = plan.base_seq;
            let mut removed = 0;
            progress(0, plan.records);
            while at < plan.target_seq {
                let to = (at + CHUNK).min(plan.target_seq);
                removed += writer
                    .sweep_chunk(at, to, CARRY)
                    .await
                    .map_err(RetentionError::Writer)?;
                at = to;
                progress(removed, plan.records);
            }
            let (seq, receipt) = writer
                .sweep_finish(SweepEnd {
                    requested_by: requested_by.to_owned(),
                    days,
                    cutoff: cut,
                    from_seq: plan.base_seq,
                    base_seq: plan.target_seq,
                    removed,
                })
                .await
                .map_err(RetentionError::Writer)?;
            report.records_removed = removed;
            report.receipt_seq = Some(seq);
            report.carried = receipt.carried.len();
            metrics::counter!("audittrail_retention_removed_total").increment(removed);
        }
    }
    for limit in sweep::project_limits(store).await? {
        if limit.days == 0 || (days > 0 && limit.days >= days) {
            continue;
        }
        let cut = cutoff(limit.days, now);
        let through = sweep::last_before(store, &cut).await?;
        let mut done = ProjectSweep {
            project: limit.project.clone(),
            days: limit.days,
            cutoff: cut,
            records_erased: 0,
            receipt_seqs: Vec::new(),
        };
        let mut after = limit.erased_through;
        loop {
            let seqs = sweep::erasable(store, &limit.project, after, through, ERASE_CHUNK).await?;
            let Some(&last) = seqs.last() else { break };
            if dry_run {
                done.records_erased += seqs.len() as u64;
            } else {
                let erased = writer
                    .erase(EraseRequest {
                        project: limit.project.clone(),
                        selector: EraseSelector::Seqs(seqs),
                        reason: format!(
                            "retention: project limit of {} days (records recorded before {})",
                            limit.days, done.cutoff
                        ),
                        requested_by: requested_by.to_owned(),
                    })
                    .await
                    .map_err(RetentionError::Writer)?;
                done.records_erased += erased.receipt.seqs.len() as u64;
                done.receipt_seqs.push(erased.receipt_seq);
            }
            after = last;
        }
        if !dry_run && through > limit.erased_through {
            sweep::mark_erased_through(store, &limit.project, through).await?;
        }
        report.projects.push(done);
    }
    Ok(report)
}

/// What to warn about at start-up: a limit shorter than the EU AI Act's six months.
pub fn short_retention_warning(days: u32) -> Option<String> {
    (days != 0 && days < EU_AI_ACT_MIN_DAYS).then(|| {
        format!(
            "AUDITTRAIL_RETENTION_DAYS={days} is shorter than six months: the EU AI Act asks deployers of high-risk AI systems to keep automatically generated logs for at least six months (set {EU_AI_ACT_MIN_DAYS} or more, or 0 to keep everything)"
        )
    })
}

/// The server's scheduled sweep: at start-up, then every [`EVERY`], until `stop` resolves.
pub async fn run_scheduled(
    store: Store,
    writer: WriterHandle,
    days: u32,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tick.tick() => {}
        }
        if writer.status.standby() {
            continue; // the server that writes sweeps
        }
        // Stopping mid-sweep is safe: every chunk is its own transaction, and the next sweep
        // finishes the job (its receipt names the base it started from).
        let result = tokio::select! {
            _ = &mut stop => return,
            r = apply(&store, &writer, days, Utc::now(), false, "system", |_, _| {}) => r,
        };
        match result {
            Ok(r) if r.records_removed > 0 || r.projects.iter().any(|p| p.records_erased > 0) => {
                tracing::info!(
                    removed = r.records_removed,
                    base_seq = r.base_seq,
                    carried = r.carried,
                    projects_erased = r.projects.iter().map(|p| p.records_erased).sum::<u64>(),
                    "retention sweep done"
                );
            }
            Ok(_) => tracing::debug!("retention sweep: nothing to remove"),
            Err(e) => {
                tracing::error!(error = %e, "retention sweep failed; it runs again within the hour")
            }
        }
    }
}
