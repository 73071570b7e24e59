//! Replacement: turns detections into labels or keyed pseudonyms.
//!
//! Input: the text and its sorted, disjoint detections. Output: the redacted string, and one
//! count per detection added to the caller's [`TypeCounts`]. A pseudonym is `[TYPE:` + the
//! first 12 hex digits of HMAC-SHA256(key, type name || value) + `]`: stable for equal values
//! under one key, unlinkable without it. Spans that are out of range or not on char
//! boundaries are skipped rather than panicking (they cannot come from the engine).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{Detection, PiiType, Replacement, TypeCounts};

thread_local! {
    /// While [`collect_removed`] runs on this thread: every value [`apply`] replaces.
    static REMOVED: std::cell::RefCell<Option<Vec<String>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (synchronous redaction of one event) and returns, beside its result, the values
/// the replacements in it removed. Redaction takes no counts or sinks for this so that the
/// redactor's hot path and API stay as they are; outside `collect_removed` nothing is kept.
pub(super) fn collect_removed<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    REMOVED.with_borrow_mut(|r| *r = Some(Vec::new()));
    let out = f();
    let removed = REMOVED.with_borrow_mut(Option::take).unwrap_or_default();
    (out, removed)
}

/// Notes a removed value for [`collect_removed`] (no-op outside it).
pub(super) fn note_removed(value: &str) {
    REMOVED.with_borrow_mut(|r| {
        if let Some(list) = r {
            list.push(value.to_owned());
        }
    });
}

pub(super) fn apply(
    rep: &Replacement,
    text: &str,
    found: &[Detection],
    counts: &mut TypeCounts,
) -> String {
    let mut out = String::with_capacity(text.len() + found.len() * 8);
    let mut at = 0;
    for d in found {
        let (Some(before), Some(value)) = (text.get(at..d.start), text.get(d.start..d.end)) else {
            continue;
        };
        out.push_str(before);
        note_removed(value);
        push_token(rep, d.kind, value, &mut out);
        *counts.entry(d.kind.as_str()).or_insert(0) += 1;
        at = d.end;
    }
    out.push_str(text.get(at..).unwrap_or(""));
    out
}

pub(super) fn push_token(rep: &Replacement, kind: PiiType, value: &str, out: &mut String) {
    match rep {
        Replacement::Label => {
            out.push_str("[REDACTED:");
            out.push_str(kind.as_str());
            out.push(']');
        }
        Replacement::Pseudonym { key } => {
            out.push('[');
            out.push_str(kind.as_str());
            out.push(':');
            out.push_str(&pseudonym(key, kind, value));
            out.push(']');
        }
    }
}

/// First 12 hex digits of HMAC-SHA256(key, type || value).
pub(super) fn pseudonym(key: &[u8], kind: PiiType, value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return "000000000000".to_string();
    };
    mac.update(kind.as_str().as_bytes());
    mac.update(value.as_bytes());
    let tag = mac.finalize().into_bytes();
    let mut s = String::with_capacity(12);
    for b in tag.iter().take(6) {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}
