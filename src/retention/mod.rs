//! Retention and erasure: what the log keeps, for how long, and how a data subject is erased,
//! as acts in the log (chained receipts) carried out by the store's single writer.

pub mod erasure;
