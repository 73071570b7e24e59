//! Compliance reports: a streaming pass over the log gives [`Facts`]; [`render`] lays them out
//! as a PDF (a pure function: same facts, same bytes); [`verify`] reads the facts back out of
//! a PDF, counts them again over the same positions of the log and renders again to compare
//! byte for byte.
//!
//! Reports are stored under `<data dir>/reports/` as `<id>.pdf` with `<id>.json` (the job's
//! summary), so they survive restarts and can be listed.

pub mod model;
pub mod pdf;
pub mod render;

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use model::{Facts, Standard};
pub use render::render;

use crate::event::format_time;
use crate::rules::RuleSet;
use crate::store::chain::{self, ChainKey};
use crate::store::{
    Store, StoreError, history::HistoryRecord, report as reads, verify as chain_verify,
};
use model::{AuditRow, ErasureRow, FACTS_FORMAT, LogRange, Record, RuleRef, SweepRow, Tally};

/// Records read per page of the counting pass.
const PAGE: u64 = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("`to` must be later than `from`")]
    EmptyPeriod,
    #[error("cancelled")]
    Cancelled,
}

/// What a report is asked for, and the configuration it is made under.
#[derive(Debug, Clone)]
pub struct Params {
    pub standard: Standard,
    pub projects: Vec<String>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// The report's clock: `to` is cut here, and it is the report's "generated at".
    pub now: DateTime<Utc>,
    pub retention_days: u32,
    pub pii_redaction: bool,
    pub rules: Vec<RuleRef>,
    pub rules_digest: String,
    /// Whether security events naming no project (failed authentications, the actions of
    /// all-project keys) are counted too: for reports over every project, made by the CLI or
    /// by a key that holds every project.
    pub global_audit: bool,
}

/// The rules of `set` and a digest of the sources they were compiled from (ids and source
/// digests, in id order): the rules in force, whatever the files on disk say now.
pub fn rule_set_facts(set: &RuleSet) -> (Vec<RuleRef>, String) {
    let mut rules: Vec<(&str, &crate::rules::Rule)> =
        set.rules().iter().map(|r| (r.id(), r)).collect();
    rules.sort_by_key(|(id, _)| *id);
    let mut h = Sha256::new();
    for (id, r) in &rules {
        h.update((id.len() as u64).to_be_bytes());
        h.update(id.as_bytes());
        h.update(r.source_digest());
    }
    (
        rules
            .iter()
            .map(|(id, r)| RuleRef {
                id: (*id).to_owned(),
                severity: r.severity().as_str().to_owned(),
            })
            .collect(),
        chain::to_hex(&h.finalize()),
    )
}

/// Where a long pass reports how far it is: `(done, total)` records.
pub trait Progress: Send {
    fn report(&mut self, done: u64, total: u64);
    fn cancelled(&self) -> bool {
        false
    }
}

impl<F: FnMut(u64, u64) + Send> Progress for F {
    fn report(&mut self, done: u64, total: u64) {
        self(done, total)
    }
}

/// Makes a report: finds the positions the period covers, verifies the chain and counts.
pub async fn build(
    store: &Store,
    key: &ChainKey,
    p: &Params,
    progress: &mut dyn Progress,
) -> Result<Facts, ReportError> {
    if p.to <= p.from {
        return Err(ReportError::EmptyPeriod);
    }
    let cut = p.to.min(p.now);
    let (from, cut_at) = (format_time(&p.from), format_time(&cut));
    let mut conn = store.job_connection().await?;
    let range = if cut > p.from {
        reads::seq_range(&mut conn.exec(), &from, &cut_at).await?
    } else {
        None
    };
    let audit_last_id = reads::audit_last_id(&mut conn.exec()).await?;
    let head_seq = crate::store::history::head_seq(&mut conn.exec()).await?;
    let mut facts = Facts {
        format: FACTS_FORMAT,
        standard: p.standard,
        projects: p.projects.clone(),
        from,
        to: format_time(&p.to),
        cut_at,
        generated_at: format_time(&p.now),
        generator: format!("audittrail {}", crate::VERSION),
        retention_days: p.retention_days,
        pii_redaction: p.pii_redaction,
        rules: p.rules.clone(),
        rules_digest: p.rules_digest.clone(),
        global_audit: p.global_audit,
        log: LogRange {
            first_seq: range.map(|r| r.0),
            last_seq: range.map(|r| r.1),
            head_link: None,
            chain_verified: false,
            chain_fault: None,
            audit_last_id,
            head_seq,
        },
        figures: Default::default(),
    };
    drop(conn);
    count(store, key, &mut facts, progress).await?;
    Ok(facts)
}

/// Fills `facts.log` (but its range) and `facts.figures` from the log over `facts`' range.
async fn count(
    store: &Store,
    key: &ChainKey,
    facts: &mut Facts,
    progress: &mut dyn Progress,
) -> Result<(), ReportError> {
    let mut conn = store.job_connection().await?;
    let total_log = store.count_records().await?;
    let span = match (facts.log.first_seq, facts.log.last_seq) {
        (Some(a), Some(b)) => (b - a + 1) as u64,
        _ => 0,
    };
    let total = total_log + span;
    progress.report(0, total);
    let verified = chain_verify::verify(&mut conn, key, None, |n| progress.report(n, total)).await;
    match verified {
        Ok(_) => {
            facts.log.chain_verified = true;
            facts.log.chain_fault = None;
        }
        Err(chain_verify::VerifyError::Fault(f)) => {
            facts.log.chain_verified = false;
            facts.log.chain_fault = Some(f.to_string());
        }
        Err(chain_verify::VerifyError::Store(e)) => return Err(e.into()),
    }
    if progress.cancelled() {
        return Err(ReportError::Cancelled);
    }
    let mut tally = Tally::default();
    let (mut erasures, mut sweeps, mut audit) = (Vec::new(), Vec::new(), Vec::new());
    facts.log.head_link = None;
    if let (Some(first), Some(last)) = (facts.log.first_seq, facts.log.last_seq) {
        let mut after = first - 1;
        loop {
            let page: Vec<HistoryRecord> =
                reads::range_page(&mut conn.exec(), &facts.projects, after, last, PAGE).await?;
            let Some(end) = page.last().map(|r| r.seq) else {
                break;
            };
            for r in &page {
                tally.add(&Record {
                    seq: r.seq,
                    record_type: &r.record_type,
                    event_time: r.event_time.as_deref(),
                    body: r.body.as_ref(),
                });
            }
            after = end;
            progress.report(total_log + (end - first + 1) as u64, total);
            if progress.cancelled() {
                return Err(ReportError::Cancelled);
            }
        }
        facts.log.head_link = reads::link_at(&mut conn.exec(), last).await?;
        for (seq, at, r) in reads::erasures(&mut conn.exec(), first, last).await? {
            if facts.projects.contains(&r.project) {
                // Who asked and why are free text and stay in the log: the report lists the act.
                erasures.push(ErasureRow {
                    seq,
                    at,
                    project: r.project,
                    selector: r.selector_field,
                    records: r.seqs.len() as u64,
                });
            }
        }
    }
    if let (Some(first), Some(last)) = (facts.log.first_seq, facts.log.last_seq) {
        // Sweeps act on the whole log (every project), so every report lists them.
        for (seq, r) in reads::sweeps(&mut conn.exec(), first, last).await? {
            sweeps.push(SweepRow {
                seq,
                at: r.at,
                days: r.days,
                base_seq: r.base_seq,
                removed: r.removed,
            });
        }
    }
    for a in reads::audit_counts(
        &mut conn.exec(),
        &facts.projects,
        facts.global_audit,
        facts.log.audit_last_id,
        &facts.from,
        &facts.cut_at,
    )
    .await?
    {
        audit.push(AuditRow {
            event_type: a.event_type,
            operation: a.operation,
            result: a.result,
            count: a.count,
        });
    }
    facts.figures = tally.finish(erasures, sweeps, audit);
    progress.report(total, total);
    Ok(())
}

/// What `report verify` found.
#[derive(Debug)]
pub enum Verdict {
    /// The figures and the rendered bytes match.
    Matches(Box<Facts>),
    /// Re-counting gives a different figure (named by its path), or the chain does not verify.
    Differs { what: String },
    /// The figures match but the file is not what they render to: its text or layout was
    /// edited (or a different generator version made it).
    Edited { detail: String },
    /// Records of the range were removed or erased since the report was made.
    Removed { what: String },
    /// The file holds no AuditTrail facts.
    NotAReport,
}

/// Reads the facts embedded in `pdf`, counts them again over the same range, and renders again.
pub async fn verify(
    store: &Store,
    key: &ChainKey,
    pdf: &[u8],
    progress: &mut dyn Progress,
) -> Result<Verdict, ReportError> {
    let Some(claimed) =
        pdf::embedded_facts(pdf).and_then(|b| serde_json::from_slice::<Facts>(&b).ok())
    else {
        return Ok(Verdict::NotAReport);
    };
    if let Some(what) = implausible(&claimed) {
        return Ok(Verdict::Differs { what });
    }
    // The range must be what the claimed period maps to (else a report could leave records
    // out by narrowing its range while keeping its period).
    {
        let mut conn = store.job_connection().await?;
        let mut db = conn.exec();
        match (claimed.log.first_seq, claimed.log.last_seq) {
            (Some(first), Some(last)) => {
                if !reads::exists(&mut db, first).await? {
                    return Ok(Verdict::Removed {
                        what: format!(
                            "the records from seq {first} on were removed by retention; the report covers seq {first}–{last}"
                        ),
                    });
                }
                if !range_matches(&mut db, &claimed, first, last).await? {
                    return Ok(Verdict::Differs {
                        what: format!(
                            "facts.log: seq {first}–{last} is not the range the period {} to {} covers in the log",
                            claimed.from, claimed.cut_at
                        ),
                    });
                }
            }
            _ => {
                if let Some((a, b)) =
                    reads::seq_range(&mut db, &claimed.from, &claimed.cut_at).await?
                {
                    return Ok(Verdict::Differs {
                        what: format!(
                            "facts.log: the report says nothing was recorded in the period, the log holds seq {a}–{b}"
                        ),
                    });
                }
            }
        }
    }
    let mut again = claimed.clone();
    count(store, key, &mut again, progress).await?;
    if !again.log.chain_verified {
        return Ok(Verdict::Differs {
            what: format!(
                "the chain does not verify: {}",
                again.log.chain_fault.as_deref().unwrap_or("unknown")
            ),
        });
    }
    if again.figures.erased_records > claimed.figures.erased_records {
        return Ok(Verdict::Removed {
            what: format!(
                "{} records of the range were erased after the report was made",
                again.figures.erased_records - claimed.figures.erased_records
            ),
        });
    }
    let a = serde_json::to_value(&claimed).map_err(|e| StoreError::Corrupt {
        seq: 0,
        reason: e.to_string(),
    })?;
    let b = serde_json::to_value(&again).map_err(|e| StoreError::Corrupt {
        seq: 0,
        reason: e.to_string(),
    })?;
    if let Some(path) = model::first_difference("facts", &a, &b) {
        return Ok(Verdict::Differs {
            what: format!(
                "{path}: the report says {}, the log gives {}",
                pointer(&a, &path),
                pointer(&b, &path)
            ),
        });
    }
    if render(&again) != pdf {
        return Ok(Verdict::Edited {
            detail: if claimed.generator != format!("audittrail {}", crate::VERSION) {
                format!(
                    "the figures match, but this file was made by {} and this is audittrail {}: its pages cannot be compared byte for byte",
                    claimed.generator,
                    crate::VERSION
                )
            } else {
                "the figures match the log, but the file is not the PDF they render to: its text or layout was edited".into()
            },
        });
    }
    Ok(Verdict::Matches(Box::new(again)))
}

/// A request in flight when a report is made is recorded (stamped) before it is committed; its
/// record may land after the report's range with a time just before the report's cut.
const IN_FLIGHT_SLACK_SECS: i64 = 60;

/// Whether `[first, last]` is what the claimed period maps to (the mapping [`reads::seq_range`]
/// makes): the record at `first` was recorded at or after `from` and the one before it (if
/// any) before; the record at `last` before the cut, and the one after it at or after the cut —
/// unless it was written after the report was made and recorded within a minute of its cut.
async fn range_matches(
    db: &mut crate::store::db::Exec<'_>,
    f: &Facts,
    first: i64,
    last: i64,
) -> Result<bool, StoreError> {
    let (Some(first_at), Some(last_at)) = (
        reads::recorded_at(db, first).await?,
        reads::recorded_at(db, last).await?,
    ) else {
        return Ok(false);
    };
    if first_at < f.from || last_at >= f.cut_at {
        return Ok(false);
    }
    if let Some(before) = reads::recorded_at(db, first - 1).await?
        && before >= f.from
    {
        return Ok(false);
    }
    if let Some(after) = reads::recorded_at(db, last + 1).await?
        && after < f.cut_at
    {
        let late = last + 1 > f.log.head_seq;
        let near_cut = match (
            DateTime::parse_from_rfc3339(&after),
            DateTime::parse_from_rfc3339(&f.cut_at),
        ) {
            (Ok(a), Ok(c)) => (c - a).num_seconds() < IN_FLIGHT_SLACK_SECS,
            _ => false,
        };
        if !(late && near_cut) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// What is impossible in claimed facts (an edited file), before anything is counted.
fn implausible(f: &Facts) -> Option<String> {
    if f.format != FACTS_FORMAT {
        return Some(format!(
            "facts.format: {} is not a format this version reads ({FACTS_FORMAT})",
            f.format
        ));
    }
    let cut = f.to.as_str().min(f.generated_at.as_str());
    if f.cut_at != cut {
        return Some(format!(
            "facts.cut_at: {} is not the earlier of `to` and the generation time ({cut})",
            f.cut_at
        ));
    }
    match (f.log.first_seq, f.log.last_seq) {
        (Some(a), Some(b)) if a < 1 || b < a => {
            Some(format!("facts.log: seq {a}–{b} is not a range of the log"))
        }
        (Some(_), None) | (None, Some(_)) => Some("facts.log: a range needs both ends".into()),
        _ => None,
    }
}

/// The value at a [`model::first_difference`] path, for messages (`?` when absent).
fn pointer(v: &serde_json::Value, path: &str) -> String {
    let path = path.split(" (").next().unwrap_or(path);
    let mut cur = v;
    for part in path.trim_start_matches("facts").split('.').skip(1) {
        let (name, idx) = match part.find('[') {
            Some(i) => (&part[..i], Some(&part[i..])),
            None => (part, None),
        };
        cur = match cur.get(name) {
            Some(x) => x,
            None => return "?".into(),
        };
        if let Some(idx) = idx {
            for i in idx.split(['[', ']']).filter(|s| !s.is_empty()) {
                cur = match i.parse::<usize>().ok().and_then(|i| cur.get(i)) {
                    Some(x) => x,
                    None => return "?".into(),
                };
            }
        }
    }
    let s = cur.to_string();
    if s.len() > 120 {
        format!("{}…", &s[..s.floor_char_boundary(120)])
    } else {
        s
    }
}

/// A stored report's summary (`<id>.json` beside `<id>.pdf`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub id: String,
    pub standard: Standard,
    pub projects: Vec<String>,
    pub from: String,
    pub to: String,
    pub cut_at: String,
    pub generated_at: String,
    pub first_seq: Option<i64>,
    pub last_seq: Option<i64>,
    pub head_link: Option<String>,
    pub chain_verified: bool,
    pub populations: serde_json::Value,
    pub bytes: u64,
    pub pdf_sha256: String,
}

impl Stored {
    pub fn of(id: &str, facts: &Facts, pdf: &[u8]) -> Self {
        let g = &facts.figures;
        Stored {
            id: id.to_owned(),
            standard: facts.standard,
            projects: facts.projects.clone(),
            from: facts.from.clone(),
            to: facts.to.clone(),
            cut_at: facts.cut_at.clone(),
            generated_at: facts.generated_at.clone(),
            first_seq: facts.log.first_seq,
            last_seq: facts.log.last_seq,
            head_link: facts.log.head_link.clone(),
            chain_verified: facts.log.chain_verified,
            populations: serde_json::json!({
                "events": g.events,
                "traces": g.traces,
                "agents": g.agents,
                "sessions": g.sessions,
                "violations": g.violations,
                "rule_errors": g.rule_errors,
                "guard_decisions": {
                    "requests": g.guard_requests,
                    "allow": g.guard_allow,
                    "warn": g.guard_warn,
                    "deny": g.guard_deny,
                },
                "pii_removed": g.pii_by_type.values().sum::<u64>(),
                "erasures": g.erasures.len(),
            }),
            bytes: pdf.len() as u64,
            pdf_sha256: chain::to_hex(&Sha256::digest(pdf)),
        }
    }
}

/// The reports folder of a data directory.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("reports")
}

/// Whether `id` is one this module made (a UUID), so it is safe in a file name.
pub fn valid_id(id: &str) -> bool {
    id.len() == 36 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// Writes `<id>.pdf` then `<id>.json` (each through a temporary file and a rename, so a
/// listed report is always complete).
pub fn save(dir: &Path, stored: &Stored, pdf: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let write = |name: String, bytes: &[u8]| -> std::io::Result<()> {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, dir.join(name))
    };
    write(format!("{}.pdf", stored.id), pdf)?;
    let json = serde_json::to_vec_pretty(stored).map_err(std::io::Error::other)?;
    write(format!("{}.json", stored.id), &json)
}

/// The stored reports, newest first.
pub fn list(dir: &Path) -> Vec<Stored> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<Stored> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .filter_map(|e| std::fs::read(e.path()).ok())
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    out.sort_by(|a, b| b.generated_at.cmp(&a.generated_at).then(b.id.cmp(&a.id)));
    out
}

/// One stored report's summary.
pub fn find(dir: &Path, id: &str) -> Option<Stored> {
    if !valid_id(id) {
        return None;
    }
    let b = std::fs::read(dir.join(format!("{id}.json"))).ok()?;
    serde_json::from_slice(&b).ok()
}
