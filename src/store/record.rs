//! [`PreparedEvent`]: a redacted event turned into a log record's content, ready to append.
//!
//! Preparing (serialising the body, hashing it, deriving its projection facts) is the costly
//! part of an append and needs no log position, so it runs in the request handlers, in
//! parallel. The single writer then only assigns positions, computes links and inserts.

use serde_json::Value;

use super::chain::{self, Hash, PersonalKey, RecordContent};
use super::personal::{self, Header};
use super::projection::{self, TraceSummaryRow};
use super::schema::RecordType;
use crate::redact::event::RedactedEvent;

/// A span or guard record in transit between cluster nodes ([`PreparedEvent::to_wire`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct WireEvent {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guard: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub id_from_client: bool,
    pub body: Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub(super) project: String,
    pub(super) event_id: String,
    /// Whether the client chose the id (only those can repeat, so only those are looked up).
    pub(super) id_from_client: bool,
    pub(super) record_type: RecordType,
    pub(super) trace_id: String,
    pub(super) session_id: Option<String>,
    /// The span's agent (and a rule outcome's: its cause's), for erasure by agent.
    pub(super) agent: Option<String>,
    pub(super) event_time: String,
    pub(super) recorded_at: String,
    /// The stored JSON, also what rules see.
    pub(super) body: Value,
    pub(super) body_text: String,
    pub(super) digest: Hash,
    pub(super) facts: Option<(String, TraceSummaryRow)>,
    /// Keyed pseudonyms of the personal values the redactor removed from it (the value index
    /// erasure by value looks up), distinct.
    pub(super) value_index: Vec<String>,
}

impl PreparedEvent {
    /// Prepares a span record. Only a [`RedactedEvent`] can become a log record.
    pub fn span(project: &str, event: RedactedEvent, recorded_at: &str, key: &PersonalKey) -> Self {
        Self::from_redacted(project, event, recorded_at, RecordType::Span, key)
    }

    /// Prepares a guard request's record: evaluated like a span, not counted in totals.
    pub fn guard(
        project: &str,
        event: RedactedEvent,
        recorded_at: &str,
        key: &PersonalKey,
    ) -> Self {
        Self::from_redacted(project, event, recorded_at, RecordType::Guard, key)
    }

    fn from_redacted(
        project: &str,
        event: RedactedEvent,
        recorded_at: &str,
        record_type: RecordType,
        key: &PersonalKey,
    ) -> Self {
        let mut event = event;
        let values: Vec<String> = event
            .take_removed()
            .iter()
            .map(|v| key.value_pseudonym(v))
            .collect();
        let id_from_client = event.event().id_from_client;
        let body = event.into_body(project);
        Self::assemble(
            project,
            body,
            id_from_client,
            recorded_at,
            record_type,
            values,
            key,
        )
        .expect("a redacted event's body has its ids and start time")
    }

    /// Builds the record from its stored body (the fields the writer indexes are read back
    /// from it) and seals it.
    fn assemble(
        project: &str,
        body: Value,
        id_from_client: bool,
        recorded_at: &str,
        record_type: RecordType,
        mut value_index: Vec<String>,
        key: &PersonalKey,
    ) -> Result<Self, String> {
        value_index.sort_unstable();
        value_index.dedup();
        let text = |k: &str| -> Result<String, String> {
            body.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("the record body has no `{k}`"))
        };
        let opt = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
        let (event_id, trace_id, event_time) =
            (text("event_id")?, text("trace_id")?, text("start_time")?);
        let (session_id, agent) = (opt("session_id"), opt("agent"));
        let (digest, body_text) = personal::seal(
            &Header {
                project,
                event_id: &event_id,
                record_type: record_type.as_str(),
                recorded_at,
            },
            &body,
            key,
        );
        let facts = if record_type == RecordType::Span {
            projection::span_facts(0, &body)
        } else {
            None
        };
        Ok(PreparedEvent {
            project: project.to_owned(),
            event_id,
            id_from_client,
            record_type,
            trace_id,
            session_id,
            agent,
            event_time,
            recorded_at: recorded_at.to_owned(),
            body,
            body_text,
            digest,
            facts,
            value_index,
        })
    }

    /// The record as it travels between an ingest node and a worker (cluster mode): the
    /// redacted body and the keyed pseudonyms of removed values — never a raw personal value.
    pub fn to_wire(&self) -> WireEvent {
        WireEvent {
            guard: self.record_type == RecordType::Guard,
            id_from_client: self.id_from_client,
            body: self.body.clone(),
            values: self.value_index.clone(),
        }
    }

    /// Rebuilds a record a worker received (see [`Self::to_wire`]); sealed again with the
    /// installation's key, so a body altered in transit cannot carry a forged digest.
    pub fn from_wire(
        project: &str,
        recorded_at: &str,
        wire: WireEvent,
        key: &PersonalKey,
    ) -> Result<Self, String> {
        let record_type = if wire.guard {
            RecordType::Guard
        } else {
            RecordType::Span
        };
        if wire.body.get("project").and_then(Value::as_str) != Some(project) {
            return Err("the record body belongs to another project".into());
        }
        Self::assemble(
            project,
            wire.body,
            wire.id_from_client,
            recorded_at,
            record_type,
            wire.values,
            key,
        )
    }

    pub fn recorded_at(&self) -> &str {
        &self.recorded_at
    }

    /// A record the writer makes itself (an erasure receipt, an audit checkpoint): no trace,
    /// no client id, its body as given.
    pub(crate) fn own(
        record_type: RecordType,
        project: &str,
        body: Value,
        recorded_at: &str,
    ) -> Self {
        let event_id = uuid::Uuid::now_v7().to_string();
        let body_text = serde_json::to_string(&body).expect("a JSON value always serialises");
        let digest = chain::digest(&RecordContent {
            project,
            event_id: &event_id,
            record_type: record_type.as_str(),
            recorded_at,
            body: &body_text,
        });
        PreparedEvent {
            project: project.to_owned(),
            event_id,
            id_from_client: false,
            record_type,
            trace_id: String::new(),
            session_id: None,
            agent: None,
            event_time: recorded_at.to_owned(),
            recorded_at: recorded_at.to_owned(),
            body,
            body_text,
            digest,
            facts: None,
            value_index: Vec::new(),
        }
    }

    pub fn event_id(&self) -> &str {
        &self.event_id
    }

    pub fn body(&self) -> &Value {
        &self.body
    }

    pub fn is_guard(&self) -> bool {
        self.record_type == RecordType::Guard
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session_id.as_deref()
    }

    /// Whether the client chose the id (only those can repeat).
    pub fn id_from_client(&self) -> bool {
        self.id_from_client
    }
}

/// One rule outcome about one appended event, as stored in the log.
pub struct OutcomeRecord<'a> {
    pub cause: &'a PreparedEvent,
    pub cause_seq: i64,
    pub outcome: &'a crate::rules::RuleOutcome,
}

impl PreparedEvent {
    /// Prepares the log record of a rule outcome (a violation or a rule error).
    pub fn outcome(o: OutcomeRecord<'_>, key: &PersonalKey) -> Self {
        use crate::rules::RuleOutcome;
        let c = o.cause;
        let field = |k: &str| c.body.get(k).cloned().unwrap_or(Value::Null);
        let (record_type, outcome, rule_id, severity, message) = match o.outcome {
            RuleOutcome::Violation {
                rule_id,
                severity,
                message,
            } => (
                RecordType::Violation,
                "violation",
                rule_id,
                Value::from(severity.as_str()),
                message,
            ),
            RuleOutcome::RuleError { rule_id, message } => (
                RecordType::RuleError,
                "rule_error",
                rule_id,
                Value::Null,
                message,
            ),
        };
        let violation_id = uuid::Uuid::now_v7().to_string();
        let body = serde_json::json!({
            "violation_id": violation_id,
            "project": c.project,
            "outcome": outcome,
            "rule_id": rule_id,
            "severity": severity,
            "message": message,
            "event_id": c.event_id,
            "event_seq": o.cause_seq,
            "event_kind": field("kind"),
            "trace_id": field("trace_id"),
            "span_id": field("span_id"),
            "agent": field("agent"),
            "session_id": field("session_id"),
            "at": c.recorded_at,
        });
        let (digest, body_text) = personal::seal(
            &Header {
                project: &c.project,
                event_id: &violation_id,
                record_type: record_type.as_str(),
                recorded_at: &c.recorded_at,
            },
            &body,
            key,
        );
        PreparedEvent {
            project: c.project.clone(),
            event_id: violation_id,
            id_from_client: false,
            record_type,
            trace_id: c.trace_id.clone(),
            // Erasure by session selects a span's outcomes with it.
            session_id: c.session_id.clone(),
            agent: c.agent.clone(),
            event_time: c.event_time.clone(),
            recorded_at: c.recorded_at.clone(),
            body,
            body_text,
            digest,
            facts: None,
            value_index: Vec::new(),
        }
    }
}

/// What a live view shows of a span or guard record: its summary fields (never its input,
/// output or attributes). The committed stream and the live feed's catch-up both use this, so
/// a record looks the same however it reaches the browser.
pub fn span_summary(body: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for k in [
        "event_id",
        "span_id",
        "parent_span_id",
        "kind",
        "name",
        "agent",
        "session_id",
        "status",
        "start_time",
        "end_time",
        "duration_ms",
        "model",
        "usage",
    ] {
        if let Some(v) = body.get(k) {
            out.insert(k.into(), v.clone());
        }
    }
    Value::Object(out)
}

/// The live summary of any stored record that has one (spans, guards, violations, rule errors).
pub fn live_summary(record_type: &str, seq: i64, body: &Value) -> Option<Value> {
    match record_type {
        "span" | "guard" => Some(span_summary(body)),
        "violation" | "rule_error" => super::violations::row_from_body(seq, body)
            .and_then(|row| serde_json::to_value(row).ok()),
        _ => None,
    }
}
