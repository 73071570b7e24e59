//! The *publish* stage: what happens to appended events after they are durable.
//!
//! - [`alerts`]: violations at or above a severity go to webhooks (Slack-compatible JSON),
//!   off the ingest path.

pub mod alerts;
