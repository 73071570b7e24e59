//! The live feed: the `/live` page, `GET /ws/live` (the committed stream of the caller's
//! projects, as JSON messages) and `GET /api/v1/live?after_seq=N` (catching up over HTTP after
//! a reconnect or a `missed` message).
//!
//! Both accept a dashboard session cookie or `Authorization: Bearer` with `traces:read`. The
//! socket sends every committed record in scope until the client sends
//! `{"filter": {"types": [...], "agent": …, "kind": …, "severity": …, "status": …}}`.
//! Records already queued when a frame is sent travel together as
//! `{"type": "batch", "records": [...]}`. The
//! feed is a subscriber of the writer's committed stream with a bounded queue per connection
//! ([`crate::feed::live`]): a slow browser is told how many records it missed, it never slows
//! ingest.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use askama::Template;
use axum::Json;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::activity::EventRow;
use super::error::{PageError, render};
use super::viewer::{Chrome, Viewer};
use crate::auth::Principal;
use crate::auth::permission::Permission;
use crate::feed::live::{self as feed, LiveFilter};
use crate::http::AppState;
use crate::http::error::ApiError;
use crate::http::params::QueryErrors;
use crate::store::query;

/// Live sockets one server keeps open at once.
pub const MAX_SOCKETS: usize = 1000;
/// Largest message a browser may send (a filter).
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
const PING_EVERY: Duration = Duration::from_secs(20);
/// Most records sent in one WebSocket frame (`{"type": "batch", "records": [...]}`).
const MAX_BATCH: usize = 256;

static SOCKETS: AtomicUsize = AtomicUsize::new(0);

/// A live-feed caller: a Bearer key, or else a dashboard session.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            return Ok(Caller(Principal::from_request_parts(parts, state).await?));
        }
        // A cookie rides along on cross-site requests too: a browser's WebSocket handshake
        // from another origin is refused here (SameSite=Strict is the other lock).
        if !super::same_origin(&parts.headers) {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                "cross-origin request refused",
            ));
        }
        match Viewer::from_parts(parts, state).await {
            Ok(v) => Ok(Caller(v.principal)),
            Err(PageError::SignIn(_)) => {
                let mut e = ApiError::new(
                    axum::http::StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "sign in to the dashboard or send `Authorization: Bearer sk-at-…`",
                );
                e.www_authenticate = true;
                Err(e)
            }
            Err(_) => Err(ApiError::unavailable(
                "auth_unavailable",
                "the session could not be checked right now; retry shortly",
                2,
            )),
        }
    }
}

impl Caller {
    /// The projects this caller's feed covers (`None`: every tenant project).
    fn scope(&self, operation: &str) -> Result<feed::Scope, ApiError> {
        let p = &self.0;
        if !p.may(Permission::TracesRead) {
            p.authorize(Permission::TracesRead, operation)?;
        }
        Ok(p.scope())
    }
}

#[derive(Template)]
#[template(path = "live.html")]
struct LivePage {
    chrome: Chrome,
    rows: Vec<EventRow>,
    after_seq: i64,
}

pub async fn page(State(state): State<AppState>, viewer: Viewer) -> Result<Response, PageError> {
    let project = viewer.project(Permission::TracesRead, "dashboard.live")?;
    // Without JavaScript the page is a snapshot of the newest records; the script then
    // follows the feed from the newest position.
    let latest = query::latest_records(&state.store, &project, 50).await?;
    let page = LivePage {
        chrome: viewer.chrome(&state, "live", "/live").await,
        after_seq: state.writer.status.head_seq(),
        rows: latest.iter().map(EventRow::from_record).collect(),
    };
    render(&page)
}

#[derive(Debug, Deserialize)]
pub struct SinceParams {
    after_seq: Option<String>,
    limit: Option<String>,
}

/// Most records one catch-up answer holds.
const MAX_CATCH_UP: u64 = 1000;

pub async fn since(
    State(state): State<AppState>,
    caller: Caller,
    Query(p): Query<SinceParams>,
) -> Result<Json<Value>, ApiError> {
    let scope = caller.scope("live.since")?;
    let mut errors = QueryErrors::default();
    let after = match p.after_seq.as_deref().map(str::parse::<i64>) {
        Some(Ok(n)) if n >= 0 => n,
        None => {
            errors.push("after_seq", "is required: the last position you have");
            0
        }
        Some(_) => {
            errors.push("after_seq", "must be a log position (an integer ≥ 0)");
            0
        }
    };
    let limit = match p.limit.as_deref().map(str::parse::<u64>) {
        None => 500,
        Some(Ok(n)) if (1..=MAX_CATCH_UP).contains(&n) => n,
        Some(_) => {
            errors.push(
                "limit",
                format!("must be an integer from 1 to {MAX_CATCH_UP}"),
            );
            500
        }
    };
    errors.finish()?;
    let records = query::records_after(&state.store, scope.as_deref(), after, limit + 1)
        .await
        .map_err(ApiError::internal)?;
    let more = records.len() as u64 > limit;
    let messages: Vec<Value> = records
        .iter()
        .take(limit as usize)
        .map(|r| feed::message(r.seq, &r.project, &r.record_type, &r.trace_id, &r.summary))
        .collect();
    let last = messages
        .last()
        .and_then(|m| m["seq"].as_i64())
        .unwrap_or(after);
    Ok(Json(json!({
        "records": messages,
        "after_seq": last,
        "more": more,
    })))
}

pub async fn socket(
    State(state): State<AppState>,
    caller: Caller,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let scope = caller.scope("live.socket")?;
    let ws = ws.map_err(|_| {
        ApiError::bad_request(
            "websocket_required",
            "this route needs a WebSocket upgrade request",
        )
    })?;
    if SOCKETS.fetch_add(1, Ordering::Relaxed) >= MAX_SOCKETS {
        SOCKETS.fetch_sub(1, Ordering::Relaxed);
        return Err(ApiError::unavailable(
            "too_many_live_connections",
            "this server has as many live connections as it keeps; retry later",
            5,
        ));
    }
    let open = Open::new();
    Ok(ws
        .max_message_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| follow(state, scope, socket, open))
        .into_response())
}

/// One open live socket, counted while it lives.
struct Open;

impl Open {
    fn new() -> Open {
        metrics::gauge!("audittrail_live_connections").set(SOCKETS.load(Ordering::Relaxed) as f64);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let n = SOCKETS.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        metrics::gauge!("audittrail_live_connections").set(n as f64);
    }
}

/// The client's filter message, with the agent looked up as stored (pseudonymized agents).
fn filter_from(state: &AppState, text: &str) -> Result<LiveFilter, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Msg {
        filter: LiveFilter,
    }
    let mut f = serde_json::from_str::<Msg>(text)
        .map_err(|_| {
            "filter: send {\"filter\": {\"types\", \"agent\", \"kind\", \"severity\", \"status\"}}"
                .to_owned()
        })?
        .filter;
    f.validate()?;
    for v in [&mut f.agent, &mut f.kind, &mut f.severity, &mut f.status] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            *v = None;
        }
    }
    f.agent = f
        .agent
        .map(|a| state.pipeline.redaction.lookup_text("agent", &a));
    Ok(f)
}

async fn follow(state: AppState, scope: feed::Scope, mut socket: WebSocket, _open: Open) {
    let mut sub = feed::subscribe(&state.writer, scope);
    let hello = json!({
        "type": "hello",
        "head_seq": state.writer.status.head_seq(),
        "buffer": feed::BUFFER,
    });
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            m = sub.messages.recv() => {
                let Some(first) = m else { return };
                // Whatever else is already queued goes in the same frame: at thousands of
                // records a second a browser parses one message per frame, not per record.
                let mut more = Vec::new();
                while more.len() < MAX_BATCH {
                    match sub.messages.try_recv() {
                        Ok(m) => more.push(m),
                        Err(_) => break,
                    }
                }
                let frame = if more.is_empty() {
                    first.to_string()
                } else {
                    more.insert(0, first);
                    json!({ "type": "batch", "records": more }).to_string()
                };
                if socket.send(Message::Text(frame.into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let reply = match filter_from(&state, &text) {
                        Ok(f) => {
                            sub.set_filter(f);
                            json!({ "type": "filter", "ok": true })
                        }
                        Err(detail) => json!({ "type": "error", "detail": detail }),
                    };
                    if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}
