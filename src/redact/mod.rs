//! PII redactor stage: `ingest → redact → rules → store`.
//!
//! **What it does.** Finds personal data and credentials in agent-trace text (emails, phone
//! numbers, US SSNs, Luhn-valid cards, mod-97-valid IBANs, IPv4/IPv6 host addresses, API keys
//! and passwords, person names, street addresses, dates of birth) and replaces each with a
//! label (`[REDACTED:EMAIL]`) or a keyed pseudonym (`[EMAIL:3f2a9c01d4e7]`, the first 12 hex
//! digits of HMAC-SHA256(key, type || value): the same value always gets the same token, so
//! traces stay joinable without revealing the value).
//!
//! **Input / output.** [`Redactor::detect`] gives byte spans; [`Redactor::redact_str`] a
//! redacted copy (borrowed when nothing was found); [`Redactor::redact_json`] rewrites every
//! string of a JSON value in place, object keys included, recursing into strings that are
//! themselves JSON (tool-call `arguments`). [`jsonl::run`] and [`redact_text_cli`] are the
//! command-line modes. Counts per type are added to a [`TypeCounts`] map.
//!
//! **How.** [`Redactor::detect`] decodes `\uXXXX`/`\"` escapes if present (`escapes`), runs
//! one keyword pass (`gates`: Aho-Corasick, vectorised) and then the detectors, each gated on
//! a cheap byte test so absent triggers cost nothing:
//!
//! | file | finds | how |
//! |---|---|---|
//! | `secrets` | API_KEY | vendor prefixes, PEM blocks, `key=value`, DSN/`curl -u`, Bearer/Basic |
//! | `detectors` | EMAIL, IP_ADDRESS (v6), IBAN | around `@`/`%40`, `:` runs, letters+digits; mod-97 |
//! | `numbers` | US_SSN, CREDIT_CARD, PHONE, IP_ADDRESS (v4) | numeric clusters + shape/Luhn/parse |
//! | `dates` | DATE_OF_BIRTH | a date right after a birth word (`born`, `DOB`, ...) |
//! | `address` | ADDRESS | house-number layouts (EN, DE/NL, FR, IT/ES/PT) |
//! | `names` (+`name_tokens`, `name_words`) | PERSON | census dictionaries + context |
//! | `sql` | (context) | `INSERT … (cols) VALUES` pairs values with column names |
//! | `rules` | operator types | operator terms (Aho-Corasick) and regexes |
//!
//! `engine` resolves overlaps by type priority, then length, so output spans are sorted and
//! disjoint; `replace` writes labels or pseudonyms; `json` and `jsonl` are the event and
//! command-line front ends; `validate` holds the checksums.
//!
//! **Invariants.** A [`Redactor`] is built once, immutable, `Send + Sync`; all automata are
//! compiled in [`Redactor::new`]. Detection never panics and never allocates per byte.
//!
//! **Failure policy.** Fail closed: a JSON value nested deeper than [`MAX_DEPTH`] is an error
//! (the caller must drop the event, not store it unredacted). Invalid operator rules are
//! reported all at once by [`CustomTerms::parse`] / [`Redactor::new`].
//!
//! **Operator rules file** ([`CustomTerms::parse`]): one rule per line; blank lines and lines
//! starting with `#` are ignored.
//!
//! ```text
//! # literal, matched case-insensitively on word boundaries
//! term PERSON Jane Q. Customer
//! term ADDRESS 1 Infinite Loop
//! # regex (Rust `regex` syntax); the whole match is redacted
//! pattern API_KEY acme_[A-Za-z0-9]{32}
//! ```
//!
//! The type is one of the names of [`PiiType::as_str`]. Every bad line is reported, with its
//! line number.

mod address;
mod dates;
mod detectors;
mod engine;
mod escapes;
pub mod event;
mod gates;
mod json;
pub mod jsonl;
mod name_tokens;
mod name_words;
mod names;
mod numbers;
mod replace;
mod rules;
mod secrets;
pub mod setup;
mod sql;
pub mod stage;
mod validate;

use std::collections::BTreeMap;

pub use self::engine::Redactor;
pub use self::rules::CustomTerms;
pub use self::stage::RedactionStage;

/// Deepest JSON nesting (objects, arrays, embedded JSON strings) the stage will walk.
pub const MAX_DEPTH: usize = 64;

/// Detections per type name, e.g. `{"EMAIL": 2}`; serialises as a JSON object.
pub type TypeCounts = BTreeMap<&'static str, u32>;

/// Kinds of personal data the stage redacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiType {
    Email,
    Phone,
    UsSsn,
    CreditCard,
    Iban,
    IpAddress,
    ApiKey,
    Person,
    Address,
    DateOfBirth,
}

impl PiiType {
    /// Every type, in the order of the wire names.
    pub const ALL: [PiiType; 10] = [
        PiiType::Email,
        PiiType::Phone,
        PiiType::UsSsn,
        PiiType::CreditCard,
        PiiType::Iban,
        PiiType::IpAddress,
        PiiType::ApiKey,
        PiiType::Person,
        PiiType::Address,
        PiiType::DateOfBirth,
    ];

    /// Stable wire name (used in labels, counts and rule files).
    pub fn as_str(&self) -> &'static str {
        match self {
            PiiType::Email => "EMAIL",
            PiiType::Phone => "PHONE",
            PiiType::UsSsn => "US_SSN",
            PiiType::CreditCard => "CREDIT_CARD",
            PiiType::Iban => "IBAN",
            PiiType::IpAddress => "IP_ADDRESS",
            PiiType::ApiKey => "API_KEY",
            PiiType::Person => "PERSON",
            PiiType::Address => "ADDRESS",
            PiiType::DateOfBirth => "DATE_OF_BIRTH",
        }
    }

    /// Inverse of [`PiiType::as_str`] (exact, upper case).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Overlap priority: a higher value wins when two detections overlap. Validated,
    /// structured types beat context-guessed ones.
    fn priority(self) -> u8 {
        match self {
            PiiType::ApiKey => 10,
            PiiType::Email => 9,
            PiiType::Iban => 8,
            PiiType::CreditCard => 7,
            PiiType::UsSsn => 6,
            PiiType::IpAddress => 5,
            PiiType::Phone => 4,
            PiiType::DateOfBirth => 3,
            PiiType::Address => 2,
            PiiType::Person => 1,
        }
    }
}

impl std::fmt::Display for PiiType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding: byte offsets into the text (end exclusive). Lists are sorted and disjoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    pub start: usize,
    pub end: usize,
    pub kind: PiiType,
}

/// What a detection is replaced with.
#[derive(Clone, Default)]
pub enum Replacement {
    /// `[REDACTED:EMAIL]`.
    #[default]
    Label,
    /// `[EMAIL:` + first 12 hex of HMAC-SHA256(key, type || value) + `]`.
    Pseudonym { key: Vec<u8> },
}

impl std::fmt::Debug for Replacement {
    // The pseudonym key is a secret: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replacement::Label => f.write_str("Label"),
            Replacement::Pseudonym { .. } => f.write_str("Pseudonym { key: <redacted> }"),
        }
    }
}

/// How a [`Redactor`] is built.
#[derive(Debug, Clone, Default)]
pub struct RedactorConfig {
    /// Types the operator chose not to redact.
    pub disabled_types: Vec<PiiType>,
    /// Label or keyed pseudonym.
    pub replacement: Replacement,
    /// Operator-supplied literal terms and regex patterns.
    pub extra: CustomTerms,
}

/// Errors of the redact stage.
#[derive(Debug, thiserror::Error)]
pub enum RedactError {
    /// The operator rules file has problems; every one is listed (`line N: ...`).
    #[error("invalid redaction rules: {}", .0.join("; "))]
    InvalidRules(Vec<String>),
    /// A JSON value nests deeper than [`MAX_DEPTH`]; the event must not be stored.
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The pseudonym key is unusable.
    #[error("pseudonym key must not be empty")]
    EmptyKey,
}

/// Plain-text mode: read all of `input`, write it redacted to `output`.
pub fn redact_text_cli(
    mut input: impl std::io::Read,
    mut output: impl std::io::Write,
    r: &Redactor,
) -> std::io::Result<()> {
    let mut text = String::new();
    input.read_to_string(&mut text)?;
    let mut counts = TypeCounts::new();
    output.write_all(r.redact_str(&text, &mut counts).as_bytes())?;
    output.flush()
}

#[cfg(test)]
mod tests;
