//! The one place the stages are wired: normalize → redact → evaluate ([`evaluate`]) → append
//! (the store's writer).
//!
//! Doors (HTTP, WebSocket, OTLP) decode their wire format into JSON values or [`TraceEvent`]s
//! and hand them here; nothing after this point knows which door an event came in by.
//! A batch is all-or-nothing: if any event fails validation or redaction, nothing of the
//! batch is stored and the error names every failing path.

use serde_json::Value;

use crate::event::{self, FieldError, Limits, SpanKind, TraceEvent, format_time};
use crate::ingest::pricing::PriceTable;
use crate::redact::RedactionStage;
use crate::redact::event::RedactedEvent;
use crate::store::chain::PersonalKey;
use crate::store::{AppendError, AppendOutcome, PreparedEvent};

pub mod evaluate;

pub use evaluate::Appender;

/// At most this many field errors are reported for one batch.
const MAX_REPORTED_ERRORS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid batch")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Append(#[from] AppendError),
}

/// An identifier the redactor replaced by its keyed pseudonym because it held personal data.
/// The raw value is never repeated; lookups by it find the record (see
/// [`RedactionStage::lookup_id`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PseudonymizedId {
    /// Position of the event in the batch.
    pub index: usize,
    /// `event_id`, `trace_id`, `span_id`, `parent_span_id` or `session_id`.
    pub field: &'static str,
    /// What is stored instead.
    pub stored_as: String,
}

/// What ingesting a batch produced.
#[derive(Debug, Clone, Default)]
pub struct Ingested {
    pub outcome: AppendOutcome,
    pub pseudonymized: Vec<PseudonymizedId>,
}

pub struct Pipeline {
    pub limits: Limits,
    pub max_batch_events: usize,
    pub redaction: RedactionStage,
    /// Prices for spans that carry tokens but no cost (OTLP).
    pub prices: PriceTable,
    /// Keys the digest of each record's personal part (so erasure keeps the facts verifiable).
    pub record_key: PersonalKey,
}

impl Pipeline {
    /// Validates a native batch `{"events": [...]}` into canonical events.
    pub fn normalize_batch(&self, body: Value) -> Result<Vec<TraceEvent>, Vec<FieldError>> {
        let fail = |path: &str, message: &str| {
            vec![FieldError {
                path: path.into(),
                message: message.into(),
            }]
        };
        let Value::Object(mut obj) = body else {
            return Err(fail("$", "must be a JSON object with an `events` array"));
        };
        let events = match obj.remove("events") {
            Some(Value::Array(events)) => events,
            Some(_) => return Err(fail("events", "must be an array")),
            None => return Err(fail("events", "is required")),
        };
        if events.is_empty() {
            return Err(fail("events", "must contain at least one event"));
        }
        if events.len() > self.max_batch_events {
            return Err(fail(
                "events",
                &format!(
                    "more than {} events in one batch; split it",
                    self.max_batch_events
                ),
            ));
        }
        let mut out = Vec::with_capacity(events.len());
        let mut errors = Vec::new();
        for (i, v) in events.into_iter().enumerate() {
            match event::parse_event(v, &format!("events[{i}]"), &self.limits, new_event_id) {
                Ok(e) => out.push(e),
                Err(mut errs) => errors.append(&mut errs),
            }
            if errors.len() >= MAX_REPORTED_ERRORS {
                errors.truncate(MAX_REPORTED_ERRORS);
                break;
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// Redacts every event; fails closed (the whole batch) if any event cannot be redacted.
    pub fn redact(&self, events: Vec<TraceEvent>) -> Result<Vec<RedactedEvent>, Vec<FieldError>> {
        let mut out = Vec::with_capacity(events.len());
        let mut errors = Vec::new();
        for (i, e) in events.into_iter().enumerate() {
            match self.redaction.redact_event(e) {
                Ok(r) => out.push(r),
                Err(err) => errors.push(FieldError {
                    path: format!("events[{i}]"),
                    message: err.to_string(),
                }),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// The whole path for one native batch; resolves once the events are durable.
    pub async fn ingest(
        &self,
        writer: &Appender,
        project: &str,
        body: Value,
        door: &'static str,
    ) -> Result<Ingested, IngestError> {
        let events = self.normalize_batch(body).map_err(IngestError::Invalid)?;
        self.ingest_events(writer, project, events, door).await
    }

    /// Redacts, prepares and appends already-validated events (doors with their own decoding).
    pub async fn ingest_events(
        &self,
        writer: &Appender,
        project: &str,
        events: Vec<TraceEvent>,
        door: &'static str,
    ) -> Result<Ingested, IngestError> {
        let events = self.redact(events).map_err(IngestError::Invalid)?;
        let pseudonymized = pseudonymized_ids(&events);
        let recorded_at = format_time(&chrono::Utc::now());
        let prepared: Vec<PreparedEvent> = events
            .into_iter()
            .map(|e| PreparedEvent::span(project, e, &recorded_at, &self.record_key))
            .collect();
        let n = prepared.len();
        let outcome = writer.append(prepared).await?;
        metrics::counter!("audittrail_events_accepted_total", "door" => door).increment(n as u64);
        Ok(Ingested {
            outcome,
            pseudonymized,
        })
    }
}

/// The identifiers of `events` that the redactor replaced by pseudonyms.
fn pseudonymized_ids(events: &[RedactedEvent]) -> Vec<PseudonymizedId> {
    let mut out = Vec::new();
    for (index, e) in events.iter().enumerate() {
        let ev = e.event();
        for (field, value) in [
            ("event_id", Some(&ev.event_id)),
            ("trace_id", Some(&ev.trace_id)),
            ("span_id", Some(&ev.span_id)),
            ("parent_span_id", ev.parent_span_id.as_ref()),
            ("session_id", ev.session_id.as_ref()),
        ] {
            if let Some(value) = value
                && e.redaction().contains_key(field)
            {
                out.push(PseudonymizedId {
                    index,
                    field,
                    stored_as: value.clone(),
                });
            }
        }
    }
    out
}

impl Pipeline {
    /// Guard mode: evaluates a proposed action (recorded as a `guard` event that does not count
    /// toward trace totals). Ids and times the agent left out are filled in.
    pub async fn guard(
        &self,
        writer: &Appender,
        project: &str,
        body: Value,
    ) -> Result<AppendOutcome, IngestError> {
        let fail = |path: &str, message: &str| {
            IngestError::Invalid(vec![FieldError {
                path: path.into(),
                message: message.into(),
            }])
        };
        let Value::Object(mut obj) = body else {
            return Err(fail(
                "$",
                "must be a JSON object describing the proposed event",
            ));
        };
        let now = format_time(&chrono::Utc::now());
        obj.entry("trace_id")
            .or_insert_with(|| Value::String(format!("guard-{}", new_event_id())));
        obj.entry("span_id")
            .or_insert_with(|| Value::String(new_event_id()));
        obj.entry("start_time")
            .or_insert_with(|| Value::String(now));
        obj.entry("kind")
            .or_insert_with(|| Value::String("tool".into()));
        let mut event = event::parse_event(Value::Object(obj), "$", &self.limits, new_event_id)
            .map_err(IngestError::Invalid)?;
        event.attributes.insert(
            "guard.proposed_kind".into(),
            Value::String(event.kind.as_str().into()),
        );
        event.kind = SpanKind::Guard;
        let event = self
            .redaction
            .redact_event(event)
            .map_err(|e| fail("$", &e.to_string()))?;
        let prepared = PreparedEvent::guard(
            project,
            event,
            &format_time(&chrono::Utc::now()),
            &self.record_key,
        );
        let outcome = writer.append(vec![prepared]).await?;
        metrics::counter!("audittrail_guard_requests_total").increment(1);
        Ok(outcome)
    }
}

/// Time-ordered ids (UUIDv7) for events that came without one.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
