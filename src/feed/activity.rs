//! The overview's counters: per project and per minute, over the last hour, how many events,
//! violations by severity and guard decisions were committed. Fed by the writer's committed
//! stream (a subscriber like the alerts), kept in memory: they count what this server has seen
//! since it started, which the overview says.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;

use crate::rules::{Decision, RuleOutcome, Severity, decision};
use crate::store::Committed;

/// Minutes kept.
pub const MINUTES: usize = 60;

/// One minute of one project.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Minutes since the Unix epoch.
    pub minute: i64,
    pub events: u64,
    pub errors: u64,
    /// Violations by severity, lowest first (`Severity::ALL` order).
    pub violations: [u64; 4],
    pub rule_errors: u64,
    /// Guard decisions: allow, warn, deny.
    pub guards: [u64; 3],
}

#[derive(Default)]
struct Ring {
    minutes: Vec<Minute>,
}

impl Ring {
    fn at(&mut self, minute: i64) -> &mut Minute {
        let slot = minute.rem_euclid(MINUTES as i64) as usize;
        if self.minutes.len() < MINUTES {
            self.minutes.resize(MINUTES, Minute::default());
        }
        let m = &mut self.minutes[slot];
        if m.minute != minute {
            *m = Minute {
                minute,
                ..Minute::default()
            };
        }
        m
    }
}

/// Per-project minute counters. Cheap to share.
#[derive(Default)]
pub struct Activity {
    projects: Mutex<HashMap<String, Ring>>,
}

/// A project's last hour, oldest minute first (missing minutes are zero).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hour {
    pub minutes: Vec<Minute>,
}

impl Hour {
    pub fn events(&self) -> u64 {
        self.minutes.iter().map(|m| m.events).sum()
    }
    pub fn violations(&self, s: Severity) -> u64 {
        let i = Severity::ALL.iter().position(|x| *x == s).unwrap_or(0);
        self.minutes.iter().map(|m| m.violations[i]).sum()
    }
    pub fn rule_errors(&self) -> u64 {
        self.minutes.iter().map(|m| m.rule_errors).sum()
    }
    pub fn guards(&self, d: Decision) -> u64 {
        self.minutes.iter().map(|m| m.guards[guard_slot(d)]).sum()
    }
}

fn guard_slot(d: Decision) -> usize {
    match d {
        Decision::Allow => 0,
        Decision::Warn => 1,
        Decision::Deny => 2,
    }
}

impl Activity {
    /// Counts the groups `writer` commits from now on.
    pub fn subscribe(self: &Arc<Self>, writer: &crate::store::WriterHandle) {
        let mut committed = writer.subscribe();
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match committed.recv().await {
                    Ok(group) => me.count(&group, Utc::now().timestamp() / 60),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        metrics::counter!("audittrail_activity_lagged_total").increment(n);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// Counts one committed group in `minute`.
    pub fn count(&self, group: &Committed, minute: i64) {
        let mut projects = self.projects.lock().unwrap_or_else(|e| e.into_inner());
        // Guard outcomes, by the guard record's position.
        let mut guard_outcomes: HashMap<i64, Vec<RuleOutcome>> = HashMap::new();
        for (project, v) in &group.violations {
            let ring = projects.entry(project.clone()).or_default();
            let m = ring.at(minute);
            if v.outcome == "violation" {
                let s = v
                    .severity
                    .as_deref()
                    .and_then(Severity::parse)
                    .unwrap_or(Severity::Info);
                m.violations[Severity::ALL.iter().position(|x| *x == s).unwrap_or(0)] += 1;
                guard_outcomes
                    .entry(v.event_seq)
                    .or_default()
                    .push(RuleOutcome::Violation {
                        rule_id: String::new(),
                        severity: s,
                        message: String::new(),
                    });
            } else {
                m.rule_errors += 1;
            }
        }
        for r in &group.records {
            let ring = projects.entry(r.project.clone()).or_default();
            let m = ring.at(minute);
            match r.record_type {
                "span" => {
                    m.events += 1;
                    if r.summary.get("status").and_then(|s| s.as_str()) == Some("error") {
                        m.errors += 1;
                    }
                }
                "guard" => {
                    let outcomes = guard_outcomes.remove(&r.seq).unwrap_or_default();
                    m.guards[guard_slot(decision(&outcomes))] += 1;
                }
                _ => {}
            }
        }
    }

    /// The last hour of `project` up to `now_minute`.
    pub fn hour(&self, project: &str, now_minute: i64) -> Hour {
        let projects = self.projects.lock().unwrap_or_else(|e| e.into_inner());
        let ring = projects.get(project);
        let minutes = (now_minute - MINUTES as i64 + 1..=now_minute)
            .map(|minute| {
                ring.and_then(|r| {
                    r.minutes
                        .get(minute.rem_euclid(MINUTES as i64) as usize)
                        .filter(|m| m.minute == minute)
                        .copied()
                })
                .unwrap_or(Minute {
                    minute,
                    ..Minute::default()
                })
            })
            .collect();
        Hour { minutes }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CommittedRecord;
    use crate::store::violations::ViolationRow;
    use serde_json::json;

    fn span(seq: i64, project: &str, status: &str) -> CommittedRecord {
        CommittedRecord {
            seq,
            project: project.into(),
            record_type: "span",
            trace_id: "t".into(),
            summary: json!({ "status": status }),
        }
    }

    fn violation(event_seq: i64, severity: &str) -> ViolationRow {
        ViolationRow {
            seq: event_seq + 1,
            violation_id: "v".into(),
            outcome: "violation".into(),
            rule_id: "r".into(),
            severity: Some(severity.into()),
            message: String::new(),
            event_id: "e".into(),
            event_seq,
            event_kind: None,
            trace_id: None,
            span_id: None,
            agent: None,
            session_id: None,
            at: String::new(),
        }
    }

    #[test]
    fn counts_per_project_and_minute_and_forgets_after_an_hour() {
        let a = Activity::default();
        let group = Committed {
            records: vec![
                span(1, "p", "ok"),
                span(2, "p", "error"),
                span(3, "q", "ok"),
                CommittedRecord {
                    seq: 4,
                    project: "p".into(),
                    record_type: "guard",
                    trace_id: "t".into(),
                    summary: json!({}),
                },
            ],
            violations: vec![
                ("p".into(), violation(2, "high")),
                ("p".into(), violation(4, "critical")),
            ],
        };
        a.count(&group, 1000);
        a.count(
            &Committed {
                records: vec![span(9, "p", "ok")],
                violations: vec![],
            },
            1001,
        );
        let h = a.hour("p", 1001);
        assert_eq!(h.minutes.len(), MINUTES);
        assert_eq!(h.events(), 3);
        assert_eq!(h.minutes[MINUTES - 2].events, 2);
        assert_eq!(h.minutes[MINUTES - 2].errors, 1);
        assert_eq!(h.violations(Severity::High), 1);
        assert_eq!(h.violations(Severity::Critical), 1);
        assert_eq!(h.guards(Decision::Deny), 1);
        assert_eq!(h.guards(Decision::Allow), 0);
        assert_eq!(a.hour("q", 1001).events(), 1);
        // An hour later the old minutes are gone, even where their slots were not reused.
        assert_eq!(a.hour("p", 1000 + MINUTES as i64).events(), 1);
        assert_eq!(a.hour("p", 1001 + MINUTES as i64).events(), 0);
    }
}
