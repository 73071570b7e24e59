//! Ablation: re-evaluates the stored log through a (changed) rule set and reports the difference.
//!
//! Walks one project's span and guard records in log order, rebuilding running totals exactly
//! as the writer did (guards peek, spans observe), evaluates the candidate rules, and compares
//! with the rule outcomes the log recorded for the same event. With the unchanged rule set the
//! difference is empty — that is the determinism promise. Never writes anything.
//!
//! Bounded: it reads the project's records through an index, a page at a time, holds the
//! totals of at most [`TOTALS_HELD`] traces and sessions (an evicted one is rebuilt from the
//! log as it stood before the event), and stops between pages when cancelled.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::event::format_time;
use crate::rules::{RuleOutcome, RuleSet, RunningTotals, SessionTotals, TraceTotals};
use crate::store::db::{Conn, Exec};
use crate::store::schema::Events;
use crate::store::{StoreError, history};

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
    /// Records whose body was erased: they could not be re-evaluated.
    pub erased_skipped: u64,
    pub rules: BTreeMap<String, RuleDiff>,
}

impl AblationReport {
    /// Adds another project's report to this one.
    pub fn merge(&mut self, other: AblationReport) {
        self.events_compared += other.events_compared;
        self.erased_skipped += other.erased_skipped;
        for (rule, d) in other.rules {
            let mine = self.rules.entry(rule).or_default();
            mine.would_fire += d.would_fire;
            mine.would_disappear += d.would_disappear;
            mine.unchanged += d.unchanged;
        }
    }

    pub fn is_identical(&self) -> bool {
        self.rules
            .values()
            .all(|d| d.would_fire == 0 && d.would_disappear == 0)
    }
}

impl std::fmt::Display for AblationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} events re-evaluated", self.events_compared)?;
        if self.erased_skipped > 0 {
            writeln!(
                f,
                "{} erased records could not be re-evaluated",
                self.erased_skipped
            )?;
        }
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

/// Why an ablation run ended without a report.
#[derive(Debug, thiserror::Error)]
pub enum AblationError {
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Records read per page: each page is one short query, so a job never holds a cursor.
const PAGE: u64 = 2_000;
/// Traces and sessions whose totals are held at once; the others are rebuilt from the log
/// when they come back, so memory stays bounded whatever the size of the history.
const TOTALS_HELD: usize = 10_000;

/// Runs the comparison over `project`'s history up to the log's head when it starts.
/// `progress` gets the number of records read so far; `cancel` stops it between pages.
pub async fn run(
    conn: &mut Conn,
    project: &str,
    candidate: &Arc<RuleSet>,
    range: &AblationRange,
    cancel: &AtomicBool,
    mut progress: impl FnMut(u64),
) -> Result<AblationReport, AblationError> {
    let from = range.from.as_ref().map(format_time);
    let to = range.to.as_ref().map(format_time);
    let mut report = AblationReport::default();
    for r in candidate.rules() {
        report.rules.entry(r.id().to_owned()).or_default();
    }
    let mut db = conn.exec();
    let conn = &mut db;
    let until = history::head_seq(conn).await?;
    let mut totals = RunningTotals::new(TOTALS_HELD, TOTALS_HELD);
    let mut stored: BTreeMap<i64, Vec<Key>> = BTreeMap::new();
    // Pending comparison: (event seq, candidate violations, in range). Stored outcomes follow
    // their event in the log, so an event is settled when the next span or guard arrives.
    let mut pending: Option<(i64, Vec<Key>, bool)> = None;
    let mut read = 0u64;
    let mut after = 0;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(AblationError::Cancelled);
        }
        let page = history::project_page(conn, project, after, until, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in page {
            read += 1;
            let Some(body) = record.body else {
                // Erased: nothing left to re-evaluate.
                report.erased_skipped += 1;
                continue;
            };
            if record.record_type == "violation" {
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
            // Only its facts left (erased): they still count in the running totals, but a rule
            // that reads the input cannot judge it, so it is not re-evaluated.
            let erased = body.get(crate::store::personal::ERASED).is_some();
            if erased {
                report.erased_skipped += 1;
            }
            let in_range = !erased
                && record.event_time.as_deref().is_some_and(|t| {
                    from.as_deref().is_none_or(|f| t >= f)
                        && to.as_deref().is_none_or(|end| t < end)
                });
            let view = if record.record_type == "guard" {
                totals.peek(&body)
            } else {
                hold_totals(conn, &mut totals, project, &body, record.seq).await?;
                totals.observe(&body)
            };
            let candidate_outcomes = if in_range {
                // Rules are CPU work: off the async workers, so a job never stalls requests.
                let set = candidate.clone();
                tokio::task::spawn_blocking(move || violations_of(&set.evaluate(&body, &view)))
                    .await
                    .map_err(|e| StoreError::Corrupt {
                        seq: record.seq,
                        reason: format!("rule evaluation failed: {e}"),
                    })?
            } else {
                Vec::new()
            };
            pending = Some((record.seq, candidate_outcomes, in_range));
        }
        progress(read);
    }
    if let Some(p) = pending.take() {
        settle(&mut report, p, &mut stored);
    }
    progress(read);
    Ok(report)
}

/// Makes sure `totals` holds the trace and session of `event` as they stood just before
/// position `seq`, rebuilding an evicted one from the log.
async fn hold_totals(
    conn: &mut Exec<'_>,
    totals: &mut RunningTotals,
    project: &str,
    event: &serde_json::Value,
    seq: i64,
) -> Result<(), StoreError> {
    if let Some(trace) = event.get("trace_id").and_then(|v| v.as_str())
        && !totals.touch_trace(project, trace)
    {
        let ids = BTreeSet::from([trace]);
        let rebuilt = history::rebuild(
            conn,
            project,
            Events::TraceId,
            &ids,
            Some(seq),
            TraceTotals::apply,
        )
        .await?;
        for (id, t) in rebuilt {
            totals.seed_trace(project, id, t);
        }
    }
    if let Some(session) = event.get("session_id").and_then(|v| v.as_str())
        && !totals.touch_session(project, session)
    {
        let ids = BTreeSet::from([session]);
        let rebuilt = history::rebuild(
            conn,
            project,
            Events::SessionId,
            &ids,
            Some(seq),
            SessionTotals::apply,
        )
        .await?;
        for (id, t) in rebuilt {
            totals.seed_session(project, id, t);
        }
    }
    Ok(())
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
