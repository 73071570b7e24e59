//! Checkpoints of the chain head, kept *outside* the events table.
//!
//! The writer records `{seq, link}` of the log head in a small file in the data directory
//! (atomically: write a temporary file, then rename) at most every 250 ms and on shutdown, and
//! logs it. `verify` compares the log against it, which is how a truncated tail — invisible to
//! the chain itself, since every remaining link still verifies — is detected.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::StoreError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Log position of the head when the checkpoint was taken.
    pub seq: i64,
    /// The head's link, hex.
    pub link: String,
}

#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
}

impl CheckpointFile {
    /// The checkpoint file kept next to a database file.
    pub fn beside(db_path: &std::path::Path) -> Self {
        let mut name = db_path
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "audittrail.db".into());
        name.push(".chain-head.json");
        CheckpointFile {
            path: db_path.with_file_name(name),
        }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    pub fn read(&self) -> Result<Option<Checkpoint>, StoreError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StoreError::Checkpoint {
                    path: self.path.clone(),
                    reason: e.to_string(),
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StoreError::Checkpoint {
                path: self.path.clone(),
                reason: format!("unreadable: {e}"),
            })
    }

    pub fn write(&self, cp: &Checkpoint) -> Result<(), StoreError> {
        let fail = |e: std::io::Error| StoreError::Checkpoint {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let tmp = self.path.with_extension("json.tmp");
        let text = serde_json::to_string(cp).expect("a checkpoint always serialises");
        std::fs::write(&tmp, text).map_err(fail)?;
        std::fs::rename(&tmp, &self.path).map_err(fail)?;
        tracing::debug!(seq = cp.seq, link = %cp.link, "chain checkpoint");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_missing_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let f = CheckpointFile::beside(&dir.path().join("a.db"));
        assert_eq!(f.read().unwrap(), None);
        let cp = Checkpoint {
            seq: 42,
            link: "ab".repeat(32),
        };
        f.write(&cp).unwrap();
        assert_eq!(f.read().unwrap(), Some(cp));
        assert!(f.path().ends_with("a.db.chain-head.json"));
    }
}
