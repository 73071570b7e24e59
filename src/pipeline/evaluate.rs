//! The *evaluate* stage: duplicates, running totals and the constitutional rules, in log order.
//!
//! Append requests arrive on a bounded queue ([`Appender::append`]). One task takes a request,
//! drains whatever else is already waiting (up to `max_batch_events`), drops events whose
//! client-chosen id the log (or a batch still in flight) already holds, updates the running
//! totals in log order — the order that makes evaluation deterministic, so a replay of the log
//! reproduces its violations — and evaluates the rules on all cores. The evaluated batch goes
//! to the store's writer, which links and commits it; batch N+1 is evaluated here while batch N
//! is inserted and fsynced there.
//!
//! Totals are a cache of the log: missing ones are rebuilt from it (after a restart or an
//! eviction); after a failed commit, or while no rules are loaded, they are dropped and rebuilt
//! once nothing is in flight. Totals that in-flight events touched are never evicted.
//!
//! Back-pressure: [`Appender::append`] never waits for queue space; a full queue is
//! [`AppendError::Busy`], which ingest turns into `503` + `Retry-After`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use tokio::sync::{mpsc, oneshot};

use crate::rules::live::LiveRules;
use crate::rules::{RuleOutcome, RunningTotals, SessionTotals, TraceTotals, TraceView};
use crate::store::db::Conn;
use crate::store::schema::Events;
use crate::store::writer::{
    Accepted, AppendError, AppendOutcome, AppendRequest, EvaluatedBatch, InFlight, Position,
    WriterHandle,
};
use crate::store::{PreparedEvent, Store, StoreError, history};

#[derive(Debug, Clone, Copy)]
pub struct EvaluateConfig {
    /// Append requests that may wait; beyond this ingest answers 503.
    pub queue_capacity: usize,
    /// Most events committed in one transaction.
    pub max_batch_events: usize,
}

/// The door to the append path: cheap to clone, held by every door.
#[derive(Clone)]
pub struct Appender {
    tx: mpsc::Sender<AppendRequest>,
}

impl Appender {
    /// Appends `events`; resolves once they are durable.
    pub async fn append(&self, events: Vec<PreparedEvent>) -> Result<AppendOutcome, AppendError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(AppendRequest {
                events,
                position: None,
                reply,
            })
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

    /// Worker (cluster mode): queues the events of the stream message at `position`, waiting
    /// for room rather than refusing, so requests reach the log in the order they are sent.
    /// The receiver answers once they are durable (or why not).
    pub async fn append_at(
        &self,
        events: Vec<PreparedEvent>,
        position: Position,
    ) -> Result<oneshot::Receiver<Result<AppendOutcome, AppendError>>, AppendError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(AppendRequest {
                events,
                position: Some(position),
                reply,
            })
            .await
            .map_err(|_| AppendError::Closed)?;
        Ok(rx)
    }

    /// Free places in the queue (for health reporting).
    pub fn queue_free(&self) -> usize {
        self.tx.capacity()
    }

    /// The queue's size.
    pub fn queue_capacity(&self) -> usize {
        self.tx.max_capacity()
    }
}

/// Starts the evaluation stage in front of `writer`. It ends when every [`Appender`] is
/// dropped, after handing its last batch on.
pub async fn spawn(
    store: &Store,
    writer: WriterHandle,
    rules: Arc<LiveRules>,
    cfg: EvaluateConfig,
) -> Result<Appender, StoreError> {
    // Room for every batch that can be in flight (one per stage plus the queues between them)
    // with an eighth to spare for eviction.
    let max_batch = cfg.max_batch_events.max(1);
    let totals_cap = (4 * max_batch).max(10_000);
    let evaluator = Evaluator {
        conn: Some(store.read_connection().await?),
        store: store.clone(),
        totals: RunningTotals::new(totals_cap, totals_cap),
        totals_safe: totals_cap - totals_cap / 8 - 1,
        rules,
        max_batch_events: max_batch,
        in_flight: writer.in_flight.clone(),
        writer,
        generation: 0,
        totals_stale: false,
    };
    let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
    tokio::spawn(evaluator.run(rx));
    Ok(Appender { tx })
}

struct Evaluator {
    /// Reads the log (duplicates, totals); reopened after it fails (a database restart).
    conn: Option<Conn>,
    store: Store,
    totals: RunningTotals,
    /// Most events that may be in flight (evaluated, not committed) with none of their traces
    /// or sessions evicted from `totals`: each event touches one trace and one session entry
    /// with the newest ticks, and an eviction drops only the oldest eighth.
    totals_safe: usize,
    rules: Arc<LiveRules>,
    max_batch_events: usize,
    writer: WriterHandle,
    in_flight: Arc<InFlight>,
    /// The generation `totals` belong to.
    generation: u64,
    /// Totals cannot be trusted (no rules were loaded, a commit failed, an evaluation broke
    /// off): clear them once nothing is in flight and rebuild from the log on demand.
    totals_stale: bool,
}

/// Pass 1's result: per-request outcomes, the events to store with their views, the ids claimed.
#[derive(Default)]
struct Prepared {
    outcomes: Vec<AppendOutcome>,
    accepted: Vec<(usize, usize, TraceView)>,
    claimed: Vec<String>,
}

impl Evaluator {
    async fn run(mut self, mut rx: mpsc::Receiver<AppendRequest>) {
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
            let evaluated = self.evaluate(batch, events).await;
            metrics::histogram!("audittrail_writer_evaluate_seconds")
                .record(started.elapsed().as_secs_f64());
            match evaluated {
                Ok(batch) => {
                    self.in_flight
                        .claim(&batch.claimed, batch.generation, batch.events);
                    if let Err(batch) = self.writer.submit(batch).await {
                        for req in batch.requests {
                            let _ = req.reply.send(Err(AppendError::Closed));
                        }
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

    /// Waits until at most `limit` events are in flight (or the writer is gone).
    async fn drain_to(&self, limit: usize) {
        self.in_flight
            .wait_at_most(limit, self.writer.closed())
            .await;
    }

    async fn evaluate(
        &mut self,
        requests: Vec<AppendRequest>,
        events: usize,
    ) -> Result<EvaluatedBatch, (Vec<AppendRequest>, StoreError)> {
        let rules = self.rules.current();
        let no_rules = rules.rules().is_empty();
        // Read before anything is evaluated: if a commit fails after this, the batch carries
        // the old generation and is refused.
        let generation = self.in_flight.generation();
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
            self.drain_to(0).await;
            self.totals.clear();
            self.totals_stale = false;
        } else {
            self.drain_to(self.totals_safe.saturating_sub(events)).await;
        }
        let prepared = match self.prepare(&requests, no_rules).await {
            Ok(p) => p,
            Err(e) => {
                // Some totals may have been seeded for events that will not be stored; the
                // connection may be gone (a database restart): open a new one next time.
                self.totals_stale = true;
                if let Some(conn) = self.conn.take() {
                    conn.close().await;
                }
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
                        results: rules.evaluate(requests[request].events[event].body(), &view),
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
        for a in &accepted {
            for r in &a.results {
                if let RuleOutcome::RuleError { rule_id, message } = r {
                    self.rules.record_rule_error(rule_id, message);
                }
            }
        }
        Ok(EvaluatedBatch {
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
        let mut by_project: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for ev in client_ids(requests) {
            if self.in_flight.holds(
                &InFlight::id_key(ev.project(), ev.event_id()),
                self.generation,
            ) {
                known.insert((ev.project(), ev.event_id()));
            } else {
                by_project
                    .entry(ev.project())
                    .or_default()
                    .push(ev.event_id());
            }
        }
        if self.conn.is_none() {
            self.conn = Some(self.store.read_connection().await?);
        }
        let mut db = self
            .conn
            .as_mut()
            .expect("the connection was opened just above")
            .exec();
        for (project, ids) in by_project {
            for id in history::existing_event_ids(&mut db, project, &ids).await? {
                if let Some(known_id) = ids.iter().find(|c| **c == id) {
                    known.insert((project, known_id));
                }
            }
        }
        if !no_rules {
            load_totals(
                &mut db,
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
                outcome.event_ids.push(ev.event_id().to_owned());
                if ev.id_from_client() {
                    let key = (ev.project(), ev.event_id());
                    if known.contains(&key) || !seen.insert(key) {
                        outcome.duplicates += 1;
                        continue;
                    }
                    prepared
                        .claimed
                        .push(InFlight::id_key(ev.project(), ev.event_id()));
                }
                let view = if no_rules {
                    TraceView::default()
                } else if ev.is_guard() {
                    self.totals.peek(ev.body())
                } else {
                    self.totals.observe(ev.body())
                };
                prepared.accepted.push((r, e, view));
            }
            prepared.outcomes.push(outcome);
        }
        Ok(prepared)
    }
}

/// Cluster mode, guard on an ingest node: evaluates `event` against its trace's and session's
/// totals as the log holds them now (no running cache on a node; the worker, which stores
/// the request later, evaluates it again in stream order).
pub async fn evaluate_from_log(
    store: &Store,
    rules: &LiveRules,
    event: &PreparedEvent,
) -> Result<Vec<RuleOutcome>, StoreError> {
    let rules = rules.current();
    if rules.rules().is_empty() {
        return Ok(Vec::new());
    }
    let mut conn = store.reader().await?;
    let mut totals = RunningTotals::new(4, 4);
    load_totals(&mut conn.exec(), &mut totals, std::iter::once(event)).await?;
    let view = totals.peek(event.body());
    Ok(rules.evaluate(event.body(), &view))
}

/// Events of the batch whose ids their clients chose.
fn client_ids(requests: &[AppendRequest]) -> impl Iterator<Item = &PreparedEvent> {
    requests
        .iter()
        .flat_map(|req| &req.events)
        .filter(|ev| ev.id_from_client())
}

/// Makes sure the running totals hold the trace and session of every event, rebuilding the
/// missing ones from the log (after a restart or an eviction), so rule evaluation sees the
/// totals a full replay of the log would. One query per project and column for the batch.
async fn load_totals<'a>(
    db: &mut crate::store::db::Exec<'_>,
    totals: &mut RunningTotals,
    events: impl Iterator<Item = &'a PreparedEvent>,
) -> Result<(), StoreError> {
    let mut traces: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut sessions: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for ev in events {
        // Touching held entries keeps them among the newest, so the seeding below (which may
        // evict the oldest eighth) cannot drop totals this batch is about to read.
        if !totals.touch_trace(ev.project(), ev.trace_id()) {
            traces
                .entry(ev.project())
                .or_default()
                .insert(ev.trace_id());
        }
        if let Some(session) = ev
            .session_id()
            .filter(|s| !totals.touch_session(ev.project(), s))
        {
            sessions.entry(ev.project()).or_default().insert(session);
        }
    }
    for (project, ids) in traces {
        let rebuilt =
            history::rebuild(db, project, Events::TraceId, &ids, None, TraceTotals::apply).await?;
        for (id, t) in rebuilt {
            totals.seed_trace(project, id, t);
        }
    }
    for (project, ids) in sessions {
        let rebuilt = history::rebuild(
            db,
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
