//! `audittrail worker`: cluster mode's projector. It reads the JetStream stream in order,
//! evaluates the rules, appends to Postgres with the hash chain — recording each message's
//! stream sequence in the same transaction — and acknowledges NATS only after the commit.
//!
//! Exactly one worker writes: the store's writer lock (a Postgres advisory lock) decides, and
//! the others wait as standbys, checking every second. A worker that becomes the writer reads
//! the stored stream position, recreates the durable consumer (so delivery restarts in order
//! from the oldest message left in the stream) and skips what the log already holds. Any
//! failure (a commit, NATS, the lock) ends the reading session; the next one starts from the
//! stored position again. A message is never acknowledged before it is stored, and never
//! stored twice: the commit refuses a message that does not continue the stored position.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::AckKind;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use crate::auth::audit::AuditSink;
use crate::cluster::consume::{self, Incoming};
use crate::cluster::{Cluster, ClusterConfig, ClusterFacts};
use crate::config::{Config, DatabaseTarget};
use crate::pipeline::Appender;
use crate::pipeline::evaluate;
use crate::rules::live::LiveRules;
use crate::server::{ServeError, chain_key, evaluate_config, load_rules, open_store, start_alerts};
use crate::store::chain::PersonalKey;
use crate::store::writer::{self, Position, WriterConfig, WriterHandle};
use crate::store::{AppendError, AppendOutcome, PreparedEvent, Store, stream_progress};

/// Messages fetched per pull request.
const FETCH_BATCH: usize = 256;
/// Requests submitted and not yet acknowledged, at most (the evaluation queue holds them).
const IN_FLIGHT: usize = 512;

struct Worker {
    store: Store,
    cluster: Cluster,
    writer: WriterHandle,
    appender: Appender,
    audit: AuditSink,
    key: PersonalKey,
}

/// Runs the worker until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    crate::server::install_tls_provider();
    // Installed now, so that what the worker records before the first scrape is kept.
    let _ = crate::api::ops::metrics_handle();
    let resolved = config.resolve().map_err(ServeError::Config)?;
    let Some(cfg) = ClusterConfig::from_config(&config) else {
        return Err(ServeError::Config(vec![
            "AUDITTRAIL_NATS_URL: the worker reads the cluster's stream; set it (and DATABASE_URL to Postgres)".into(),
        ]));
    };
    if !matches!(resolved.database, DatabaseTarget::Postgres(_)) {
        return Err(ServeError::Config(vec![
            "DATABASE_URL: the worker stores in Postgres; set a postgres:// URL".into(),
        ]));
    }
    let store = open_store(&config, &resolved).await?;
    let (rules, _rules_watcher) = load_rules(&config).await?;
    let cluster = Cluster::connect(cfg, "audittrail-worker").await?;
    let (audit, audit_rx) = AuditSink::channel(4096);
    let (writer, writer_task) = writer::spawn(
        &store,
        WriterConfig {
            key: chain_key(&resolved),
            checkpoint: None,
            wal_path: None,
            stream: Some(cluster.cfg.stream.clone()),
            passive: false,
        },
        audit_rx,
    )
    .await?;
    start_alerts(&config, &writer);
    let live = crate::cluster::live::publish_committed(cluster.clone(), &writer);
    let appender = evaluate::spawn(
        &store,
        writer.clone(),
        rules.clone(),
        evaluate_config(&config),
    )
    .await?;
    let reading = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let health = match config.worker_bind {
        Some(bind) => Some(
            serve_health(
                bind,
                HealthState {
                    store: store.clone(),
                    cluster: cluster.clone(),
                    writer: writer.clone(),
                    rules: rules.clone(),
                    reading: reading.clone(),
                },
                stop_rx.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let mut sweep_stop = stop_rx.clone();
    let sweeper = tokio::spawn(crate::retention::run_scheduled(
        store.clone(),
        writer.clone(),
        config.retention_days,
        async move {
            let _ = sweep_stop.wait_for(|s| *s).await;
        },
    ));
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("worker shutting down: finishing the messages in flight");
        let _ = stop_tx.send(true);
    });
    tracing::info!(nats = %cluster.cfg.describe(), stream = %cluster.cfg.stream, database = %store.describe(), "worker started");
    let worker = Worker {
        store: store.clone(),
        cluster,
        writer: writer.clone(),
        appender,
        audit,
        key: chain_key(&resolved).personal().clone(),
    };
    worker.run(stop_rx, &reading).await;
    let _ = sweeper.await;
    drop(worker);
    drop(writer);
    if tokio::time::timeout(Duration::from_secs(30), writer_task)
        .await
        .is_err()
    {
        tracing::error!("the writer did not stop within 30 s");
    }
    live.abort();
    if let Some(h) = health {
        let _ = h.await;
    }
    store.close().await;
    Ok(())
}

impl Worker {
    async fn run(&self, mut stop: watch::Receiver<bool>, reading: &AtomicBool) {
        let mut announced_standby = false;
        while !*stop.borrow() {
            if self.writer.status.standby() {
                if !announced_standby {
                    tracing::info!(
                        "standby: another worker holds the writer lock; waiting to take over"
                    );
                    announced_standby = true;
                }
                pause(&mut stop, Duration::from_millis(250)).await;
                continue;
            }
            announced_standby = false;
            reading.store(true, Ordering::Relaxed);
            let ended = self.session(&mut stop).await;
            reading.store(false, Ordering::Relaxed);
            if let Err(why) = ended {
                metrics::counter!("audittrail_worker_session_restarts_total").increment(1);
                tracing::warn!(reason = %why, "worker reading session ended; starting again from the stored position");
                pause(&mut stop, Duration::from_secs(1)).await;
            }
        }
    }

    /// Reads from the stored position until stopped or until something fails.
    async fn session(&self, stop: &mut watch::Receiver<bool>) -> Result<(), String> {
        let stream = self.cluster.cfg.stream.clone();
        let stored = {
            let mut conn = self.store.reader().await.map_err(|e| e.to_string())?;
            stream_progress::load(&mut conn.exec(), &stream)
                .await
                .map_err(|e| e.to_string())?
        };
        let (consumer, last_sequence) = consume::take_over(&self.cluster)
            .await
            .map_err(|e| e.to_string())?;
        if last_sequence < stored {
            // The stream was deleted and recreated (or NATS lost its storage): its sequences
            // started again, and every new message would look stored already. Refuse.
            metrics::gauge!("audittrail_worker_stream_reset").set(1.0);
            return Err(format!(
                "the stream's last sequence ({last_sequence}) is below the position stored in the database ({stored}): the stream was reset. Nothing is read until an operator decides (README, \"Scaling out\")"
            ));
        }
        metrics::gauge!("audittrail_worker_stream_reset").set(0.0);
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(FETCH_BATCH)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| format!("pulling from the consumer: {e}"))?;
        tracing::info!(stream = %stream, position = stored, "reading the stream");
        // A reconnection to NATS ends the session: pull requests and acknowledgements may
        // have been lost with the old connection, and a fresh consumer redelivers in order.
        let stats = self.cluster.client.statistics();
        let connects = stats.connects.load(Ordering::Relaxed);
        let (ack_tx, ack_rx) = mpsc::channel(IN_FLIGHT);
        let (failed_tx, mut failed_rx) = watch::channel(None::<String>);
        let committed = Arc::new(AtomicU64::new(stored));
        let acker = tokio::spawn(ack_in_order(ack_rx, failed_tx, committed.clone()));
        // `seen`: the last sequence taken in this session; `chain`: the last batch's (what the
        // next batch must continue, see `Position`).
        let (mut seen, mut chain) = (stored, stored);
        // Deliveries of a fresh consumer are numbered 1, 2, 3, …; a gap means one was lost
        // (it would come back only after `ack_wait`, out of order): start again.
        let mut delivery = 0u64;
        let mut lock_check = tokio::time::interval(Duration::from_millis(500));
        let result = loop {
            let msg = tokio::select! {
                _ = stop.changed() => break Ok(()),
                _ = failed_rx.changed() => {
                    break Err(failed_rx.borrow().clone().unwrap_or_default());
                }
                _ = lock_check.tick() => {
                    if self.writer.status.standby() {
                        break Err("the writer lock was lost".into());
                    }
                    if stats.connects.load(Ordering::Relaxed) != connects || !self.cluster.connected() {
                        break Err("the NATS connection was interrupted".into());
                    }
                    continue;
                }
                msg = messages.next() => msg,
            };
            let msg = match msg {
                Some(Ok(m)) => m,
                Some(Err(e)) => break Err(format!("reading the stream: {e}")),
                None => break Err("the consumer's message stream ended".into()),
            };
            let (seq, delivered, consumer_seq) = match msg.info() {
                Ok(i) => (i.stream_sequence, i.delivered, i.consumer_sequence),
                Err(e) => break Err(format!("a message without stream metadata: {e}")),
            };
            if consumer_seq != delivery + 1 {
                break Err(format!(
                    "delivery {consumer_seq} followed delivery {delivery}: one was lost"
                ));
            }
            delivery = consumer_seq;
            if delivered > 1 {
                metrics::counter!("audittrail_nats_redeliveries_total").increment(1);
            }
            if seq <= stored {
                // Stored before (the acknowledgement was lost): acknowledge it now.
                metrics::counter!("audittrail_worker_skipped_total").increment(1);
                let _ = msg.ack().await;
                continue;
            }
            if seq <= seen {
                // Delivered again: acknowledge it if it is stored (the first acknowledgement
                // was lost); if it is still in flight, its commit acknowledges it.
                if seq <= committed.load(Ordering::Acquire) {
                    let _ = msg.ack().await;
                }
                continue;
            }
            seen = seq;
            match consume::decode(&self.cluster, msg.subject.as_str(), &msg.payload) {
                Incoming::Audit(entry) => {
                    self.audit.store_forwarded(entry).await;
                    let _ = msg.ack().await;
                }
                Incoming::Poison(reason) => {
                    metrics::counter!("audittrail_worker_poison_messages_total").increment(1);
                    tracing::error!(seq, reason = %reason, "a stream message no AuditTrail wrote; terminated, not stored");
                    let _ = msg.ack_with(AckKind::Term).await;
                }
                Incoming::Newer(v) => {
                    let _ = msg
                        .ack_with(AckKind::Nak(Some(Duration::from_secs(30))))
                        .await;
                    break Err(format!(
                        "message {seq} has format version {v}; this worker reads {} (upgrade the workers before the ingest nodes)",
                        crate::cluster::WIRE_VERSION
                    ));
                }
                Incoming::Batch(batch) => {
                    let events: Result<Vec<PreparedEvent>, String> = batch
                        .events
                        .into_iter()
                        .map(|w| {
                            PreparedEvent::from_wire(
                                &batch.project,
                                &batch.recorded_at,
                                w,
                                &self.key,
                            )
                        })
                        .collect();
                    let events = match events {
                        Ok(e) if !e.is_empty() => e,
                        Ok(_) | Err(_) => {
                            metrics::counter!("audittrail_worker_poison_messages_total")
                                .increment(1);
                            tracing::error!(
                                seq,
                                "a batch whose records cannot be rebuilt; terminated, not stored"
                            );
                            let _ = msg.ack_with(AckKind::Term).await;
                            continue;
                        }
                    };
                    let reply = match self
                        .appender
                        .append_at(events, Position { after: chain, seq })
                        .await
                    {
                        Ok(r) => r,
                        Err(e) => break Err(e.to_string()),
                    };
                    chain = seq;
                    let recorded_at = batch.recorded_at;
                    if ack_tx.send((msg, reply, recorded_at)).await.is_err() {
                        break Err("the acknowledging task stopped".into());
                    }
                }
            }
        };
        // Whatever was submitted is answered by the writer; wait for those acknowledgements
        // so the next session reads a final position.
        drop(ack_tx);
        let _ = acker.await;
        result
    }
}

type Reply = oneshot::Receiver<Result<AppendOutcome, AppendError>>;

/// Acknowledges messages in stream order, each once its commit answered. The first failure
/// is reported; later messages are not acknowledged (they are delivered again).
async fn ack_in_order(
    mut rx: mpsc::Receiver<(jetstream::Message, Reply, String)>,
    failed: watch::Sender<Option<String>>,
    committed: Arc<AtomicU64>,
) {
    let mut ok = true;
    while let Some((msg, reply, recorded_at)) = rx.recv().await {
        let outcome = reply.await;
        if !ok {
            continue;
        }
        match outcome {
            Ok(Ok(_)) => {
                if let Ok(info) = msg.info() {
                    committed.fetch_max(info.stream_sequence, Ordering::AcqRel);
                }
                if let Some(lag) = since(&recorded_at) {
                    metrics::histogram!("audittrail_cluster_end_to_end_seconds").record(lag);
                }
                if let Err(e) = msg.ack().await {
                    // It stays in the stream and comes again; the stored position skips it.
                    tracing::debug!(error = %e, "acknowledgement not sent");
                }
            }
            Ok(Err(e)) => {
                ok = false;
                let _ = failed.send(Some(format!("a batch was not stored: {e}")));
            }
            Err(_) => {
                ok = false;
                let _ = failed.send(Some("the writer stopped".into()));
            }
        }
    }
}

/// Seconds from `recorded_at` (when the ingest node took the batch) until now.
fn since(recorded_at: &str) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(recorded_at).ok()?;
    let ms = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_microseconds()?;
    Some(ms.max(0) as f64 / 1e6)
}

async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        _ = stop.changed() => {}
        _ = tokio::time::sleep(d) => {}
    }
}

#[derive(Clone)]
struct HealthState {
    store: Store,
    cluster: Cluster,
    writer: WriterHandle,
    rules: Arc<LiveRules>,
    reading: Arc<AtomicBool>,
}

/// The worker's own listener: `/api/v1/health` and `/metrics` (no API; put it on a private
/// network, as the node's `/metrics` is behind a key).
async fn serve_health(
    bind: SocketAddr,
    state: HealthState,
    mut stop: watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let listener = tokio::net::TcpListener::bind(bind).await?;
    tracing::info!(addr = %listener.local_addr()?, "worker health and metrics listening");
    let app = Router::new()
        .route("/api/v1/health", get(worker_health))
        .route("/metrics", get(worker_metrics))
        .with_state(state);
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    }))
}

async fn worker_health(State(s): State<HealthState>) -> impl IntoResponse {
    let started = Instant::now();
    let cluster = ClusterFacts::gather(&s.cluster).await;
    let db = s.store.ping().await;
    let active = !s.writer.status.standby();
    let reading = s.reading.load(Ordering::Relaxed);
    let rules_loaded = s.rules.current().rules().len();
    // A standby is healthy: it is there to take over.
    let status = if !(db && cluster.nats_connected && s.writer.status.healthy()) {
        "error"
    } else if (active && !reading) || rules_loaded == 0 || cluster.nearly_full() {
        "degraded"
    } else {
        "ok"
    };
    let code = if status == "error" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    metrics::histogram!("audittrail_worker_health_seconds").record(started.elapsed().as_secs_f64());
    (
        code,
        Json(json!({
            "status": status,
            "role": "worker",
            "active": active,
            "reading": reading,
            "db_connected": db,
            "head_seq": s.writer.status.head_seq(),
            "rules_loaded": rules_loaded,
            "version": crate::VERSION,
            "cluster": cluster,
        })),
    )
}

async fn worker_metrics(State(s): State<HealthState>) -> impl IntoResponse {
    ClusterFacts::gather(&s.cluster).await;
    metrics::gauge!("audittrail_writer_standby")
        .set(f64::from(u8::from(s.writer.status.standby())));
    crate::api::ops::record_process_usage();
    let handle = crate::api::ops::metrics_handle();
    handle.run_upkeep();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}
