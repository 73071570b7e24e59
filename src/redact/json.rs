//! JSON mode: redact every string of a `serde_json::Value` in place.
//!
//! Input: an event as a JSON value. Output: the same value with PII replaced in every string
//! and every object key; a string that itself parses as a JSON object or array (tool-call
//! `arguments`, double-encoded payloads) is parsed, redacted recursively and re-serialised
//! (only when something in it changed, so untouched payloads keep their formatting). The
//! field's key is passed to the detectors as context (`"dob": "1990-01-02"`). Numbers that
//! are PII under their key (`"ssn": 123456789`) become redacted strings.
//!
//! Failure policy: fail closed. Nesting deeper than [`MAX_DEPTH`] (counting embedded JSON
//! strings) returns [`RedactError::TooDeep`]; the value may then be partly redacted and must
//! be dropped, not stored.

use serde_json::Value;

use super::{MAX_DEPTH, RedactError, Redactor, TypeCounts};

impl Redactor {
    /// Redact every string (keys included) of `value` in place; see the module docs.
    pub fn redact_json(
        &self,
        value: &mut Value,
        counts: &mut TypeCounts,
    ) -> Result<(), RedactError> {
        walk(self, value, None, 0, counts)
    }
}

fn total(c: &TypeCounts) -> u64 {
    c.values().map(|&v| u64::from(v)).sum()
}

fn walk(
    r: &Redactor,
    v: &mut Value,
    key: Option<&str>,
    depth: usize,
    counts: &mut TypeCounts,
) -> Result<(), RedactError> {
    if depth > MAX_DEPTH {
        return Err(RedactError::TooDeep);
    }
    match v {
        Value::String(s) => {
            if let Some(new) = redact_string(r, key, s, depth, counts)? {
                *s = new;
            }
        }
        Value::Number(n) => {
            let text = n.to_string();
            if text.len() >= 7 {
                let red = r.redact_field(key, &text, counts);
                if let std::borrow::Cow::Owned(x) = red {
                    *v = Value::String(x);
                }
            }
        }
        Value::Array(items) => {
            for x in items {
                walk(r, x, key, depth + 1, counts)?;
            }
        }
        Value::Object(map) => {
            // Values in place; the map is rebuilt only when a key itself holds PII.
            let mut key_pii = false;
            for (k, val) in map.iter_mut() {
                walk(r, val, Some(k), depth + 1, counts)?;
                key_pii = key_pii || (!r.known_clean_key(k) && !r.detect(k).is_empty());
            }
            if !key_pii {
                return Ok(());
            }
            let old = std::mem::take(map);
            for (k, val) in old {
                let mut nk = r.redact_str(&k, counts).into_owned();
                // two keys redacting to the same label must not overwrite each other
                let mut n = 1;
                while map.contains_key(&nk) {
                    n += 1;
                    nk = format!("{}#{n}", r.redact_str(&k, &mut TypeCounts::new()));
                }
                map.insert(nk, val);
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
    Ok(())
}

fn redact_string(
    r: &Redactor,
    key: Option<&str>,
    s: &str,
    depth: usize,
    counts: &mut TypeCounts,
) -> Result<Option<String>, RedactError> {
    let t = s.trim_start();
    let parsed = if t.starts_with('{') || t.starts_with('[') {
        match serde_json::from_str::<Value>(s) {
            Ok(v) => Some(v),
            // Past serde_json's own nesting limit (128) the text *is* JSON nested too deep:
            // refuse it as at any depth past ours, instead of falling back to text mode.
            Err(e) if e.to_string().starts_with("recursion limit exceeded") => {
                return Err(RedactError::TooDeep);
            }
            Err(_) => None,
        }
    } else {
        None
    };
    if let Some(mut inner) = parsed
        && (inner.is_object() || inner.is_array())
    {
        let before = total(counts);
        walk(r, &mut inner, key, depth + 1, counts)?;
        if total(counts) == before {
            return Ok(None);
        }
        // Serialising a Value cannot fail (string keys only); fall back to text mode.
        if let Ok(out) = serde_json::to_string(&inner) {
            return Ok(Some(out));
        }
    }
    Ok(match r.redact_field(key, s, counts) {
        std::borrow::Cow::Borrowed(_) => None,
        std::borrow::Cow::Owned(x) => Some(x),
    })
}
