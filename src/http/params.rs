//! Query-string parameters shared by the list routes. Every problem is collected and then
//! reported at once as `422 invalid_query`, naming each parameter (never its value).

use chrono::{DateTime, Utc};

use super::error::ApiError;
use crate::event::FieldError;

/// Page size when the client gives none, and the most it may ask for.
pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 500;

#[derive(Default)]
pub struct QueryErrors(Vec<FieldError>);

impl QueryErrors {
    pub fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// An optional RFC 3339 time (years 0001 to 9999 in UTC).
    pub fn time(&mut self, name: &str, v: Option<&str>) -> Option<DateTime<Utc>> {
        match crate::event::parse_time(v?) {
            Ok(t) => Some(t),
            Err(message) => {
                self.push(name, message);
                None
            }
        }
    }

    /// `limit`, from 1 to [`MAX_LIMIT`].
    pub fn limit(&mut self, v: Option<&str>) -> u64 {
        match v.map(str::parse::<u64>) {
            None => DEFAULT_LIMIT,
            Some(Ok(n)) if (1..=MAX_LIMIT).contains(&n) => n,
            Some(_) => {
                self.push("limit", format!("must be an integer from 1 to {MAX_LIMIT}"));
                DEFAULT_LIMIT
            }
        }
    }

    /// An optional `cursor` this server issued, decoded by `decode`.
    pub fn cursor<T>(
        &mut self,
        v: Option<&str>,
        decode: impl FnOnce(&str) -> Option<T>,
    ) -> Option<T> {
        let v = v.filter(|c| !c.is_empty())?;
        decode(v).or_else(|| {
            self.push("cursor", "is not a cursor this server issued");
            None
        })
    }

    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError {
                code: "invalid_query",
                ..ApiError::validation(self.0)
            })
        }
    }
}
