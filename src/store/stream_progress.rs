//! Cluster mode: the last JetStream sequence the worker stored, per stream.
//!
//! The commit stage writes it in the same transaction as the records a stream message
//! produced ([`record`]); a worker that takes over reads it ([`load`]) and skips every message
//! at or below it, so a message delivered again after a crash is never applied twice.

use super::StoreError;
use super::db::{Exec, Raw};

/// The last sequence of `stream` stored (0: none).
pub async fn load(db: &mut Exec<'_>, stream: &str) -> Result<u64, StoreError> {
    let row = db
        .fetch_optional(&Raw::new(
            "SELECT last_seq FROM stream_progress WHERE stream = ?",
            [stream.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.int("last_seq"))
        .transpose()?
        .map_or(0, |s| s.max(0) as u64))
}

/// Advances `stream`'s position to `seq` (never backwards).
pub async fn record(db: &mut Exec<'_>, stream: &str, seq: u64) -> Result<(), StoreError> {
    db.execute(&Raw::new(
        "INSERT INTO stream_progress (stream, last_seq) VALUES (?, ?) \
         ON CONFLICT (stream) DO UPDATE SET last_seq = CASE \
         WHEN excluded.last_seq > stream_progress.last_seq THEN excluded.last_seq \
         ELSE stream_progress.last_seq END",
        [stream.into(), (seq as i64).into()],
    ))
    .await?;
    Ok(())
}
