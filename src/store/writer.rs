//! The single writer: group commit of concurrent append requests, in two stages.
//!
//! Requests arrive on a bounded queue. The evaluation stage takes one, drains whatever else is
//! already waiting (up to [`WriterConfig::max_batch_events`]), drops duplicates, updates the
//! running totals in log order and evaluates the rules. The commit stage then links the batch
//! into the hash chain and commits it in one transaction — one fsync for many requests — and
//! only then answers each request. The stages overlap: batch N+1 is evaluated while batch N is
//! inserted and fsynced.
//!
//! Overlap stays exact. The evaluation stage treats ids still in flight as stored and never
//! evicts totals that in-flight events touched. If a commit fails, the batches already
//! evaluated against it are refused ([`AppendError::Retry`], a retryable 503 — never a false
//! acknowledgement) and the totals are rebuilt from the log.
//!
//! Back-pressure: [`WriterHandle::append`] never waits for queue space; a full queue is
//! [`AppendError::Busy`], which ingest turns into `503` + `Retry-After`, so memory stays bounded.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_query::{Expr, ExprTrait, Query, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use serde::Serialize;
use sqlx::{Connection, Row, SqliteConnection};
use tokio::sync::{mpsc, oneshot, watch};

use super::audit_log;
use super::chain::{self, ChainKey, Hash};
use super::chain_state::{self, Head};
use super::checkpoint::{Checkpoint, CheckpointFile};
use super::history;
use super::projection::{TraceBatch, TraceSummaryRow};
use super::receipt::{EraseRequest, EraseSelector, ErasureReceipt};
use super::record::{OutcomeRecord, PreparedEvent};
use super::schema::{Events, RecordType};
use super::violations::{self, ViolationRow};
use super::{Store, StoreError};
use crate::auth::audit::AuditEntry;
use crate::event::format_time;
use crate::rules::live::LiveRules;
use crate::rules::{RuleOutcome, RunningTotals, SessionTotals, TraceTotals, TraceView};
use rayon::prelude::*;

#[derive(Clone)]
pub struct WriterConfig {
    /// Append requests that may wait for the writer; beyond this ingest answers 503.
    pub queue_capacity: usize,
    /// Most events committed in one transaction.
    pub max_batch_events: usize,
    pub key: ChainKey,
    pub checkpoint: CheckpointFile,
    /// The rule set in force; evaluated here, in log order, so totals are deterministic.
    pub rules: Arc<LiveRules>,
    /// Where committed violations go for webhook alerts (never blocks).
    pub alerts: crate::feed::alerts::AlertSink,
    /// The database's `-wal` file, watched to keep it bounded.
    pub wal_path: std::path::PathBuf,
}

/// WAL size past which the writer restarts the log.
const WAL_RESTART_BYTES: u64 = 64 << 20;

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
    #[error("the writer has stopped")]
    Closed,
    #[error("the store failed to commit: {0}")]
    Store(String),
}

struct AppendRequest {
    events: Vec<PreparedEvent>,
    reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
}

/// Shared view of the writer's state for health checks and metrics.
#[derive(Debug)]
pub struct WriterStatus {
    healthy: AtomicBool,
    head_seq: AtomicI64,
}

impl WriterStatus {
    /// False after a failed commit, until the next successful one.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn head_seq(&self) -> i64 {
        self.head_seq.load(Ordering::Relaxed)
    }
}

/// Cheap to clone; held by every door.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<AppendRequest>,
    ops: mpsc::Sender<WriteOp>,
    pub status: Arc<WriterStatus>,
}

/// Write operations other than appends, handled by the commit stage between groups.
enum WriteOp {
    /// A real write and read-back (deep health check).
    Probe(oneshot::Sender<Result<(), String>>),
    /// Clears the bodies of the selected records and appends an erasure receipt.
    Erase(EraseRequest, oneshot::Sender<Result<Erased, String>>),
    /// Anchors the audit log's chain head in the event log now (a consistent cut).
    AuditCut(oneshot::Sender<Result<i64, String>>),
}

/// A committed erasure: its receipt and the receipt's position in the log.
#[derive(Debug, Clone)]
pub struct Erased {
    pub receipt_seq: i64,
    pub receipt: ErasureReceipt,
}

impl WriterHandle {
    /// Appends `events`; resolves once they are durable.
    pub async fn append(&self, events: Vec<PreparedEvent>) -> Result<AppendOutcome, AppendError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(AppendRequest { events, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    metrics::counter!("audittrail_writer_rejected_total").increment(1);
                    AppendError::Busy
                }
                mpsc::error::TrySendError::Closed(_) => AppendError::Closed,
            })?;
        metrics::gauge!("audittrail_writer_queue_depth")
            .set((self.tx.max_capacity() - self.tx.capacity()) as f64);
        rx.await.map_err(|_| AppendError::Closed)?
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

    /// Whether the queue still has room (for health reporting).
    pub fn queue_free(&self) -> usize {
        self.tx.capacity()
    }
}

/// State the two stages share.
struct Shared {
    /// Bumped by the commit stage when a commit fails. A batch evaluated under an older
    /// generation may have counted the rolled-back events in its totals or taken one of their
    /// ids for a duplicate, so the commit stage refuses it (retryable; never acknowledged).
    generation: AtomicU64,
    /// Client-chosen ids (`project\x1f event_id`) of batches evaluated but not yet committed,
    /// with the generation that claimed them.
    in_flight_ids: Mutex<HashMap<String, u64>>,
    /// Events handed to the commit stage and not yet committed or refused.
    in_flight_events: watch::Sender<usize>,
}

/// A batch the evaluation stage has finished: duplicates dropped, rules evaluated.
struct Evaluated {
    generation: u64,
    requests: Vec<AppendRequest>,
    /// One per request; event ids and duplicates filled in, violations added at commit.
    outcomes: Vec<AppendOutcome>,
    /// The events to store, in log order, with their rule outcomes.
    accepted: Vec<Accepted>,
    /// Keys this batch holds in [`Shared::in_flight_ids`].
    claimed: Vec<String>,
    events: usize,
}

struct Accepted {
    request: usize,
    event: usize,
    results: Vec<RuleOutcome>,
}

/// Stage one: reads requests, drops duplicates, keeps running totals and evaluates rules.
/// It works on batch N+1 while the commit stage writes batch N, so rule evaluation overlaps
/// the insert and the fsync instead of waiting for them.
struct Evaluator {
    conn: SqliteConnection,
    totals: RunningTotals,
    /// Most events that may be in flight (evaluated, not committed) with none of their traces
    /// or sessions evicted from `totals`: each event touches one trace and one session entry
    /// with the newest ticks, and an eviction drops only the oldest eighth.
    totals_safe: usize,
    rules: Arc<LiveRules>,
    max_batch_events: usize,
    shared: Arc<Shared>,
    /// The generation `totals` belong to.
    generation: u64,
    /// Totals cannot be trusted (no rules were loaded, a commit failed, an evaluation broke
    /// off): clear them once nothing is in flight and rebuild from the log on demand.
    totals_stale: bool,
}

/// Stage two: links, inserts and commits evaluated batches, then answers their requests.
struct Committer {
    conn: SqliteConnection,
    /// Audit entries drained for the current transaction.
    pending_audit: Vec<AuditEntry>,
    head: Head,
    cfg: WriterConfig,
    status: Arc<WriterStatus>,
    last_checkpoint: Instant,
    shared: Arc<Shared>,
    /// The audit entry id the event log's last audit checkpoint covers.
    anchored_audit_id: i64,
}

/// How often the commit stage anchors new audit entries in the event log.
const AUDIT_ANCHOR_EVERY: Duration = Duration::from_secs(60);

/// Batches waiting between the stages (beyond the one being committed).
const STAGE_QUEUE: usize = 1;

/// Starts the writer's two tasks. They end, after flushing, when every [`WriterHandle`] is
/// dropped; the returned handle joins the commit stage, which ends last.
pub async fn spawn(
    store: &Store,
    cfg: WriterConfig,
    audit_rx: mpsc::Receiver<AuditEntry>,
) -> Result<(WriterHandle, tokio::task::JoinHandle<()>), StoreError> {
    let mut conn = store.write_connection().await?;
    let head = chain_state::load_head(&mut conn, &cfg.key).await?;
    if let Ok(Some(cp)) = cfg.checkpoint.read()
        && cp.seq > head.seq
    {
        tracing::warn!(
            checkpoint_file_seq = cp.seq,
            log_head_seq = head.seq,
            "the checkpoint file is ahead of the database (restored from a backup?); it is rewritten now. If no backup was restored, run `audittrail verify`"
        );
    }
    let anchored_audit_id = last_audit_anchor(&mut conn).await?;
    let status = Arc::new(WriterStatus {
        healthy: AtomicBool::new(true),
        head_seq: AtomicI64::new(head.seq),
    });
    let shared = Arc::new(Shared {
        generation: AtomicU64::new(0),
        in_flight_ids: Mutex::new(HashMap::new()),
        in_flight_events: watch::channel(0).0,
    });
    // Room for every batch that can be in flight (one per stage plus the queue between them)
    // with an eighth to spare for eviction.
    let max_batch = cfg.max_batch_events.max(1);
    let totals_cap = (4 * max_batch).max(10_000);
    let evaluator = Evaluator {
        conn: store.read_connection().await?,
        totals: RunningTotals::new(totals_cap, totals_cap),
        totals_safe: totals_cap - totals_cap / 8 - 1,
        rules: cfg.rules.clone(),
        max_batch_events: max_batch,
        shared: shared.clone(),
        generation: 0,
        totals_stale: false,
    };
    let committer = Committer {
        conn,
        pending_audit: Vec::new(),
        head,
        cfg,
        status: status.clone(),
        last_checkpoint: Instant::now(),
        shared,
        anchored_audit_id,
    };
    let (tx, rx) = mpsc::channel(committer.cfg.queue_capacity.max(1));
    let (evaluated_tx, evaluated_rx) = mpsc::channel(STAGE_QUEUE);
    let (ops, ops_rx) = mpsc::channel(16);
    let mut committer = committer;
    committer.write_checkpoint();
    tokio::spawn(evaluator.run(rx, evaluated_tx));
    let task = tokio::spawn(committer.run(evaluated_rx, audit_rx, ops_rx));
    Ok((WriterHandle { tx, ops, status }, task))
}

/// The audit entry id covered by the log's last audit checkpoint (0 if none).
async fn last_audit_anchor(conn: &mut SqliteConnection) -> Result<i64, StoreError> {
    let body: Option<Option<String>> = sqlx::query_scalar(
        "SELECT body FROM events WHERE record_type = 'audit_checkpoint' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(body
        .flatten()
        .and_then(|b| serde_json::from_str::<audit_log::AuditAnchor>(&b).ok())
        .map(|a| a.audit_id)
        .unwrap_or(0))
}

fn id_key(project: &str, event_id: &str) -> String {
    format!("{project}\u{1f}{event_id}")
}

impl Evaluator {
    async fn run(mut self, mut rx: mpsc::Receiver<AppendRequest>, tx: mpsc::Sender<Evaluated>) {
        while let Some(first) = rx.recv().await {
            let mut events = first.events.len();
            let mut batch = vec![first];
            while events < self.max_batch_events {
                match rx.try_recv() {
                    Ok(req) => {
                        events += req.events.len();
                        batch.push(req);
                    }
                    Err(_) => break,
                }
            }
            metrics::gauge!("audittrail_writer_queue_depth").set(rx.len() as f64);
            metrics::histogram!("audittrail_writer_batch_events").record(events as f64);
            metrics::histogram!("audittrail_writer_batch_requests").record(batch.len() as f64);
            let started = Instant::now();
            let evaluated = self.evaluate(batch, events, &tx).await;
            metrics::histogram!("audittrail_writer_evaluate_seconds")
                .record(started.elapsed().as_secs_f64());
            match evaluated {
                Ok(evaluated) => {
                    self.shared
                        .in_flight_events
                        .send_modify(|n| *n += evaluated.events);
                    if tx.send(evaluated).await.is_err() {
                        break;
                    }
                }
                Err((batch, err)) => {
                    metrics::counter!("audittrail_store_errors_total").increment(1);
                    tracing::error!(error = %err, requests = batch.len(), events, "could not read the log to check an append; nothing of it was stored");
                    for req in batch {
                        let _ = req.reply.send(Err(AppendError::Store(err.to_string())));
                    }
                }
            }
        }
    }

    /// Waits until at most `limit` events are in flight in the commit stage (or it is gone).
    async fn drain_to(&self, limit: usize, commit: &mpsc::Sender<Evaluated>) {
        let mut in_flight = self.shared.in_flight_events.subscribe();
        tokio::select! {
            _ = in_flight.wait_for(|n| *n <= limit) => {}
            _ = commit.closed() => {}
        }
    }

    async fn evaluate(
        &mut self,
        requests: Vec<AppendRequest>,
        events: usize,
        commit: &mpsc::Sender<Evaluated>,
    ) -> Result<Evaluated, (Vec<AppendRequest>, StoreError)> {
        let rules = self.rules.current();
        let no_rules = rules.rules().is_empty();
        // Read before anything is evaluated: if a commit fails after this, the batch carries
        // the old generation and is refused.
        let generation = self.shared.generation.load(Ordering::SeqCst);
        if generation != self.generation {
            // A commit failed: totals counted events that were rolled back.
            self.generation = generation;
            self.totals_stale = true;
        }
        if no_rules {
            // Nothing reads totals; they are rebuilt from the log once rules are back.
            if self.totals.trace_count() + self.totals.session_count() > 0 {
                self.totals.clear();
            }
            self.totals_stale = true;
        } else if self.totals_stale {
            // Totals are incomplete (batches evaluated without rules did not update them) or
            // wrong (a batch that was never stored updated them): rebuild them from the log
            // once every batch in flight is committed or refused.
            self.drain_to(0, commit).await;
            self.totals.clear();
            self.totals_stale = false;
        } else {
            self.drain_to(self.totals_safe.saturating_sub(events), commit)
                .await;
        }
        let prepared = match self.prepare(&requests, no_rules).await {
            Ok(p) => p,
            Err(e) => {
                // Some totals may have been seeded for events that will not be stored.
                self.totals_stale = true;
                return Err((requests, e));
            }
        };
        let Prepared {
            outcomes,
            accepted,
            claimed,
        } = prepared;
        // Rules run on all cores, off the async workers; each evaluation is a pure function
        // of the redacted event and its totals.
        let (requests, accepted) = if no_rules {
            let accepted = accepted
                .into_iter()
                .map(|(request, event, _)| Accepted {
                    request,
                    event,
                    results: Vec::new(),
                })
                .collect();
            (requests, accepted)
        } else {
            let evaluated = tokio::task::spawn_blocking(move || {
                let results: Vec<Accepted> = accepted
                    .into_par_iter()
                    // Chunks of events, not single events: one task each is cheaper to steal.
                    .with_min_len(32)
                    .map(|(request, event, view)| Accepted {
                        request,
                        event,
                        results: rules.evaluate(&requests[request].events[event].body, &view),
                    })
                    .collect();
                (requests, results)
            })
            .await;
            match evaluated {
                Ok(done) => done,
                Err(e) => {
                    // The requests moved into the panicked task; their senders are dropped,
                    // so each waiting request ends with `Closed` rather than a false ack.
                    tracing::error!(error = %e, "rule evaluation panicked; the batch was not stored");
                    // Its events are in the totals: rebuild them once the batches in flight
                    // are committed (no batch was evaluated against this one).
                    self.totals_stale = true;
                    return Err((
                        Vec::new(),
                        StoreError::Corrupt {
                            seq: 0,
                            reason: format!("rule evaluation panicked: {e}"),
                        },
                    ));
                }
            }
        };
        {
            let mut ids = self
                .shared
                .in_flight_ids
                .lock()
                .expect("in-flight ids lock");
            for key in &claimed {
                ids.insert(key.clone(), generation);
            }
        }
        Ok(Evaluated {
            generation,
            requests,
            outcomes,
            accepted,
            claimed,
            events,
        })
    }

    /// Pass 1, in log order: drops duplicates and computes each event's view of its trace and
    /// session totals (cheap and sequential; this is what makes evaluation deterministic).
    async fn prepare(
        &mut self,
        requests: &[AppendRequest],
        no_rules: bool,
    ) -> Result<Prepared, StoreError> {
        // Ids a batch still in flight claims count as stored: it either commits, or it fails
        // and bumps the generation, which makes the commit stage refuse this batch too. The
        // in-flight set is read before the log, and a batch leaves it only after its commit,
        // so an id is never missed in between.
        let mut known: HashSet<(&str, &str)> = HashSet::new();
        {
            let ids = self
                .shared
                .in_flight_ids
                .lock()
                .expect("in-flight ids lock");
            if !ids.is_empty() {
                for ev in client_ids(requests) {
                    if ids.get(&id_key(&ev.project, &ev.event_id)) == Some(&self.generation) {
                        known.insert((&ev.project, &ev.event_id));
                    }
                }
            }
        }
        let stored = existing_ids(
            &mut self.conn,
            client_ids(requests).filter(|ev| !known.contains(&(&ev.project, &ev.event_id))),
        )
        .await?;
        known.extend(stored);
        if !no_rules {
            load_totals(
                &mut self.conn,
                &mut self.totals,
                requests
                    .iter()
                    .flat_map(|r| &r.events)
                    .filter(|e| !e.is_guard()),
            )
            .await?;
        }
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        let mut prepared = Prepared::default();
        for (r, req) in requests.iter().enumerate() {
            let mut outcome = AppendOutcome {
                event_ids: Vec::with_capacity(req.events.len()),
                ..Default::default()
            };
            for (e, ev) in req.events.iter().enumerate() {
                outcome.event_ids.push(ev.event_id.clone());
                if ev.id_from_client {
                    let key = (ev.project.as_str(), ev.event_id.as_str());
                    if known.contains(&key) || !seen.insert(key) {
                        outcome.duplicates += 1;
                        continue;
                    }
                    prepared.claimed.push(id_key(&ev.project, &ev.event_id));
                }
                let view = if no_rules {
                    TraceView::default()
                } else if ev.is_guard() {
                    self.totals.peek(&ev.body)
                } else {
                    self.totals.observe(&ev.body)
                };
                prepared.accepted.push((r, e, view));
            }
            prepared.outcomes.push(outcome);
        }
        Ok(prepared)
    }
}

#[derive(Default)]
struct Prepared {
    outcomes: Vec<AppendOutcome>,
    accepted: Vec<(usize, usize, TraceView)>,
    claimed: Vec<String>,
}

/// Events of the batch whose ids their clients chose.
fn client_ids(requests: &[AppendRequest]) -> impl Iterator<Item = &PreparedEvent> {
    requests
        .iter()
        .flat_map(|req| &req.events)
        .filter(|ev| ev.id_from_client)
}

impl Committer {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Evaluated>,
        mut audit: mpsc::Receiver<AuditEntry>,
        mut ops: mpsc::Receiver<WriteOp>,
    ) {
        let mut audit_open = true;
        let mut anchor_tick = tokio::time::interval(AUDIT_ANCHOR_EVERY);
        anchor_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut batch = tokio::select! {
                biased;
                batch = rx.recv() => match batch {
                    Some(batch) => batch,
                    None => break,
                },
                Some(op) = ops.recv() => {
                    self.handle(op).await;
                    continue;
                }
                _ = anchor_tick.tick() => {
                    if let Err(err) = self.anchor_audit(false).await {
                        tracing::error!(error = %err, "could not anchor the audit log in the event log; will retry");
                    }
                    continue;
                }
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
                    continue;
                }
            };
            if batch.generation != self.shared.generation.load(Ordering::SeqCst) {
                metrics::counter!("audittrail_writer_refused_total").increment(1);
                self.release(&batch);
                for req in batch.requests {
                    let _ = req.reply.send(Err(AppendError::Retry));
                }
                continue;
            }
            self.pending_audit.clear();
            while let Ok(e) = audit.try_recv() {
                self.pending_audit.push(e);
            }
            let started = Instant::now();
            let result = self.commit(&mut batch).await;
            metrics::histogram!("audittrail_writer_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(outcomes) => {
                    self.release(&batch);
                    self.status.healthy.store(true, Ordering::Relaxed);
                    for (req, outcome) in batch.requests.into_iter().zip(outcomes) {
                        let _ = req.reply.send(Ok(outcome));
                    }
                    if self.last_checkpoint.elapsed() >= Duration::from_millis(250) {
                        self.write_checkpoint();
                        self.bound_wal().await;
                    }
                }
                Err(err) => {
                    // Batches evaluated after this one counted it in their totals: refuse them.
                    self.shared.generation.fetch_add(1, Ordering::SeqCst);
                    self.release(&batch);
                    self.status.healthy.store(false, Ordering::Relaxed);
                    metrics::counter!("audittrail_store_errors_total").increment(1);
                    tracing::error!(error = %err, requests = batch.requests.len(), events = batch.events, "append transaction failed; nothing of it was stored");
                    for req in batch.requests {
                        let _ = req.reply.send(Err(AppendError::Store(err.to_string())));
                    }
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
        tracing::info!(head_seq = self.head.seq, "writer flushed and stopped");
    }

    async fn handle(&mut self, op: WriteOp) {
        match op {
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
        }
    }

    /// Records the audit chain's head in the event log if it moved since the last checkpoint
    /// (or always, when `force`d: a consistent cut). Returns the audit entry id covered.
    async fn anchor_audit(&mut self, force: bool) -> Result<i64, StoreError> {
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;
        let audit_head = audit_log::head(&mut tx).await?;
        if audit_head.id == self.anchored_audit_id && !force {
            tx.rollback().await?;
            return Ok(audit_head.id);
        }
        let anchor = audit_log::AuditAnchor {
            audit_id: audit_head.id,
            audit_link: chain::to_hex(&audit_head.link),
            entries: audit_head.id - self.anchored_audit_id,
        };
        let record = PreparedEvent::own(
            RecordType::AuditCheckpoint,
            super::schema::SYSTEM_PROJECT,
            serde_json::to_value(&anchor).expect("an anchor always serialises"),
            &format_time(&chrono::Utc::now()),
        );
        let mut head = self.head;
        append_own(&mut tx, &self.cfg.key, &mut head, &record).await?;
        chain_state::write_head(&mut tx, &self.cfg.key, &head).await?;
        tx.commit().await?;
        self.head = head;
        self.status.head_seq.store(head.seq, Ordering::Relaxed);
        self.anchored_audit_id = audit_head.id;
        Ok(audit_head.id)
    }

    /// Clears the bodies of the selected records and appends the receipt, in one transaction.
    async fn erase(&mut self, request: EraseRequest) -> Result<Erased, StoreError> {
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;
        let (column, value) = match &request.selector {
            EraseSelector::TraceId(v) => ("trace_id", Some(v.as_str())),
            EraseSelector::SessionId(v) => ("session_id", Some(v.as_str())),
            EraseSelector::Agent(_) => ("agent", None),
            EraseSelector::Seqs(_) => ("seq", None),
        };
        let mut seqs: Vec<i64> = match &request.selector {
            EraseSelector::Seqs(list) => {
                let mut found = Vec::new();
                for chunk in list.chunks(500) {
                    let (sql, values) = Query::select()
                        .column(Events::Seq)
                        .from(Events::Table)
                        .and_where(Expr::col(Events::Project).eq(request.project.as_str()))
                        .and_where(Expr::col(Events::Seq).is_in(chunk.iter().copied()))
                        .and_where(Expr::col(Events::Body).is_not_null())
                        .build_sqlx(SqliteQueryBuilder);
                    found.extend(
                        sqlx::query_scalar_with::<_, i64, _>(sqlx::AssertSqlSafe(sql), values)
                            .fetch_all(&mut *tx)
                            .await?,
                    );
                }
                found
            }
            EraseSelector::Agent(agent) => {
                // Spans name their agent in the body; their violations follow their trace.
                sqlx::query_scalar(
                    "SELECT seq FROM events WHERE project = ?1 AND body IS NOT NULL AND (\
                       (record_type IN ('span', 'guard') AND json_extract(body, '$.agent') = ?2) OR \
                       (record_type IN ('violation', 'rule_error') AND json_extract(body, '$.agent') = ?2))",
                )
                .bind(&request.project)
                .bind(agent)
                .fetch_all(&mut *tx)
                .await?
            }
            _ => {
                let sql = format!(
                    "SELECT seq FROM events WHERE project = ?1 AND {column} = ?2 AND body IS NOT NULL \
                     AND record_type IN ('span', 'guard', 'violation', 'rule_error')"
                );
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .bind(&request.project)
                    .bind(value)
                    .fetch_all(&mut *tx)
                    .await?
            }
        };
        seqs.sort_unstable();
        seqs.dedup();
        for chunk in seqs.chunks(500) {
            let (sql, values) = Query::update()
                .table(Events::Table)
                .value(Events::Body, Option::<String>::None)
                .and_where(Expr::col(Events::Seq).is_in(chunk.iter().copied()))
                .build_sqlx(SqliteQueryBuilder);
            sqlx::query_with(sqlx::AssertSqlSafe(sql), values)
                .execute(&mut *tx)
                .await?;
        }
        let receipt = ErasureReceipt {
            receipt: "erasure".into(),
            project: request.project.clone(),
            requested_by: request.requested_by.clone(),
            at: format_time(&chrono::Utc::now()),
            reason: request.reason.clone(),
            selector_field: request.selector.field().into(),
            selector_pseudonym: match &request.selector {
                EraseSelector::TraceId(v)
                | EraseSelector::SessionId(v)
                | EraseSelector::Agent(v) => {
                    Some(self.cfg.key.selector_pseudonym(request.selector.field(), v))
                }
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
        let mut head = self.head;
        append_own(&mut tx, &self.cfg.key, &mut head, &record).await?;
        chain_state::write_head(&mut tx, &self.cfg.key, &head).await?;
        tx.commit().await?;
        self.head = head;
        self.status.head_seq.store(head.seq, Ordering::Relaxed);
        tracing::info!(project = %request.project, selector = request.selector.field(), records = receipt.seqs.len(), receipt_seq = head.seq, "records erased");
        Ok(Erased {
            receipt_seq: head.seq,
            receipt,
        })
    }

    /// Takes a finished (committed or refused) batch out of the in-flight state.
    fn release(&self, batch: &Evaluated) {
        if !batch.claimed.is_empty() {
            let mut ids = self
                .shared
                .in_flight_ids
                .lock()
                .expect("in-flight ids lock");
            for key in &batch.claimed {
                // A later generation may have claimed the same id again; that claim stays.
                if ids.get(key) == Some(&batch.generation) {
                    ids.remove(key);
                }
            }
        }
        self.shared
            .in_flight_events
            .send_modify(|n| *n = n.saturating_sub(batch.events));
    }

    /// Under continuous writes the background checkpointer never catches up with the head, so
    /// the WAL would never start over and would grow without bound. Past the limit the writer
    /// finishes the checkpoint itself between commits (no new frames can appear meanwhile; the
    /// background pass already copied almost all), so its next transaction restarts the WAL.
    /// PASSIVE never sleeps in SQLite's busy handler: if the background pass holds the lock,
    /// this simply tries again after a later commit.
    async fn bound_wal(&mut self) {
        let wal_len = std::fs::metadata(&self.cfg.wal_path)
            .map(|m| m.len())
            .unwrap_or(0);
        if wal_len <= WAL_RESTART_BYTES {
            return;
        }
        let started = Instant::now();
        match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut self.conn)
            .await
        {
            Ok((busy, pages, done)) => {
                tracing::debug!(
                    busy,
                    pages,
                    done,
                    ms = started.elapsed().as_millis() as u64,
                    "WAL restarted"
                )
            }
            Err(e) => tracing::warn!(error = %e, "WAL restart checkpoint failed; will retry"),
        }
    }

    async fn write_audit(&mut self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;
        audit_log::append(&mut tx, &self.cfg.key, entries).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes and reads back the probe row: proves the store accepts writes right now.
    async fn probe(&mut self) -> Result<(), StoreError> {
        let now = format_time(&chrono::Utc::now());
        let mut tx = self.conn.begin().await?;
        sqlx::query("INSERT INTO health_probe (id, at) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at")
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let back: String = sqlx::query_scalar("SELECT at FROM health_probe WHERE id = 1")
            .fetch_one(&mut self.conn)
            .await?;
        if back != now {
            return Err(StoreError::Corrupt {
                seq: 0,
                reason: "health probe read back a different value".into(),
            });
        }
        Ok(())
    }

    fn write_checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        let cp = Checkpoint {
            seq: self.head.seq,
            link: chain::to_hex(&self.head.link),
        };
        if let Err(err) = self.cfg.checkpoint.write(&cp) {
            tracing::warn!(error = %err, "could not write the chain checkpoint");
        }
    }

    /// Pass 3, in log order: positions, links and outcome records; then one transaction.
    /// Takes the batch's outcomes (filled in with violations); on an error they are dropped,
    /// since every request then gets the error instead.
    async fn commit(&mut self, batch: &mut Evaluated) -> Result<Vec<AppendOutcome>, StoreError> {
        let mut head = self.head;
        let mut rows: Vec<(Cow<'_, PreparedEvent>, i64, Hash)> = Vec::new();
        let mut traces = TraceBatch::default();
        let mut violation_rows = Vec::new();
        let mut outcomes = std::mem::take(&mut batch.outcomes);
        for accepted in &batch.accepted {
            let ev = &batch.requests[accepted.request].events[accepted.event];
            let outcome = &mut outcomes[accepted.request];
            head.seq += 1;
            head.link = self.cfg.key.link(&head.link, head.seq, &ev.digest);
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
            let cause_seq = head.seq;
            rows.push((Cow::Borrowed(ev), head.seq, head.link));
            for result in &accepted.results {
                if let RuleOutcome::RuleError { rule_id, message } = result {
                    metrics::counter!("audittrail_rule_errors_total", "rule" => rule_id.clone())
                        .increment(1);
                    tracing::warn!(rule = %rule_id, event_seq = cause_seq, error = %message, "rule failed on an event; recorded as rule_error");
                    self.cfg.rules.record_rule_error(rule_id, message);
                } else {
                    metrics::counter!("audittrail_violations_total", "rule" => result.rule_id().to_owned()).increment(1);
                }
                let record = PreparedEvent::outcome(OutcomeRecord {
                    cause: ev,
                    cause_seq,
                    outcome: result,
                });
                head.seq += 1;
                head.link = self.cfg.key.link(&head.link, head.seq, &record.digest);
                if let Some(row) = violations::row_from_body(head.seq, &record.body) {
                    outcome.violations.push(row.clone());
                    violation_rows.push((record.project.clone(), row));
                }
                rows.push((Cow::Owned(record), head.seq, head.link));
            }
        }
        let mut tx = self.conn.begin_with("BEGIN IMMEDIATE").await?;
        insert_records(&mut tx, &rows).await?;
        if !traces.is_empty() {
            traces.write(&mut tx).await?;
        }
        if !violation_rows.is_empty() {
            violations::insert(&mut tx, &violation_rows).await?;
        }
        // Audit entries that queued up ride along in the same transaction.
        if !self.pending_audit.is_empty() {
            audit_log::append(&mut tx, &self.cfg.key, &self.pending_audit).await?;
        }
        chain_state::write_head(&mut tx, &self.cfg.key, &head).await?;
        tx.commit().await?;
        for (project, row) in &violation_rows {
            self.cfg.alerts.offer(project, row);
        }
        self.head = head;
        self.status.head_seq.store(head.seq, Ordering::Relaxed);
        Ok(outcomes)
    }
}

/// Appends one record the writer itself makes (receipt, checkpoint) at the head.
async fn append_own(
    conn: &mut SqliteConnection,
    key: &ChainKey,
    head: &mut Head,
    record: &PreparedEvent,
) -> Result<(), StoreError> {
    head.seq += 1;
    head.link = key.link(&head.link, head.seq, &record.digest);
    insert_records(conn, &[(Cow::Borrowed(record), head.seq, head.link)]).await
}

/// Client-chosen ids among `events` that the log already holds (an SDK retrying a batch).
async fn existing_ids<'a>(
    conn: &mut SqliteConnection,
    events: impl Iterator<Item = &'a PreparedEvent>,
) -> Result<HashSet<(&'a str, &'a str)>, StoreError> {
    let mut found = HashSet::new();
    let mut by_project: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for ev in events {
        by_project
            .entry(&ev.project)
            .or_default()
            .push(&ev.event_id);
    }
    for (project, ids) in by_project {
        for chunk in ids.chunks(500) {
            let (sql, values) = Query::select()
                .column(Events::EventId)
                .from(Events::Table)
                .and_where(Expr::col(Events::Project).eq(project))
                .and_where(Expr::col(Events::EventId).is_in(chunk.iter().copied()))
                .build_sqlx(SqliteQueryBuilder);
            for row in sqlx::query_with(sqlx::AssertSqlSafe(sql), values)
                .fetch_all(&mut *conn)
                .await?
            {
                let id: String = row.try_get(0)?;
                if let Some(known) = chunk.iter().find(|c| **c == id) {
                    found.insert((project, *known));
                }
            }
        }
    }
    Ok(found)
}

/// Makes sure the running totals hold the trace and session of every event, rebuilding the
/// missing ones from the log (after a restart or an eviction), so rule evaluation sees the
/// totals a full replay of the log would. One query per project and column for the batch.
async fn load_totals<'a>(
    conn: &mut SqliteConnection,
    totals: &mut RunningTotals,
    events: impl Iterator<Item = &'a PreparedEvent>,
) -> Result<(), StoreError> {
    let mut traces: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut sessions: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for ev in events {
        // Touching held entries keeps them among the newest, so the seeding below (which may
        // evict the oldest eighth) cannot drop totals this batch is about to read.
        if !totals.touch_trace(&ev.project, &ev.trace_id) {
            traces.entry(&ev.project).or_default().insert(&ev.trace_id);
        }
        if let Some(session) = ev
            .session_id
            .as_deref()
            .filter(|s| !totals.touch_session(&ev.project, s))
        {
            sessions.entry(&ev.project).or_default().insert(session);
        }
    }
    for (project, ids) in traces {
        for (id, t) in history::rebuild(
            conn,
            project,
            Events::TraceId,
            &ids,
            None,
            TraceTotals::apply,
        )
        .await?
        {
            totals.seed_trace(project, id, t);
        }
    }
    for (project, ids) in sessions {
        let rebuilt = history::rebuild(
            conn,
            project,
            Events::SessionId,
            &ids,
            None,
            SessionTotals::apply,
        )
        .await?;
        for (id, t) in rebuilt {
            totals.seed_session(project, id, t);
        }
    }
    Ok(())
}

async fn insert_records(
    conn: &mut SqliteConnection,
    rows: &[(Cow<'_, PreparedEvent>, i64, Hash)],
) -> Result<(), StoreError> {
    // 11 columns x 300 rows stays well under SQLite's 32,766 bound parameters.
    for chunk in rows.chunks(300) {
        let mut q = Query::insert();
        q.into_table(Events::Table).columns([
            Events::Seq,
            Events::Project,
            Events::EventId,
            Events::RecordType,
            Events::TraceId,
            Events::SessionId,
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
                ev.event_time.clone().into(),
                ev.recorded_at.clone().into(),
                ev.body_text.clone().into(),
                chain::to_hex(&ev.digest).into(),
                chain::to_hex(link).into(),
            ]);
        }
        let (sql, values) = q.build_sqlx(SqliteQueryBuilder);
        sqlx::query_with(sqlx::AssertSqlSafe(sql), values)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
