//! Record format v2: a record's body split into non-personal *facts* and a *personal part*,
//! so an erasure can drop the personal part and `verify` still checks the facts.
//!
//! A v2 record's digest is [`chain::digest_v2`] over its facts' canonical JSON and the keyed
//! digest of its personal part's canonical JSON (canonical: serde_json's compact form with
//! keys in order, which is how every body is stored). An erased v2 body keeps the facts and
//! names the personal digest under [`ERASED`]; replay, reports and rules keep working from the
//! facts. Records of format v1 (written before this split) still verify against
//! [`chain::digest`] over the whole body; erasing one clears its body.
//!
//! Personal fields: a span's or guard's `name`, `agent`, `session_id`, `input`, `output` and
//! `attributes`; a rule outcome's `agent`, `session_id` and `message`. Facts: ids (already
//! pseudonymised when they held personal data), kind, status, times, model, usage and cost,
//! and redaction counts.

use serde_json::{Map, Value};

use super::chain::{self, Hash, PersonalKey, RecordContent, RecordFacts};

/// The key of an erased body's marker: `{"personal_digest": "<hex>"}`.
pub const ERASED: &str = "erased";

const SPAN_PERSONAL: &[&str] = &[
    "agent",
    "attributes",
    "input",
    "name",
    "output",
    "session_id",
];
const OUTCOME_PERSONAL: &[&str] = &["agent", "message", "session_id"];

/// The personal fields of a record type; `None` for records with no personal part (receipts,
/// checkpoints), which keep format v1.
pub fn personal_fields(record_type: &str) -> Option<&'static [&'static str]> {
    match record_type {
        "span" | "guard" => Some(SPAN_PERSONAL),
        "violation" | "rule_error" => Some(OUTCOME_PERSONAL),
        _ => None,
    }
}

/// A body serialised whole and as its two parts, each canonical.
pub struct Split {
    pub body: String,
    pub facts: String,
    pub personal: String,
}

/// Serialises `map` as serde_json would (the stored body) and, in the same pass, its facts
/// and its personal part.
pub fn split(map: &Map<String, Value>, personal: &[&str]) -> Split {
    let mut out = Split {
        body: String::with_capacity(256),
        facts: String::with_capacity(128),
        personal: String::with_capacity(128),
    };
    for s in [&mut out.body, &mut out.facts, &mut out.personal] {
        s.push('{');
    }
    // serde_json's Map keeps keys in order (no `preserve_order`): the same order as `body`.
    for (k, v) in map {
        let entry = format!(
            "{}:{}",
            serde_json::to_string(k).expect("a string always serialises"),
            serde_json::to_string(v).expect("a JSON value always serialises")
        );
        let part = if personal.contains(&k.as_str()) {
            &mut out.personal
        } else {
            &mut out.facts
        };
        for s in [&mut out.body, part] {
            if s.len() > 1 {
                s.push(',');
            }
            s.push_str(&entry);
        }
    }
    for s in [&mut out.body, &mut out.facts, &mut out.personal] {
        s.push('}');
    }
    out
}

/// Identity and time of a record: what its digest covers besides the body.
pub struct Header<'a> {
    pub project: &'a str,
    pub event_id: &'a str,
    pub record_type: &'a str,
    pub recorded_at: &'a str,
}

impl Header<'_> {
    fn v2(&self, facts: &str, personal: &Hash) -> Hash {
        chain::digest_v2(&RecordFacts {
            project: self.project,
            event_id: self.event_id,
            record_type: self.record_type,
            recorded_at: self.recorded_at,
            facts,
            personal,
        })
    }
}

/// The digest and stored text of a new record's body: format v2 where the record type has a
/// personal part, v1 otherwise.
pub fn seal(h: &Header<'_>, body: &Value, key: &PersonalKey) -> (Hash, String) {
    match (personal_fields(h.record_type), body) {
        (Some(fields), Value::Object(map)) => {
            let s = split(map, fields);
            let d = h.v2(&s.facts, &key.tag(&s.personal));
            (d, s.body)
        }
        _ => {
            let text = serde_json::to_string(body).expect("a JSON value always serialises");
            let d = chain::digest(&RecordContent {
                project: h.project,
                event_id: h.event_id,
                record_type: h.record_type,
                recorded_at: h.recorded_at,
                body: &text,
            });
            (d, text)
        }
    }
}

/// What a stored body is, as far as its digest is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// The whole body, format v1.
    V1,
    /// The whole body, format v2.
    V2,
    /// A v2 body whose personal part was erased (only a receipt may account for it).
    Erased,
}

/// Checks a stored body against its stored digest; `None` if it does not match (edited).
pub fn check(h: &Header<'_>, body: &str, stored: &Hash, key: &PersonalKey) -> Option<Form> {
    let v1 = chain::digest(&RecordContent {
        project: h.project,
        event_id: h.event_id,
        record_type: h.record_type,
        recorded_at: h.recorded_at,
        body,
    });
    if &v1 == stored {
        return Some(Form::V1);
    }
    let fields = personal_fields(h.record_type)?;
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(body) else {
        return None;
    };
    let marker = map.remove(ERASED);
    let s = split(&map, fields);
    let (form, tag) = match marker {
        Some(marker) => {
            let tag = marker
                .get("personal_digest")
                .and_then(Value::as_str)
                .and_then(chain::from_hex)?;
            // An erased body holds facts only.
            if s.personal != "{}" {
                return None;
            }
            (Form::Erased, tag)
        }
        None => (Form::V2, key.tag(&s.personal)),
    };
    (&h.v2(&s.facts, &tag) == stored).then_some(form)
}

/// The erased form of a v2 body: its facts and the digest of the personal part it held.
/// `None` for a body that is not an object of a type with a personal part.
pub fn erased(record_type: &str, body: &str, key: &PersonalKey) -> Option<String> {
    let fields = personal_fields(record_type)?;
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(body) else {
        return None;
    };
    if map.contains_key(ERASED) {
        return None;
    }
    let tag = key.tag(&split(&map, fields).personal);
    let mut facts: Map<String, Value> = map
        .into_iter()
        .filter(|(k, _)| !fields.contains(&k.as_str()))
        .collect();
    facts.insert(
        ERASED.into(),
        serde_json::json!({ "personal_digest": chain::to_hex(&tag) }),
    );
    Some(serde_json::to_string(&Value::Object(facts)).expect("a JSON value always serialises"))
}

/// Whether a stored body is an erased one.
pub fn is_erased(body: &str) -> bool {
    body.contains("\"erased\":{\"personal_digest\"")
        && serde_json::from_str::<Value>(body).is_ok_and(|v| v.get(ERASED).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::chain::ChainKey;
    use serde_json::json;

    fn header() -> Header<'static> {
        Header {
            project: "p",
            event_id: "e1",
            record_type: "span",
            recorded_at: "2026-11-27T10:00:00.000000Z",
        }
    }

    fn body() -> Value {
        json!({
            "event_id": "e1", "trace_id": "t", "kind": "llm", "name": "n", "agent": "a",
            "session_id": "s", "input": {"q": "order 12345 \u{e9} \"x\""}, "output": "ok",
            "usage": {"input_tokens": 3, "output_tokens": 4, "cost_usd": 0.1},
            "attributes": {}, "redaction": {}
        })
    }

    #[test]
    fn the_split_serialises_the_body_exactly_as_serde_json_does() {
        let b = body();
        let s = split(b.as_object().unwrap(), SPAN_PERSONAL);
        assert_eq!(s.body, serde_json::to_string(&b).unwrap());
        assert!(!s.facts.contains("12345") && s.personal.contains("12345"));
        assert!(s.facts.contains("input_tokens"));
    }

    #[test]
    fn a_sealed_body_checks_as_v2_and_its_erased_form_still_checks_the_facts() {
        let key = ChainKey::derive(b"secret");
        let k = key.personal();
        let (d, text) = seal(&header(), &body(), k);
        assert_eq!(check(&header(), &text, &d, k), Some(Form::V2));
        let gone = erased("span", &text, k).unwrap();
        assert!(
            !gone.contains("12345") && !gone.contains("\"agent\""),
            "{gone}"
        );
        assert!(is_erased(&gone));
        assert_eq!(check(&header(), &gone, &d, k), Some(Form::Erased));
        // A changed fact in the erased form is an edit.
        let forged = gone.replace("\"input_tokens\":3", "\"input_tokens\":30");
        assert_eq!(check(&header(), &forged, &d, k), None);
        // A changed personal field in the whole body is an edit.
        let edited = text.replace("order 12345", "order 99999");
        assert_eq!(check(&header(), &edited, &d, k), None);
        // Another key cannot confirm the personal part.
        assert_eq!(
            check(&header(), &text, &d, ChainKey::derive(b"other").personal()),
            None
        );
    }

    #[test]
    fn v1_records_keep_verifying() {
        let key = ChainKey::derive(b"secret");
        let text = serde_json::to_string(&body()).unwrap();
        let h = header();
        let d = chain::digest(&RecordContent {
            project: h.project,
            event_id: h.event_id,
            record_type: h.record_type,
            recorded_at: h.recorded_at,
            body: &text,
        });
        assert_eq!(check(&h, &text, &d, key.personal()), Some(Form::V1));
    }
}
