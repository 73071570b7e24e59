//! OTLP/HTTP: `POST /v1/traces` and the Langfuse-compatible `POST /api/public/otel/v1/traces`.
//!
//! Accepts `ExportTraceServiceRequest` as protobuf (`application/x-protobuf`) or the OTLP JSON
//! mapping (`application/json`; hex ids, int64 as strings; enum names tolerated), optionally
//! gzip-compressed — the size limit applies to the decompressed bytes, so a small bomb cannot
//! expand without bound. Answers in the request's content type: spans that fail validation are
//! counted in `partial_success` while the valid ones are stored. Event ids derive from
//! (project, trace id, span id), so exporter retries never store a span twice.
//!
//! Langfuse SDKs authenticate with HTTP Basic (user = key id, password = key secret) and, at
//! start-up, may call `GET /api/public/projects` and `GET /api/public/health`; both are served.

use std::io::Read;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde_json::{Value, json};

use super::http::ingest_error;
use super::otel_map;
use crate::auth::Principal;
use crate::auth::permission::Permission;
use crate::event::{self, FieldError};
use crate::http::AppState;
use crate::http::body::read_limited;
use crate::http::error::ApiError;
use crate::pipeline::new_event_id;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/traces", post(export))
        .route("/api/public/otel/v1/traces", post(export))
}

/// Routes the Langfuse SDK calls besides the exporter.
pub fn langfuse_router() -> Router<AppState> {
    Router::new()
        .route("/api/public/projects", get(langfuse_projects))
        .route("/api/public/health", get(langfuse_health))
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Wire {
    Protobuf,
    Json,
}

fn wire(headers: &HeaderMap) -> Result<Wire, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let ct = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Wire::Protobuf),
        "application/json" => Ok(Wire::Json),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Content-Type must be application/x-protobuf or application/json",
        )),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("decompressed request body exceeds {limit} bytes"),
    )
}

/// Decompresses gzip, stopping as soon as the output would pass `limit`.
pub(crate) fn gunzip(bytes: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| ApiError::bad_request("invalid_gzip", "the body is not valid gzip data"))?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

/// OTLP JSON allows only integers for enums; some clients send names. Normalise them.
fn lenient_enums(v: &mut Value) {
    let Some(rs) = v.get_mut("resourceSpans").and_then(Value::as_array_mut) else {
        return;
    };
    for r in rs {
        for ss in r
            .get_mut("scopeSpans")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for span in ss
                .get_mut("spans")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(k) = span.get("kind").and_then(Value::as_str) {
                    let n = [
                        "SPAN_KIND_UNSPECIFIED",
                        "SPAN_KIND_INTERNAL",
                        "SPAN_KIND_SERVER",
                        "SPAN_KIND_CLIENT",
                        "SPAN_KIND_PRODUCER",
                        "SPAN_KIND_CONSUMER",
                    ]
                    .iter()
                    .position(|n| *n == k)
                    .unwrap_or(0);
                    span["kind"] = json!(n);
                }
                if let Some(code) = span
                    .get("status")
                    .and_then(|s| s.get("code"))
                    .and_then(Value::as_str)
                {
                    let n = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"]
                        .iter()
                        .position(|n| *n == code)
                        .unwrap_or(0);
                    span["status"]["code"] = json!(n);
                }
            }
        }
    }
}

pub(crate) fn decode(bytes: &[u8], wire: Wire) -> Result<ExportTraceServiceRequest, ApiError> {
    match wire {
        Wire::Protobuf => ExportTraceServiceRequest::decode(bytes).map_err(|e| {
            ApiError::bad_request(
                "invalid_protobuf",
                format!("the body is not a valid OTLP ExportTraceServiceRequest protobuf: {e}"),
            )
        }),
        Wire::Json => {
            let mut v: Value = crate::http::body::parse_json(bytes)?;
            lenient_enums(&mut v);
            serde_json::from_value(v).map_err(|e| {
                // serde's message may quote a value; keep only its position-free category.
                let what = if e.is_data() {
                    "a field has the wrong type or an id is not hex"
                } else {
                    "invalid structure"
                };
                ApiError::bad_request(
                    "invalid_otlp_json",
                    format!("the body is not a valid OTLP/JSON ExportTraceServiceRequest: {what}"),
                )
            })
        }
    }
}

fn respond(wire: Wire, resp: &ExportTraceServiceResponse) -> Response {
    match wire {
        Wire::Protobuf => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            Bytes::from(resp.encode_to_vec()),
        )
            .into_response(),
        Wire::Json => {
            let body = match &resp.partial_success {
                Some(p) => {
                    json!({"partialSuccess": {"rejectedSpans": p.rejected_spans.to_string(), "errorMessage": p.error_message}})
                }
                None => json!({}),
            };
            Json(body).into_response()
        }
    }
}

async fn export(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> Result<Response, ApiError> {
    let project = principal.authorize(Permission::TracesWrite, "otlp.export")?;
    let wire = wire(req.headers())?;
    let gzip = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|e| e.eq_ignore_ascii_case("gzip"));
    let limit = state.config.max_body_bytes;
    let raw = read_limited(req.into_body(), limit).await?;
    let bytes = if gzip {
        Bytes::from(gunzip(&raw, limit)?)
    } else {
        raw
    };
    let request = decode(&bytes, wire)?;
    drop(bytes);

    let mut events = Vec::new();
    let mut rejected: Vec<FieldError> = Vec::new();
    for (ri, rs) in request.resource_spans.iter().enumerate() {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| otel_map::attrs(&r.attributes))
            .unwrap_or_default();
        for (si, ss) in rs.scope_spans.iter().enumerate() {
            for (k, span) in ss.spans.iter().enumerate() {
                let path = format!("resourceSpans[{ri}].scopeSpans[{si}].spans[{k}]");
                let native =
                    otel_map::span_to_event(&project, &resource, span, &state.pipeline.prices);
                match event::parse_event(native, &path, &state.pipeline.limits, new_event_id) {
                    Ok(e) => events.push(e),
                    Err(mut errs) => rejected.push(errs.swap_remove(0)),
                }
            }
        }
    }
    if !events.is_empty() {
        state
            .pipeline
            .ingest_events(&state.appender, &project, events, "otlp")
            .await
            .map_err(ingest_error)?;
    }
    let partial_success = (!rejected.is_empty()).then(|| ExportTracePartialSuccess {
        rejected_spans: rejected.len() as i64,
        error_message: rejected
            .iter()
            .take(5)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("; "),
    });
    Ok(respond(
        wire,
        &ExportTraceServiceResponse { partial_success },
    ))
}

async fn langfuse_projects(principal: Principal) -> Result<Json<Value>, ApiError> {
    let project = principal.authorize(Permission::TracesWrite, "langfuse.projects")?;
    // The shape of Langfuse's `Projects` (its SDK validates it in `auth_check`).
    Ok(Json(json!({ "data": [{
        "id": project, "name": project, "metadata": {},
        "organization": { "id": "audittrail", "name": "AuditTrail" }
    }] })))
}

async fn langfuse_health() -> Json<Value> {
    Json(json!({ "status": "OK", "version": crate::VERSION }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_bombs_stop_at_the_limit() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![b'a'; 5_000_000]).unwrap();
        let small = enc.finish().unwrap();
        assert!(small.len() < 20_000);
        assert_eq!(
            gunzip(&small, 1_000_000).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(gunzip(&small, 6_000_000).unwrap().len(), 5_000_000);
        assert_eq!(gunzip(b"not gzip", 10).unwrap_err().code, "invalid_gzip");
    }

    #[test]
    fn json_enum_names_are_tolerated() {
        let mut v = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": "SPAN_KIND_CLIENT", "status": {"code": "STATUS_CODE_ERROR"}}]}]}]});
        lenient_enums(&mut v);
        assert_eq!(
            v["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["kind"],
            3
        );
        assert_eq!(
            v["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["status"]["code"],
            2
        );
    }
}
