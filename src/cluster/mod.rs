//! Cluster mode: NATS JetStream between the ingest nodes and the worker that stores.
//!
//! - [`publish`]: an ingest node's append step. A redacted batch becomes one stream message
//!   (all or nothing), with `Nats-Msg-Id` derived from its project and event ids, and the
//!   client is answered only after the stream's publish-ack.
//! - [`consume`]: the worker's side: one durable pull consumer, read in stream order by the
//!   worker that holds the writer lock, acknowledged only after the commit that recorded the
//!   message's stream sequence.
//! - [`live`]: committed groups cross nodes on a plain NATS subject (the dashboards' live feed).
//!
//! Subjects (`<prefix>` is `AUDITTRAIL_NATS_SUBJECT_PREFIX`): `<prefix>.log.events` (batches)
//! and `<prefix>.log.audit` (audit entries of ingest nodes) are in the stream;
//! `<prefix>.live` (committed groups) is not. Only redacted data is ever published.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::store::WireEvent;

pub mod consume;
pub mod live;
pub mod publish;

/// The version of the stream message format this build writes and reads.
pub const WIRE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to NATS: {0}")]
    Connect(String),
    #[error("JetStream stream `{stream}`: {reason}")]
    Stream { stream: String, reason: String },
    #[error("NATS: {0}")]
    Nats(String),
}

/// Where and how: read from [`Config`] once.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    url: String,
    pub stream: String,
    pub prefix: String,
    pub replicas: usize,
    pub max_bytes: i64,
    pub max_age: Duration,
    pub duplicate_window: Duration,
}

impl ClusterConfig {
    /// `None` unless `AUDITTRAIL_NATS_URL` is set.
    pub fn from_config(config: &Config) -> Option<Self> {
        if !config.cluster_mode() {
            return None;
        }
        let url = config.nats_url.as_ref()?.expose().trim().to_owned();
        Some(ClusterConfig {
            url,
            stream: config.nats_stream.clone(),
            prefix: config.nats_subject_prefix.clone(),
            replicas: config.nats_replicas,
            max_bytes: config.nats_max_bytes,
            max_age: Duration::from_secs(config.nats_max_age_secs),
            duplicate_window: Duration::from_secs(config.nats_duplicate_window_secs.max(1)),
        })
    }

    pub fn events_subject(&self) -> String {
        format!("{}.log.events", self.prefix)
    }

    pub fn audit_subject(&self) -> String {
        format!("{}.log.audit", self.prefix)
    }

    pub fn live_subject(&self) -> String {
        format!("{}.live", self.prefix)
    }

    /// The durable consumer the active worker reads.
    pub fn consumer_name(&self) -> String {
        format!("{}_worker", self.stream)
    }

    /// The NATS server list without credentials (for logs and health).
    pub fn describe(&self) -> String {
        self.url
            .split(',')
            .map(|u| match (u.find("://"), u.rfind('@')) {
                (Some(s), Some(at)) if at > s => format!("{}{}", &u[..s + 3], &u[at + 1..]),
                (None, Some(at)) => u[at + 1..].to_owned(),
                _ => u.to_owned(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// One ingest batch as it travels in the stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchMessage {
    pub v: u32,
    pub project: String,
    pub recorded_at: String,
    /// `http`, `ws`, `otlp` or `guard` (metrics only).
    pub door: String,
    pub events: Vec<WireEvent>,
}

/// A connection to NATS and its JetStream context.
#[derive(Clone)]
pub struct Cluster {
    pub cfg: ClusterConfig,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
}

impl Cluster {
    /// Connects (reconnecting by itself afterwards) and creates or checks the stream.
    pub async fn connect(cfg: ClusterConfig, name: &str) -> Result<Cluster, ClusterError> {
        let client = async_nats::ConnectOptions::new()
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            // Keep trying forever after the first connection: a NATS restart is a pause.
            .max_reconnects(None)
            .connect(cfg.url.as_str())
            .await
            .map_err(|e| ClusterError::Connect(format!("{} ({e})", cfg.describe())))?;
        let js = jetstream::new(client.clone());
        let cluster = Cluster { cfg, client, js };
        cluster.ensure_stream().await?;
        Ok(cluster)
    }

    /// Whether the client is connected now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.cfg.stream.clone(),
            subjects: vec![format!("{}.log.>", self.cfg.prefix)],
            // A message leaves the stream once the worker acknowledged it (after its commit):
            // the stream is the backlog, bounded by max_bytes, and a full one refuses new
            // messages (ingest answers 503) instead of dropping old ones.
            retention: stream::RetentionPolicy::WorkQueue,
            discard: stream::DiscardPolicy::New,
            max_bytes: self.cfg.max_bytes,
            max_age: self.cfg.max_age,
            num_replicas: self.cfg.replicas,
            duplicate_window: self.cfg.duplicate_window,
            storage: stream::StorageType::File,
            description: Some(
                "AuditTrail: redacted ingest batches on their way to the worker".into(),
            ),
            ..Default::default()
        }
    }

    /// Creates the stream, or checks that the existing one is ours and updates its limits.
    pub async fn ensure_stream(&self) -> Result<stream::Info, ClusterError> {
        let want = self.stream_config();
        let fail = |reason: String| ClusterError::Stream {
            stream: self.cfg.stream.clone(),
            reason,
        };
        match self.js.get_stream(&self.cfg.stream).await {
            Ok(mut existing) => {
                let info = existing
                    .info()
                    .await
                    .map_err(|e| fail(e.to_string()))?
                    .clone();
                if info.config.subjects != want.subjects || info.config.retention != want.retention
                {
                    return Err(fail(format!(
                        "exists with subjects {:?} and retention {:?}; AuditTrail needs {:?} and work-queue retention (set AUDITTRAIL_NATS_STREAM to another name, or delete it)",
                        info.config.subjects, info.config.retention, want.subjects
                    )));
                }
                if info.config.max_bytes != want.max_bytes
                    || info.config.max_age != want.max_age
                    || info.config.duplicate_window != want.duplicate_window
                    || info.config.num_replicas != want.num_replicas
                {
                    return self
                        .js
                        .update_stream(want)
                        .await
                        .map_err(|e| fail(format!("updating its limits: {e}")));
                }
                Ok(info)
            }
            Err(_) => self
                .js
                .create_stream(want)
                .await
                .map(|s| s.cached_info().clone())
                .map_err(|e| fail(format!("creating it: {e}"))),
        }
    }

    /// The stream's backlog (messages, bytes not yet stored by a worker) and, when the worker's
    /// consumer exists, its redelivered and unacknowledged counts: one lookup of each (both
    /// lookups return the current info).
    async fn state(&self) -> Result<((u64, u64), Option<(usize, usize)>), ClusterError> {
        let stream = self
            .js
            .get_stream(&self.cfg.stream)
            .await
            .map_err(|e| ClusterError::Nats(e.to_string()))?;
        let state = &stream.cached_info().state;
        let backlog = (state.messages, state.bytes);
        let consumer = stream
            .get_consumer::<jetstream::consumer::pull::Config>(&self.cfg.consumer_name())
            .await
            .ok()
            .map(|c| {
                let info = c.cached_info();
                (info.num_redelivered, info.num_ack_pending)
            });
        Ok((backlog, consumer))
    }
}

/// What health and metrics show of the cluster (each read bounded to two seconds).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterFacts {
    pub nats_connected: bool,
    /// Batches (and audit entries) in the stream that no worker has stored yet.
    pub lag_messages: Option<u64>,
    pub lag_bytes: Option<u64>,
    /// The stream's limit (`AUDITTRAIL_NATS_MAX_BYTES`): ingest answers 503 past it.
    pub max_bytes: i64,
    /// Messages NATS delivered more than once to the worker consumer.
    pub redelivered: Option<usize>,
    /// Messages the active worker fetched and has not acknowledged yet.
    pub ack_pending: Option<usize>,
}

impl ClusterFacts {
    pub async fn gather(cluster: &Cluster) -> Self {
        let read = tokio::time::timeout(Duration::from_secs(2), cluster.state())
            .await
            .ok()
            .and_then(Result::ok);
        let backlog = read.map(|r| r.0);
        let consumer = read.and_then(|r| r.1);
        let facts = ClusterFacts {
            nats_connected: cluster.connected(),
            lag_messages: backlog.map(|b| b.0),
            lag_bytes: backlog.map(|b| b.1),
            max_bytes: cluster.cfg.max_bytes,
            redelivered: consumer.map(|c| c.0),
            ack_pending: consumer.map(|c| c.1),
        };
        facts.export();
        facts
    }

    /// The stream is more than 80% full: ingest will soon answer 503.
    pub fn nearly_full(&self) -> bool {
        self.lag_bytes
            .is_some_and(|b| b as f64 > 0.8 * self.max_bytes as f64)
    }

    fn export(&self) {
        metrics::gauge!("audittrail_nats_connected").set(f64::from(u8::from(self.nats_connected)));
        if let Some(m) = self.lag_messages {
            metrics::gauge!("audittrail_nats_lag_messages").set(m as f64);
        }
        if let Some(b) = self.lag_bytes {
            metrics::gauge!("audittrail_nats_lag_bytes").set(b as f64);
        }
        metrics::gauge!("audittrail_nats_max_bytes").set(self.max_bytes as f64);
        if let Some(r) = self.redelivered {
            metrics::gauge!("audittrail_nats_redelivered_messages").set(r as f64);
        }
        if let Some(p) = self.ack_pending {
            metrics::gauge!("audittrail_nats_ack_pending").set(p as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str) -> ClusterConfig {
        ClusterConfig {
            url: url.into(),
            stream: "S".into(),
            prefix: "p".into(),
            replicas: 1,
            max_bytes: 1 << 20,
            max_age: Duration::ZERO,
            duplicate_window: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_description_drops_credentials() {
        assert_eq!(
            cfg("nats://user:pw@nats:4222,nats://b:4222").describe(),
            "nats://nats:4222,nats://b:4222"
        );
        assert_eq!(cfg("tok@127.0.0.1:4222").describe(), "127.0.0.1:4222");
    }

    #[test]
    fn subjects_share_the_prefix_and_only_the_log_is_in_the_stream() {
        let c = cfg("x");
        assert_eq!(c.events_subject(), "p.log.events");
        assert_eq!(c.audit_subject(), "p.log.audit");
        assert_eq!(c.live_subject(), "p.live");
        assert!(!c.live_subject().starts_with("p.log."));
    }
}
