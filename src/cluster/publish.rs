//! An ingest node's append step: a redacted batch becomes one stream message.

use std::time::Instant;

use async_nats::jetstream::message::PublishMessage;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::{BatchMessage, Cluster, WIRE_VERSION};
use crate::auth::audit::AuditEntry;
use crate::store::PreparedEvent;

/// Why a batch is not in the stream (nothing of it was stored; the client may send it again).
#[derive(Debug, thiserror::Error)]
pub enum PublishFailure {
    /// The stream holds `AUDITTRAIL_NATS_MAX_BYTES` of batches the worker has not stored yet.
    #[error("the stream is full: workers are behind or stopped")]
    Full,
    /// Even compressed, the batch is larger than the NATS server's `max_payload`.
    #[error("the batch is {size} bytes compressed; NATS takes at most {max} in one message")]
    TooLarge { size: usize, max: usize },
    /// NATS did not acknowledge (down, restarting, timed out).
    #[error("NATS did not acknowledge the batch: {0}")]
    Unavailable(String),
}

/// What the stream acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    pub sequence: u64,
    /// The stream already held a message with this batch's id (a retry within the window).
    pub duplicate: bool,
}

#[derive(Clone)]
pub struct Publisher {
    cluster: Cluster,
}

impl Publisher {
    pub fn new(cluster: Cluster) -> Self {
        Publisher { cluster }
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Publishes `events` (one project's batch) as one message and waits for the stream's
    /// acknowledgement: only then is the batch durable.
    pub async fn publish_batch(
        &self,
        project: &str,
        recorded_at: &str,
        door: &str,
        events: &[PreparedEvent],
    ) -> Result<Published, PublishFailure> {
        let message = BatchMessage {
            v: WIRE_VERSION,
            project: project.to_owned(),
            recorded_at: recorded_at.to_owned(),
            door: door.to_owned(),
            events: events.iter().map(PreparedEvent::to_wire).collect(),
        };
        let payload = compress(&serde_json::to_vec(&message).expect("a batch message serialises"));
        let max = self.cluster.client.server_info().max_payload;
        // Headers take a little room too; leave them a kilobyte.
        if max > 0 && payload.len() + 1024 > max {
            return Err(PublishFailure::TooLarge {
                size: payload.len(),
                max,
            });
        }
        let id = message_id(project, events.iter().map(PreparedEvent::event_id));
        let started = Instant::now();
        let result = async {
            self.cluster
                .js
                .send_publish(
                    self.cluster.cfg.events_subject(),
                    PublishMessage::build()
                        .payload(payload.into())
                        .message_id(id),
                )
                .await?
                .await
        }
        .await;
        metrics::histogram!("audittrail_nats_publish_ack_seconds")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(ack) => Ok(Published {
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            }),
            Err(e) => {
                let text = e.to_string();
                metrics::counter!("audittrail_nats_publish_failures_total").increment(1);
                if is_full(&text) {
                    Err(PublishFailure::Full)
                } else {
                    Err(PublishFailure::Unavailable(text))
                }
            }
        }
    }

    /// Forwards the node's audit entries to the stream (the worker stores them in the audit
    /// log). Entries are in the node's log output already; one NATS cannot take is counted
    /// in `audittrail_audit_dropped_total`.
    pub fn forward_audit(&self, mut rx: mpsc::Receiver<AuditEntry>) -> tokio::task::JoinHandle<()> {
        let cluster = self.cluster.clone();
        tokio::spawn(async move {
            let subject = cluster.cfg.audit_subject();
            while let Some(entry) = rx.recv().await {
                let payload = serde_json::to_vec(&entry).expect("an audit entry serialises");
                let sent = async {
                    cluster
                        .js
                        .publish(subject.clone(), payload.into())
                        .await?
                        .await
                }
                .await;
                if let Err(e) = sent {
                    metrics::counter!("audittrail_audit_dropped_total").increment(1);
                    tracing::warn!(error = %e, "could not forward an audit entry to NATS (it is in this node's log)");
                }
            }
        })
    }
}

/// Batches travel gzip-compressed (JSON shrinks several times), so a large batch still fits
/// in one NATS message: a batch stays one message, all or nothing.
fn compress(json: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(json.len() / 4),
        flate2::Compression::fast(),
    );
    gz.write_all(json).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

/// The stream's de-duplication id of a batch: its project and its event ids (ids are unique
/// per project only), hashed to a fixed length.
pub fn message_id<'a>(project: &str, event_ids: impl Iterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    h.update(project.as_bytes());
    h.update([0x1e]);
    for id in event_ids {
        h.update(id.as_bytes());
        h.update([0x1f]);
    }
    let digest = h.finalize();
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}:{hex}", project_token(project))
}

/// The project as a header-safe token (projects are short identifiers; anything else is
/// hashed along with the ids anyway).
fn project_token(project: &str) -> String {
    project
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect()
}

/// Whether a publish error says the stream reached its limits (discard-new).
fn is_full(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("maximum bytes")
        || t.contains("maximum messages")
        || t.contains("resource limits exceeded")
        || t.contains("insufficient resources")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_id_depends_on_project_and_ids_only() {
        let a = message_id("p1", ["e1", "e2"].into_iter());
        assert_eq!(a, message_id("p1", ["e1", "e2"].into_iter()));
        assert_ne!(a, message_id("p2", ["e1", "e2"].into_iter()));
        assert_ne!(a, message_id("p1", ["e1e2"].into_iter()));
        assert!(a.starts_with("p1:") && a.len() == 3 + 32);
    }

    #[test]
    fn batches_are_compressed_and_read_back() {
        let json = br#"{"v":1,"events":[]}"#.repeat(50);
        let packed = compress(&json);
        assert!(packed.len() < json.len() / 5);
        assert_eq!(
            super::super::consume::unpack(&packed, 1 << 20).unwrap(),
            json
        );
    }

    #[test]
    fn full_streams_are_recognised() {
        assert!(is_full("maximum bytes exceeded"));
        assert!(!is_full("timed out: didn't receive ack in time"));
    }
}
