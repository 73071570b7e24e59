//! `GET /ws/ingest`: native batches as WebSocket text messages, acknowledged per message.
//!
//! Authenticated at the upgrade (`traces:write`). Each message `{"seq": n, "events": [...]}` is
//! answered `{"seq": n, "accepted": k, "event_ids": [...], "violations": [...]}` once durable,
//! or `{"seq": n, "error": {...}}`; a bad message never closes a healthy connection. Messages
//! are handled one at a time, in order: the next is not read before the current one is
//! answered, so a client that floods waits (TCP back-pressure) and server memory stays bounded.
//! Messages over `AUDITTRAIL_MAX_BODY_BYTES` close the socket with 1009; the server pings every
//! 20 s and closes a connection idle for 120 s (1001).

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::http::ingest_error;
use crate::auth::Principal;
use crate::auth::permission::Permission;
use crate::http::AppState;
use crate::http::error::ApiError;

const PING_EVERY: Duration = Duration::from_secs(20);
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

pub fn router() -> Router<AppState> {
    Router::new().route("/ws/ingest", get(upgrade))
}

async fn upgrade(
    State(state): State<AppState>,
    principal: Principal,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    // Authorization first: a caller without the permission learns nothing else.
    let project = principal.authorize(Permission::TracesWrite, "ws.ingest")?;
    let ws = ws.map_err(|_| {
        ApiError::bad_request(
            "websocket_required",
            "this route needs a WebSocket upgrade request",
        )
    })?;
    let max = state.config.max_body_bytes;
    Ok(ws
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| session(state, project, socket)))
}

/// Counts live connections for `/api/v1/instance` (`connected_agents`).
struct Connected(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Connected {
    fn drop(&mut self) {
        let n = self.0.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("audittrail_ws_connections").set(n as f64);
    }
}

async fn session(state: AppState, project: String, mut socket: WebSocket) {
    let n = state.connected_agents.fetch_add(1, Ordering::Relaxed) + 1;
    metrics::gauge!("audittrail_ws_connections").set(n as f64);
    let _connected = Connected(state.connected_agents.clone());
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    let mut idle_deadline = Instant::now() + IDLE_TIMEOUT;
    loop {
        tokio::select! {
            msg = tokio::time::timeout_at(idle_deadline, socket.recv()) => {
                let msg = match msg {
                    Err(_) => {
                        let _ = socket.send(Message::Close(Some(CloseFrame { code: 1001, reason: "idle timeout".into() }))).await;
                        break;
                    }
                    Ok(None) => break,
                    Ok(Some(Err(e))) => {
                        let too_big = e.to_string().to_ascii_lowercase().contains("too long") || e.to_string().to_ascii_lowercase().contains("size");
                        let frame = if too_big {
                            CloseFrame { code: 1009, reason: "message too large".into() }
                        } else {
                            CloseFrame { code: 1002, reason: "protocol error".into() }
                        };
                        let _ = socket.send(Message::Close(Some(frame))).await;
                        break;
                    }
                    Ok(Some(Ok(msg))) => msg,
                };
                idle_deadline = Instant::now() + IDLE_TIMEOUT;
                let reply = match msg {
                    Message::Text(text) => handle(&state, &project, text.as_str()).await,
                    Message::Binary(_) => json!({"seq": null, "error": {"status": 400, "code": "binary_not_supported", "detail": "send batches as JSON text messages"}}),
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                    break;
                }
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
}

fn error_reply(seq: &Value, e: ApiError) -> Value {
    let mut err = json!({"status": e.status.as_u16(), "code": e.code, "detail": e.detail});
    if !e.errors.is_empty() {
        err["errors"] = json!(e.errors);
    }
    if let Some(s) = e.retry_after_secs {
        err["retry_after_secs"] = json!(s);
    }
    if let Some(cause) = &e.internal {
        tracing::error!(cause, "websocket batch failed");
    }
    json!({"seq": seq, "error": err})
}

async fn handle(state: &AppState, project: &str, text: &str) -> Value {
    let mut body = match crate::http::body::parse_json(text.as_bytes()) {
        Ok(v) => v,
        Err(e) => return error_reply(&Value::Null, e),
    };
    let seq = body.get("seq").cloned().unwrap_or(Value::Null);
    if !(seq.is_u64() || seq.is_null()) {
        return error_reply(
            &Value::Null,
            ApiError::bad_request("invalid_seq", "seq: must be a non-negative integer"),
        );
    }
    if let Some(obj) = body.as_object_mut() {
        obj.remove("seq");
    }
    match state
        .pipeline
        .ingest(&state.appender, project, body, "ws")
        .await
    {
        Ok(ingested) => {
            let mut reply = super::http::ingest_reply(ingested);
            reply["seq"] = seq;
            reply
        }
        Err(e) => error_reply(&seq, ingest_error(e)),
    }
}
