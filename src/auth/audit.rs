//! The security audit log: authentication, authorization denials, key life-cycle, rule
//! reloads. Fields as seed 001: timestamp, event_type, principal, resource, operation, result,
//! correlation_id, source_ip, metadata. Never holds a secret.
//!
//! Entries go to the JSON log stream at once (target `audit`) and, through a bounded queue, to
//! the single writer, which appends them to the `audit_log` table's hash chain
//! (`store::audit_log`). A full queue drops the database copy (counted in
//! `audittrail_audit_dropped_total`) rather than slowing requests; the log line is always
//! written.

use chrono::Utc;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::event::format_time;

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AuditEntry {
    pub timestamp: String,
    /// authentication | authorization | key_management | configuration | data_access
    pub event_type: String,
    /// Key id (never the secret), `cli`, or `anonymous`.
    pub principal: Option<String>,
    pub project: Option<String>,
    pub resource: Option<String>,
    pub operation: String,
    /// success | failure | denied
    pub result: String,
    pub correlation_id: Option<String>,
    pub source_ip: Option<String>,
    pub metadata: Value,
}

impl AuditEntry {
    pub fn new(event_type: &str, operation: &str, result: &str) -> Self {
        AuditEntry {
            timestamp: format_time(&Utc::now()),
            event_type: event_type.into(),
            principal: None,
            project: None,
            resource: None,
            operation: operation.into(),
            result: result.into(),
            correlation_id: None,
            source_ip: None,
            metadata: Value::Object(Default::default()),
        }
    }
}

/// Where audit entries go. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<AuditEntry>,
}

impl AuditSink {
    pub fn channel(capacity: usize) -> (AuditSink, mpsc::Receiver<AuditEntry>) {
        let (tx, rx) = mpsc::channel(capacity);
        (AuditSink { tx }, rx)
    }

    pub fn record(&self, e: AuditEntry) {
        tracing::info!(
            target: "audit",
            event_type = %e.event_type,
            principal = e.principal.as_deref().unwrap_or("anonymous"),
            project = e.project.as_deref().unwrap_or(""),
            resource = e.resource.as_deref().unwrap_or(""),
            operation = %e.operation,
            result = %e.result,
            correlation_id = e.correlation_id.as_deref().unwrap_or(""),
            source_ip = e.source_ip.as_deref().unwrap_or(""),
            metadata = %e.metadata,
            "audit"
        );
        metrics::counter!("audittrail_audit_events_total", "event_type" => e.event_type.clone(), "result" => e.result.clone())
            .increment(1);
        if self.tx.try_send(e).is_err() {
            metrics::counter!("audittrail_audit_dropped_total").increment(1);
        }
    }

    /// Stores an entry another process already logged and counted (cluster mode: an ingest
    /// node's entry, arriving at the worker through the stream). Waits for room.
    pub async fn store_forwarded(&self, e: AuditEntry) {
        if self.tx.send(e).await.is_err() {
            metrics::counter!("audittrail_audit_dropped_total").increment(1);
        }
    }
}
