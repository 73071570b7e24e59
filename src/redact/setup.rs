//! Builds the redaction stage from the configuration (shared by `serve` and `redact`).

use std::path::PathBuf;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::{CustomTerms, PiiType, RedactionStage, Redactor, RedactorConfig, Replacement};
use crate::config::{Config, Resolved};

fn derive(secret: &str, label: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(label);
    mac.finalize().into_bytes().to_vec()
}

/// The operator terms file in force: the configured one, else `pii-terms.txt` in the data or
/// rules directory.
pub fn terms_file(config: &Config) -> Option<PathBuf> {
    config.pii_terms_file.clone().or_else(|| {
        [
            config.data_dir.join("pii-terms.txt"),
            config.rules_dir.join("pii-terms.txt"),
        ]
        .into_iter()
        .find(|p| p.is_file())
    })
}

/// Builds the redactor, reporting every configuration problem at once.
pub fn build_redactor(config: &Config, resolved: &Resolved) -> Result<Redactor, Vec<String>> {
    let mut problems = Vec::new();
    let mut disabled_types = Vec::new();
    for t in config
        .pii_disabled_types
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
    {
        match PiiType::parse(&t.to_ascii_uppercase()) {
            Some(p) => disabled_types.push(p),
            None => problems.push(format!(
                "AUDITTRAIL_PII_DISABLED_TYPES: unknown type `{t}` (known: {})",
                PiiType::ALL
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
    let extra = match terms_file(config) {
        None => CustomTerms::default(),
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) => CustomTerms::parse(&text).unwrap_or_else(|e| {
                problems.push(format!("{}: {e}", path.display()));
                CustomTerms::default()
            }),
            Err(e) => {
                problems.push(format!("{}: cannot read: {e}", path.display()));
                CustomTerms::default()
            }
        },
    };
    let replacement = if config.pii_pseudonyms {
        Replacement::Pseudonym {
            key: derive(resolved.secret_key.expose(), b"audittrail/pii-pseudonym/v1"),
        }
    } else {
        Replacement::Label
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Redactor::new(RedactorConfig {
        disabled_types,
        replacement,
        extra,
    })
    .map_err(|e| vec![e.to_string()])
}

/// The pipeline's stage: the redactor, or pass-through (with a loud warning) when switched off.
pub fn build_stage(config: &Config, resolved: &Resolved) -> Result<RedactionStage, Vec<String>> {
    if !config.pii_redaction_enabled {
        tracing::warn!(
            "PII REDACTION IS DISABLED (AUDITTRAIL_PII_REDACTION_ENABLED=false): personal data in traces will be stored as sent. Turn it back on unless you are certain traces hold none."
        );
        return Ok(RedactionStage::disabled());
    }
    let redactor = build_redactor(config, resolved)?;
    Ok(RedactionStage::new(
        Arc::new(redactor),
        derive(resolved.secret_key.expose(), b"audittrail/id-pseudonym/v1"),
    ))
}
