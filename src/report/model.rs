//! The report model: the facts a compliance report states, and the tally that derives its
//! figures from log records in one streaming pass.
//!
//! Everything here is pure: [`Tally::add`] takes records in log order, [`Tally::finish`] gives
//! the [`Figures`]. Memory is bounded by the number of distinct traces and sessions (a 64-bit
//! hash each) and of agents, rules and days, never by the number of records.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the facts' layout embedded in each PDF.
pub const FACTS_FORMAT: u32 = 1;

/// The standards a report maps evidence to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Standard {
    #[serde(rename = "soc2")]
    Soc2,
    #[serde(rename = "gdpr")]
    Gdpr,
    #[serde(rename = "hipaa")]
    Hipaa,
    #[serde(rename = "eu-ai-act")]
    EuAiAct,
}

impl Standard {
    pub const ALL: [Standard; 4] = [
        Standard::Soc2,
        Standard::Gdpr,
        Standard::Hipaa,
        Standard::EuAiAct,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Standard::Soc2 => "soc2",
            Standard::Gdpr => "gdpr",
            Standard::Hipaa => "hipaa",
            Standard::EuAiAct => "eu-ai-act",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Standard::Soc2 => "SOC 2 (Trust Services Criteria)",
            Standard::Gdpr => "GDPR (Regulation (EU) 2016/679)",
            Standard::Hipaa => "HIPAA Security Rule (45 CFR 164)",
            Standard::EuAiAct => "EU AI Act (Regulation (EU) 2024/1689)",
        }
    }

    pub fn parse(s: &str) -> Option<Standard> {
        Standard::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// A rule in force when the report was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleRef {
    pub id: String,
    pub severity: String,
}

/// Everything a report states. The parameters (standard, projects, period, clock, rule set,
/// settings) are what it was asked for and under what configuration; [`LogRange`] and
/// [`Figures`] are derived from the log and are what `report verify` derives again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub format: u32,
    pub standard: Standard,
    pub projects: Vec<String>,
    /// The period asked for, RFC 3339.
    pub from: String,
    pub to: String,
    /// Where the period was cut: `min(to, generated_at)`.
    pub cut_at: String,
    pub generated_at: String,
    pub generator: String,
    pub retention_days: u32,
    pub pii_redaction: bool,
    pub rules: Vec<RuleRef>,
    /// SHA-256 over the rule files' ids and sources, hex.
    pub rules_digest: String,
    /// Whether security events naming no project are counted (see [`super::Params`]).
    pub global_audit: bool,
    pub log: LogRange,
    pub figures: Figures,
}

/// The positions of the log the period covers and what the chain says about them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRange {
    /// First and last position recorded in the period (over every project: the chain is one);
    /// `None` when nothing was recorded.
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    /// The chain's link at `last_seq`, hex: the head the report's figures end at.
    pub head_link: Option<String>,
    /// Whether the chain verified (from its base through the head at the time of the report).
    pub chain_verified: bool,
    /// Why not, when it did not.
    pub chain_fault: Option<String>,
    /// The last security audit entry counted (the audit log is written asynchronously: an
    /// entry stamped inside the period but written after the report is not counted, then or
    /// when the report is verified).
    pub audit_last_id: i64,
    /// The log's last position when the report was made.
    pub head_seq: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Span records: the events agents sent.
    pub events: u64,
    /// Span records whose status is `error`.
    pub error_events: u64,
    pub traces: u64,
    pub agents: u64,
    pub sessions: u64,
    pub violations: u64,
    pub rule_errors: u64,
    /// Guard-mode requests and what they were answered.
    pub guard_requests: u64,
    pub guard_allow: u64,
    pub guard_warn: u64,
    pub guard_deny: u64,
    /// Records of the range whose body has been erased (counted, not read).
    pub erased_records: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Cost in micro-dollars (an integer, so sums are exact and reproducible).
    pub cost_micro_usd: u64,
    /// Values the redactor removed before storage: by PII type, and by field.
    pub pii_by_type: BTreeMap<String, u64>,
    pub pii_by_field: BTreeMap<String, u64>,
    pub violations_by_rule: Vec<RuleCount>,
    pub violations_by_severity: BTreeMap<String, u64>,
    pub violations_by_agent: BTreeMap<String, u64>,
    pub rule_errors_by_rule: BTreeMap<String, u64>,
    /// Per UTC day of the event's time: events and violations.
    pub by_day: BTreeMap<String, DayCount>,
    /// What each agent did (GDPR Art. 30's "processing activities").
    pub agents_detail: Vec<AgentRow>,
    pub erasures: Vec<ErasureRow>,
    /// Retention sweeps recorded in the period (absent from reports made before sweeps).
    #[serde(default)]
    pub sweeps: Vec<SweepRow>,
    /// The security audit log's entries of the period, counted by kind.
    pub audit: Vec<AuditRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleCount {
    pub rule: String,
    pub severity: String,
    pub count: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCount {
    pub events: u64,
    pub violations: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRow {
    pub agent: String,
    pub events: u64,
    pub traces: u64,
    /// Events by kind (`llm`, `tool`, …).
    pub kinds: BTreeMap<String, u64>,
    pub models: Vec<String>,
    pub pii_removed: u64,
    pub violations: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureRow {
    pub seq: i64,
    pub at: String,
    pub project: String,
    pub selector: String,
    pub records: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepRow {
    pub seq: i64,
    pub at: String,
    pub days: u32,
    /// The chain's base after the sweep.
    pub base_seq: i64,
    pub removed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRow {
    pub event_type: String,
    pub operation: String,
    pub result: String,
    pub count: u64,
}

impl Figures {
    /// The audit entries counted whose type, operation (prefix) and result match.
    pub fn audit_count(&self, event_type: &str, operation: &str, result: Option<&str>) -> u64 {
        self.audit
            .iter()
            .filter(|r| {
                r.event_type == event_type
                    && r.operation.starts_with(operation)
                    && result.is_none_or(|x| r.result == x)
            })
            .map(|r| r.count)
            .sum()
    }
}

/// Distinct agents counted one by one; beyond this many (agent names are the client's) the rest
/// are counted together as [`OTHER_AGENTS`], so memory and the PDF stay bounded.
pub const MAX_AGENTS: usize = 1_000;
pub const OTHER_AGENTS: &str = "(other agents)";
/// A rule outcome follows its event within one commit group; a guard request's decision is
/// final once the log is this many positions past it.
const GUARD_WINDOW: i64 = 100_000;

/// One record as the tally reads it.
pub struct Record<'a> {
    pub seq: i64,
    pub record_type: &'a str,
    pub event_time: Option<&'a str>,
    /// `None` once erased.
    pub body: Option<&'a Value>,
}

/// The running count behind [`Figures`].
#[derive(Default)]
pub struct Tally {
    f: Figures,
    traces: HashSet<u64>,
    sessions: HashSet<u64>,
    agent_traces: HashMap<String, HashSet<u64>>,
    agents: BTreeMap<String, AgentRow>,
    rules: BTreeMap<(String, String), u64>,
    /// Guard requests not yet answered by a later violation: position → worst decision
    /// (0 allow, 1 warn, 2 deny).
    guards: HashMap<i64, u8>,
}

fn key_hash(parts: &[&str]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

fn text<'v>(body: &'v Value, key: &str) -> Option<&'v str> {
    body.get(key).and_then(Value::as_str)
}

impl Tally {
    pub fn add(&mut self, r: &Record<'_>) {
        if self.guards.len() > 1_000 && r.seq & 1023 == 0 {
            self.settle_guards(r.seq - GUARD_WINDOW);
        }
        // An erased record (its body gone, or only its facts left) is counted as erased, not
        // as what it was: a report made after an erasure says how many it could not read.
        let Some(body) = r
            .body
            .filter(|b| b.get(crate::store::personal::ERASED).is_none())
        else {
            self.f.erased_records += 1;
            return;
        };
        match r.record_type {
            "span" => self.span(r, body),
            "guard" => {
                self.f.guard_requests += 1;
                self.guards.insert(r.seq, 0);
            }
            "violation" => self.violation(r, body),
            "rule_error" => {
                self.f.rule_errors += 1;
                let rule = text(body, "rule_id").unwrap_or("?").to_owned();
                *self.f.rule_errors_by_rule.entry(rule).or_default() += 1;
            }
            _ => {}
        }
    }

    /// Counts the decisions of guard requests before position `before`.
    fn settle_guards(&mut self, before: i64) {
        let f = &mut self.f;
        self.guards.retain(|seq, d| {
            if *seq >= before {
                return true;
            }
            match d {
                2 => f.guard_deny += 1,
                1 => f.guard_warn += 1,
                _ => f.guard_allow += 1,
            }
            false
        });
    }

    /// The name an agent is counted under.
    fn agent_name<'b>(&self, agent: &'b str) -> &'b str {
        if self.agents.contains_key(agent) || self.agents.len() < MAX_AGENTS {
            agent
        } else {
            OTHER_AGENTS
        }
    }

    fn span(&mut self, r: &Record<'_>, body: &Value) {
        let f = &mut self.f;
        f.events += 1;
        if text(body, "status") == Some("error") {
            f.error_events += 1;
        }
        let project = text(body, "project").unwrap_or("");
        let trace = text(body, "trace_id").unwrap_or("");
        let trace_key = key_hash(&[project, trace]);
        self.traces.insert(trace_key);
        if let Some(s) = text(body, "session_id") {
            self.sessions.insert(key_hash(&[project, s]));
        }
        if let Some(usage) = body.get("usage") {
            let n = |k: &str| usage.get(k).and_then(Value::as_u64).unwrap_or(0);
            f.input_tokens = f.input_tokens.saturating_add(n("input_tokens"));
            f.output_tokens = f.output_tokens.saturating_add(n("output_tokens"));
            if let Some(c) = usage.get("cost_usd").and_then(Value::as_f64) {
                f.cost_micro_usd = f
                    .cost_micro_usd
                    .saturating_add((c * 1_000_000.0).round().max(0.0) as u64);
            }
        }
        let mut pii = 0u64;
        if let Some(Value::Object(fields)) = body.get("redaction") {
            for (field, types) in fields {
                let Value::Object(types) = types else {
                    continue;
                };
                for (t, n) in types {
                    let n = n.as_u64().unwrap_or(0);
                    pii += n;
                    *f.pii_by_type.entry(t.clone()).or_default() += n;
                    *f.pii_by_field.entry(field.clone()).or_default() += n;
                }
            }
        }
        if let Some(day) = r.event_time.and_then(|t| t.get(..10)) {
            f.by_day.entry(day.to_owned()).or_default().events += 1;
        }
        let agent = self.agent_name(text(body, "agent").unwrap_or("(none)"));
        let row = self
            .agents
            .entry(agent.to_owned())
            .or_insert_with(|| AgentRow {
                agent: agent.to_owned(),
                ..Default::default()
            });
        row.events += 1;
        row.pii_removed += pii;
        *row.kinds
            .entry(text(body, "kind").unwrap_or("?").to_owned())
            .or_default() += 1;
        if let Some(m) = text(body, "model")
            && !row.models.iter().any(|x| x == m)
            && row.models.len() < 20
        {
            row.models.push(m.to_owned());
            row.models.sort();
        }
        self.agent_traces
            .entry(agent.to_owned())
            .or_default()
            .insert(trace_key);
    }

    fn violation(&mut self, r: &Record<'_>, body: &Value) {
        let agent = self.agent_name(text(body, "agent").unwrap_or("(none)"));
        let f = &mut self.f;
        f.violations += 1;
        let rule = text(body, "rule_id").unwrap_or("?").to_owned();
        let severity = text(body, "severity").unwrap_or("?").to_owned();
        *f.violations_by_severity
            .entry(severity.clone())
            .or_default() += 1;
        *f.violations_by_agent.entry(agent.to_owned()).or_default() += 1;
        self.agents
            .entry(agent.to_owned())
            .or_insert_with(|| AgentRow {
                agent: agent.to_owned(),
                ..Default::default()
            })
            .violations += 1;
        if let Some(day) = r.event_time.and_then(|t| t.get(..10)) {
            f.by_day.entry(day.to_owned()).or_default().violations += 1;
        }
        if let Some(cause) = body.get("event_seq").and_then(Value::as_i64)
            && let Some(d) = self.guards.get_mut(&cause)
        {
            let level = match severity.as_str() {
                "critical" => 2,
                "high" | "warning" => 1,
                _ => 0,
            };
            *d = (*d).max(level);
        }
        *self.rules.entry((rule, severity)).or_default() += 1;
    }

    /// The figures, with the erasure receipts and audit counts read beside the records.
    pub fn finish(
        mut self,
        erasures: Vec<ErasureRow>,
        sweeps: Vec<SweepRow>,
        audit: Vec<AuditRow>,
    ) -> Figures {
        self.settle_guards(i64::MAX);
        let mut f = self.f;
        f.traces = self.traces.len() as u64;
        f.sessions = self.sessions.len() as u64;
        f.agents = self.agents.len() as u64;
        let mut by_rule: Vec<RuleCount> = self
            .rules
            .into_iter()
            .map(|((rule, severity), count)| RuleCount {
                rule,
                severity,
                count,
            })
            .collect();
        by_rule.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.rule.cmp(&b.rule)));
        f.violations_by_rule = by_rule;
        f.agents_detail = std::mem::take(&mut self.agents)
            .into_values()
            .map(|mut row| {
                row.traces = self
                    .agent_traces
                    .get(&row.agent)
                    .map_or(0, |s| s.len() as u64);
                row
            })
            .collect();
        f.erasures = erasures;
        f.sweeps = sweeps;
        f.audit = audit;
        f
    }
}

/// The first place two values differ, as a path (`figures.violations_by_rule[2].count`), or
/// `None` when they are equal.
pub fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let p = format!("{path}.{k}");
                match y.get(k) {
                    Some(vb) => {
                        if let Some(d) = first_difference(&p, va, vb) {
                            return Some(d);
                        }
                    }
                    None => return Some(p),
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{path}.{k}"))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                if let Some(d) = first_difference(&format!("{path}[{i}]"), va, vb) {
                    return Some(d);
                }
            }
            (x.len() != y.len()).then(|| format!("{path} (length {} vs {})", x.len(), y.len()))
        }
        _ => (a != b).then(|| path.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn add(t: &mut Tally, seq: i64, kind: &str, body: Value) {
        t.add(&Record {
            seq,
            record_type: kind,
            event_time: Some("2026-11-20T10:00:00Z"),
            body: Some(&body),
        });
    }

    #[test]
    fn tally_counts_populations_pii_violations_and_guard_decisions() {
        let mut t = Tally::default();
        let span = |trace: &str, agent: &str, session: &str| {
            json!({"project": "p", "trace_id": trace, "agent": agent, "session_id": session,
                   "kind": "llm", "model": "gpt-4o", "status": "ok",
                   "usage": {"input_tokens": 10, "output_tokens": 5, "cost_usd": 0.0015},
                   "redaction": {"input": {"EMAIL": 2}, "output": {"PHONE": 1}}})
        };
        add(&mut t, 1, "span", span("t1", "a", "s1"));
        add(&mut t, 2, "span", span("t1", "a", "s1"));
        add(&mut t, 3, "span", span("t2", "b", "s2"));
        add(
            &mut t,
            4,
            "violation",
            json!({"rule_id": "r1", "severity": "high", "agent": "b", "event_seq": 3}),
        );
        add(&mut t, 5, "guard", json!({"project": "p"}));
        add(
            &mut t,
            6,
            "violation",
            json!({"rule_id": "r2", "severity": "critical", "agent": "b", "event_seq": 5}),
        );
        add(&mut t, 7, "guard", json!({"project": "p"}));
        add(&mut t, 8, "rule_error", json!({"rule_id": "r3"}));
        t.add(&Record {
            seq: 9,
            record_type: "span",
            event_time: None,
            body: None,
        });
        let f = t.finish(vec![], vec![], vec![]);
        assert_eq!((f.events, f.traces, f.agents, f.sessions), (3, 2, 2, 2));
        assert_eq!((f.violations, f.rule_errors, f.erased_records), (2, 1, 1));
        assert_eq!((f.guard_requests, f.guard_allow, f.guard_deny), (2, 1, 1));
        assert_eq!(f.pii_by_type["EMAIL"], 6);
        assert_eq!(f.pii_by_field["output"], 3);
        assert_eq!((f.input_tokens, f.output_tokens), (30, 15));
        assert_eq!(f.cost_micro_usd, 4500);
        assert_eq!(f.violations_by_rule[0].rule, "r1");
        assert_eq!(f.violations_by_agent["b"], 2);
        assert_eq!(f.by_day["2026-11-20"].events, 3);
        let a = &f.agents_detail[0];
        assert_eq!((a.agent.as_str(), a.events, a.traces), ("a", 2, 1));
        assert_eq!(a.pii_removed, 6);
    }

    #[test]
    fn first_difference_names_the_path() {
        let a = json!({"figures": {"events": 3, "by": [1, 2]}});
        let b = json!({"figures": {"events": 3, "by": [1, 5]}});
        assert_eq!(
            first_difference("facts", &a, &b).as_deref(),
            Some("facts.figures.by[1]")
        );
        assert_eq!(first_difference("facts", &a, &a), None);
    }
}
