//! Reading request bodies with a size limit, with errors in the API's problem format.

use axum::body::Body;
use axum::http::StatusCode;
use bytes::Bytes;

use crate::http::error::ApiError;

/// Reads at most `limit` bytes; a larger body is 413 and is never buffered whole.
pub async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body exceeds {limit} bytes"),
            )
        } else {
            ApiError::bad_request("body_unreadable", "the request body could not be read")
        }
    })
}

/// Parses JSON, reporting where it broke but never what it contained.
pub fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "unexpected end of input",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Io => "unreadable input",
        };
        ApiError::bad_request(
            "malformed_json",
            format!(
                "malformed JSON: {what} at line {} column {}",
                e.line(),
                e.column()
            ),
        )
    })
}
