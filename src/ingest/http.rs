//! `POST /api/v1/traces`: a batch of native trace events, acknowledged once durable.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::auth::Principal;
use crate::auth::permission::Permission;
use crate::cluster::publish::PublishFailure;
use crate::http::AppState;
use crate::http::body::{parse_json, read_limited};
use crate::http::error::ApiError;
use crate::pipeline::{IngestError, Ingested};
use crate::store::AppendError;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/traces", post(post_traces))
}

async fn post_traces(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> Result<Response, ApiError> {
    let project = principal.authorize(Permission::TracesWrite, "traces.write")?;
    let bytes = read_limited(req.into_body(), state.config.max_body_bytes).await?;
    let body = parse_json(&bytes)?;
    drop(bytes);
    let ingested = state
        .pipeline
        .ingest(&state.appender, &project, body, "http")
        .await
        .map_err(ingest_error)?;
    Ok((StatusCode::ACCEPTED, Json(ingest_reply(ingested))).into_response())
}

/// The answer to an ingested batch (HTTP and WebSocket): ids in order, duplicates, the
/// violations found, and every identifier stored as a pseudonym because it held personal data.
pub fn ingest_reply(ingested: Ingested) -> Value {
    let Ingested {
        outcome,
        pseudonymized,
        pending,
    } = ingested;
    if pending {
        // Cluster mode: durable in the stream; the worker evaluates the rules later.
        return json!({
            "accepted": outcome.event_ids.len(),
            "duplicates": outcome.duplicates,
            "event_ids": outcome.event_ids,
            "violations": null,
            "evaluation": "pending",
            "pseudonymized_ids": pseudonymized,
        });
    }
    json!({
        "accepted": outcome.event_ids.len(),
        "duplicates": outcome.duplicates,
        "event_ids": outcome.event_ids,
        "violations": outcome.violations,
        "evaluation": "done",
        "pseudonymized_ids": pseudonymized,
    })
}

/// Maps pipeline failures to API errors; shared by every door.
pub fn ingest_error(e: IngestError) -> ApiError {
    match e {
        IngestError::Invalid(errors) => ApiError::validation(errors),
        IngestError::Append(AppendError::Busy) => ApiError::unavailable(
            "overloaded",
            "the write queue is full; retry after the indicated delay",
            1,
        ),
        IngestError::Append(AppendError::Retry) => ApiError::unavailable(
            "retry",
            "an earlier write failed; nothing of this request was stored, send it again",
            1,
        ),
        IngestError::Append(AppendError::Closed) => {
            ApiError::unavailable("shutting_down", "the server is shutting down", 5)
        }
        // Nothing of the batch was stored (the transaction failed): retryable.
        IngestError::Append(AppendError::Store(cause)) => ApiError {
            internal: Some(cause),
            ..ApiError::unavailable(
                "store_unavailable",
                "the store could not commit this batch; nothing of it was stored, send it again",
                2,
            )
        },
        IngestError::Append(AppendError::Standby) => ApiError::unavailable(
            "standby",
            "this server is a standby (another one writes the log); retry, or send to the writer",
            2,
        ),
        IngestError::Stream(PublishFailure::Full) => ApiError::unavailable(
            "stream_full",
            "the stream holds as much as it may while workers catch up; nothing of this request was stored, send it again later",
            5,
        ),
        IngestError::Stream(PublishFailure::TooLarge { size, max }) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large_for_nats",
            format!(
                "this batch is {size} bytes compressed and NATS takes at most {max} in one message; send fewer events per request (or raise max_payload in nats-server)"
            ),
        ),
        IngestError::Stream(PublishFailure::Unavailable(cause)) => ApiError {
            internal: Some(cause),
            ..ApiError::unavailable(
                "stream_unavailable",
                "NATS did not acknowledge this batch; nothing of it is known to be stored, send it again",
                2,
            )
        },
        IngestError::Read(cause) => ApiError {
            internal: Some(cause),
            ..ApiError::unavailable(
                "store_unavailable",
                "the store could not be read to evaluate this request; send it again",
                2,
            )
        },
    }
}
