//! The redaction stage as the pipeline sees it: a [`TraceEvent`] in, a [`RedactedEvent`] out.
//!
//! Every string of the event goes through the [`Redactor`]: short text fields (`name`,
//! `agent`, `model`) with their field name as context, `input`, `output` and `attributes`
//! recursively (keys included, JSON embedded in strings included). Identifiers (`event_id`,
//! `trace_id`, `span_id`, `parent_span_id`, `session_id`) that contain personal data — an
//! email used as a session id is common — are replaced whole by a keyed pseudonym, so they
//! stay unique and stable (retries are still recognised) without carrying the value.
//!
//! Output counts: per top-level field, per type (`{"output": {"EMAIL": 1}}`).
//!
//! Failure policy: fails closed. If an event cannot be redacted, the error says why (never
//! with the value) and the event is rejected; it is never stored raw. When the operator
//! switched redaction off (`AUDITTRAIL_PII_REDACTION_ENABLED=false`, warned about loudly at
//! start-up) events pass through with empty counts.

use std::collections::BTreeMap;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::event::{RedactedEvent, RedactionCounts, RemovedValues};
use super::{RedactError, Redactor, TypeCounts};
use crate::event::TraceEvent;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("{field}: could not be redacted ({source}); the event was not stored")]
    Failed {
        field: &'static str,
        source: RedactError,
    },
}

pub struct RedactionStage {
    redactor: Option<Arc<Redactor>>,
    /// Keys pseudonyms of identifiers that contain personal data.
    id_key: Vec<u8>,
}

impl RedactionStage {
    pub fn new(redactor: Arc<Redactor>, id_key: Vec<u8>) -> Self {
        RedactionStage {
            redactor: Some(redactor),
            id_key,
        }
    }

    /// Redaction switched off by the operator.
    pub fn disabled() -> Self {
        RedactionStage {
            redactor: None,
            id_key: Vec::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.redactor.is_some()
    }

    pub fn redactor(&self) -> Option<&Arc<Redactor>> {
        self.redactor.as_ref()
    }

    pub fn redact_event(&self, e: TraceEvent) -> Result<RedactedEvent, StageError> {
        let Some(r) = &self.redactor else {
            return Ok(RedactedEvent::seal(
                e,
                RedactionCounts::new(),
                RemovedValues::default(),
            ));
        };
        let (sealed, removed) = super::replace::collect_removed(|| self.redact_with(r, e));
        let (e, all, mut ids) = sealed?;
        ids.extend(removed);
        Ok(RedactedEvent::seal(e, all, RemovedValues(ids)))
    }

    /// The redaction proper; returns the event, its counts and the personal values found in
    /// its identifiers (the other removed values are collected by the caller).
    fn redact_with(
        &self,
        r: &Redactor,
        mut e: TraceEvent,
    ) -> Result<(TraceEvent, RedactionCounts, Vec<String>), StageError> {
        let mut removed_ids = Vec::new();
        let mut all = RedactionCounts::new();
        let mut record = |field: &str, counts: TypeCounts| {
            if !counts.is_empty() {
                let slot = all.entry(field.to_owned()).or_default();
                for (t, n) in counts {
                    *slot.entry(t.to_owned()).or_default() += n;
                }
            }
        };
        for (field, id) in [
            ("event_id", Some(&mut e.event_id)),
            ("trace_id", Some(&mut e.trace_id)),
            ("span_id", Some(&mut e.span_id)),
            ("parent_span_id", e.parent_span_id.as_mut()),
            ("session_id", e.session_id.as_mut()),
        ] {
            let Some(id) = id else { continue };
            let found = r.detect_in_field(Some(field), id);
            if !found.is_empty() {
                let mut counts = TypeCounts::new();
                for d in &found {
                    *counts.entry(d.kind.as_str()).or_default() += 1;
                    if let Some(v) = id.get(d.start..d.end) {
                        removed_ids.push(v.to_owned());
                    }
                }
                *id = self.pseudonym_id(id);
                record(field, counts);
            }
        }
        for (field, text) in [
            ("name", Some(&mut e.name)),
            ("agent", e.agent.as_mut()),
            ("model", e.model.as_mut()),
        ] {
            let Some(text) = text else { continue };
            let mut counts = TypeCounts::new();
            if let std::borrow::Cow::Owned(redacted) =
                r.redact_field(Some(field), text, &mut counts)
            {
                *text = redacted;
            }
            record(field, counts);
        }
        for (field, value) in [("input", &mut e.input), ("output", &mut e.output)] {
            let mut counts = TypeCounts::new();
            r.redact_json(value, &mut counts)
                .map_err(|source| StageError::Failed { field, source })?;
            record(field, counts);
        }
        let mut attributes = serde_json::Value::Object(std::mem::take(&mut e.attributes));
        let mut counts = TypeCounts::new();
        r.redact_json(&mut attributes, &mut counts)
            .map_err(|source| StageError::Failed {
                field: "attributes",
                source,
            })?;
        record("attributes", counts);
        if let serde_json::Value::Object(m) = attributes {
            e.attributes = m;
        }
        Ok((e, all, removed_ids))
    }

    /// The identifier under which a record sent with `raw` as its `field` is stored: its keyed
    /// pseudonym if it holds personal data, else itself. Lookups (`GET /api/v1/traces/{id}`,
    /// `?session_id=`) apply it so a client can always read back what it sent.
    pub fn lookup_id(&self, field: &str, raw: &str) -> String {
        match &self.redactor {
            Some(r) if !r.detect_in_field(Some(field), raw).is_empty() => self.pseudonym_id(raw),
            _ => raw.to_owned(),
        }
    }

    /// A short text filter (`agent`) as it is stored: redacted like the field it matches.
    pub fn lookup_text(&self, field: &str, raw: &str) -> String {
        match &self.redactor {
            Some(r) => r
                .redact_field(Some(field), raw, &mut TypeCounts::new())
                .into_owned(),
            None => raw.to_owned(),
        }
    }

    fn pseudonym_id(&self, id: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.id_key)
            .expect("HMAC accepts keys of any length");
        mac.update(b"audittrail/id-pseudonym/v1");
        mac.update(id.as_bytes());
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
        format!("pii-{hex}")
    }
}

/// Per-type totals of an event's redaction counts, e.g. for metrics.
pub fn totals(counts: &RedactionCounts) -> BTreeMap<&str, u32> {
    let mut out = BTreeMap::new();
    for per_type in counts.values() {
        for (t, n) in per_type {
            *out.entry(t.as_str()).or_default() += n;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Limits, parse_event};
    use serde_json::json;

    fn stage() -> RedactionStage {
        RedactionStage::new(
            Arc::new(Redactor::new(Default::default()).unwrap()),
            b"k".to_vec(),
        )
    }

    #[test]
    fn every_field_is_redacted_and_counted_per_field() {
        let raw = json!({
            "trace_id": "t1", "span_id": "s1", "kind": "llm", "start_time": "2026-11-22T10:00:00Z",
            "session_id": "jane.doe@example.com",
            "input": {"messages": [{"role": "user", "content": "Call me at +1 415 555 0134, I'm Jane Doe"}]},
            "output": "Sure, I emailed jane.doe@example.com",
            "attributes": {"user.email": "jane.doe@example.com"}
        });
        let e = parse_event(raw, "e", &Limits::default(), || "id".into()).unwrap();
        let r = stage().redact_event(e).unwrap();
        let body = r.into_body("default").to_string();
        assert!(!body.contains("jane.doe@example.com"), "{body}");
        assert!(!body.contains("555 0134"), "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["session_id"].as_str().unwrap().starts_with("pii-"));
        assert_eq!(v["redaction"]["output"]["EMAIL"], 1);
        assert_eq!(v["redaction"]["session_id"]["EMAIL"], 1);
        assert_eq!(v["redaction"]["input"]["PHONE"], 1);
    }

    #[test]
    fn pseudonymous_ids_are_stable_and_distinct() {
        let s = stage();
        assert_eq!(
            s.pseudonym_id("a@example.com"),
            s.pseudonym_id("a@example.com")
        );
        assert_ne!(
            s.pseudonym_id("a@example.com"),
            s.pseudonym_id("b@example.com")
        );
    }

    #[test]
    fn too_deep_input_fails_closed() {
        let mut deep = json!("x");
        for _ in 0..70 {
            deep = json!([deep]);
        }
        let e = TraceEvent { input: deep, ..parse_event(json!({"trace_id": "t", "span_id": "s", "kind": "llm", "start_time": "2026-11-22T10:00:00Z"}), "e", &Limits::default(), || "id".into()).unwrap() };
        assert!(stage().redact_event(e).is_err());
    }
}
