//! The doors: each decodes its wire format and hands the batch to the [`pipeline`](crate::pipeline).
//!
//! - [`http`]: `POST /api/v1/traces`, native JSON batches.

pub mod body;
pub mod http;
