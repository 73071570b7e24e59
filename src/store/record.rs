//! [`PreparedEvent`]: a redacted event turned into a log record's content, ready to append.
//!
//! Preparing (serialising the body, hashing it, deriving its projection facts) is the costly
//! part of an append and needs no log position, so it runs in the request handlers, in
//! parallel. The single writer then only assigns positions, computes links and inserts.

use serde_json::Value;

use super::chain::{self, Hash, RecordContent};
use super::projection::{self, TraceSummaryRow};
use super::schema::RecordType;
use crate::event::format_time;
use crate::redact::event::RedactedEvent;

#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub(super) project: String,
    pub(super) event_id: String,
    /// Whether the client chose the id (only those can repeat, so only those are looked up).
    pub(super) id_from_client: bool,
    pub(super) record_type: RecordType,
    pub(super) trace_id: String,
    pub(super) event_time: String,
    pub(super) recorded_at: String,
    /// The stored JSON, also what rules see.
    pub(super) body: Value,
    pub(super) body_text: String,
    pub(super) digest: Hash,
    pub(super) facts: Option<(String, TraceSummaryRow)>,
}

impl PreparedEvent {
    /// Prepares a span record. Only a [`RedactedEvent`] can become a log record.
    pub fn span(project: &str, event: RedactedEvent, recorded_at: &str) -> Self {
        let e = event.event();
        let (event_id, id_from_client, trace_id) = (e.event_id.clone(), e.id_from_client, e.trace_id.clone());
        let event_time = format_time(&e.start_time);
        let body = event.into_body(project);
        let body_text = body.to_string();
        let record_type = RecordType::Span;
        let digest = chain::digest(&RecordContent {
            project,
            event_id: &event_id,
            record_type: record_type.as_str(),
            recorded_at,
            body: &body_text,
        });
        let facts = projection::span_facts(0, &body);
        PreparedEvent {
            project: project.to_owned(),
            event_id,
            id_from_client,
            record_type,
            trace_id,
            event_time,
            recorded_at: recorded_at.to_owned(),
            body,
            body_text,
            digest,
            facts,
        }
    }

    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    pub fn body(&self) -> &Value {
        &self.body
    }
}
