//! Golden tests for rule files: `rules/tests/<rule_id>.json` against `rules/<rule_id>.rhai`.
//!
//! Input: a rules directory. A fixture file is a JSON array of cases:
//! `{"name": "...", "event": {...}, "trace": {overrides}, "expect": null | "<severity>"}`.
//! The trace view is what a fresh [`RunningTotals`] gives for the event alone, then the
//! optional `trace` object is deep-merged over it (e.g. `{"cost_usd": 12.5,
//! "session": {"cost_usd": 40}}` or `{"sources": ["https://a.example"]}`).
//! `expect: null` means the rule must not fire; a severity means it must fire with exactly
//! that severity. Output: a [`FixtureReport`] with one [`CaseResult`] per case.
//!
//! Invariants: only the rule named by the file stem is run for a case; a `RuleError` always
//! fails the case. Every rule must have a fixture file, with at least one case where it fires
//! and one where it does not.
//! Failure policy: nothing here panics or stops early; load errors, unreadable or malformed
//! fixture files and missing fixtures are all collected in [`FixtureReport::problems`].

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::context::{RunningTotals, TraceView};
use super::{RuleOutcome, RuleSet, Severity};

/// One fixture case as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    event: Value,
    #[serde(default)]
    trace: Value,
    expect: Option<Severity>,
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub rule_id: String,
    pub name: String,
    pub passed: bool,
    /// What happened, e.g. `expected critical, got nothing`.
    pub message: String,
}

/// All case results plus problems that stopped cases from running.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FixtureReport {
    pub cases: Vec<CaseResult>,
    /// Rule load errors, bad fixture files, rules without fixtures or without fire/no-fire cases.
    pub problems: Vec<String>,
}

impl FixtureReport {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed).count()
    }
    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }
    /// True when every case passed and there were no problems.
    pub fn is_success(&self) -> bool {
        self.problems.is_empty() && self.failed() == 0
    }
}

impl fmt::Display for FixtureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.cases.iter().filter(|c| !c.passed) {
            writeln!(f, "FAIL {} / {}: {}", c.rule_id, c.name, c.message)?;
        }
        for p in &self.problems {
            writeln!(f, "PROBLEM {p}")?;
        }
        write!(
            f,
            "rule fixtures: {} passed, {} failed",
            self.passed(),
            self.failed()
        )
    }
}

/// Runs every fixture in `rules_dir/tests` against the rules in `rules_dir`.
pub fn run_fixtures(rules_dir: impl AsRef<Path>) -> FixtureReport {
    let dir = rules_dir.as_ref();
    let mut report = FixtureReport::default();
    let rules = match RuleSet::load_dir(dir) {
        Ok(rules) => rules,
        Err(errors) => {
            report
                .problems
                .extend(errors.iter().map(ToString::to_string));
            return report;
        }
    };
    for rule in rules.rules() {
        let file = dir.join("tests").join(format!("{}.json", rule.id()));
        let cases = match std::fs::read_to_string(&file) {
            Err(e) => Err(format!("{}: cannot read fixtures: {e}", file.display())),
            Ok(text) => serde_json::from_str::<Vec<Case>>(&text)
                .map_err(|e| format!("{}: malformed fixtures: {e}", file.display())),
        };
        match cases {
            Ok(cases) => run_cases(&rules, rule.id(), &cases, &mut report),
            Err(problem) => report.problems.push(problem),
        }
    }
    report
}

fn run_cases(rules: &RuleSet, rule_id: &str, cases: &[Case], report: &mut FixtureReport) {
    if !cases.iter().any(|c| c.expect.is_some()) || !cases.iter().any(|c| c.expect.is_none()) {
        report.problems.push(format!(
            "{rule_id}: fixtures need at least one firing and one non-firing case"
        ));
    }
    for case in cases {
        let (passed, message) = match view_for(&case.event, &case.trace) {
            Err(e) => (false, format!("bad trace override: {e}")),
            Ok(view) => judge(
                case.expect,
                rules.evaluate_rule(rule_id, &case.event, &view),
            ),
        };
        report.cases.push(CaseResult {
            rule_id: rule_id.to_owned(),
            name: case.name.clone(),
            passed,
            message,
        });
    }
}

fn judge(expect: Option<Severity>, got: Option<RuleOutcome>) -> (bool, String) {
    match (expect, got) {
        (_, Some(RuleOutcome::RuleError { message, .. })) => {
            (false, format!("rule error: {message}"))
        }
        (None, None) => (true, "did not fire, as expected".into()),
        (
            None,
            Some(RuleOutcome::Violation {
                severity, message, ..
            }),
        ) => (
            false,
            format!("expected no violation, got {severity}: {message}"),
        ),
        (Some(want), None) => (false, format!("expected {want}, got nothing")),
        (
            Some(want),
            Some(RuleOutcome::Violation {
                severity, message, ..
            }),
        ) => (
            want == severity,
            format!("expected {want}, got {severity}: {message}"),
        ),
    }
}

/// The view of a fresh trace holding only `event`, with `overrides` deep-merged over it.
fn view_for(event: &Value, overrides: &Value) -> Result<TraceView, serde_json::Error> {
    let totals = RunningTotals::new(1, 1);
    let view = totals.peek(event);
    if overrides.is_null() {
        return Ok(view);
    }
    let mut json = serde_json::to_value(&view)?;
    merge(&mut json, overrides);
    serde_json::from_value(json)
}

fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}
