//! The worker's side of the stream: one durable pull consumer, read in stream order.
//!
//! A worker that becomes the writer (it took the writer lock) recreates the consumer before
//! reading: a fresh consumer delivers from the oldest message still in the stream, in order,
//! whereas the old one would redeliver what a dead worker had fetched only after `ack_wait`,
//! behind newer messages. Messages leave the stream when acknowledged (work-queue retention),
//! and they are acknowledged only after the commit that recorded their sequence.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};

use super::{BatchMessage, Cluster, ClusterError, WIRE_VERSION};
use crate::auth::audit::AuditEntry;

/// How long a fetched message may stay unacknowledged before NATS offers it again.
pub const ACK_WAIT: Duration = Duration::from_secs(60);
/// Messages fetched and not yet acknowledged, at most.
pub const MAX_ACK_PENDING: i64 = 4096;

/// A stream message, decoded.
pub enum Incoming {
    Batch(BatchMessage),
    Audit(AuditEntry),
    /// Written by a newer build (format version): left in the stream until a worker that
    /// reads it runs (upgrade workers before ingest nodes).
    Newer(u32),
    /// Not a message any build wrote (bad JSON, unknown subject). It is terminated, counted
    /// and logged by sequence, never silently skipped.
    Poison(String),
}

/// Recreates the worker's durable consumer (see the module doc); returns it with the stream's
/// last sequence. Any failure other than "there was none" ends the attempt: reusing the old
/// consumer would deliver a dead worker's messages late and out of order.
pub async fn take_over(cluster: &Cluster) -> Result<(PullConsumer, u64), ClusterError> {
    let nats = |e: &dyn std::fmt::Display| ClusterError::Nats(e.to_string());
    // The lookup returns the stream's current info.
    let stream = cluster
        .js
        .get_stream(&cluster.cfg.stream)
        .await
        .map_err(|e| nats(&e))?;
    let last_sequence = stream.cached_info().state.last_sequence;
    let name = cluster.cfg.consumer_name();
    match stream.delete_consumer(&name).await {
        Ok(_) => {}
        Err(e) if e.to_string().to_ascii_lowercase().contains("not found") => {}
        Err(e) => {
            return Err(ClusterError::Nats(format!(
                "deleting the previous worker's consumer: {e}"
            )));
        }
    }
    let consumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(name),
            description: Some(
                "AuditTrail worker (recreated by each worker that takes over)".into(),
            ),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            // Never give up on a message: dropping one would lose acknowledged events.
            max_deliver: -1,
            max_ack_pending: MAX_ACK_PENDING,
            filter_subject: format!("{}.log.>", cluster.cfg.prefix),
            ..Default::default()
        })
        .await
        .map_err(|e| nats(&e))?;
    Ok((consumer, last_sequence))
}

/// Largest batch a message may unpack to (an ingest node's body limit is far below).
const MAX_UNPACKED: u64 = 256 << 20;

/// The JSON of a batch message: gunzipped (ingest nodes compress batches), at most `limit`
/// bytes; a payload that is not gzip is taken as it is.
pub fn unpack(payload: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    if !payload.starts_with(&[0x1f, 0x8b]) {
        return Ok(payload.to_vec());
    }
    let mut out = Vec::with_capacity(payload.len() * 4);
    flate2::read::GzDecoder::new(payload)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip: {e}"))?;
    if out.len() as u64 > limit {
        return Err(format!("unpacks to more than {limit} bytes"));
    }
    Ok(out)
}

/// Decodes one stream message by its subject.
pub fn decode(cluster: &Cluster, subject: &str, payload: &[u8]) -> Incoming {
    if subject == cluster.cfg.audit_subject() {
        return match serde_json::from_slice(payload) {
            Ok(entry) => Incoming::Audit(entry),
            Err(e) => Incoming::Poison(format!("audit entry: {e}")),
        };
    }
    if subject != cluster.cfg.events_subject() {
        return Incoming::Poison(format!("unknown subject {subject}"));
    }
    let json = match unpack(payload, MAX_UNPACKED) {
        Ok(j) => j,
        Err(e) => return Incoming::Poison(format!("batch: {e}")),
    };
    match serde_json::from_slice::<BatchMessage>(&json) {
        Ok(m) if m.v == WIRE_VERSION => Incoming::Batch(m),
        Ok(m) => Incoming::Newer(m.v),
        Err(e) => Incoming::Poison(format!("batch: {e}")),
    }
}
