//! The single writer: group commit of concurrent append requests.
//!
//! Requests arrive on a bounded queue. The writer takes one, drains whatever else is already
//! waiting (up to [`WriterConfig::max_batch_events`]), and commits them all in one transaction —
//! one fsync for many requests. Each request's reply is sent only after that commit.
//!
//! Back-pressure: [`WriterHandle::append`] never waits for queue space; a full queue is
//! [`AppendError::Busy`], which ingest turns into `503` + `Retry-After`, so memory stays bounded.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use sea_query::{Expr, ExprTrait, Query, SqliteQueryBuilder};
use sea_query_sqlx::SqlxBinder;
use serde::Serialize;
use sqlx::{Connection, Row, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::chain::{self, ChainKey, Hash};
use super::checkpoint::{Checkpoint, CheckpointFile};
use super::projection::{TraceBatch, TraceSummaryRow};
use super::record::{OutcomeRecord, PreparedEvent};
use super::schema::Events;
use super::violations::{self, ViolationRow};
use super::{Store, StoreError};
use crate::auth::audit::{self, AuditEntry};
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
    probe: mpsc::Sender<oneshot::Sender<Result<(), String>>>,
    pub status: Arc<WriterStatus>,
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
        self.probe
            .try_send(tx)
            .map_err(|_| "the writer is busy or stopped".to_owned())?;
        rx.await.map_err(|_| "the writer stopped".to_owned())?
    }

    /// Whether the queue still has room (for health reporting).
    pub fn queue_free(&self) -> usize {
        self.tx.capacity()
    }
}

#[derive(Debug, Clone, Copy)]
struct Head {
    seq: i64,
    link: Hash,
}

struct Writer {
    conn: SqliteConnection,
    /// Audit entries drained for the current transaction.
    pending_audit: Vec<AuditEntry>,
    totals: RunningTotals,
    head: Head,
    cfg: WriterConfig,
    status: Arc<WriterStatus>,
    last_checkpoint: Instant,
}

/// Starts the writer task. It ends, after flushing, when every [`WriterHandle`] is dropped.
pub async fn spawn(
    store: &Store,
    cfg: WriterConfig,
    audit_rx: mpsc::Receiver<AuditEntry>,
) -> Result<(WriterHandle, tokio::task::JoinHandle<()>), StoreError> {
    let mut conn = store.write_connection().await?;
    let head = load_head(&mut conn).await?;
    if let Some(cp) = cfg.checkpoint.read()?
        && cp.seq > head.seq
    {
        tracing::error!(
            checkpoint_seq = cp.seq,
            log_head_seq = head.seq,
            "the event log ends before its last checkpoint: records were removed from its tail; run `audittrail verify`"
        );
    }
    let status = Arc::new(WriterStatus {
        healthy: AtomicBool::new(true),
        head_seq: AtomicI64::new(head.seq),
    });
    let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
    let writer = Writer {
        conn,
        pending_audit: Vec::new(),
        totals: RunningTotals::default(),
        head,
        cfg,
        status: status.clone(),
        last_checkpoint: Instant::now(),
    };
    let (probe, probe_rx) = mpsc::channel(4);
    let task = tokio::spawn(writer.run(rx, audit_rx, probe_rx));
    Ok((WriterHandle { tx, probe, status }, task))
}

async fn load_head(conn: &mut SqliteConnection) -> Result<Head, StoreError> {
    let last = sqlx::query("SELECT seq, link FROM events ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let row = match last {
        Some(row) => Some(row),
        None => {
            sqlx::query("SELECT seq, link FROM chain_base WHERE id = 1")
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    Ok(match row {
        None => Head {
            seq: 0,
            link: chain::GENESIS,
        },
        Some(row) => {
            let seq: i64 = row.try_get("seq")?;
            let link: String = row.try_get("link")?;
            let link = chain::from_hex(&link).ok_or(StoreError::Corrupt {
                seq,
                reason: "link is not 64 hex digits".into(),
            })?;
            Head { seq, link }
        }
    })
}

impl Writer {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<AppendRequest>,
        mut audit: mpsc::Receiver<AuditEntry>,
        mut probes: mpsc::Receiver<oneshot::Sender<Result<(), String>>>,
    ) {
        let mut audit_open = true;
        loop {
            let first = tokio::select! {
                biased;
                req = rx.recv() => match req {
                    Some(req) => req,
                    None => break,
                },
                Some(reply) = probes.recv() => {
                    let _ = reply.send(self.probe().await.map_err(|e| e.to_string()));
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
            self.pending_audit.clear();
            while let Ok(e) = audit.try_recv() {
                self.pending_audit.push(e);
            }
            let mut events = first.events.len();
            let mut batch = vec![first];
            while events < self.cfg.max_batch_events {
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
            let result = self.commit(&batch).await;
            metrics::histogram!("audittrail_writer_commit_seconds")
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(outcomes) => {
                    self.status.healthy.store(true, Ordering::Relaxed);
                    for (req, outcome) in batch.into_iter().zip(outcomes) {
                        let _ = req.reply.send(Ok(outcome));
                    }
                    if self.last_checkpoint.elapsed() >= Duration::from_millis(250) {
                        self.write_checkpoint();
                        self.bound_wal().await;
                    }
                }
                Err(err) => {
                    // The rolled-back events were already applied to the running totals.
                    self.totals.clear();
                    self.status.healthy.store(false, Ordering::Relaxed);
                    metrics::counter!("audittrail_store_errors_total").increment(1);
                    tracing::error!(error = %err, requests = batch.len(), events, "append transaction failed; nothing of it was stored");
                    for req in batch {
                        let _ = req.reply.send(Err(AppendError::Store(err.to_string())));
                    }
                }
            }
        }
        self.write_checkpoint();
        tracing::info!(head_seq = self.head.seq, "writer flushed and stopped");
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
        let mut tx = self.conn.begin().await?;
        audit::insert(&mut tx, entries).await?;
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

    async fn commit(&mut self, batch: &[AppendRequest]) -> Result<Vec<AppendOutcome>, StoreError> {
        let mut tx = self.conn.begin().await?;
        let existing = existing_ids(&mut tx, batch).await?;
        let mut seen: HashSet<(&str, &str)> = HashSet::new();
        let mut head = self.head;
        let mut rows: Vec<(Cow<'_, PreparedEvent>, i64, Hash)> = Vec::new();
        let mut traces = TraceBatch::default();
        let mut violation_rows = Vec::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        let rules = self.cfg.rules.current();
        let no_rules = rules.rules().is_empty();
        if no_rules && self.totals.trace_count() + self.totals.session_count() > 0 {
            self.totals.clear();
        }
        // Pass 1, in log order: drop duplicates and compute each event's view of its trace and
        // session totals (cheap, sequential — this is what makes evaluation deterministic).
        let mut accepted: Vec<(usize, &PreparedEvent, TraceView)> = Vec::new();
        for (i, req) in batch.iter().enumerate() {
            let mut outcome = AppendOutcome {
                event_ids: Vec::with_capacity(req.events.len()),
                ..Default::default()
            };
            for ev in &req.events {
                outcome.event_ids.push(ev.event_id.clone());
                if ev.id_from_client {
                    let key = (ev.project.as_str(), ev.event_id.as_str());
                    if existing.contains(&key) || !seen.insert(key) {
                        outcome.duplicates += 1;
                        continue;
                    }
                }
                // No rules: nothing reads totals. Dropping them is safe because a later
                // evaluation rebuilds any trace's totals from the log on a cache miss.
                let view = if no_rules {
                    TraceView::default()
                } else if ev.is_guard() {
                    self.totals.peek(&ev.body)
                } else {
                    load_totals(&mut tx, &mut self.totals, ev).await?;
                    self.totals.observe(&ev.body)
                };
                accepted.push((i, ev, view));
            }
            outcomes.push(outcome);
        }
        // Pass 2: evaluate rules on all cores; each evaluation is a pure function of its inputs.
        let results: Vec<Vec<RuleOutcome>> = if rules.rules().is_empty() {
            vec![Vec::new(); accepted.len()]
        } else {
            accepted
                .par_iter()
                .map(|(_, ev, view)| rules.evaluate(&ev.body, view))
                .collect()
        };
        // Pass 3, in log order: positions, links, outcome records.
        for ((req_index, ev, _), results) in accepted.iter().zip(&results) {
            let outcome = &mut outcomes[*req_index];
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
            rows.push((Cow::Borrowed(*ev), head.seq, head.link));
            for result in results {
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
        insert_records(&mut tx, &rows).await?;
        if !traces.is_empty() {
            traces.write(&mut tx).await?;
        }
        if !violation_rows.is_empty() {
            violations::insert(&mut tx, &violation_rows).await?;
        }
        // Audit entries that queued up ride along in the same transaction.
        audit::insert(&mut tx, &self.pending_audit).await?;
        tx.commit().await?;
        for (project, row) in &violation_rows {
            self.cfg.alerts.offer(project, row);
        }
        self.head = head;
        self.status.head_seq.store(head.seq, Ordering::Relaxed);
        Ok(outcomes)
    }
}

/// Client-chosen ids of this batch that the log already holds (an SDK retrying a batch).
async fn existing_ids<'a>(
    conn: &mut SqliteConnection,
    batch: &'a [AppendRequest],
) -> Result<HashSet<(&'a str, &'a str)>, StoreError> {
    let mut found = HashSet::new();
    let mut by_project: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for ev in batch
        .iter()
        .flat_map(|r| &r.events)
        .filter(|e| e.id_from_client)
    {
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

/// Makes sure the running totals hold this event's trace and session, rebuilding them from the
/// log after a restart or an eviction, so rule evaluation sees the same totals a full replay
/// of the log would.
async fn load_totals(
    conn: &mut SqliteConnection,
    totals: &mut RunningTotals,
    ev: &PreparedEvent,
) -> Result<(), StoreError> {
    if !totals.knows_trace(&ev.project, &ev.trace_id) {
        let mut t = TraceTotals::default();
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM events WHERE project = ? AND trace_id = ? AND record_type = 'span' AND body IS NOT NULL ORDER BY seq",
        )
        .bind(&ev.project)
        .bind(&ev.trace_id)
        .fetch_all(&mut *conn)
        .await?;
        for b in bodies {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&b) {
                t.apply(&v);
            }
        }
        totals.seed_trace(&ev.project, &ev.trace_id, t);
    }
    if let Some(session) = ev
        .session_id
        .as_deref()
        .filter(|s| !totals.knows_session(&ev.project, s))
    {
        let mut t = SessionTotals::default();
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM events WHERE project = ? AND session_id = ? AND record_type = 'span' AND body IS NOT NULL ORDER BY seq",
        )
        .bind(&ev.project)
        .bind(session)
        .fetch_all(&mut *conn)
        .await?;
        for b in bodies {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&b) {
                t.apply(&v);
            }
        }
        totals.seed_session(&ev.project, session, t);
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
