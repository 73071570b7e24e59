//! The doors: each decodes its wire format and hands the batch to the [`pipeline`](crate::pipeline).
//!
//! - [`http`]: `POST /api/v1/traces`, native JSON batches.
//! - [`otlp`]: `POST /v1/traces` (OTLP/HTTP protobuf and JSON) and the Langfuse route, mapped
//!   by [`otel_map`] with costs from [`pricing`].
//! - [`ws`]: `GET /ws/ingest`, native batches as WebSocket messages, acked per message.

pub mod http;
pub mod otel_map;
pub mod otlp;
pub mod pricing;
pub mod ws;
