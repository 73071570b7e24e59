//! `POST /api/v1/erasure`: erases a data subject in the key's project (`data:erase`) and
//! answers, once the erasure is committed, with its receipt and the backups that predate it.

use axum::extract::{Request, State};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;

use crate::auth::Principal;
use crate::auth::permission::Permission;
use crate::http::AppState;
use crate::http::body::{parse_json, read_limited};
use crate::http::error::ApiError;
use crate::retention::erasure::{self, Answer};
use crate::store::receipt::EraseRequest;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/erasure", post(erase))
}

async fn erase(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> Result<Json<Answer>, ApiError> {
    let project = principal.authorize(Permission::DataErase, "data.erase")?;
    if state.cluster.is_some() {
        return Err(ApiError::cluster_writer_only(
            "an erasure (`audittrail erase`)",
        ));
    }
    let body = parse_json(&read_limited(req.into_body(), 16 * 1024).await?)?;
    let ask = erasure::parse(&body, &state.pipeline.redaction).map_err(ApiError::validation)?;
    let field = ask.selector.field();
    let erased = state
        .writer
        .erase(EraseRequest {
            project: project.clone(),
            selector: ask.selector,
            reason: ask.reason,
            requested_by: principal.key.id.clone(),
        })
        .await
        .map_err(|e| {
            let mut entry = principal.entry("data_erasure", "data.erase", "failure");
            entry.metadata = serde_json::json!({ "selector": field });
            principal.record(entry);
            tracing::error!(error = %e, "erasure failed");
            ApiError::unavailable(
                "erasure_failed",
                "the erasure could not be committed; nothing was erased. Retry it.",
                5,
            )
        })?;
    let mut entry = principal.entry("data_erasure", "data.erase", "success");
    entry.resource = Some(format!("receipt:{}", erased.receipt_seq));
    entry.metadata = serde_json::json!({
        "selector": field,
        "records": erased.receipt.seqs.len(),
        "receipt_seq": erased.receipt_seq,
    });
    principal.record(entry);
    let backups = erasure::backups_before(&state.store, Utc::now())
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(erasure::answer(erased, backups)))
}
