//! What a report says, page by page: [`render`] is a pure function from [`Facts`] to PDF bytes.
//!
//! Sections: cover, provenance (what was counted, over which positions of the log, the head
//! link and how to re-check), summary, the standard's controls with their evidence, then the
//! detail tables the controls refer to.

use super::model::{Facts, Figures, Standard};
use super::pdf::{Column, Doc, grey, rgb};

fn n(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn usd(micro: u64) -> String {
    format!("${}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

fn col(heading: &str, width: f32, right: bool) -> Column<'_> {
    Column {
        heading,
        width,
        right,
    }
}

/// The PDF of a report.
pub fn render(facts: &Facts) -> Vec<u8> {
    let footer = format!(
        "AuditTrail {} report · {} · {} to {} · log {}",
        facts.standard.as_str(),
        facts.projects.join(", "),
        facts.from,
        facts.cut_at,
        seq_range(facts)
    );
    let mut d = Doc::new(&footer);
    cover(&mut d, facts);
    provenance(&mut d, facts);
    summary(&mut d, facts);
    match facts.standard {
        Standard::Soc2 => soc2(&mut d, facts),
        Standard::Gdpr => gdpr(&mut d, facts),
        Standard::Hipaa => hipaa(&mut d, facts),
        Standard::EuAiAct => eu_ai_act(&mut d, facts),
    }
    details(&mut d, &facts.figures);
    let json = serde_json::to_vec(facts).expect("facts serialise");
    d.finish(
        &format!("AuditTrail {} report", facts.standard.title()),
        &json,
    )
}

fn seq_range(f: &Facts) -> String {
    match (f.log.first_seq, f.log.last_seq) {
        (Some(a), Some(b)) => format!("seq {a}–{b}"),
        _ => "no records".into(),
    }
}

fn cover(d: &mut Doc, f: &Facts) {
    d.space(40.0);
    d.line("AuditTrail compliance report", 11.0, false, grey(0.4));
    d.title(f.standard.title());
    d.space(10.0);
    d.pairs(&[
        ("Project(s)", f.projects.join(", ")),
        (
            "Period",
            format!("{} to {} (requested to {})", f.from, f.cut_at, f.to),
        ),
        ("Generated at", f.generated_at.clone()),
        ("Generator", f.generator.clone()),
        ("Log range", seq_range(f)),
        (
            "Head link",
            f.log.head_link.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "Chain",
            if f.log.chain_verified {
                "verified".into()
            } else {
                format!(
                    "NOT VERIFIED: {}",
                    f.log.chain_fault.as_deref().unwrap_or("unknown")
                )
            },
        ),
        (
            "Rule set in force",
            format!("{} rules, digest {}", f.rules.len(), short(&f.rules_digest)),
        ),
    ]);
    d.subheading("Rules in force when the report was generated");
    let rows: Vec<Vec<String>> = f
        .rules
        .iter()
        .map(|r| vec![r.id.clone(), r.severity.clone()])
        .collect();
    d.table(
        &[col("rule", 320.0, false), col("severity", 120.0, false)],
        &rows,
    );
    d.note(&format!(
        "Rule-set digest (SHA-256 over each rule's id and the SHA-256 of the source it was compiled from): {}",
        f.rules_digest
    ));
}

fn short(hex: &str) -> String {
    hex.get(..16).unwrap_or(hex).to_owned()
}

fn provenance(d: &mut Doc, f: &Facts) {
    d.new_page();
    d.heading("1. Provenance (information produced by the entity)");
    d.para(
        "Every figure in this report is counted from AuditTrail's hash-chained event log, or \
         from the security audit log whose head the event log anchors, over the positions \
         named below. In-memory counters of the running service (for example webhook alerts \
         sent) are not report figures.",
    );
    d.pairs(&[
        ("Standard", f.standard.as_str().into()),
        ("Projects", f.projects.join(", ")),
        ("Period asked for", format!("from {} to {}", f.from, f.to)),
        (
            "Period counted",
            format!("records recorded from {} until {}", f.from, f.cut_at),
        ),
        (
            "First and last seq",
            match (f.log.first_seq, f.log.last_seq) {
                (Some(a), Some(b)) => format!("{a} and {b}"),
                _ => "no record was recorded in the period".into(),
            },
        ),
        (
            "Chain head at last seq",
            f.log.head_link.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "Chain verification",
            if f.log.chain_verified {
                "passed: every record from the chain's base through its head was re-hashed and \
                 its link checked; the audit log matched its checkpoints"
                    .into()
            } else {
                format!(
                    "FAILED: {}",
                    f.log.chain_fault.as_deref().unwrap_or("unknown")
                )
            },
        ),
        ("Retention setting", retention(f)),
        (
            "Sweeps in the period",
            if f.figures.sweeps.is_empty() {
                "none".into()
            } else {
                format!(
                    "{} (removing {} records; see the retention section)",
                    f.figures.sweeps.len(),
                    n(f.figures.sweeps.iter().map(|s| s.removed).sum())
                )
            },
        ),
        (
            "PII redaction",
            if f.pii_redaction {
                "on: values are removed before anything is stored".into()
            } else {
                "OFF".into()
            },
        ),
    ]);
    d.subheading("Populations");
    d.pairs(&[
        ("Events", "span records of the projects in the range".into()),
        (
            "Traces, sessions, agents",
            "distinct ids among those events".into(),
        ),
        (
            "Violations",
            "violation records (a rule fired on an event)".into(),
        ),
        (
            "Rule errors",
            "rule_error records (a rule failed or hit a limit)".into(),
        ),
        (
            "Guard decisions",
            "guard records, answered deny (a critical violation), warn (high or warning) or allow"
                .into(),
        ),
        (
            "Security events",
            "audit log entries timestamped in the period about these projects or no project".into(),
        ),
    ]);
    d.subheading("How to re-check this report");
    d.para(
        "Run `audittrail report verify <this file>` against the same database with the same \
         AUDITTRAIL_SECRET_KEY. It reads the facts embedded in the PDF (its document \
         information, /AuditTrailFacts), counts them again from the log over exactly the seq \
         range above, verifies the chain, and renders the report again from what it counted to \
         compare it byte for byte with this file, so an edited figure or an edited word is \
         caught. It exits 0 when everything matches, 2 naming the first figure that does not, \
         and 3 when records of the range have since been removed by retention or erased.",
    );
}

/// The retention receipts of the period, one row each.
fn sweep_table(d: &mut Doc, f: &Facts) {
    if f.figures.sweeps.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = f
        .figures
        .sweeps
        .iter()
        .map(|s| {
            vec![
                s.seq.to_string(),
                s.at.get(..19).unwrap_or(&s.at).to_owned(),
                format!("{} days", s.days),
                s.base_seq.to_string(),
                n(s.removed),
            ]
        })
        .collect();
    d.table(
        &[
            col("receipt seq", 80.0, true),
            col("at (UTC)", 130.0, false),
            col("limit", 70.0, false),
            col("new base seq", 90.0, true),
            col("records removed", 100.0, true),
        ],
        &rows,
    );
}

fn retention(f: &Facts) -> String {
    if f.retention_days == 0 {
        "keep everything (AUDITTRAIL_RETENTION_DAYS=0)".into()
    } else if f.retention_days < 183 {
        format!(
            "{} days: shorter than the six months the EU AI Act asks for high-risk systems",
            f.retention_days
        )
    } else {
        format!("{} days", f.retention_days)
    }
}

fn summary(d: &mut Doc, f: &Facts) {
    let g = &f.figures;
    d.heading("2. Summary");
    let pii: u64 = g.pii_by_type.values().sum();
    let rows = vec![
        vec!["Events (spans)".into(), n(g.events)],
        vec!["  of which status error".into(), n(g.error_events)],
        vec!["Traces".into(), n(g.traces)],
        vec!["Sessions".into(), n(g.sessions)],
        vec!["Agents".into(), n(g.agents)],
        vec!["Violations".into(), n(g.violations)],
        vec!["Rule errors".into(), n(g.rule_errors)],
        vec!["Guard requests".into(), n(g.guard_requests)],
        vec![
            "  allow / warn / deny".into(),
            format!(
                "{} / {} / {}",
                n(g.guard_allow),
                n(g.guard_warn),
                n(g.guard_deny)
            ),
        ],
        vec!["PII values removed before storage".into(), n(pii)],
        vec!["Erasures (receipts)".into(), n(g.erasures.len() as u64)],
        vec![
            "Records of the range since erased".into(),
            n(g.erased_records),
        ],
        vec![
            "Tokens in / out".into(),
            format!("{} / {}", n(g.input_tokens), n(g.output_tokens)),
        ],
        vec!["Cost".into(), usd(g.cost_micro_usd)],
        vec![
            "Authentication failures".into(),
            n(g.audit_count("authentication", "", Some("failure"))
                + g.audit_count("authentication", "", Some("denied"))),
        ],
        vec![
            "Authorization denials".into(),
            n(g.audit_count("authorization", "", Some("denied"))),
        ],
    ];
    d.table(
        &[col("figure", 300.0, false), col("value", 183.0, true)],
        &rows,
    );
    let by_day: Vec<(String, u64)> = trend(g, |c| c.violations);
    d.bar_chart("Violations per day", &by_day, rgb(0.78, 0.25, 0.22));
    let events: Vec<(String, u64)> = trend(g, |c| c.events);
    d.bar_chart("Events per day", &events, rgb(0.22, 0.42, 0.7));
}

/// Per-day counts, one bar per day between the first and last day with data (at most 92
/// bars; longer periods are summed per month).
fn trend(g: &Figures, pick: impl Fn(&super::model::DayCount) -> u64) -> Vec<(String, u64)> {
    let (Some(first), Some(last)) = (g.by_day.keys().next(), g.by_day.keys().next_back()) else {
        return Vec::new();
    };
    let parse = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    let (Some(a), Some(b)) = (parse(first), parse(last)) else {
        return Vec::new();
    };
    let days = (b - a).num_days() + 1;
    if days <= 92 {
        (0..days)
            .map(|i| {
                let day = (a + chrono::Days::new(i as u64))
                    .format("%Y-%m-%d")
                    .to_string();
                let v = g.by_day.get(&day).map_or(0, &pick);
                (day[5..].to_owned(), v)
            })
            .collect()
    } else {
        let mut months: std::collections::BTreeMap<String, u64> = Default::default();
        for (day, c) in &g.by_day {
            *months.entry(day[..7].to_owned()).or_default() += pick(c);
        }
        months.into_iter().collect()
    }
}

/// A control: its id and name, what AuditTrail provides, and the figures.
fn control(d: &mut Doc, id: &str, name: &str, evidence: &str, figures: &[(&str, String)]) {
    // The heading, its text and its figures stay together (about 95 characters a line).
    let lines = evidence.len() / 95 + 1 + figures.len();
    d.need(lines as f32 * 14.0 + 40.0);
    d.subheading(&format!("{id}  {name}"));
    d.para(evidence);
    if !figures.is_empty() {
        d.pairs(figures);
    }
}

fn key_figures(g: &Figures) -> Vec<(&'static str, String)> {
    vec![
        (
            "Keys created",
            n(g.audit_count("key_management", "keys.create", Some("success"))),
        ),
        (
            "Keys rotated",
            n(g.audit_count("key_management", "keys.rotate", Some("success"))),
        ),
        (
            "Keys revoked",
            n(g.audit_count("key_management", "keys.revoke", Some("success"))),
        ),
        (
            "Authentication failures",
            n(g.audit_count("authentication", "", Some("failure"))
                + g.audit_count("authentication", "", Some("denied"))),
        ),
        (
            "Authorization denials",
            n(g.audit_count("authorization", "", Some("denied"))),
        ),
    ]
}

fn violation_figures(g: &Figures) -> Vec<(&'static str, String)> {
    let sev = |s: &str| n(g.violations_by_severity.get(s).copied().unwrap_or(0));
    vec![
        ("Violations", n(g.violations)),
        (
            "critical / high / warning / info",
            format!(
                "{} / {} / {} / {}",
                sev("critical"),
                sev("high"),
                sev("warning"),
                sev("info")
            ),
        ),
        ("Rule errors", n(g.rule_errors)),
        (
            "Guard deny / warn / allow",
            format!(
                "{} / {} / {}",
                n(g.guard_deny),
                n(g.guard_warn),
                n(g.guard_allow)
            ),
        ),
    ]
}

fn log_figures(f: &Facts) -> Vec<(&'static str, String)> {
    vec![
        ("Log range", seq_range(f)),
        ("Events recorded", n(f.figures.events)),
        (
            "Chain verification",
            if f.log.chain_verified {
                "passed".into()
            } else {
                "FAILED".into()
            },
        ),
        (
            "Head link",
            f.log.head_link.clone().unwrap_or_else(|| "-".into()),
        ),
    ]
}

fn rule_changes(g: &Figures) -> Vec<(&'static str, String)> {
    vec![
        (
            "Rule reloads applied",
            n(g.audit_count("configuration", "rules.reload", Some("success"))),
        ),
        (
            "Rule reloads rejected",
            n(g.audit_count("configuration", "rules.reload", Some("failure"))),
        ),
    ]
}

fn soc2(d: &mut Doc, f: &Facts) {
    let g = &f.figures;
    d.heading("3. SOC 2 controls and evidence");
    control(
        d,
        "CC6.1",
        "Logical access security",
        "Every request is authenticated with an API key (stored as an Argon2 hash) scoped to \
         projects and permissions; keys expire, rotate and revoke; every key action and every \
         refused request is written to the chained security audit log.",
        &key_figures(g),
    );
    control(
        d,
        "CC6.2",
        "Registration and authorization of users",
        "Keys are issued only by a holder of keys:admin and never with more projects, \
         permissions or lifetime than the issuer holds; the owner key can be rotated or \
         revoked only by itself.",
        &[(
            "Keys created",
            n(g.audit_count("key_management", "keys.create", Some("success"))),
        )],
    );
    control(
        d,
        "CC6.3",
        "Removal and modification of access",
        "Rotation and revocation take effect at once; sessions of a revoked or rotated key are \
         refused.",
        &[
            (
                "Keys rotated",
                n(g.audit_count("key_management", "keys.rotate", Some("success"))),
            ),
            (
                "Keys revoked",
                n(g.audit_count("key_management", "keys.revoke", Some("success"))),
            ),
            (
                "Authorization denials",
                n(g.audit_count("authorization", "", Some("denied"))),
            ),
        ],
    );
    control(
        d,
        "CC7.2",
        "Monitoring of system components for anomalies",
        "Constitutional rules evaluate every event as it is stored; each violation is a record \
         in the chained log (by rule, severity and agent in the tables that follow).",
        &violation_figures(g),
    );
    control(
        d,
        "CC7.3",
        "Evaluation of security events",
        "Rule errors are recorded like violations, so a rule that stopped working is visible. \
         Webhook alerts are sent for violations; their count is an in-memory counter of the \
         service (/metrics), not a report figure.",
        &[("Rule errors", n(g.rule_errors))],
    );
    control(
        d,
        "CC8.1",
        "Change management",
        "Rules are read-only files; each reload is an audit entry with its result, and a \
         broken file keeps its previous version.",
        &rule_changes(g),
    );
}

fn hipaa(d: &mut Doc, f: &Facts) {
    let g = &f.figures;
    d.heading("3. HIPAA Security Rule safeguards and evidence");
    control(
        d,
        "164.312(b)",
        "Audit controls",
        "Every event is appended to a hash-chained log (HMAC links keyed with the service's \
         secret); `audittrail verify` re-hashes it and names the first record that differs.",
        &log_figures(f),
    );
    control(
        d,
        "164.312(d)",
        "Person or entity authentication",
        "Agents and users authenticate with API keys; failures are audit entries.",
        &[
            (
                "Authentication failures",
                n(g.audit_count("authentication", "", Some("failure"))
                    + g.audit_count("authentication", "", Some("denied"))),
            ),
            (
                "Successful dashboard sign-ins",
                n(g.audit_count("authentication", "dashboard.login", Some("success"))),
            ),
        ],
    );
    control(
        d,
        "164.308(a)(4)",
        "Information access management",
        "Keys are scoped to projects and permissions; a key sees nothing of other projects.",
        &key_figures(g),
    );
    control(
        d,
        "164.312(e)",
        "Transmission security",
        "TLS is terminated by the reverse proxy (the shipped nginx.conf's TLS server block); \
         the service sends HSTS when the trusted proxy reports TLS. Whether each request came \
         over TLS is not recorded in the log, so it is not a figure of this report: check the \
         proxy's configuration.",
        &[],
    );
    control(
        d,
        "164.312(c)(1)",
        "Integrity",
        "Personal data is removed before storage; the stored record is what the chain hashed.",
        &[("PII values removed", n(g.pii_by_type.values().sum()))],
    );
}

fn gdpr(d: &mut Doc, f: &Facts) {
    let g = &f.figures;
    d.heading("3. GDPR articles and evidence");
    control(
        d,
        "Art. 5(1)(c)",
        "Data minimisation",
        "The redactor removes personal data from every field of every event before it is \
         stored or evaluated; the removed values are counted by type and by field below.",
        &[("PII values removed", n(g.pii_by_type.values().sum()))],
    );
    let rows: Vec<Vec<String>> = g
        .pii_by_type
        .iter()
        .map(|(t, c)| vec![t.clone(), n(*c)])
        .collect();
    d.table(
        &[col("PII type", 300.0, false), col("removed", 183.0, true)],
        &rows,
    );
    let rows: Vec<Vec<String>> = g
        .pii_by_field
        .iter()
        .map(|(t, c)| vec![t.clone(), n(*c)])
        .collect();
    d.table(
        &[col("field", 300.0, false), col("removed", 183.0, true)],
        &rows,
    );
    control(
        d,
        "Art. 17",
        "Right to erasure",
        "An erasure removes the personal part of the selected records (their non-personal \
         facts stay, still checked by their digests) and appends a chained receipt (who, when, \
         why, which positions), so the log still verifies and says what was removed.",
        &[
            ("Erasures in the period", n(g.erasures.len() as u64)),
            (
                "Records erased",
                n(g.erasures.iter().map(|e| e.records).sum()),
            ),
        ],
    );
    let rows: Vec<Vec<String>> = g
        .erasures
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                e.at.get(..19).unwrap_or(&e.at).to_owned(),
                e.selector.clone(),
                n(e.records),
            ]
        })
        .collect();
    d.table(
        &[
            col("receipt seq", 90.0, true),
            col("at (UTC)", 150.0, false),
            col("selected by", 140.0, false),
            col("records", 103.0, true),
        ],
        &rows,
    );
    d.note(
        "Who asked for each erasure and why are kept in the receipt in the log, not repeated here.",
    );
    control(
        d,
        "Art. 30",
        "Records of processing activities",
        "What each agent processed in the period: events by kind, models, traces; the \
         processing table in the details section lists every agent.",
        &[("Agents", n(g.agents)), ("Events", n(g.events))],
    );
    control(
        d,
        "Art. 32",
        "Security of processing",
        "Measures in force: redaction before storage, scoped and expiring API keys, a \
         hash-chained tamper-evident log and audit log, constitutional rules on every event, \
         TLS at the proxy.",
        &[
            (
                "PII redaction",
                if f.pii_redaction { "on" } else { "OFF" }.into(),
            ),
            ("Rules in force", n(f.rules.len() as u64)),
            (
                "Chain verification",
                if f.log.chain_verified {
                    "passed"
                } else {
                    "FAILED"
                }
                .into(),
            ),
            (
                "Authorization denials",
                n(g.audit_count("authorization", "", Some("denied"))),
            ),
        ],
    );
}

fn eu_ai_act(d: &mut Doc, f: &Facts) {
    d.heading("3. EU AI Act articles and evidence");
    control(
        d,
        "Art. 12",
        "Record-keeping (automatic logging)",
        "Every LLM call, tool call and answer an agent reports is logged automatically, with \
         its time, agent, session and outcome, over the lifetime of the system; the log is \
         hash-chained so its completeness can be checked.",
        &log_figures(f),
    );
    control(
        d,
        "Art. 19",
        "Automatically generated logs (retention)",
        "Providers keep the logs for at least six months unless other law says otherwise.",
        &[
            ("Retention setting", retention(f)),
            ("Sweeps in the period", n(f.figures.sweeps.len() as u64)),
            (
                "Records swept",
                n(f.figures.sweeps.iter().map(|s| s.removed).sum()),
            ),
        ],
    );
    sweep_table(d, f);
    if f.retention_days != 0 && f.retention_days < 183 {
        d.para(
            "WARNING: the retention setting is shorter than six months; set \
             AUDITTRAIL_RETENTION_DAYS to 183 or more (or 0 to keep everything) for high-risk \
             systems.",
        );
    }
    control(
        d,
        "Art. 14 / 9",
        "Human oversight and risk management",
        "Constitutional rules flag risky actions as they happen; guard mode lets an agent ask \
         before acting.",
        &violation_figures(&f.figures),
    );
}

fn details(d: &mut Doc, g: &Figures) {
    d.new_page();
    d.heading("4. Details");
    d.subheading("Violations by rule");
    let rows: Vec<Vec<String>> = g
        .violations_by_rule
        .iter()
        .map(|r| vec![r.rule.clone(), r.severity.clone(), n(r.count)])
        .collect();
    d.table(
        &[
            col("rule", 280.0, false),
            col("severity", 100.0, false),
            col("violations", 103.0, true),
        ],
        &rows,
    );
    d.subheading("Violations by agent");
    let rows: Vec<Vec<String>> = g
        .violations_by_agent
        .iter()
        .map(|(a, c)| vec![a.clone(), n(*c)])
        .collect();
    d.table(
        &[col("agent", 380.0, false), col("violations", 103.0, true)],
        &rows,
    );
    d.subheading("Rule errors by rule");
    let rows: Vec<Vec<String>> = g
        .rule_errors_by_rule
        .iter()
        .map(|(a, c)| vec![a.clone(), n(*c)])
        .collect();
    d.table(
        &[col("rule", 380.0, false), col("errors", 103.0, true)],
        &rows,
    );
    d.subheading("Processing by agent");
    let rows: Vec<Vec<String>> = g
        .agents_detail
        .iter()
        .map(|a| {
            vec![
                a.agent.clone(),
                n(a.events),
                n(a.traces),
                a.kinds
                    .iter()
                    .map(|(k, c)| format!("{k} {}", n(*c)))
                    .collect::<Vec<_>>()
                    .join(", "),
                a.models.join(", "),
                n(a.pii_removed),
                n(a.violations),
            ]
        })
        .collect();
    d.table(
        &[
            col("agent", 90.0, false),
            col("events", 50.0, true),
            col("traces", 45.0, true),
            col("kinds", 120.0, false),
            col("models", 78.0, false),
            col("PII", 45.0, true),
            col("viol.", 55.0, true),
        ],
        &rows,
    );
    d.subheading("Security audit log entries in the period");
    let rows: Vec<Vec<String>> = g
        .audit
        .iter()
        .map(|a| {
            vec![
                a.event_type.clone(),
                a.operation.clone(),
                a.result.clone(),
                n(a.count),
            ]
        })
        .collect();
    d.table(
        &[
            col("type", 100.0, false),
            col("operation", 240.0, false),
            col("result", 70.0, false),
            col("entries", 73.0, true),
        ],
        &rows,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators_and_dollars() {
        assert_eq!(n(0), "0");
        assert_eq!(n(1234567), "1,234,567");
        assert_eq!(n(100), "100");
        assert_eq!(usd(1_500_000), "$1.500000");
    }
}
