//! Starting and stopping the service: open the store, start the writer, serve, shut down.
//!
//! Shutdown (SIGTERM/SIGINT or the caller's future): stop accepting connections, let in-flight
//! requests finish for up to `AUDITTRAIL_SHUTDOWN_GRACE_SECS`, then drop every writer handle so
//! the writer commits what it holds and stops, and wait for it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::auth::audit::{AuditEntry, AuditSink};
use crate::cluster::publish::Publisher;
use crate::cluster::{Cluster, ClusterConfig};
use crate::config::{Config, DatabaseTarget, Resolved};
use crate::event::Limits;
use crate::feed::alerts::AlertSink;
use crate::http::{self, AppState};
use crate::ingest::pricing::PriceTable;
use crate::pipeline::evaluate::{self, EvaluateConfig};
use crate::pipeline::{Pipeline, Sink, StreamSink};
use crate::rules::{self, live::LiveRules};
use crate::store::chain::ChainKey;
use crate::store::checkpoint::CheckpointFile;
use crate::store::writer::{self, WriterConfig};
use crate::store::{Location, PoolSizes, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("configuration problems:\n  - {}", .0.join("\n  - "))]
    Config(Vec<String>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// A built service, not yet serving.
pub struct Service {
    pub state: AppState,
    writer_task: tokio::task::JoinHandle<()>,
    checkpointer: Option<tokio::task::JoinHandle<()>>,
    /// Cluster mode: the task forwarding audit entries to the stream (ends with the sinks).
    forward_audit: Option<tokio::task::JoinHandle<()>>,
    /// Keeps the rules directory watched while the service runs.
    _rules_watcher: Option<notify::RecommendedWatcher>,
    /// SQLite: held while serving, so a second server (or a restore) cannot use the file.
    _lock: Option<crate::store::backup::ServerLock>,
}

/// Where the configured database lives.
pub fn location(resolved: &Resolved) -> Result<Location, Vec<String>> {
    Ok(match &resolved.database {
        DatabaseTarget::Sqlite(path) => Location::Sqlite(path.clone()),
        DatabaseTarget::Postgres(url) => Location::postgres(url.expose()).map_err(|e| vec![e])?,
    })
}

/// Opens the store at the configured location (migrating it).
pub async fn open_store(config: &Config, resolved: &Resolved) -> Result<Store, ServeError> {
    let location = location(resolved).map_err(ServeError::Config)?;
    Ok(Store::open(
        location,
        PoolSizes {
            readers: config.read_pool_size,
            jobs: config.max_jobs,
            acquire_timeout: Duration::from_secs(config.db_connect_timeout_secs.max(1)),
        },
    )
    .await?)
}

pub fn chain_key(resolved: &Resolved) -> ChainKey {
    ChainKey::derive(resolved.secret_key.expose().as_bytes())
}

pub async fn build(config: Config) -> Result<Service, ServeError> {
    install_tls_provider();
    let resolved = config.resolve().map_err(ServeError::Config)?;
    let lock = match &resolved.database {
        DatabaseTarget::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                let _ = std::fs::create_dir_all(dir);
            }
            let lock_path = crate::store::backup::ServerLock::path_for(path);
            Some(crate::store::backup::ServerLock::take(&lock_path).map_err(|_| {
                ServeError::Config(vec![format!(
                    "another AuditTrail server is running on {} (it holds {}); one server per SQLite database",
                    path.display(),
                    lock_path.display()
                )])
            })?)
        }
        DatabaseTarget::Postgres(_) => None,
    };
    let store = open_store(&config, &resolved).await?;
    if let Some(warning) = crate::retention::short_retention_warning(config.retention_days) {
        tracing::warn!("{warning}");
    }
    let redaction =
        crate::redact::setup::build_stage(&config, &resolved).map_err(ServeError::Config)?;
    let (rules, rules_watcher) = load_rules(&config).await?;
    let checkpointer = store.spawn_checkpointer();
    let (audit_sink, audit_rx) = AuditSink::channel(4096);
    let cluster = match ClusterConfig::from_config(&config) {
        Some(cfg) => Some(Cluster::connect(cfg, "audittrail-ingest").await?),
        None => None,
    };
    // An ingest node's audit entries travel to the worker through the stream; its writer is
    // a permanent standby that only relays the worker's committed groups.
    let (writer_audit_rx, forward_audit) = match &cluster {
        Some(cluster) => (
            AuditSink::channel(1).1,
            Some(Publisher::new(cluster.clone()).forward_audit(audit_rx)),
        ),
        None => (audit_rx, None),
    };
    let (writer, writer_task) = writer::spawn(
        &store,
        WriterConfig {
            key: chain_key(&resolved),
            checkpoint: store.sqlite_path().map(CheckpointFile::beside),
            wal_path: store.wal_path(),
            stream: None,
            passive: cluster.is_some(),
        },
        writer_audit_rx,
    )
    .await?;
    let appender = match &cluster {
        None => {
            start_alerts(&config, &writer);
            Sink::Local(
                evaluate::spawn(
                    &store,
                    writer.clone(),
                    rules.clone(),
                    evaluate_config(&config),
                )
                .await?,
            )
        }
        Some(cluster) => {
            crate::cluster::live::relay(cluster, writer.clone()).await?;
            tracing::info!(nats = %cluster.cfg.describe(), stream = %cluster.cfg.stream, "cluster mode: ingest node (batches go to the stream; `audittrail worker` stores them)");
            Sink::Stream(Arc::new(StreamSink {
                publisher: Publisher::new(cluster.clone()),
                store: store.clone(),
                rules: rules.clone(),
            }))
        }
    };
    let pipeline = Pipeline {
        limits: Limits::default(),
        max_batch_events: config.max_batch_events,
        redaction,
        prices: PriceTable::load(&[config.data_dir.as_path(), config.rules_dir.as_path()])
            .map_err(|e| ServeError::Config(vec![e]))?,
        record_key: chain_key(&resolved).personal().clone(),
    };
    let auth = Arc::new(Authenticator::new(
        Arc::new(store.clone()),
        audit_sink.clone(),
        config.trusted_proxies.clone(),
    ));
    auth.spawn_change_watch();
    let dir = rules.dir().display().to_string();
    rules.on_reload(Box::new(move |ok, detail| {
        let mut e = AuditEntry::new(
            "configuration",
            "rules.reload",
            if ok { "success" } else { "failure" },
        );
        e.principal = Some("system".into());
        e.resource = Some(dir.clone());
        e.metadata = detail;
        audit_sink.record(e);
    }));
    let ablations = Arc::new(crate::jobs::Jobs::new(
        "ablation",
        crate::jobs::Limits {
            max_running: config.max_jobs as usize,
            max_queued: config.max_queued_jobs,
            keep_finished: Duration::from_secs(3600),
        },
    ));
    let reports = Arc::new(crate::jobs::Jobs::new(
        "report",
        crate::jobs::Limits {
            max_running: config.max_jobs as usize,
            max_queued: config.max_queued_jobs,
            keep_finished: Duration::from_secs(3600),
        },
    ));
    let activity = Arc::new(crate::feed::activity::Activity::default());
    activity.subscribe(&writer);
    let resolved_secret = resolved.secret_key.expose().to_owned();
    let state = AppState {
        cluster,
        config: Arc::new(config),
        resolved: Arc::new(resolved),
        store,
        writer,
        appender,
        pipeline: Arc::new(pipeline),
        rules,
        auth,
        connected_agents: Default::default(),
        ablations,
        reports,
        metrics: crate::api::ops::metrics_handle(),
        started: Instant::now(),
        sessions: crate::auth::session::SessionKeys::derive(resolved_secret.as_bytes()),
        activity,
    };
    Ok(Service {
        state,
        writer_task,
        checkpointer,
        forward_audit,
        _rules_watcher: rules_watcher,
        _lock: lock,
    })
}

/// Loads the rules directory (off the async workers) and watches it for hot reloads.
pub async fn load_rules(
    config: &Config,
) -> Result<(Arc<LiveRules>, Option<notify::RecommendedWatcher>), ServeError> {
    let dir = config.rules_dir.clone();
    let rules = Arc::new(
        tokio::task::spawn_blocking(move || LiveRules::load(&dir))
            .await
            .map_err(|e| ServeError::Config(vec![format!("loading rules: {e}")]))?,
    );
    let watcher = rules::live::watch(rules.clone());
    Ok((rules, watcher))
}

/// Webhook alerts on the violations `writer` commits (one node, or the cluster's worker).
pub fn start_alerts(config: &Config, writer: &writer::WriterHandle) {
    AlertSink::start(
        config.alert_webhook_urls.clone(),
        crate::rules::Severity::parse(&config.alert_min_severity)
            .unwrap_or(crate::rules::Severity::High),
    )
    .subscribe(writer);
}

pub fn evaluate_config(config: &Config) -> EvaluateConfig {
    EvaluateConfig {
        queue_capacity: config.writer_queue,
        // At least one whole request: the stage sizes its running-totals cache from this.
        max_batch_events: config.writer_batch_events.max(config.max_batch_events),
    }
}

impl Service {
    /// Serves until `shutdown` resolves, then drains and flushes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Service {
            state,
            writer_task,
            checkpointer,
            forward_audit,
            _rules_watcher,
            _lock,
        } = self;
        let grace = Duration::from_secs(state.config.shutdown_grace_secs);
        let store = state.store.clone();
        let (sweep_stop, mut sweep_stopped) = watch::channel(false);
        // A standby (an ingest node's writer is one) skips: the writer's server sweeps.
        let sweeper = tokio::spawn(crate::retention::run_scheduled(
            store.clone(),
            state.writer.clone(),
            state.config.retention_days,
            async move {
                let _ = sweep_stopped.wait_for(|s| *s).await;
            },
        ));
        let app = http::app(
            state,
            http::Doors {
                ingest: crate::api::ingest_router(),
                api: crate::api::router(),
                public: crate::api::public_router(),
                dashboard: crate::dashboard::router(),
                fallback: axum::routing::any(crate::dashboard::not_found),
            },
        );
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, finishing in-flight requests");
            let _ = stop_tx.send(true);
        };
        let server = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal);
        let grace_expired = async move {
            let _ = stop_rx.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = server => result?,
            _ = grace_expired => tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time; stopping anyway"),
        }
        // The sweeper holds a writer handle: stop it (between two chunks) before the writer.
        let _ = sweep_stop.send(true);
        let _ = sweeper.await;
        // Every writer handle lived in the router; it is gone now, so the writer drains and stops.
        if tokio::time::timeout(Duration::from_secs(30), writer_task)
            .await
            .is_err()
        {
            tracing::error!(
                "the writer did not stop within 30 s; unacknowledged requests may be lost"
            );
        }
        if let Some(forward) = forward_audit {
            // Its sender lived in the router's state: it ends once the queued entries are sent.
            let _ = tokio::time::timeout(Duration::from_secs(5), forward).await;
        }
        if let Some(checkpointer) = checkpointer {
            checkpointer.abort();
            let _ = checkpointer.await;
        }
        store.close().await;
        Ok(())
    }
}

/// Makes ring the process's TLS crypto provider (HTTP clients: webhooks, the load generator).
/// Idempotent.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// The store's single writer, opened by a command instead of a server (`erase`, `retention
/// apply`): every write still goes through it. Refused while a server writes the same
/// database — the command's writer would fork the chain — with a message naming the API to
/// use instead.
pub struct Offline {
    pub store: Store,
    pub writer: writer::WriterHandle,
    pub audit: AuditSink,
    task: tokio::task::JoinHandle<()>,
    _lock: Option<crate::store::backup::ServerLock>,
}

pub async fn offline_writer(
    config: &Config,
    resolved: &Resolved,
    instead: &str,
) -> Result<Offline, ServeError> {
    let lock = match &resolved.database {
        DatabaseTarget::Sqlite(path) => {
            let lock_path = crate::store::backup::ServerLock::path_for(path);
            Some(
                crate::store::backup::ServerLock::take(&lock_path).map_err(|_| {
                    ServeError::Config(vec![format!(
                        "a server is running on {}: use {instead} on it, or stop it first",
                        path.display()
                    )])
                })?,
            )
        }
        DatabaseTarget::Postgres(_) => None,
    };
    let store = open_store(config, resolved).await?;
    let (audit, audit_rx) = AuditSink::channel(64);
    let (writer, task) = writer::spawn(
        &store,
        WriterConfig {
            key: chain_key(resolved),
            checkpoint: store.sqlite_path().map(CheckpointFile::beside),
            wal_path: store.wal_path(),
            stream: None,
            passive: false,
        },
        audit_rx,
    )
    .await?;
    if writer.status.standby() {
        drop(writer);
        drop(audit);
        let _ = task.await;
        store.close().await;
        return Err(ServeError::Config(vec![format!(
            "a server holds the writer lock on {}: use {instead} on it",
            store.describe()
        )]));
    }
    Ok(Offline {
        store,
        writer,
        audit,
        task,
        _lock: lock,
    })
}

impl Offline {
    /// Flushes the writer (queued audit entries included) and closes the store.
    pub async fn finish(self) {
        let Offline {
            store,
            writer,
            audit,
            task,
            _lock,
        } = self;
        drop(writer);
        drop(audit);
        let _ = task.await;
        store.close().await;
    }
}
