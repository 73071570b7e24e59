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

use std::sync::Arc;

use crate::cluster::publish::{PublishFailure, Publisher};
use crate::rules::RuleOutcome;
use crate::rules::live::LiveRules;
use crate::store::Store;
use crate::store::violations::ViolationRow;

/// Where the append step sends prepared events.
#[derive(Clone)]
pub enum Sink {
    /// One node: the evaluation stage in front of the store's writer; answers with the
    /// violations found once the events are durable.
    Local(Appender),
    /// Cluster mode, an ingest node: the JetStream stream; durable at the stream's ack, and
    /// evaluated later by the worker (in stream order).
    Stream(Arc<StreamSink>),
}

/// An ingest node's stream, with what guard mode needs to evaluate on the node.
pub struct StreamSink {
    pub publisher: Publisher,
    pub store: Store,
    pub rules: Arc<LiveRules>,
}

impl Sink {
    /// Free places in the append queue (for health reporting); a stream has no local queue.
    pub fn queue_free(&self) -> usize {
        match self {
            Sink::Local(a) => a.queue_free(),
            Sink::Stream(_) => 0,
        }
    }

    /// Fewer than a tenth of the queue's places are free (a stream's fill shows in the
    /// cluster facts instead).
    pub fn queue_nearly_full(&self) -> bool {
        self.queue_capacity() > 0 && self.queue_free() * 10 < self.queue_capacity()
    }

    /// The append queue's size (0 on an ingest node: the stream is the queue).
    pub fn queue_capacity(&self) -> usize {
        match self {
            Sink::Local(a) => a.queue_capacity(),
            Sink::Stream(_) => 0,
        }
    }
}

/// At most this many field errors are reported for one batch.
const MAX_REPORTED_ERRORS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid batch")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Append(#[from] AppendError),
    /// Cluster mode: the stream did not take the batch (nothing of it is stored).
    #[error(transparent)]
    Stream(#[from] PublishFailure),
    /// Cluster mode, guard: the stored totals could not be read.
    #[error("the store could not be read: {0}")]
    Read(String),
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
    /// Cluster mode: durable in the stream, rules not evaluated yet (violations unknown).
    pub pending: bool,
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
        writer: &Sink,
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
        writer: &Sink,
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
        let (outcome, pending) = match writer {
            Sink::Local(appender) => (appender.append(prepared).await?, false),
            Sink::Stream(stream) => {
                let published = stream
                    .publisher
                    .publish_batch(project, &recorded_at, door, &prepared)
                    .await?;
                let outcome = AppendOutcome {
                    event_ids: prepared.iter().map(|e| e.event_id().to_owned()).collect(),
                    // The stream recognised a re-sent batch; other repeats the worker drops.
                    duplicates: if published.duplicate { n } else { 0 },
                    violations: Vec::new(),
                };
                (outcome, true)
            }
        };
        metrics::counter!("audittrail_events_accepted_total", "door" => door).increment(n as u64);
        Ok(Ingested {
            outcome,
            pseudonymized,
            pending,
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
        writer: &Sink,
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
        let outcome = match writer {
            Sink::Local(appender) => appender.append(vec![prepared]).await?,
            Sink::Stream(stream) => {
                // The decision is the node's, from the stored totals; the worker stores the
                // request (and evaluates it again, in stream order, for the log).
                let results = evaluate::evaluate_from_log(&stream.store, &stream.rules, &prepared)
                    .await
                    .map_err(|e| IngestError::Read(e.to_string()))?;
                stream
                    .publisher
                    .publish_batch(
                        project,
                        prepared.recorded_at(),
                        "guard",
                        std::slice::from_ref(&prepared),
                    )
                    .await?;
                AppendOutcome {
                    event_ids: vec![prepared.event_id().to_owned()],
                    duplicates: 0,
                    violations: results.iter().map(|r| unstored_row(&prepared, r)).collect(),
                }
            }
        };
        metrics::counter!("audittrail_guard_requests_total").increment(1);
        Ok(outcome)
    }
}

/// A rule outcome the node found but the log does not hold yet (cluster-mode guard): no
/// position and no id until the worker stores it.
fn unstored_row(event: &PreparedEvent, outcome: &RuleOutcome) -> ViolationRow {
    let body = event.body();
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let (outcome, rule_id, severity, message) = match outcome {
        RuleOutcome::Violation {
            rule_id,
            severity,
            message,
        } => (
            "violation",
            rule_id,
            Some(severity.as_str().to_owned()),
            message,
        ),
        RuleOutcome::RuleError { rule_id, message } => ("rule_error", rule_id, None, message),
    };
    ViolationRow {
        seq: 0,
        violation_id: String::new(),
        outcome: outcome.into(),
        rule_id: rule_id.clone(),
        severity,
        message: message.clone(),
        event_id: event.event_id().to_owned(),
        event_seq: 0,
        event_kind: text("kind"),
        trace_id: text("trace_id"),
        span_id: text("span_id"),
        agent: text("agent"),
        session_id: text("session_id"),
        at: event.recorded_at().to_owned(),
    }
}

/// Time-ordered ids (UUIDv7) for events that came without one.
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
