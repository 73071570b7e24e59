//! The *publish* stage: subscribers of the writer's committed groups (the store never calls
//! them).
//!
//! - [`alerts`]: violations at or above a severity go to webhooks (Slack-compatible JSON),
//!   off the ingest path.
//! - [`live`]: the dashboard's live feed, per subscriber, bounded, with missed counts.
//! - [`activity`]: the overview's per-minute counters.

pub mod activity;
pub mod alerts;
pub mod live;
