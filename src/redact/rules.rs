//! Operator rules: extra literal terms and regex patterns (format documented in `mod.rs`).
//!
//! Input: the rules file text, parsed by [`CustomTerms::parse`] (every bad line reported,
//! with its number), then compiled once by [`Compiled::new`]: all terms into one
//! case-insensitive Aho-Corasick automaton, each pattern into a regex. Output: [`Hit`]s.
//! Terms match on word boundaries only, so `ann` does not redact `annual`.

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;

use super::engine::{Hit, is_word, next_char, prev_char};
use super::{PiiType, RedactError};

/// Operator-supplied terms and patterns, each with the type it is reported as.
#[derive(Debug, Clone, Default)]
pub struct CustomTerms {
    pub terms: Vec<(String, PiiType)>,
    pub patterns: Vec<(String, PiiType)>,
}

/// Largest compiled size allowed for one operator regex (bounded work per rule).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

impl CustomTerms {
    /// Parse the rules file format: `term TYPE literal text` / `pattern TYPE regex`, `#`
    /// comments, blank lines ignored. Collects every error before failing.
    pub fn parse(text: &str) -> Result<Self, RedactError> {
        let mut out = CustomTerms::default();
        let mut errors = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.splitn(3, char::is_whitespace);
            let (verb, ty, rest) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or("").trim(),
            );
            let Some(kind) = PiiType::parse(ty) else {
                errors.push(format!("line {}: unknown type {ty:?} (expected one of EMAIL, PHONE, US_SSN, CREDIT_CARD, IBAN, IP_ADDRESS, API_KEY, PERSON, ADDRESS, DATE_OF_BIRTH)", n + 1));
                continue;
            };
            if rest.is_empty() {
                errors.push(format!(
                    "line {}: missing {} after the type",
                    n + 1,
                    if verb == "pattern" { "regex" } else { "term" }
                ));
                continue;
            }
            match verb {
                "term" => out.terms.push((rest.to_string(), kind)),
                "pattern" => match regex::RegexBuilder::new(rest)
                    .size_limit(PATTERN_SIZE_LIMIT)
                    .build()
                {
                    Ok(_) => out.patterns.push((rest.to_string(), kind)),
                    Err(e) => errors.push(format!("line {}: invalid regex: {e}", n + 1)),
                },
                other => errors.push(format!(
                    "line {}: unknown rule {other:?} (expected `term` or `pattern`)",
                    n + 1
                )),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(RedactError::InvalidRules(errors))
        }
    }
}

/// Compiled operator rules.
pub(super) struct Compiled {
    terms: Option<(AhoCorasick, Vec<PiiType>)>,
    patterns: Vec<(Regex, PiiType)>,
}

impl Compiled {
    pub(super) fn new(c: &CustomTerms) -> Result<Self, RedactError> {
        let mut errors = Vec::new();
        let terms = if c.terms.is_empty() {
            None
        } else {
            let ac = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .build(c.terms.iter().map(|(t, _)| t.as_str()));
            match ac {
                Ok(ac) => Some((ac, c.terms.iter().map(|(_, k)| *k).collect())),
                Err(e) => {
                    errors.push(format!("terms: {e}"));
                    None
                }
            }
        };
        let mut patterns = Vec::new();
        for (i, (p, k)) in c.patterns.iter().enumerate() {
            match regex::RegexBuilder::new(p)
                .size_limit(PATTERN_SIZE_LIMIT)
                .build()
            {
                Ok(r) => patterns.push((r, *k)),
                Err(e) => errors.push(format!("pattern {}: {e}", i + 1)),
            }
        }
        if errors.is_empty() {
            Ok(Compiled { terms, patterns })
        } else {
            Err(RedactError::InvalidRules(errors))
        }
    }

    pub(super) fn scan(&self, text: &str, out: &mut Vec<Hit>) {
        if let Some((ac, kinds)) = &self.terms {
            for m in ac.find_iter(text) {
                let bounded =
                    !is_word(prev_char(text, m.start())) && !is_word(next_char(text, m.end()));
                if let (true, Some(k)) = (bounded, kinds.get(m.pattern().as_usize())) {
                    out.push(Hit::new(m.start(), m.end(), *k));
                }
            }
        }
        for (r, k) in &self.patterns {
            for m in r.find_iter(text) {
                out.push(Hit::new(m.start(), m.end(), *k));
            }
        }
    }
}
