//! Erasure receipts: the log record that makes an erasure an act in the log, not a silent edit.
//!
//! An erasure clears the bodies of the records it selects (their digests and links stay) and,
//! in the same transaction, appends a receipt: who asked, when, why, the selector in
//! pseudonymous form (a keyed hash of the value, never the value) and every position it
//! cleared. `verify` accepts a missing body only where a later receipt lists its position.

use serde::{Deserialize, Serialize};

/// What an erasure selects, within one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EraseSelector {
    TraceId(String),
    SessionId(String),
    Agent(String),
    /// A personal value the redactor removed (an e-mail, a phone number…), found through the
    /// index of keyed pseudonyms the writer keeps per record.
    Value(String),
    /// Explicit positions (tests, and retention's per-project erasure later).
    Seqs(Vec<i64>),
}

impl EraseSelector {
    /// The selector's field name as receipts and the API show it.
    pub fn field(&self) -> &'static str {
        match self {
            EraseSelector::TraceId(_) => "trace_id",
            EraseSelector::SessionId(_) => "session_id",
            EraseSelector::Agent(_) => "agent",
            EraseSelector::Value(_) => "value",
            EraseSelector::Seqs(_) => "seqs",
        }
    }
}

/// An erasure request as the writer receives it.
#[derive(Debug, Clone)]
pub struct EraseRequest {
    pub project: String,
    pub selector: EraseSelector,
    /// The reason given (free text from the operator; kept in the receipt).
    pub reason: String,
    /// Who asked: a key id, `cli`, or `system`.
    pub requested_by: String,
}

/// The stored body of an erasure receipt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReceipt {
    /// Always `"erasure"`, so the body says what it is on its own.
    pub receipt: String,
    pub project: String,
    pub requested_by: String,
    pub at: String,
    pub reason: String,
    /// `trace_id`, `session_id`, `agent`, `value` or `seqs`.
    pub selector_field: String,
    /// Keyed pseudonym of the selector's value (absent for explicit positions).
    pub selector_pseudonym: Option<String>,
    /// Every position whose body this erasure cleared, ascending.
    pub seqs: Vec<i64>,
}

impl ErasureReceipt {
    /// Parses a stored receipt body; `None` if it is not one.
    pub fn parse(body: &str) -> Option<ErasureReceipt> {
        serde_json::from_str::<ErasureReceipt>(body)
            .ok()
            .filter(|r| r.receipt == "erasure")
    }
}

/// The stored body of a retention receipt: a sweep removed the log's prefix up to `base_seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetentionReceipt {
    /// Always `"retention"`.
    pub receipt: String,
    /// Who asked: `system` (the scheduled sweep), `cli`, or a key id.
    pub requested_by: String,
    pub at: String,
    /// The retention limit in days.
    pub days: u32,
    /// Records recorded before this time were removed.
    pub cutoff: String,
    /// The chain's base before this sweep and after it (the last removed position).
    pub from_seq: i64,
    pub base_seq: i64,
    /// Records removed.
    pub removed: u64,
    /// Running totals of the traces and sessions that straddle the new base.
    pub carried: Vec<crate::store::sweep::Carried>,
}

impl RetentionReceipt {
    pub fn parse(body: &str) -> Option<RetentionReceipt> {
        serde_json::from_str::<RetentionReceipt>(body)
            .ok()
            .filter(|r| r.receipt == "retention")
    }
}
