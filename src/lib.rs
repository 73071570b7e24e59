//! AuditTrail: an audit and governance service for AI agents.
//!
//! Every trace event takes one path, whatever door it came in by:
//!
//! ```text
//!  HTTP POST /api/v1/traces ─┐
//!  WebSocket /ws/ingest ─────┼─► normalize ─► redact ─► evaluate rules ─► append ─► publish
//!  OTLP/HTTP /v1/traces ─────┘   (event)      (redact)   (rules)            (store)    (feed)
//! ```
//!
//! Layout — the folder tree is the pipeline:
//! - [`event`]: the canonical `TraceEvent` and its validation (*normalize*).
//! - [`redact`]: removes personal data; the only producer of `RedactedEvent`.
//! - [`store`]: the hash-chained event log, its single group-committing writer, projections,
//!   queries, `verify` and `replay`.
//! - [`pipeline`]: the one module that wires the stages together.
//! - [`ingest`]: the doors, each decoding its wire format into the pipeline.
//! - [`http`]: the shell every door shares: state, errors, the principal extractor, limits
//!   and the middleware; [`api`] (query, admin and operations routes) and [`dashboard`]
//!   (the pages and the live feed) are doors beside [`ingest`], composed in [`server`].
//! - [`config`], [`server`], [`cli`]: configuration, start-up/shutdown, the command line.
//! - [`loadgen`]: the load generator behind the README's figures.

pub mod ablation;
pub mod api;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod event;
pub mod feed;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod ingest;
pub mod jobs;
pub mod loadgen;
pub mod pipeline;
pub mod redact;
pub mod report;
pub mod retention;
pub mod rules;
pub mod server;
pub mod store;
pub mod worker;

/// The release, as `/api/v1/health` and the logs report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
