//! Constitutional rules: user-editable Rhai scripts that judge each redacted event.
//!
//! ```text
//! rules/*.rhai ──load_dir──▶ RuleSet (compiled once, sandboxed engine, Arc-shared)
//! event ──▶ RunningTotals::observe / peek (guard) ──▶ TraceView
//! (event, TraceView) ──RuleSet::evaluate──▶ Vec<RuleOutcome> ──decision──▶ Allow | Warn | Deny
//! ```
//!
//! - `engine.rs` — the one place the sandboxed Rhai engine is built (limits, deadline).
//! - `ruleset.rs` — loading/validating a directory of rules, evaluating them.
//! - `context.rs` — running trace/session totals (the `trace` argument); `sources.rs` —
//!   which URLs/document ids a retrieval step returned.
//! - `fixtures.rs` — golden tests: `rules/tests/<rule_id>.json` run against each rule.
//!
//! Input: one event as `serde_json::Value` (already redacted) and its totals. Output:
//! violations (rule id, severity, message) and rule errors. Evaluation is a plain,
//! synchronous, deterministic function; callers on an async runtime should batch it or run
//! it on a blocking thread if rule sets grow large.
//!
//! Failure policy: a rule that errors or hits a limit yields `RuleOutcome::RuleError` and does
//! not affect other rules; errors never deny a guard request on their own (fail-open, but
//! reported), since one broken rule must not halt every agent.

mod context;
mod engine;
mod fixtures;
pub mod live;
pub(crate) mod reads;
mod ruleset;
mod sources;

#[cfg(test)]
mod tests;

pub use self::context::{RunningTotals, SessionTotals, TraceTotals, TraceView};
pub use self::fixtures::{CaseResult, FixtureReport, run_fixtures};
pub use self::ruleset::{Rule, RuleLoadError, RuleSet};

use serde::{Deserialize, Serialize};

/// How serious a violation is. Ordered: `Info < Warning < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    High,
    Critical,
}

impl Severity {
    /// All severities, lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Info,
        Severity::Warning,
        Severity::High,
        Severity::Critical,
    ];

    /// The lowercase name used in rule files and APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a lowercase name (surrounding whitespace and case are ignored).
    pub fn parse(s: &str) -> Option<Severity> {
        let s = s.trim();
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one rule on one event (rules that did not fire produce nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RuleOutcome {
    /// The rule fired.
    Violation {
        rule_id: String,
        severity: Severity,
        message: String,
    },
    /// The rule failed to run (script error or limit hit); reported, never fatal.
    RuleError { rule_id: String, message: String },
}

impl RuleOutcome {
    /// The id of the rule this outcome is about.
    pub fn rule_id(&self) -> &str {
        match self {
            RuleOutcome::Violation { rule_id, .. } | RuleOutcome::RuleError { rule_id, .. } => {
                rule_id
            }
        }
    }
}

/// What a guard request gets back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Warn,
    Deny,
}

/// Critical violation → `Deny`; high or warning → `Warn`; info, rule errors or nothing → `Allow`.
pub fn decision(outcomes: &[RuleOutcome]) -> Decision {
    outcomes
        .iter()
        .map(|o| match o {
            RuleOutcome::Violation {
                severity: Severity::Critical,
                ..
            } => Decision::Deny,
            RuleOutcome::Violation {
                severity: Severity::High | Severity::Warning,
                ..
            } => Decision::Warn,
            RuleOutcome::Violation {
                severity: Severity::Info,
                ..
            }
            | RuleOutcome::RuleError { .. } => Decision::Allow,
        })
        .max()
        .unwrap_or(Decision::Allow)
}
