//! Erasure of a data subject (GDPR Art. 17), as the API and the CLI ask for it: which records
//! a request selects, and what the answer says (the receipt, and the backups that still hold
//! the subject). The work itself is the writer's (`WriterHandle::erase`): one transaction that
//! erases the personal part of the selected records and appends a chained receipt.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::event::FieldError;
use crate::redact::RedactionStage;
use crate::store::receipt::EraseSelector;
use crate::store::writer::Erased;
use crate::store::{Store, StoreError};

/// The selector fields a request may name (exactly one).
pub const SELECTORS: [&str; 4] = ["session_id", "agent", "trace_id", "value"];
/// Longest selector value and reason accepted.
pub const MAX_SELECTOR: usize = 512;
pub const MAX_REASON: usize = 1000;
/// How long backups are kept by `backup.sh` (`KEEP_DAYS`): older ones are already pruned.
pub const BACKUP_KEEP_DAYS: i64 = 30;

/// A checked erasure request.
#[derive(Debug, Clone)]
pub struct Ask {
    pub selector: EraseSelector,
    pub reason: String,
}

fn field_error(path: &str, message: &str) -> Vec<FieldError> {
    vec![FieldError {
        path: path.into(),
        message: message.into(),
    }]
}

/// Turns the selector as the client knows it into the form it is stored in: ids that held
/// personal data are stored as keyed pseudonyms, agent names redacted like the field.
pub fn selector(
    field: &str,
    value: &str,
    redaction: &RedactionStage,
) -> Result<EraseSelector, Vec<FieldError>> {
    let value = value.trim();
    if value.is_empty() {
        return Err(field_error(field, "must not be empty"));
    }
    if value.chars().count() > MAX_SELECTOR {
        return Err(field_error(
            field,
            &format!("at most {MAX_SELECTOR} characters"),
        ));
    }
    Ok(match field {
        "session_id" => EraseSelector::SessionId(redaction.lookup_id("session_id", value)),
        "trace_id" => EraseSelector::TraceId(redaction.lookup_id("trace_id", value)),
        "agent" => EraseSelector::Agent(redaction.lookup_text("agent", value)),
        _ => EraseSelector::Value(value.to_owned()),
    })
}

/// Checks a reason: required, at most [`MAX_REASON`] characters.
pub fn reason(reason: Option<&str>) -> Result<String, Vec<FieldError>> {
    match reason.map(str::trim) {
        None | Some("") => Err(field_error(
            "reason",
            "is required: why the subject is erased (kept in the receipt)",
        )),
        Some(r) if r.chars().count() > MAX_REASON => Err(field_error(
            "reason",
            &format!("at most {MAX_REASON} characters"),
        )),
        Some(r) => Ok(r.to_owned()),
    }
}

/// Parses `{"<one of SELECTORS>": "…", "reason": "…"}`.
pub fn parse(body: &Value, redaction: &RedactionStage) -> Result<Ask, Vec<FieldError>> {
    let Value::Object(map) = body else {
        return Err(field_error("$", "must be a JSON object"));
    };
    if let Some(k) = map
        .keys()
        .find(|k| !SELECTORS.contains(&k.as_str()) && k.as_str() != "reason")
    {
        return Err(field_error(
            k,
            "unknown field: use one of session_id, agent, trace_id, value, and reason",
        ));
    }
    let named: Vec<&str> = SELECTORS
        .into_iter()
        .filter(|f| map.contains_key(*f))
        .collect();
    let field = match named.as_slice() {
        [one] => *one,
        [] => {
            return Err(field_error(
                "$",
                "name the subject with one of session_id, agent, trace_id or value",
            ));
        }
        [_, second, ..] => {
            return Err(field_error(
                second,
                "name the subject with exactly one of session_id, agent, trace_id or value",
            ));
        }
    };
    let Some(value) = map.get(field).and_then(Value::as_str) else {
        return Err(field_error(field, "must be a string"));
    };
    let reason = match map.get("reason") {
        None | Some(Value::Null) => reason(None)?,
        Some(Value::String(r)) => reason(Some(r))?,
        Some(_) => return Err(field_error("reason", "must be a string")),
    };
    Ok(Ask {
        selector: selector(field, value, redaction)?,
        reason,
    })
}

/// A backup recorded in the audit log (by `audittrail backup`).
#[derive(Debug, Clone, Serialize)]
pub struct BackupSeen {
    pub file: String,
    pub at: String,
}

/// Backups made in the last [`BACKUP_KEEP_DAYS`] days before `now`: they may still hold what an
/// erasure at `now` removed, until they age out.
pub async fn backups_before(
    store: &Store,
    now: DateTime<Utc>,
) -> Result<Vec<BackupSeen>, StoreError> {
    let since = now - Duration::days(BACKUP_KEEP_DAYS);
    Ok(crate::store::audit_log::backups(store)
        .await?
        .into_iter()
        .filter(|(at, _)| crate::event::parse_time(at).is_ok_and(|t| t >= since && t <= now))
        .map(|(at, file)| BackupSeen { file, at })
        .collect())
}

/// What the API and the CLI answer for a committed erasure.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub receipt_seq: i64,
    pub records_erased: usize,
    pub seqs: Vec<i64>,
    pub selector: String,
    /// Keyed pseudonym of the selector's value (the receipt never holds the value).
    pub selector_pseudonym: Option<String>,
    pub at: String,
    /// Backups made before this erasure that still hold the subject until they are pruned.
    pub backups_predating: Vec<BackupSeen>,
    pub note: String,
}

pub fn answer(erased: Erased, backups: Vec<BackupSeen>) -> Answer {
    let r = erased.receipt;
    Answer {
        receipt_seq: erased.receipt_seq,
        records_erased: r.seqs.len(),
        selector: r.selector_field,
        selector_pseudonym: r.selector_pseudonym,
        at: r.at,
        note: format!(
            "The personal part of {} record(s) is erased from the database; their non-personal facts stay and `audittrail verify` still checks them. Backups made before now ({} listed) and reports made before now still contain the subject until they age out ({BACKUP_KEEP_DAYS}-day backup prune).",
            r.seqs.len(),
            backups.len()
        ),
        seqs: r.seqs,
        backups_predating: backups,
    }
}
