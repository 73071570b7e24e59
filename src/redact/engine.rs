//! The detection engine: runs every detector over a text and resolves overlaps.
//!
//! Input: a `&str` (and, for JSON fields, the field's key as context). Output: sorted,
//! disjoint [`Detection`]s in byte offsets of the input. Detectors push candidate
//! [`Hit`]s; the highest-priority (then longest) candidate wins an overlap. Text with
//! backslash escapes is scanned in its decoded form and spans are mapped back.
//! Invariant: the engine is immutable after [`Redactor::new`], so it is `Send + Sync`.

use std::borrow::Cow;
use std::hash::BuildHasherDefault;

use super::name_words::Fnv;

use super::{
    Detection, PiiType, RedactError, RedactorConfig, Replacement, TypeCounts, address, dates,
    detectors, escapes, gates, names, numbers, replace, rules, secrets, sql,
};

pub(super) use super::gates::GateHits;

/// A candidate finding before overlap resolution.
#[derive(Debug, Clone, Copy)]
pub(super) struct Hit {
    pub(super) start: usize,
    pub(super) end: usize,
    pub(super) kind: PiiType,
}

impl Hit {
    pub(super) fn new(start: usize, end: usize, kind: PiiType) -> Self {
        Hit { start, end, kind }
    }
}

/// The redactor: every automaton compiled once, shared read-only (wrap it in an `Arc`).
pub struct Redactor {
    /// `enabled[i]` is false for types the operator disabled (index in `PiiType::ALL`).
    enabled: [bool; 10],
    replacement: Replacement,
    gates: gates::Gates,
    secrets: secrets::Secrets,
    addresses: address::Addresses,
    dates: dates::Dates,
    names: names::Names,
    rules: rules::Compiled,
    /// Common JSON key names in which this configuration finds nothing (checked at build).
    clean_keys: std::collections::HashSet<&'static str, BuildHasherDefault<Fnv>>,
}

/// Key names that recur in agent payloads (OpenAI/Anthropic messages, tool calls, usage,
/// retrieval results, OpenTelemetry attributes). Object keys are scanned like any string,
/// and these recur in nearly every event. Each is run through the detectors once, when the
/// redactor is built with the operator's configuration. Only keys found clean then skip the
/// scan later, so the result is the same as scanning them every time.
#[rustfmt::skip]
pub(super) const COMMON_KEYS: &[&str] = &[
    "role", "content", "type", "text", "name", "arguments", "tool_calls", "tool_call_id",
    "function", "functions", "tools", "tool_use", "tool_result", "input", "output", "id",
    "messages", "message", "model", "usage", "input_tokens", "output_tokens", "total_tokens",
    "prompt_tokens", "completion_tokens", "cost_usd", "choices", "index", "finish_reason",
    "stop_reason", "delta", "system", "user", "assistant", "parameters", "properties",
    "required", "description", "query", "top_k", "documents", "results", "sources", "items",
    "url", "uri", "href", "link", "title", "score", "snippet", "metadata", "source", "doc_id",
    "document_id", "status", "error", "code", "data", "result", "value", "values", "key",
    "fields", "filter", "limit", "offset", "page", "count", "total", "language", "format",
    "temperature", "max_tokens", "top_p", "stream", "seed", "stop", "confidence", "reason",
    "http.method", "http.status_code", "http.url", "http.route", "db.system", "db.statement",
    "tool.name", "tool.version", "llm.model_name", "gen_ai.system", "gen_ai.request.model",
    "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "service.name", "bench",
];

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("enabled", &self.enabled)
            .field("replacement", &self.replacement)
            .finish_non_exhaustive()
    }
}

fn type_index(t: PiiType) -> usize {
    PiiType::ALL.iter().position(|x| *x == t).unwrap_or(0)
}

impl Redactor {
    /// Compile all detectors and the operator's rules. Errors list every bad rule.
    pub fn new(cfg: RedactorConfig) -> Result<Self, RedactError> {
        if let Replacement::Pseudonym { key } = &cfg.replacement
            && key.is_empty()
        {
            return Err(RedactError::EmptyKey);
        }
        let mut enabled = [true; 10];
        for t in &cfg.disabled_types {
            enabled[type_index(*t)] = false;
        }
        let mut r = Redactor {
            enabled,
            rules: rules::Compiled::new(&cfg.extra)?,
            replacement: cfg.replacement,
            gates: gates::Gates::new(),
            secrets: secrets::Secrets::new(),
            addresses: address::Addresses::new(),
            dates: dates::Dates::new(),
            names: names::Names::new(),
            clean_keys: Default::default(),
        };
        r.clean_keys = COMMON_KEYS
            .iter()
            .copied()
            .filter(|k| r.detect(k).is_empty())
            .collect();
        Ok(r)
    }

    /// The same redactor scanning every key (to check the memo changes nothing).
    #[cfg(test)]
    pub(super) fn without_clean_keys(mut self) -> Self {
        self.clean_keys.clear();
        self
    }

    /// Whether `key` is known to hold nothing for this configuration: no need to scan it.
    pub(super) fn known_clean_key(&self, key: &str) -> bool {
        self.clean_keys.contains(key)
    }

    /// Find PII in `text`: byte spans, sorted, non-overlapping.
    pub fn detect(&self, text: &str) -> Vec<Detection> {
        self.detect_in_field(None, text)
    }

    /// Like [`Redactor::detect`], with the JSON key the string was found under as extra
    /// context (`"dob": "1990-01-02"` is a birth date even when the key is not in the string).
    pub fn detect_in_field(&self, key: Option<&str>, text: &str) -> Vec<Detection> {
        if text.len() < 2 {
            return Vec::new();
        }
        match escapes::decode(text) {
            None => self.detect_plain(key, text),
            Some(dec) => {
                let mut out = self.detect_plain(key, &dec.text);
                for d in &mut out {
                    let (s, e) = dec.to_original(d.start, d.end);
                    d.start = s;
                    d.end = e;
                }
                out.retain(|d| d.end > d.start);
                out
            }
        }
    }

    fn detect_plain(&self, key: Option<&str>, text: &str) -> Vec<Detection> {
        let mut hits = Vec::new();
        let gates = self.gates.check(text);
        let b = text.as_bytes();
        self.secrets.scan(text, &gates, &mut hits);
        if memchr::memchr2(b'@', b'%', b).is_some() {
            detectors::emails(text, &mut hits);
        }
        if memchr::memchr(b':', b).is_some() {
            detectors::ipv6s(text, &mut hits);
        }
        let clusters = numbers::clusters(text);
        for c in &clusters {
            let d = if b[c.s].is_ascii_digit() {
                c.s
            } else {
                c.s + 1
            };
            if d > 0 && b[d - 1].is_ascii_alphanumeric() {
                // digits glued to letters (hex ids, hashes): only an IBAN can start here
                detectors::iban_at(text, d, &mut hits);
                continue;
            }
            numbers::classify(text, *c, &gates, &mut hits);
            self.addresses.at_number(text, d, &mut hits);
        }
        if !clusters.is_empty() {
            self.addresses.scan(text, &mut hits);
            if !gates.birth_at.is_empty() {
                self.dates.scan(text, &gates.birth_at, &mut hits);
            }
        }
        self.names.scan(text, &mut hits);
        self.rules.scan(text, &mut hits);
        if let Some(k) = key {
            field_hits(k, text, self, &mut hits);
        }
        if gates.sql_insert {
            let mut found = Vec::new();
            sql::insert_values(text, |col, s, e| {
                let mut local = Vec::new();
                field_hits(col, &text[s..e], self, &mut local);
                found.extend(
                    local
                        .into_iter()
                        .map(|h| Hit::new(h.start + s, h.end + s, h.kind)),
                );
            });
            hits.extend(found);
        }
        hits.retain(|h| h.end > h.start && self.enabled[type_index(h.kind)]);
        resolve(hits)
    }

    /// Redact `text`, adding one count per detection. Borrowed when nothing was found.
    pub fn redact_str<'a>(&self, text: &'a str, counts: &mut TypeCounts) -> Cow<'a, str> {
        self.redact_field(None, text, counts)
    }

    /// [`Redactor::redact_str`] with the JSON key as context (see [`Redactor::detect_in_field`]).
    pub fn redact_field<'a>(
        &self,
        key: Option<&str>,
        text: &'a str,
        counts: &mut TypeCounts,
    ) -> Cow<'a, str> {
        let found = self.detect_in_field(key, text);
        if found.is_empty() {
            return Cow::Borrowed(text);
        }
        Cow::Owned(self.apply(text, &found, counts))
    }

    /// Label or pseudonym, as configured.
    pub(super) fn replacement(&self) -> &Replacement {
        &self.replacement
    }

    /// Replace the given detections (sorted, disjoint byte spans of `text`).
    pub fn apply(&self, text: &str, found: &[Detection], counts: &mut TypeCounts) -> String {
        replace::apply(&self.replacement, text, found, counts)
    }
}

const KEY_SECRET: u8 = 1;
const KEY_DOB: u8 = 2;
const KEY_PERSON: u8 = 4;
const KEY_SSN: u8 = 8;
const KEY_PHONE: u8 = 16;

/// What a JSON key says about its value (`KEY_*` bits), from the lower-cased key.
fn key_class(key: &str) -> u8 {
    let k = key.to_ascii_lowercase();
    let mut c = 0;
    if secrets::is_secret_key(&k) {
        c |= KEY_SECRET;
    }
    if dates::is_dob_key(&k) {
        c |= KEY_DOB;
    }
    if names::is_person_key(&k) {
        c |= KEY_PERSON;
    }
    if has(&k, "ssn") || has(&k, "social_security") {
        c |= KEY_SSN;
    }
    if ["phone", "mobile", "cell", "tel", "fax", "msisdn"]
        .iter()
        .any(|w| has(&k, w))
    {
        c |= KEY_PHONE;
    }
    c
}

/// Most keys of a trace schema repeat in every event; their classes are kept per thread.
const KEY_CACHE_MAX: usize = 4096;

thread_local! {
    // SipHash (the std default), not FNV: the keys come from clients.
    static KEY_CLASSES: std::cell::RefCell<std::collections::HashMap<Box<str>, u8>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// [`key_class`], memoised: one hash lookup instead of some forty substring tests.
fn cached_key_class(key: &str) -> u8 {
    if key.len() > 64 {
        return key_class(key);
    }
    KEY_CLASSES.with(|cell| {
        let mut m = cell.borrow_mut();
        if let Some(&c) = m.get(key) {
            return c;
        }
        let c = key_class(key);
        if m.len() >= KEY_CACHE_MAX {
            m.clear();
        }
        m.insert(key.into(), c);
        c
    })
}

/// Key-driven rules for a JSON field: the key names what the whole value is.
fn field_hits(key: &str, text: &str, r: &Redactor, hits: &mut Vec<Hit>) {
    let c = cached_key_class(key);
    if c == 0 {
        return;
    }
    let whole = |kind| Hit::new(0, text.trim_end().len(), kind);
    if c & KEY_SECRET != 0 && secrets::plausible_secret_value(text) {
        hits.push(whole(PiiType::ApiKey));
    } else if c & KEY_DOB != 0 {
        r.dates.scan_as_dob(text, hits);
    } else if c & KEY_PERSON != 0 {
        r.names.scan_value(text, hits);
    } else if c & KEY_SSN != 0 {
        detectors::bare_ssn(text, hits);
    } else if c & KEY_PHONE != 0 {
        let t = text.trim();
        let digits = t.bytes().filter(u8::is_ascii_digit).count();
        if (7..=15).contains(&digits)
            && t.bytes()
                .all(|c| c.is_ascii_digit() || b" +-().".contains(&c))
        {
            hits.push(whole(PiiType::Phone));
        }
    }
}

/// Keep the best candidate of each overlapping group: higher type priority, then longer,
/// then earlier. Output sorted by start.
pub(super) fn resolve(mut hits: Vec<Hit>) -> Vec<Detection> {
    hits.sort_by(|a, b| {
        b.kind
            .priority()
            .cmp(&a.kind.priority())
            .then((b.end - b.start).cmp(&(a.end - a.start)))
            .then(a.start.cmp(&b.start))
    });
    let mut kept: Vec<Detection> = Vec::with_capacity(hits.len());
    for h in hits {
        let i = kept.partition_point(|d| d.start < h.start);
        let clash_prev = i > 0 && kept.get(i - 1).is_some_and(|d| d.end > h.start);
        let clash_next = kept.get(i).is_some_and(|d| d.start < h.end);
        if !clash_prev && !clash_next {
            kept.insert(
                i,
                Detection {
                    start: h.start,
                    end: h.end,
                    kind: h.kind,
                },
            );
        }
    }
    kept
}

// ---- small text helpers shared by the detectors -------------------------------------------

/// The char just before byte `i`, if any.
pub(super) fn prev_char(text: &str, i: usize) -> Option<char> {
    text.get(..i).and_then(|s| s.chars().next_back())
}

/// The char starting at byte `i`, if any.
pub(super) fn next_char(text: &str, i: usize) -> Option<char> {
    text.get(i..).and_then(|s| s.chars().next())
}

/// `needle` occurs in `hay`: a plain scan, much cheaper than `str::contains` (which builds
/// a Two-Way searcher per call) on the short keys and context windows the detectors test.
pub(super) fn has(hay: &str, needle: &str) -> bool {
    rfind(hay, needle).is_some()
}

/// Last byte offset of `needle` in `hay` (see [`has`]).
pub(super) fn rfind(hay: &str, needle: &str) -> Option<usize> {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let first = *n.first()?;
    if n.len() > h.len() {
        return None;
    }
    (0..=h.len() - n.len())
        .rev()
        .find(|&i| h[i] == first && &h[i..i + n.len()] == n)
}

/// Up to `n` (<= 60) bytes before `i`, widened to a char boundary, ASCII-lowercased; kept
/// on the stack (this runs per candidate, so it must not allocate).
pub(super) fn lower_before(text: &str, i: usize, n: usize) -> Lower {
    let n = n.min(60);
    let mut s = i.saturating_sub(n);
    while s > 0 && !text.is_char_boundary(s) {
        s -= 1;
    }
    let src = text.as_bytes().get(s..i).unwrap_or(&[]);
    let mut out = Lower {
        buf: [0; 64],
        len: src.len().min(64),
    };
    for (d, c) in out.buf.iter_mut().zip(src) {
        *d = c.to_ascii_lowercase();
    }
    out
}

/// Result of [`lower_before`]: a short lower-cased window, derefs to `str`.
pub(super) struct Lower {
    buf: [u8; 64],
    len: usize,
}

impl Lower {
    pub(super) fn as_str(&self) -> &str {
        // ASCII lower-casing of a slice cut at char boundaries keeps it valid UTF-8
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::ops::Deref for Lower {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

pub(super) const LO: u64 = 0x0101_0101_0101_0101;
pub(super) const HI: u64 = 0x8080_8080_8080_8080;

/// SWAR test: does any byte of `x` lie strictly between `m` and `n` (`m < 128`, `n <= 128`)?
/// Bytes >= 0x80 never count.
pub(super) fn has_between(x: u64, m: u64, n: u64) -> bool {
    let x7 = x & (LO * 127);
    ((LO * (127 + n)).wrapping_sub(x7) & !x & x7.wrapping_add(LO * (127 - m)) & HI) != 0
}

/// Any ASCII digit in the 8 bytes of `x`.
#[cfg(test)]
pub(super) fn has_digit(x: u64) -> bool {
    has_between(x, 0x2F, 0x3A)
}

/// Any ASCII upper-case letter or non-ASCII byte in the 8 bytes of `x`.
pub(super) fn has_upper_or_utf8(x: u64) -> bool {
    x & HI != 0 || has_between(x, 0x40, 0x5B)
}

/// First index >= `i` of an 8-byte chunk of `b` for which `hit` holds (or of the unaligned
/// tail): lets byte loops jump over text that cannot contain what they look for.
pub(super) fn skip_chunks(b: &[u8], mut i: usize, hit: impl Fn(u64) -> bool) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(arr) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        if hit(u64::from_le_bytes(arr)) {
            break;
        }
        i += 8;
    }
    i
}

/// True when `c` continues a word/identifier (so a match touching it is not a whole token).
pub(super) fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}
