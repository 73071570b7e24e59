//! The security audit log: authentication, authorization denials, key life-cycle, rule
//! reloads. Fields as seed 001: timestamp, event_type, principal, resource, operation, result,
//! correlation_id, source_ip, metadata. Never holds a secret.
//!
//! Entries go to the JSON log stream at once (target `audit`) and, through a bounded queue, to
//! the single writer, which appends them to the `audit_log` table. A full queue drops the
//! database copy (counted in `audittrail_audit_dropped_total`) rather than slowing requests;
//! the log line is always written.

use chrono::Utc;
use serde::Serialize;
use serde_json::Value;
use sqlx::{Row, SqliteConnection, SqlitePool};
use tokio::sync::mpsc;

use crate::event::format_time;
use crate::store::StoreError;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditEntry {
    pub timestamp: String,
    /// authentication | authorization | key_management | configuration
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
}

pub async fn insert(conn: &mut SqliteConnection, entries: &[AuditEntry]) -> Result<(), StoreError> {
    for e in entries {
        sqlx::query(
            "INSERT INTO audit_log (timestamp, event_type, principal, project, resource, operation, result, correlation_id, source_ip, metadata) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&e.timestamp)
        .bind(&e.event_type)
        .bind(&e.principal)
        .bind(&e.project)
        .bind(&e.resource)
        .bind(&e.operation)
        .bind(&e.result)
        .bind(&e.correlation_id)
        .bind(&e.source_ip)
        .bind(e.metadata.to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub event_type: Option<String>,
    pub principal: Option<String>,
    pub result: Option<String>,
    /// Only entries about these projects (None: all, for keys scoped to every project).
    pub projects: Option<Vec<String>>,
}

/// Newest first; the cursor is the last entry's id.
pub async fn list(
    pool: &SqlitePool,
    f: &AuditFilter,
    before_id: Option<i64>,
    limit: i64,
) -> Result<(Vec<Value>, Option<i64>), StoreError> {
    let rows = sqlx::query(
        "SELECT * FROM audit_log WHERE (?1 IS NULL OR event_type = ?1) AND (?2 IS NULL OR principal = ?2) \
         AND (?3 IS NULL OR result = ?3) AND (?4 IS NULL OR id < ?4) \
         AND (?6 IS NULL OR project IN (SELECT value FROM json_each(?6))) ORDER BY id DESC LIMIT ?5",
    )
    .bind(&f.event_type)
    .bind(&f.principal)
    .bind(&f.result)
    .bind(before_id)
    .bind(limit + 1)
    // The key's projects as a JSON list, so the scope is applied before the LIMIT.
    .bind(f.projects.as_ref().map(|p| serde_json::to_string(p).unwrap_or_default()))
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    let mut last = None;
    for r in rows.iter().take(limit.max(0) as usize) {
        let project: Option<String> = r.try_get("project")?;
        let id: i64 = r.try_get("id")?;
        last = Some(id);
        let metadata: String = r.try_get("metadata")?;
        out.push(serde_json::json!({
            "id": id,
            "timestamp": r.try_get::<String, _>("timestamp")?,
            "event_type": r.try_get::<String, _>("event_type")?,
            "principal": r.try_get::<Option<String>, _>("principal")?,
            "project": project,
            "resource": r.try_get::<Option<String>, _>("resource")?,
            "operation": r.try_get::<String, _>("operation")?,
            "result": r.try_get::<String, _>("result")?,
            "correlation_id": r.try_get::<Option<String>, _>("correlation_id")?,
            "source_ip": r.try_get::<Option<String>, _>("source_ip")?,
            "metadata": serde_json::from_str::<Value>(&metadata).unwrap_or(Value::Null),
        }));
    }
    let next = if rows.len() as i64 > limit {
        last
    } else {
        None
    };
    Ok((out, next))
}
