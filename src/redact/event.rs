//! [`RedactedEvent`]: a trace event that has passed the redactor.
//!
//! Its constructor is visible only inside `crate::redact`, and the store accepts nothing else,
//! so "no unredacted event reaches the log" is checked by the compiler, not by review.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::event::{TraceEvent, format_time};

/// Per top-level field, per PII type: how many values the redactor removed.
/// `{"output": {"EMAIL": 1}, "input": {"PHONE": 2}}`.
pub type RedactionCounts = BTreeMap<String, BTreeMap<String, u32>>;

#[derive(Debug, Clone)]
pub struct RedactedEvent {
    event: TraceEvent,
    redaction: RedactionCounts,
    removed: RemovedValues,
}

/// The personal values the redactor removed from one event, held in memory only until the
/// event is prepared for the log, where each becomes a keyed pseudonym in the value index
/// (erasure by value). Never stored, logged or shown: its `Debug` prints a count.
#[derive(Clone, Default)]
pub struct RemovedValues(pub(in crate::redact) Vec<String>);

impl std::fmt::Debug for RemovedValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemovedValues({} values)", self.0.len())
    }
}

impl RedactedEvent {
    pub(in crate::redact) fn seal(
        event: TraceEvent,
        redaction: RedactionCounts,
        removed: RemovedValues,
    ) -> Self {
        RedactedEvent {
            event,
            redaction,
            removed,
        }
    }

    /// Takes the removed values out (see [`RemovedValues`]).
    pub fn take_removed(&mut self) -> Vec<String> {
        std::mem::take(&mut self.removed.0)
    }

    pub fn event(&self) -> &TraceEvent {
        &self.event
    }

    pub fn redaction(&self) -> &RedactionCounts {
        &self.redaction
    }

    /// The canonical JSON stored in the log and shown to rules: the native event plus the
    /// tenant, the derived duration and the redaction counts.
    pub fn into_body(self, project: &str) -> Value {
        let RedactedEvent {
            event: e,
            redaction,
            ..
        } = self;
        let duration_ms = e.duration_ms();
        let mut m = Map::with_capacity(20);
        m.insert("event_id".into(), Value::String(e.event_id));
        m.insert("project".into(), json!(project));
        m.insert("trace_id".into(), Value::String(e.trace_id));
        m.insert("span_id".into(), Value::String(e.span_id));
        m.insert("parent_span_id".into(), json!(e.parent_span_id));
        m.insert("kind".into(), json!(e.kind.as_str()));
        m.insert("name".into(), json!(e.name));
        m.insert("agent".into(), json!(e.agent));
        m.insert("session_id".into(), json!(e.session_id));
        m.insert("start_time".into(), json!(format_time(&e.start_time)));
        m.insert(
            "end_time".into(),
            json!(e.end_time.as_ref().map(format_time)),
        );
        m.insert("status".into(), json!(e.status.as_str()));
        m.insert("model".into(), json!(e.model));
        m.insert("input".into(), e.input);
        m.insert("output".into(), e.output);
        m.insert(
            "usage".into(),
            json!({
                "input_tokens": e.usage.input_tokens,
                "output_tokens": e.usage.output_tokens,
                "cost_usd": e.usage.cost_usd,
            }),
        );
        m.insert("duration_ms".into(), json!(duration_ms));
        m.insert("attributes".into(), Value::Object(e.attributes));
        m.insert(
            "redaction".into(),
            serde_json::to_value(&redaction).unwrap_or(Value::Null),
        );
        Value::Object(m)
    }
}
