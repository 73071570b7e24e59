//! The single writer: the commit stage of the append path, and every other write to the log.
//!
//! One channel of [`WriteOp`]s feeds one task that owns the only write connection: evaluated
//! batches (the pipeline's evaluation stage made them: duplicates dropped, rules run), erasures,
//! probes and audit cuts, in arrival order. For a batch it links the records into the hash
//! chain and commits them in one transaction — one fsync for many requests — and only then
//! answers each request. Audit entries ride along in the same transactions, and the head
//! checkpoint is updated in each. After each commit the group is published to subscribers
//! ([`WriterHandle::subscribe`]: alerts, the live feed); the writer never calls them.
//!
//! On Postgres the writer holds an advisory lock on its connection: a second server waits as a
//! standby (appends answer [`AppendError::Standby`]) and takes over when the first goes away.
//!
//! Overlap with the evaluation stage stays exact through [`InFlight`]: ids of batches not yet
//! committed count as stored, and a failed commit bumps the generation so that batches
//! evaluated against it are refused ([`AppendError::Retry`], never a false acknowledgement).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_query::{Expr, ExprTrait, Order, Query};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use super::audit_log;
use super::chain::{self, ChainKey, Hash};
use super::chain_state::{self, Head};
use super::checkpoint::{Checkpoint, CheckpointFile};
use super::db::{Backend, Conn, Exec, Raw, storable};
use super::erase;
use super::projection::{TraceBatch, TraceSummaryRow};
use super::receipt::{EraseRequest, EraseSelector, ErasureReceipt, RetentionReceipt};
use super::record::{OutcomeRecord, PreparedEvent};
use super::schema::{Events, HealthProbe, RecordType, RedactedValues};
use super::sweep::{self, Carry};
use super::violations::{self, ViolationRow};
use super::{Store, StoreError};
use crate::auth::audit::AuditEntry;
use crate::event::format_time;
use crate::rules::RuleOutcome;

#[derive(Clone)]
pub struct WriterConfig {
    pub key: ChainKey,
    /// The checkpoint file beside an SQLite database (an extra check; none on Postgres).
    pub checkpoint: Option<CheckpointFile>,
    /// The SQLite `-wal` file, watched to keep it bounded.
    pub wal_path: Option<PathBuf>,
    /// Cluster mode, on a worker: the JetStream stream whose position ([`AppendRequest::position`])
    /// each commit records in its transaction.
    pub stream: Option<String>,
    /// Cluster mode, on an ingest node: never take the writer lock (a permanent standby whose
    /// committed-group channel the live feed from NATS fills).
    pub passive: bool,
}

/// WAL size past which the writer restarts the log.
const WAL_RESTART_BYTES: u64 = 64 << 20;
/// How often the commit stage anchors new audit entries in the event log.
const AUDIT_ANCHOR_EVERY: Duration = Duration::from_secs(60);
/// Write operations waiting for the commit stage (evaluated batches included).
const OPS_QUEUE: usize = 2;
/// Committed groups a slow subscriber may fall behind before it loses some.
const PUBLISH_QUEUE: usize = 1024;
/// The Postgres advisory lock key of the single writer.
const WRITER_LOCK: i64 = 7_243_300;

/// What one append request produced.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AppendOutcome {
    /// One per submitted event, in order (duplicates included: an SDK retry gets the same ids).
    pub event_ids: Vec<String>,
    /// Events already in the log (same project and event id), not stored again.
    pub duplicates: usize,
    /// Rule outcomes the new events caused, in log order.
    pub violations: Vec<ViolationRow>,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("the write queue is full")]
    Busy,
    /// An earlier batch failed to commit after this one was evaluated against it; nothing of
    /// this one was stored and sending it again is safe.
    #[error("an earlier write failed; nothing of this request was stored, retry it")]
    Retry,
    /// Another server holds the writer lock; this one is a standby.
    #[error("this server is a standby: another one holds the writer lock")]
    Standby,
    #[error("the writer has stopped")]
    Closed,
    #[error("the store failed to commit: {0}")]
    Store(String),
}

/// Events to append, and where to answer.
pub struct AppendRequest {
    pub events: Vec<PreparedEvent>,
    /// Cluster mode: the stream message these events came in (recorded with them, see
    /// [`super::stream_progress`]).
    pub position: Option<Position>,
    pub reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
}

/// Where a worker's request sits in the stream: its message's sequence, and the sequence of
/// the message before it that the worker sent (or the stored position it started from). A
/// commit whose first request does not continue the stored position is refused, so a message
/// after a failed one can never be committed (and acknowledged) ahead of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub after: u64,
    pub seq: u64,
}

/// One event of a batch that is to be stored, with its rule outcomes.
pub struct Accepted {
    pub request: usize,
    pub event: usize,
    pub results: Vec<RuleOutcome>,
}

/// A batch the evaluation stage has finished: duplicates dropped, rules evaluated.
pub struct EvaluatedBatch {
    /// The [`InFlight`] generation it was evaluated under.
    pub generation: u64,
    pub requests: Vec<AppendRequest>,
    /// One per request; event ids and duplicates filled in, violations added at commit.
    pub outcomes: Vec<AppendOutcome>,
    /// The events to store, in log order, with their rule outcomes.
    pub accepted: Vec<Accepted>,
    /// Keys this batch holds in [`InFlight`].
    pub claimed: Vec<String>,
    pub events: usize,
}

/// A committed erasure: its receipt and the receipt's position in the log.
#[derive(Debug, Clone)]
pub struct Erased {
    pub receipt_seq: i64,
    pub receipt: ErasureReceipt,
}

/// Write operations, handled in arrival order by the commit stage.
pub enum WriteOp {
    Append(EvaluatedBatch),
    /// A real write and read-back (deep health check).
    Probe(oneshot::Sender<Result<(), String>>),
    /// Clears the bodies of the selected records and appends an erasure receipt.
    Erase(EraseRequest, oneshot::Sender<Result<Erased, String>>),
    /// Anchors the audit log's chain head in the event log now (a consistent cut).
    AuditCut(oneshot::Sender<Result<i64, String>>),
    /// Removes the log's prefix up to `to` (one bounded chunk of a retention sweep).
    SweepChunk {
        from: i64,
        to: i64,
        carry: Carry,
        reply: oneshot::Sender<Result<u64, String>>,
    },
    /// Ends a retention sweep: appends its receipt.
    SweepFinish(
        SweepEnd,
        oneshot::Sender<Result<(i64, RetentionReceipt), String>>,
    ),
}

/// What a finished sweep did, for its receipt.
#[derive(Debug, Clone)]
pub struct SweepEnd {
    pub requested_by: String,
    pub days: u32,
    pub cutoff: String,
    pub from_seq: i64,
    pub base_seq: i64,
    pub removed: u64,
}

/// One record of a committed group, as subscribers see it (never more than the stored,
/// redacted body holds).
#[derive(Debug, Clone, Serialize)]
pub struct CommittedRecord {
    pub seq: i64,
    pub project: String,
    pub record_type: &'static str,
    pub trace_id: String,
    /// The span's summary fields (kind, name, agent, status, times, usage) or the violation.
    pub summary: Value,
}

/// A group of records committed in one transaction.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    pub records: Vec<CommittedRecord>,
    /// Violations and rule errors, with their project (alerts read these).
    pub violations: Vec<(String, ViolationRow)>,
}

/// State the evaluation stage and the commit stage share about batches in flight.
pub struct InFlight {
    /// Bumped by the commit stage when a commit fails. A batch evaluated under an older
    /// generation may have counted the rolled-back events in its totals or taken one of their
    /// ids for a duplicate, so the commit stage refuses it (retryable; never acknowledged).
    generation: AtomicU64,
    /// Client-chosen ids (`project\x1f event_id`) of batches evaluated but not yet committed,
    /// with the generation that claimed them.
    ids: Mutex<HashMap<String, u64>>,
    /// Events handed to the commit stage and not yet committed or refused.
    events: watch::Sender<usize>,
}

impl InFlight {
    fn new() -> Self {
        InFlight {
            generation: AtomicU64::new(0),
            ids: Mutex::new(HashMap::new()),
            events: watch::channel(0).0,
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The key under which a client-chosen id is claimed.
    pub fn id_key(project: &str, event_id: &str) -> String {
        format!("{project}\u{1f}{event_id}")
    }

    /// Whether a batch of `generation` still in flight claims this id.
    pub fn holds(&self, key: &str, generation: u64) -> bool {
        self.ids.lock().unwrap_or_else(|p| p.into_inner()).get(key) == Some(&generation)
    }

    /// Claims ids for a batch about to be handed to the commit stage, and counts its events.
    pub fn claim(&self, keys: &[String], generation: u64, events: usize) {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            ids.insert(key.clone(), generation);
        }
        drop(ids);
        self.events.send_modify(|n| *n += events);
    }

    /// Waits until at most `limit` events are in flight (or `closed` resolves).
    pub async fn wait_at_most(&self, limit: usize, closed: impl std::future::Future<Output = ()>) {
        let mut in_flight = self.events.subscribe();
        tokio::select! {
            _ = in_flight.wait_for(|n| *n <= limit) => {}
            _ = closed => {}
        }
    }

    /// Takes a finished (committed or refused) batch out of the in-flight state.
    fn release(&self, batch: &EvaluatedBatch) {
        if !batch.claimed.is_empty() {
            let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
            for key in &batch.claimed {
                // A later generation may have claimed the same id again; that claim stays.
                if ids.get(key) == Some(&batch.generation) {
                    ids.remove(key);
                }
            }
        }
        self.events
            .send_modify(|n| *n = n.saturating_sub(batch.events));
    }
}

/// Shared view of the writer's state for health checks and metrics.
#[derive(Debug)]
pub struct WriterStatus {
    healthy: AtomicBool,
    standby: AtomicBool,
    head_seq: AtomicI64,
}

impl WriterStatus {
    /// False after a failed commit, until the next successful one.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// True while another server holds the writer lock (Postgres).
    pub fn standby(&self) -> bool {
        self.standby.load(Ordering::Relaxed)
    }

    pub fn head_seq(&self) -> i64 {
        self.head_seq.load(Ordering::Relaxed)
    }
}

/// Cheap to clone; held by the evaluation stage and by every route that writes.
#[derive(Clone)]
pub struct WriterHandle {
    ops: mpsc::Sender<WriteOp>,
    published: broadcast::Sender<Arc<Committed>>,
    pub status: Arc<WriterStatus>,
    pub in_flight: Arc<InFlight>,
}

impl WriterHandle {
    /// Hands an evaluated batch to the commit stage; waits while the stage is busy (the
    /// evaluation stage's only back-pressure). `Err` gives it back if the writer has stopped.
    pub async fn submit(&self, batch: EvaluatedBatch) -> Result<(), EvaluatedBatch> {
        self.ops
            .send(WriteOp::Append(batch))
            .await
            .map_err(|e| match e.0 {
                WriteOp::Append(b) => b,
                _ => unreachable!("an append was sent"),
            })
    }

    /// Resolves when the commit stage has stopped.
    pub async fn closed(&self) {
        self.ops.closed().await
    }

    /// Committed groups from now on (alerts, the live feed).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.published.subscribe()
    }

    /// Cluster mode, on an ingest node: hands on a group the worker committed, to this node's
    /// subscribers (the live feed, the overview counters), as if committed here.
    pub fn relay(&self, group: Committed) {
        if let Some(last) = group.records.iter().map(|r| r.seq).max() {
            self.status.head_seq.fetch_max(last, Ordering::Relaxed);
        }
        let _ = self.published.send(Arc::new(group));
    }

    /// A real write and read-back through the writer (deep health check).
    pub async fn probe(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.op(WriteOp::Probe(tx)).await?;
        rx.await.map_err(|_| "the writer stopped".to_owned())?
    }

    /// Erases the bodies of the records `request` selects and appends a chained receipt;
    /// resolves once both are committed.
    pub async fn erase(&self, request: EraseRequest) -> Result<Erased, String> {
        let (tx, rx) = oneshot::channel();
        self.op(WriteOp::Erase(request, tx)).await?;
        rx.await.map_err(|_| "the writer stopped".to_owned())?
    }

    /// Removes the log's prefix up to `to` in one transaction; returns the records removed.
    pub async fn sweep_chunk(&self, from: i64, to: i64, carry: Carry) -> Result<u64, String> {
        let (reply, rx) = oneshot::channel();
        self.op(WriteOp::SweepChunk {
            from,
            to,
            carry,
            reply,
        })
        .await?;
        rx.await.map_err(|_| "the writer stopped".to_owned())?
    }

    /// Appends a sweep's receipt; returns its position and body.
    pub async fn sweep_finish(&self, end: SweepEnd) -> Result<(i64, RetentionReceipt), String> {
        let (tx, rx) = oneshot::channel();
        self.op(WriteOp::SweepFinish(end, tx)).await?;
        rx.await.map_err(|_| "the writer stopped".to_owned())?
    }

    /// Anchors the audit log in the event log now; returns the audit entry id covered.
    pub async fn audit_cut(&self) -> Result<i64, String> {
        let (tx, rx) = oneshot::channel();
        self.op(WriteOp::AuditCut(tx)).await?;
        rx.await.map_err(|_| "the writer stopped".to_owned())?
    }

    async fn op(&self, op: WriteOp) -> Result<(), String> {
        self.ops
            .send(op)
            .await
            .map_err(|_| "the writer has stopped".to_owned())
    }
}

/// The commit stage.
struct Committer {
    store: Store,
    /// `None` while a standby (Postgres) or after the lock connection broke.
    conn: Option<Conn>,
    /// Audit entries drained for the current transaction.
    pending_audit: Vec<AuditEntry>,
    head: Head,
    cfg: WriterConfig,
    status: Arc<WriterStatus>,
    last_checkpoint: Instant,
    in_flight: Arc<InFlight>,
    published: broadcast::Sender<Arc<Committed>>,
    /// The audit entry id the event log's last audit checkpoint covers.
    anchored_audit_id: i64,
    /// The Postgres `VACUUM` after the last erasure, awaited before the writer stops (so its
    /// connection is closed when the server has stopped).
    vacuum: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the commit stage. It ends, after flushing, when every [`WriterHandle`] and the audit
/// queue's senders are dropped; the returned handle joins it.
pub async fn spawn(
    store: &Store,
    cfg: WriterConfig,
    audit_rx: mpsc::Receiver<AuditEntry>,
) -> Result<(WriterHandle, tokio::task::JoinHandle<()>), StoreError> {
    let status = Arc::new(WriterStatus {
        healthy: AtomicBool::new(true),
        standby: AtomicBool::new(false),
        head_seq: AtomicI64::new(0),
    });
    let in_flight = Arc::new(InFlight::new());
    let (published, _) = broadcast::channel(PUBLISH_QUEUE);
    let mut committer = Committer {
        store: store.clone(),
        conn: None,
        pending_audit: Vec::new(),
        head: Head {
            seq: 0,
            link: chain::GENESIS,
        },
        cfg,
        status: status.clone(),
        last_checkpoint: Instant::now(),
        in_flight: in_flight.clone(),
        published: published.clone(),
        anchored_audit_id: 0,
        vacuum: None,
    };
    // On SQLite the writer starts at once; on Postgres it may have to wait for the lock.
    committer.try_become_writer().await?;
    let (ops, ops_rx) = mpsc::channel(OPS_QUEUE);
    let task = tokio::spawn(committer.run(ops_rx, audit_rx));
    Ok((
        WriterHandle {
            ops,
            published,
            status,
            in_flight,
        },
        task,
    ))
}

impl Committer {
    /// Opens the write connection, takes the writer lock (Postgres) and loads the head.
    /// Stays a standby, without error, when another server holds the lock.
    async fn try_become_writer(&mut self) -> Result<(), StoreError> {
        if self.cfg.passive {
            self.status.standby.store(true, Ordering::Relaxed);
            // The live feed starts after the log's head: read it once (relayed groups move it).
            if self.status.head_seq() == 0 {
                let mut conn = self.store.reader().await?;
                let head = chain_state::load_head(&mut conn.exec(), &self.cfg.key).await?;
                self.status.head_seq.fetch_max(head.seq, Ordering::Relaxed);
            }
            return Ok(());
        }
        let mut conn = self.store.write_connection().await?;
        if self.store.backend() == Backend::Postgres {
            let row = conn
                .exec()
                .fetch_optional(&Raw::new(
                    "SELECT pg_try_advisory_lock(?) AS locked",
                    [WRITER_LOCK.into()],
                ))
                .await?;
            let locked = row.map(|r| r.flag("locked")).transpose()?.unwrap_or(false);
            if !locked {
                if !self.status.standby.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        database = %self.store.describe(),
                        "standby: another server holds the writer lock; serving reads and waiting to take over"
                    );
                }
                conn.close().await;
                return Ok(());
            }
            if self.status.standby.swap(false, Ordering::Relaxed) {
                tracing::warn!("took over the writer lock: this server now writes the log");
            }
            // Keepalives from the server's side on the lock's session: if this host vanishes
            // (power, network), Postgres ends the session within ~25 s, releasing the lock for
            // a standby (by default it may wait for hours). Best effort: a pooler may refuse.
            if let Err(e) = conn
                .exec()
                .execute_plain(
                    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3",
                )
                .await
            {
                tracing::warn!(error = %e, "could not set TCP keepalives on the writer's session; a vanished host may hold the writer lock until Postgres notices");
            }
            // Whatever the evaluation stage holds was computed while another server wrote.
            self.in_flight.generation.fetch_add(1, Ordering::SeqCst);
        }
        let mut db = conn.exec();
        let head = chain_state::load_head(&mut db, &self.cfg.key).await?;
        self.anchored_audit_id = last_audit_anchor(&mut db).await?;
        if let Some(file) = &self.cfg.checkpoint
            && let Ok(Some(cp)) = file.read()
            && cp.seq > head.seq
        {
            tracing::warn!(
                checkpoint_file_seq = cp.seq,
                log_head_seq = head.seq,
                "the checkpoint file is ahead of the database (restored from a backup?); it is rewritten now. If no backup was restored, run `audittrail verify`"
            );
        }
        self.head = head;
        self.status.head_seq.store(head.seq, Ordering::Relaxed);
        self.conn = Some(conn);
        self.write_checkpoint();
        Ok(())
    }

    /// The write connection, if this server is the writer now.
    async fn writer_conn(&mut self) -> Option<&mut Conn> {
        if self.conn.is_none()
            && let Err(e) = self.try_become_writer().await
        {
            tracing::error!(error = %e, "cannot open the write connection; will retry");
        }
        self.conn.as_mut()
    }

    async fn run(
        mut self,
        mut ops: mpsc::Receiver<WriteOp>,
        mut audit: mpsc::Receiver<AuditEntry>,
    ) {
        let mut audit_open = true;
        let mut anchor_tick = tokio::time::interval(AUDIT_ANCHOR_EVERY);
        anchor_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut standby_tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                op = ops.recv() => match op {
                    Some(op) => self.handle(op, &mut audit).await,
                    None => break,
                },
                entry = audit.recv(), if audit_open => {
                    match entry {
                        Some(entry) => {
                            let mut entries = vec![entry];
                            while let Ok(e) = audit.try_recv() {
                                entries.push(e);
                            }
                            if let Err(err) = self.write_audit(&entries).await {
                                tracing::error!(error = %err, lost = entries.len(), "could not store audit entries (they are in the log stream)");
                            }
                        }
                        None => audit_open = false,
                    }
                }
                _ = anchor_tick.tick() => {
                    if let Err(err) = self.anchor_audit(false).await {
                        tracing::error!(error = %err, "could not anchor the audit log in the event log; will retry");
                    }
                }
                _ = standby_tick.tick(), if self.conn.is_none() => {
                    let _ = self.writer_conn().await;
                }
            }
        }
        // Audit entries still queued, then one last anchor covering them.
        let mut entries = Vec::new();
        while let Ok(e) = audit.try_recv() {
            entries.push(e);
        }
        if !entries.is_empty()
            && let Err(err) = self.write_audit(&entries).await
        {
            tracing::error!(error = %err, lost = entries.len(), "could not store audit entries at shutdown (they are in the log stream)");
        }
        if let Err(err) = self.anchor_audit(false).await {
            tracing::error!(error = %err, "could not anchor the audit log at shutdown");
        }
        self.write_checkpoint();
        if let Some(vacuum) = self.vacuum.take() {
            let _ = vacuum.await;
        }
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
        tracing::info!(head_seq = self.head.seq, "writer flushed and stopped");
    }

    async fn handle(&mut self, op: WriteOp, audit: &mut mpsc::Receiver<AuditEntry>) {
        match op {
            WriteOp::Append(batch) => self.append(batch, audit).await,
            WriteOp::Probe(reply) => {
                let _ = reply.send(self.probe().await.map_err(|e| e.to_string()));
            }
            WriteOp::Erase(request, reply) => {
                let result = self.erase(request).await.map_err(|e| {
                    metrics::counter!("audittrail_store_errors_total").increment(1);
                    tracing::error!(error = %e, "erasure failed; nothing was erased");
                    e.to_string()
                });
                let _ = reply.send(result);
            }
            WriteOp::AuditCut(reply) => {
                let _ = reply.send(self.anchor_audit(true).await.map_err(|e| e.to_string()));
            }
            WriteOp::SweepChunk {
                from,
                to,
                carry,
                reply,
            } => {
                let result = self.sweep_chunk(from, to, &carry).await.map_err(|e| {
                    metrics::counter!("audittrail_store_errors_total").increment(1);
                    tracing::error!(error = %e, "a retention sweep chunk failed; nothing of it was removed");
                    e.to_string()
                });
                let _ = reply.send(result);
            }
            WriteOp::SweepFinish(end, reply) => {
                let result = self.sweep_finish(end).await.map_err(|e| {
                    metrics::counter!("audittrail_store_errors_total").increment(1);
                    tracing::error!(error = %e, "could not append a retention receipt");
                    e.to_string()
                });
                let _ = reply.send(result);
            }
        }
    }

    async fn append(&mut self, mut batch: EvaluatedBatch, audit: &mut mpsc::Receiver<AuditEntry>) {
        if batch.generation != self.in_flight.generation() {
            metrics::counter!("audittrail_writer_refused_total").increment(1);
            self.refuse(batch, || AppendError::Retry);
            return;
        }
        if self.writer_conn().await.is_none() {
            // The batch's events are in the evaluation stage's totals: a new generation makes
            // it rebuild them from the log (which another server is writing).
            self.in_flight.generation.fetch_add(1, Ordering::SeqCst);
            self.refuse(batch, || AppendError::Standby);
            return;
        }
        // Entries a failed commit carried are still here (put back below).
        while let Ok(e) = audit.try_recv() {
            self.pending_audit.push(e);
        }
        let carried = self.pending_audit.clone();
        let started = Instant::now();
        let result = self.commit(&mut batch).await;
        metrics::histogram!("audittrail_writer_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok((outcomes, committed)) => {
                self.in_flight.release(&batch);
                self.status.healthy.store(true, Ordering::Relaxed);
                for (req, outcome) in batch.requests.into_iter().zip(outcomes) {
                    let _ = req.reply.send(Ok(outcome));
                }
                if let Some(group) = committed {
                    let _ = self.published.send(Arc::new(group));
                }
                if self.last_checkpoint.elapsed() >= Duration::from_millis(250) {
                    self.write_checkpoint();
                    self.bound_wal().await;
                }
            }
            Err(err) => {
                // The audit entries it carried ride along with the next transaction instead.
                self.pending_audit = carried;
                // Batches evaluated after this one counted it in their totals: refuse them.
                self.in_flight.generation.fetch_add(1, Ordering::SeqCst);
                if let StoreError::OutOfOrder { .. } = err {
                    // Not a store failure: a batch behind one that was not stored, refused
                    // before anything was written; the worker starts again from the position.
                    tracing::warn!(error = %err, requests = batch.requests.len(), "batch refused: it does not continue the stored stream position");
                    self.refuse(batch, || AppendError::Retry);
                    return;
                }
                self.status.healthy.store(false, Ordering::Relaxed);
                metrics::counter!("audittrail_store_errors_total").increment(1);
                tracing::error!(error = %err, requests = batch.requests.len(), events = batch.events, "append transaction failed; nothing of it was stored");
                self.after_error().await;
                let cause = err.to_string();
                self.refuse(batch, || AppendError::Store(cause.clone()));
            }
        }
    }

    /// Answers every request of a batch that will not be stored.
    fn refuse(&self, batch: EvaluatedBatch, why: impl Fn() -> AppendError) {
        self.in_flight.release(&batch);
        for req in batch.requests {
            let _ = req.reply.send(Err(why()));
        }
    }

    /// After a failed transaction on Postgres the lock's connection may be gone: check it,
    /// and if it is, give the lock up (another server may take it) and reconnect later.
    async fn after_error(&mut self) {
        if self.store.backend() != Backend::Postgres {
            return;
        }
        let alive = match self.conn.as_mut() {
            Some(conn) => conn.exec().execute(&Raw::new("SELECT 1", [])).await.is_ok(),
            None => false,
        };
        if !alive {
            tracing::error!(
                "the writer's connection to Postgres broke; reconnecting (the writer lock is released)"
            );
            self.conn = None;
        }
    }

    /// Under continuous writes SQLite's background checkpointer never catches up with the
    /// head, so the WAL would never start over. Past the limit the writer finishes the
    /// checkpoint itself between commits (PASSIVE: it never waits), so its next transaction
    /// restarts the WAL.
    async fn bound_wal(&mut self) {
        let Some(wal) = &self.cfg.wal_path else {
            return;
        };
        let wal_len = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
        if wal_len <= WAL_RESTART_BYTES {
            return;
        }
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if let Err(e) = conn
            .exec()
            .execute_plain("PRAGMA wal_checkpoint(PASSIVE)")
            .await
        {
            tracing::warn!(error = %e, "WAL restart checkpoint failed; will retry");
        }
    }

    async fn write_audit(&mut self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let key = self.cfg.key.clone();
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            // A standby stores its audit entries too; they join the chain under its lock.
            None => return audit_log::append_now(&self.store, &key, entries).await,
        };
        let mut tx = conn.begin_write().await?;
        audit_log::append(&mut tx.exec(), &key, entries).await?;
        tx.commit().await
    }

    /// Writes and reads back the probe row: proves the store accepts writes right now.
    async fn probe(&mut self) -> Result<(), StoreError> {
        let Some(conn) = self.writer_conn().await else {
            return Err(StoreError::Connect(
                "standby: another server holds the writer lock".into(),
            ));
        };
        let now = format_time(&chrono::Utc::now());
        let mut tx = conn.begin_write().await?;
        tx.exec()
            .execute(
                &Query::insert()
                    .into_table(HealthProbe::Table)
                    .columns([HealthProbe::Id, HealthProbe::At])
                    .values_panic([1i64.into(), now.clone().into()])
                    .on_conflict(
                        sea_query::OnConflict::column(HealthProbe::Id)
                            .update_column(HealthProbe::At)
                            .to_owned(),
                    )
                    .to_owned(),
            )
            .await?;
        tx.commit().await?;
        let back = conn
            .exec()
            .fetch_optional(
                &Query::select()
                    .column(HealthProbe::At)
                    .from(HealthProbe::Table)
                    .and_where(Expr::col(HealthProbe::Id).eq(1))
                    .to_owned(),
            )
            .await?
            .map(|r| r.text("at"))
            .transpose()?;
        if back.as_deref() != Some(now.as_str()) {
            return Err(StoreError::Corrupt {
                seq: 0,
                reason: "health probe read back a different value".into(),
            });
        }
        Ok(())
    }

    fn write_checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        let Some(file) = &self.cfg.checkpoint else {
            return;
        };
        let cp = Checkpoint {
            seq: self.head.seq,
            link: chain::to_hex(&self.head.link),
        };
        if let Err(err) = file.write(&cp) {
            tracing::warn!(error = %err, "could not write the chain checkpoint");
        }
    }

    /// Records the audit chain's head in the event log if it moved since the last checkpoint
    /// (or always, when `force`d: a consistent cut). Returns the audit entry id covered.
    async fn anchor_audit(&mut self, force: bool) -> Result<i64, StoreError> {
        let (key, anchored, mut head) = (self.cfg.key.clone(), self.anchored_audit_id, self.head);
        let Some(conn) = self.conn.as_mut() else {
            return Ok(anchored);
        };
        let mut tx = conn.begin_write().await?;
        let mut db = tx.exec();
        audit_log::lock(&mut db).await?;
        let audit_head = audit_log::head(&mut db).await?;
        if audit_head.id == anchored && !force {
            tx.rollback().await?;
            return Ok(audit_head.id);
        }
        let anchor = audit_log::AuditAnchor {
            audit_id: audit_head.id,
            audit_link: chain::to_hex(&audit_head.link),
            entries: audit_head.id - anchored,
        };
        let record = PreparedEvent::own(
            RecordType::AuditCheckpoint,
            super::schema::SYSTEM_PROJECT,
            serde_json::to_value(&anchor).expect("an anchor always serialises"),
            &format_time(&chrono::Utc::now()),
        );
        append_own(&mut db, &key, &mut head, &record).await?;
        chain_state::write_head(&mut db, &key, &head).await?;
        tx.commit().await?;
        self.head = head;
        self.status.head_seq.store(head.seq, Ordering::Relaxed);
        self.anchored_audit_id = audit_head.id;
        Ok(audit_head.id)
    }

    /// Clears the bodies of the selected records and appends the receipt, in one transaction.
    async fn erase(&mut self, request: EraseRequest) -> Result<Erased, StoreError> {
        let (key, mut head) = (self.cfg.key.clone(), self.head);
        let Some(conn) = self.writer_conn().await else {
            return Err(StoreError::Connect(
                "standby: another server holds the writer lock".into(),
            ));
        };
        let mut tx = conn.begin_write().await?;
        let mut db = tx.exec();
        let selected = erase::select(&mut db, &request, &key).await?;
        let seqs = erase::clear(&mut db, &key, &selected).await?;
        let receipt = ErasureReceipt {
            receipt: "erasure".into(),
            project: request.project.clone(),
            requested_by: request.requested_by.clone(),
            at: format_time(&chrono::Utc::now()),
            reason: storable(&request.reason).into_owned(),
            selector_field: request.selector.field().into(),
            selector_pseudonym: match &request.selector {
                EraseSelector::TraceId(v)
                | EraseSelector::SessionId(v)
                | EraseSelector::Agent(v) => {
                    Some(key.selector_pseudonym(request.selector.field(), v))
                }
                EraseSelector::Value(v) => Some(key.value_pseudonym(v)),
                EraseSelector::Seqs(_) => None,
            },
            seqs,
        };
        let record = PreparedEvent::own(
            RecordType::Erasure,
            &request.project,
            serde_json::to_value(&receipt).expect("a receipt always serialises"),
            &receipt.at,
        );
        append_own(&mut db, &key, &mut head, &record).await?;
        chain_state::write_head(&mut db, &key, &head).await?;
        tx.commit().await?;
        self.head = head;
        self.status.head_seq.store(head.seq, Ordering::Relaxed);
        self.scrub().await;
        tracing::info!(project = %request.project, selector = request.selector.field(), records = receipt.seqs.len(), receipt_seq = head.seq, "records erased");
        Ok(Erased {
            receipt_seq: head.seq,
            receipt,
        })
    }

    async fn sweep_chunk(&mut self, from: i64, to: i64, carry: &Carry) -> Result<u64, StoreError> {
        let key = self.cfg.key.clone();
        let Some(conn) = self.writer_conn().await else {
            return Err(StoreError::Connect(
                "standby: another server holds the writer lock".into(),
            ));
        };
        let mut tx = conn.begin_write().await?;
        let removed = sweep::chunk(&mut tx.exec(), &key, from, to, carry).await?;
        tx.commit().await?;
        self.bound_wal().await;
        Ok(removed)
    }

    async fn sweep_finish(&mut self, end: SweepEnd) -> Result<(i64, RetentionReceipt), StoreError> {
        let (key, mut head) = (self.cfg.key.clone(), self.head);
        let Some(conn) = self.writer_conn().await else {
            return Err(StoreError::Connect(
                "standby: another server holds the writer lock".into(),
            ));
        };
        let mut tx = conn.begin_write().await?;
        let mut db = tx.exec();
        let carried = sweep::finish(&mut db, end.base_seq).await?;
        let receipt = RetentionReceipt {
            receipt: "retention".into(),
            requested_by: end.requested_by,
            at: format_time(&chrono::Utc::now()),
            days: end.days,
            cutoff: end.cutoff,
            from_seq: end.from_seq,
            base_seq: end.base_seq,
            removed: end.removed,
            carried,
        };
        let record = PreparedEvent::own(
            RecordType::Retention,
            super::schema::SYSTEM_PROJECT,
            serde_json::to_value(&receipt).expect("a receipt always serialises"),
            &receipt.at,
        );
        append_own(&mut db, &key, &mut head, &record).await?;
        chain_state::write_head(&mut db, &key, &head).await?;
        tx.commit().await?;
        self.head = head;
        self.status.head_seq.store(head.seq, Ordering::Relaxed);
        self.scrub().await;
        tracing::info!(
            base_seq = receipt.base_seq,
            removed = receipt.removed,
            carried = receipt.carried.len(),
            receipt_seq = head.seq,
            "retention sweep recorded"
        );
        Ok((head.seq, receipt))
    }

    /// After an erasure, removes what the database keeps of the old bytes outside the live
    /// rows: SQLite (run with `secure_delete`, so freed cells are zeroed) copies the WAL into
    /// the file and truncates it; Postgres vacuums the tables in the background so the dead
    /// row versions are pruned. Failures are logged; the erasure itself is committed.
    async fn scrub(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        match self.store.backend() {
            Backend::Sqlite => {
                if let Err(e) = conn
                    .exec()
                    .execute_plain("PRAGMA wal_checkpoint(TRUNCATE)")
                    .await
                {
                    tracing::warn!(error = %e, "after an erasure: the WAL could not be truncated now (it is at the next checkpoint)");
                }
            }
            Backend::Postgres => {
                // One at a time: a VACUUM still running covers the rows erased since it began
                // only partly, so the next one waits for it.
                let previous = self.vacuum.take();
                let store = self.store.clone();
                self.vacuum = Some(tokio::spawn(async move {
                    if let Some(previous) = previous {
                        let _ = previous.await;
                    }
                    let result = async {
                        let mut conn = store.write_connection().await?;
                        let done = conn
                            .exec()
                            .execute_plain("VACUUM events, traces, violations, redacted_values")
                            .await;
                        conn.close().await;
                        done
                    }
                    .await;
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "after an erasure: VACUUM failed; autovacuum will prune the old row versions later");
                    }
                }));
            }
        }
    }

    /// Positions, links and outcome records of a batch in log order; then one transaction.
    /// Takes the batch's outcomes (filled in with violations); on an error they are dropped,
    /// since every request then gets the error instead.
    async fn commit(
        &mut self,
        batch: &mut EvaluatedBatch,
    ) -> Result<(Vec<AppendOutcome>, Option<Committed>), StoreError> {
        let key = self.cfg.key.clone();
        let mut head = self.head;
        let mut rows: Vec<(Cow<'_, PreparedEvent>, i64, Hash)> = Vec::new();
        let mut traces = TraceBatch::default();
        let mut violation_rows = Vec::new();
        let mut outcomes = std::mem::take(&mut batch.outcomes);
        let publish = self.published.receiver_count() > 0;
        let mut committed = Committed::default();
        for accepted in &batch.accepted {
            let ev = &batch.requests[accepted.request].events[accepted.event];
            let outcome = &mut outcomes[accepted.request];
            head.seq += 1;
            head.link = key.link(&head.link, head.seq, &ev.digest);
            if let Some((trace_id, facts)) = &ev.facts {
                traces.add(
                    &ev.project,
                    trace_id.clone(),
                    TraceSummaryRow {
                        last_seq: head.seq,
                        ..facts.clone()
                    },
                );
            }
            if publish {
                committed.records.push(CommittedRecord {
                    seq: head.seq,
                    project: ev.project.clone(),
                    record_type: ev.record_type.as_str(),
                    trace_id: ev.trace_id.clone(),
                    summary: super::record::span_summary(&ev.body),
                });
            }
            let cause_seq = head.seq;
            rows.push((Cow::Borrowed(ev), head.seq, head.link));
            for result in &accepted.results {
                match result {
                    RuleOutcome::RuleError { rule_id, message } => {
                        metrics::counter!("audittrail_rule_errors_total", "rule" => rule_id.clone())
                            .increment(1);
                        tracing::warn!(rule = %rule_id, event_seq = cause_seq, error = %message, "rule failed on an event; recorded as rule_error");
                    }
                    RuleOutcome::Violation { rule_id, .. } => {
                        metrics::counter!("audittrail_violations_total", "rule" => rule_id.clone())
                            .increment(1);
                    }
                }
                let record = PreparedEvent::outcome(
                    OutcomeRecord {
                        cause: ev,
                        cause_seq,
                        outcome: result,
                    },
                    key.personal(),
                );
                head.seq += 1;
                head.link = key.link(&head.link, head.seq, &record.digest);
                if let Some(row) = violations::row_from_body(head.seq, &record.body) {
                    if publish {
                        committed.records.push(CommittedRecord {
                            seq: head.seq,
                            project: record.project.clone(),
                            record_type: record.record_type.as_str(),
                            trace_id: record.trace_id.clone(),
                            summary: serde_json::to_value(&row).unwrap_or(Value::Null),
                        });
                    }
                    outcome.violations.push(row.clone());
                    violation_rows.push((record.project.clone(), row));
                }
                rows.push((Cow::Owned(record), head.seq, head.link));
            }
        }
        let pending_audit = std::mem::take(&mut self.pending_audit);
        let conn = self
            .conn
            .as_mut()
            .ok_or_else(|| StoreError::Connect("the writer lost its connection".into()))?;
        let mut tx = conn.begin_write().await?;
        let mut db = tx.exec();
        // Cluster mode: first, whether this batch continues the stored stream position.
        if let Some(stream) = &self.cfg.stream {
            let mut positions = batch.requests.iter().filter_map(|r| r.position);
            if let Some(first) = positions.next() {
                let stored = super::stream_progress::load(&mut db, stream).await?;
                let mut last = first;
                if stored != first.after {
                    return Err(StoreError::OutOfOrder {
                        stored,
                        after: first.after,
                    });
                }
                for p in positions {
                    if p.after != last.seq {
                        return Err(StoreError::OutOfOrder {
                            stored: last.seq,
                            after: p.after,
                        });
                    }
                    last = p;
                }
                super::stream_progress::record(&mut db, stream, last.seq).await?;
            }
        }
        insert_records(&mut db, &rows).await?;
        if !traces.is_empty() {
            traces.write(&mut db).await?;
        }
        if !violation_rows.is_empty() {
            violations::insert(&mut db, &violation_rows).await?;
        }
        // Audit entries that queued up ride along in the same transaction.
        if !pending_audit.is_empty() {
            audit_log::append(&mut db, &key, &pending_audit).await?;
        }
        chain_state::write_head(&mut db, &key, &head).await?;
        tx.commit().await?;
        self.head = head;
        self.status.head_seq.store(head.seq, Ordering::Relaxed);
        committed.violations = violation_rows;
        let committed = (publish || !committed.violations.is_empty()).then_some(committed);
        Ok((outcomes, committed))
    }
}

/// The audit entry id covered by the log's last audit checkpoint (0 if none).
async fn last_audit_anchor(db: &mut Exec<'_>) -> Result<i64, StoreError> {
    let q = Query::select()
        .column(Events::Body)
        .from(Events::Table)
        .and_where(Expr::col(Events::RecordType).eq(RecordType::AuditCheckpoint.as_str()))
        .order_by(Events::Seq, Order::Desc)
        .limit(1)
        .to_owned();
    let body = db
        .fetch_optional(&q)
        .await?
        .map(|r| r.opt_text("body"))
        .transpose()?;
    Ok(body
        .flatten()
        .and_then(|b| serde_json::from_str::<audit_log::AuditAnchor>(&b).ok())
        .map(|a| a.audit_id)
        .unwrap_or(0))
}

/// Appends one record the writer itself makes (receipt, checkpoint) at the head.
async fn append_own(
    db: &mut Exec<'_>,
    key: &ChainKey,
    head: &mut Head,
    record: &PreparedEvent,
) -> Result<(), StoreError> {
    head.seq += 1;
    head.link = key.link(&head.link, head.seq, &record.digest);
    insert_records(db, &[(Cow::Borrowed(record), head.seq, head.link)]).await
}

async fn insert_records(
    db: &mut Exec<'_>,
    rows: &[(Cow<'_, PreparedEvent>, i64, Hash)],
) -> Result<(), StoreError> {
    // 12 columns x 300 rows stays well under SQLite's 32,766 and Postgres' 65,535 parameters.
    for chunk in rows.chunks(300) {
        let mut q = Query::insert();
        q.into_table(Events::Table).columns([
            Events::Seq,
            Events::Project,
            Events::EventId,
            Events::RecordType,
            Events::TraceId,
            Events::SessionId,
            Events::Agent,
            Events::EventTime,
            Events::RecordedAt,
            Events::Body,
            Events::Digest,
            Events::Link,
        ]);
        for (ev, seq, link) in chunk {
            q.values_panic([
                (*seq).into(),
                ev.project.clone().into(),
                ev.event_id.clone().into(),
                ev.record_type.as_str().into(),
                ev.trace_id.clone().into(),
                ev.session_id.clone().into(),
                ev.agent.as_deref().map(|a| storable(a).into_owned()).into(),
                ev.event_time.clone().into(),
                ev.recorded_at.clone().into(),
                ev.body_text.clone().into(),
                chain::to_hex(&ev.digest).into(),
                chain::to_hex(link).into(),
            ]);
        }
        db.execute(&q).await?;
    }
    // The value index: 3 columns x 1000 rows per statement.
    let index: Vec<(&str, &str, i64)> = rows
        .iter()
        .flat_map(|(ev, seq, _)| {
            ev.value_index
                .iter()
                .map(move |p| (ev.project.as_str(), p.as_str(), *seq))
        })
        .collect();
    for chunk in index.chunks(1000) {
        let mut q = Query::insert();
        q.into_table(RedactedValues::Table).columns([
            RedactedValues::Project,
            RedactedValues::Pseudonym,
            RedactedValues::Seq,
        ]);
        for (project, pseudonym, seq) in chunk {
            q.values_panic([(*project).into(), (*pseudonym).into(), (*seq).into()]);
        }
        db.execute(&q).await?;
    }
    Ok(())
}
