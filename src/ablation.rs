//! Ablation: re-evaluates the stored log through a (changed) rule set and reports the difference.
//!
//! Walks every span and guard record in log order, rebuilding running totals exactly as the
//! writer did (guards peek, spans observe), evaluates the candidate rules, and compares with the
//! rule outcomes the log recorded for the same event. With the unchanged rule set the
//! difference is empty — that is the determinism promise. Never writes anything.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::{Row, SqlitePool};

use crate::event::format_time;
use crate::rules::{RuleOutcome, RuleSet, RunningTotals};
use crate::store::{StoreError, parse_body};

#[derive(Debug, Clone, Default)]
pub struct AblationRange {
    /// Compare only events whose start time is at or after this.
    pub from: Option<DateTime<Utc>>,
    /// ...and before this.
    pub to: Option<DateTime<Utc>>,
}

/// Per rule: how many violations the candidate set adds and removes.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RuleDiff {
    pub would_fire: u64,
    pub would_disappear: u64,
    pub unchanged: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AblationReport {
    pub events_compared: u64,
    pub rules: BTreeMap<String, RuleDiff>,
}

impl AblationReport {
    pub fn is_identical(&self) -> bool {
        self.rules
            .values()
            .all(|d| d.would_fire == 0 && d.would_disappear == 0)
    }
}

impl std::fmt::Display for AblationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} events re-evaluated", self.events_compared)?;
        writeln!(
            f,
            "{:<28} {:>10} {:>16} {:>10}",
            "rule", "would fire", "would disappear", "unchanged"
        )?;
        for (rule, d) in &self.rules {
            writeln!(
                f,
                "{rule:<28} {:>10} {:>16} {:>10}",
                d.would_fire, d.would_disappear, d.unchanged
            )?;
        }
        if self.is_identical() {
            write!(
                f,
                "no differences: the candidate rules reproduce the stored violations"
            )?;
        }
        Ok(())
    }
}

type Key = (String, String, String); // rule, severity, message

fn violations_of(outcomes: &[RuleOutcome]) -> Vec<Key> {
    outcomes
        .iter()
        .filter_map(|o| match o {
            RuleOutcome::Violation {
                rule_id,
                severity,
                message,
            } => Some((
                rule_id.clone(),
                severity.as_str().to_owned(),
                message.clone(),
            )),
            RuleOutcome::RuleError { .. } => None,
        })
        .collect()
}

/// Runs the comparison. `progress` gets the number of records read so far.
pub async fn run(
    pool: &SqlitePool,
    project: Option<&str>,
    candidate: &RuleSet,
    range: &AblationRange,
    mut progress: impl FnMut(u64),
) -> Result<AblationReport, StoreError> {
    let from = range.from.as_ref().map(format_time);
    let to = range.to.as_ref().map(format_time);
    let mut report = AblationReport::default();
    for r in candidate.rules() {
        report.rules.entry(r.id().to_owned()).or_default();
    }
    let mut totals = RunningTotals::new(usize::MAX / 2, usize::MAX / 2);
    let mut stored: BTreeMap<i64, Vec<Key>> = BTreeMap::new();
    // Pending comparison: (event seq, candidate violations, in range). Stored outcomes follow
    // their event in the log, so an event is settled when the next span or guard arrives.
    let mut pending: Option<(i64, Vec<Key>, bool)> = None;
    let mut rows = sqlx::query(
        "SELECT seq, record_type, event_time, body FROM events \
         WHERE record_type IN ('span', 'guard', 'violation') AND body IS NOT NULL AND (?1 IS NULL OR project = ?1) ORDER BY seq",
    )
    .bind(project)
    .fetch(pool);
    let mut read = 0u64;
    while let Some(row) = rows.try_next().await? {
        let seq: i64 = row.try_get("seq")?;
        let record_type: String = row.try_get("record_type")?;
        let body: String = row.try_get("body")?;
        let body = parse_body(seq, &body)?;
        read += 1;
        if read.is_multiple_of(10_000) {
            progress(read);
        }
        if record_type == "violation" {
            let s = |k: &str| {
                body.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_owned()
            };
            let cause = body.get("event_seq").and_then(|v| v.as_i64()).unwrap_or(0);
            stored
                .entry(cause)
                .or_default()
                .push((s("rule_id"), s("severity"), s("message")));
            continue;
        }
        if let Some(p) = pending.take() {
            settle(&mut report, p, &mut stored);
        }
        let time: Option<String> = row.try_get("event_time")?;
        let in_range = time.as_deref().is_some_and(|t| {
            from.as_deref().is_none_or(|f| t >= f) && to.as_deref().is_none_or(|end| t < end)
        });
        let view = if record_type == "guard" {
            totals.peek(&body)
        } else {
            totals.observe(&body)
        };
        let candidate_outcomes = if in_range {
            violations_of(&candidate.evaluate(&body, &view))
        } else {
            Vec::new()
        };
        pending = Some((seq, candidate_outcomes, in_range));
    }
    if let Some(p) = pending.take() {
        settle(&mut report, p, &mut stored);
    }
    progress(read);
    Ok(report)
}

fn settle(
    report: &mut AblationReport,
    (seq, mut candidate, in_range): (i64, Vec<Key>, bool),
    stored: &mut BTreeMap<i64, Vec<Key>>,
) {
    let mut before = stored.remove(&seq).unwrap_or_default();
    if !in_range {
        return;
    }
    report.events_compared += 1;
    before.sort();
    candidate.sort();
    for k in &candidate {
        let d = report.rules.entry(k.0.clone()).or_default();
        if let Some(i) = before.iter().position(|b| b == k) {
            before.remove(i);
            d.unchanged += 1;
        } else {
            d.would_fire += 1;
        }
    }
    for k in before {
        report.rules.entry(k.0).or_default().would_disappear += 1;
    }
}
