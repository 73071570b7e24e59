//! Authentication and authorization: who is calling, what they may do, in which project.
//!
//! Keys travel as `Authorization: Bearer sk-at-<id>_<secret>` (or HTTP Basic with the id as
//! user and the secret as password, for SDKs that only speak Basic). Verification costs an
//! Argon2id hash, so a verified key is cached for [`CACHE_TTL`] under a SHA-256 digest of the
//! presented token; rotation and revocation evict it at once. Every route that needs a key
//! takes a [`Principal`] and calls [`Principal::authorize`] with its permission, which also
//! resolves the project (`X-AuditTrail-Project` when the key has several) and audits denials.
//!
//! Tenant isolation: a project outside the key's scope is answered 404, like a missing one,
//! so ids of other tenants never leak.

pub mod audit;
pub mod keys;
pub mod permission;
pub mod policy;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use chrono::Utc;
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;

use crate::event::format_time;
use crate::web::AppState;
use crate::web::error::ApiError;
use audit::{AuditEntry, AuditSink};
use keys::KeyRecord;
use permission::Permission;

/// How long a verified key is trusted without re-checking its hash.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 10_000;
pub const PROJECT_HEADER: &str = "x-audittrail-project";

/// Verifies keys, with a short cache.
pub struct Authenticator {
    cache: Mutex<HashMap<[u8; 32], (KeyRecord, Instant)>>,
    /// Cache misses verify one at a time: concurrent requests with the same new key wait for
    /// one Argon2 run, and a flood of bad keys cannot occupy every core.
    verifying: tokio::sync::Mutex<()>,
    pool: SqlitePool,
    audit: AuditSink,
    trusted_proxies: Vec<IpAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing credentials: send `Authorization: Bearer sk-at-…`")]
    Missing,
    #[error("malformed API key: expected `sk-at-<id>_<secret>`")]
    Malformed,
    #[error("invalid API key")]
    Invalid,
    #[error("API key revoked")]
    Revoked,
    #[error("API key expired")]
    Expired,
    /// The key could not be checked (the database did not answer): retry, the key may be fine.
    #[error("the API key could not be checked right now; retry shortly")]
    Unavailable,
}

impl Authenticator {
    pub fn new(pool: SqlitePool, audit: AuditSink, trusted_proxies: Vec<IpAddr>) -> Self {
        Authenticator {
            cache: Mutex::new(HashMap::new()),
            verifying: tokio::sync::Mutex::new(()),
            pool,
            audit,
            trusted_proxies,
        }
    }

    pub fn audit(&self) -> &AuditSink {
        &self.audit
    }

    /// Clears the cache whenever any key is rotated or revoked behind the server's back (the
    /// `keys` CLI writes the database directly): checked every second, one cheap query.
    pub fn spawn_change_watch(self: &std::sync::Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = std::sync::Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last: Option<(i64, Option<String>, Option<String>)> = None;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(auth) = me.upgrade() else { return };
                let now = sqlx::query_as::<_, (i64, Option<String>, Option<String>)>(
                    "SELECT COUNT(*), MAX(rotated_at), MAX(revoked_at) FROM api_keys",
                )
                .fetch_one(&auth.pool)
                .await
                .ok();
                if now.is_some() && last.is_some() && now != last {
                    auth.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
                if now.is_some() {
                    last = now;
                }
            }
        })
    }

    /// Forgets every cached verification of this key (rotation, revocation).
    pub fn evict(&self, key_id: &str) {
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (rec, _)| rec.id != key_id);
    }

    /// The key behind a presented token, if it is valid now.
    pub async fn verify(&self, token: &str) -> Result<KeyRecord, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let cached = |me: &Self| {
            me.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&digest)
                .filter(|(_, at)| at.elapsed() < CACHE_TTL)
                .map(|(r, _)| r.clone())
        };
        let record = match cached(self) {
            Some(rec) => rec,
            None => {
                let _turn = self.verifying.lock().await;
                if let Some(rec) = cached(self) {
                    return self.check_validity(rec);
                }
                let (id, secret) = keys::parse_token(token).ok_or(AuthError::Malformed)?;
                let (rec, hash) = match keys::find(&self.pool, id).await {
                    Ok(Some(found)) => found,
                    Ok(None) => return Err(AuthError::Invalid),
                    // Never "invalid": an agent told its key is invalid may throw it away.
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read API keys; answering 503");
                        metrics::counter!("audittrail_store_errors_total").increment(1);
                        return Err(AuthError::Unavailable);
                    }
                };
                if !keys::verify_secret(secret.to_owned(), hash).await {
                    return Err(AuthError::Invalid);
                }
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(digest, (rec.clone(), Instant::now()));
                rec
            }
        };
        self.check_validity(record)
    }

    fn check_validity(&self, record: KeyRecord) -> Result<KeyRecord, AuthError> {
        if record.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if record
            .expires_at
            .as_deref()
            .is_some_and(|e| e <= format_time(&Utc::now()).as_str())
        {
            return Err(AuthError::Expired);
        }
        Ok(record)
    }

    /// The client's address: the peer, or — only when the peer is a trusted proxy — the
    /// last address nginx appended to `X-Forwarded-For`.
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer?;
        if self.trusted_proxies.contains(&peer) {
            let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
            if let Some(ip) = forwarded
                .and_then(|f| f.rsplit(',').next())
                .and_then(|s| s.trim().parse().ok())
            {
                return Some(ip);
            }
        }
        Some(peer)
    }
}

/// The presented token: Bearer, or Basic with id as user and secret as password.
pub fn presented_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    if let Some(t) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    {
        return Some(t.trim().to_owned());
    }
    let b64 = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64_decode(b64.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    let id = user.strip_prefix(keys::PREFIX).unwrap_or(user);
    Some(format!("{}{id}_{pass}", keys::PREFIX))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|b| *b != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let n = chunk.len();
        if n < 2 {
            return None;
        }
        out.push((acc >> 16) as u8);
        if n > 2 {
            out.push((acc >> 8) as u8);
        }
        if n > 3 {
            out.push(acc as u8);
        }
    }
    Some(out)
}

/// A verified caller. Extracting it answers 401 for missing, malformed, unknown, revoked or
/// expired keys (and audits the failure).
#[derive(Debug, Clone)]
pub struct Principal {
    pub key: KeyRecord,
    pub source_ip: Option<String>,
    pub correlation_id: Option<String>,
    headers_project: Option<String>,
    audit: AuditSink,
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let auth = &state.auth;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let source_ip = auth
            .client_ip(peer, &parts.headers)
            .map(|ip| ip.to_string());
        let correlation_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let result = match presented_token(&parts.headers) {
            None => Err(AuthError::Missing),
            Some(token) => auth.verify(&token).await,
        };
        match result {
            Ok(key) => Ok(Principal {
                key,
                source_ip,
                correlation_id,
                headers_project: parts
                    .headers
                    .get(PROJECT_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                audit: auth.audit().clone(),
            }),
            Err(AuthError::Unavailable) => Err(ApiError::unavailable(
                "auth_unavailable",
                AuthError::Unavailable.to_string(),
                2,
            )),
            Err(err) => {
                // The route's template, never the raw path: a path may carry personal data.
                let route = parts
                    .extensions
                    .get::<axum::extract::MatchedPath>()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "unmatched".into());
                let mut e = AuditEntry::new(
                    "authentication",
                    &format!("{} {route}", parts.method),
                    "failure",
                );
                e.source_ip = source_ip;
                e.correlation_id = correlation_id;
                e.metadata = serde_json::json!({ "reason": err.to_string() });
                auth.audit().record(e);
                metrics::counter!("audittrail_auth_failures_total").increment(1);
                let mut api =
                    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", err.to_string());
                api.www_authenticate = true;
                Err(api)
            }
        }
    }
}

impl Principal {
    pub fn may(&self, p: Permission) -> bool {
        self.key.permissions.contains(&Permission::AdminAll) || self.key.permissions.contains(&p)
    }

    fn all_projects(&self) -> bool {
        self.key.projects.iter().any(|p| p == "*")
    }

    pub fn in_scope(&self, project: &str) -> bool {
        self.all_projects() || self.key.projects.iter().any(|p| p == project)
    }

    /// The projects this key may see (None: all of them).
    pub fn scope(&self) -> Option<Vec<String>> {
        (!self.all_projects()).then(|| self.key.projects.clone())
    }

    /// Checks `permission` and resolves the project the request acts on. Denials are audited:
    /// 403 names the missing permission; a project outside the scope is 404.
    pub fn authorize(&self, permission: Permission, operation: &str) -> Result<String, ApiError> {
        if !self.may(permission) {
            self.deny(
                operation,
                None,
                &format!("missing permission {}", permission.as_str()),
            );
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this API key lacks the permission `{}`",
                    permission.as_str()
                ),
            ));
        }
        let project = match (&self.headers_project, self.key.projects.as_slice()) {
            (Some(p), _) => p.trim().to_owned(),
            (None, [only]) if only != "*" => only.clone(),
            (None, _) if self.all_projects() => crate::ingest::http::DEFAULT_PROJECT.to_owned(),
            (None, _) => {
                return Err(ApiError::bad_request(
                    "project_required",
                    "this key is scoped to several projects: name one in the X-AuditTrail-Project header",
                ));
            }
        };
        if !permission::valid_project_id(&project) {
            return Err(ApiError::bad_request(
                "invalid_project",
                "X-AuditTrail-Project: 1-64 letters, digits, `-`, `_` or `.`",
            ));
        }
        if !self.in_scope(&project) {
            self.deny(operation, Some(&project), "project outside the key's scope");
            return Err(ApiError::not_found("no such project"));
        }
        Ok(project)
    }

    fn deny(&self, operation: &str, project: Option<&str>, reason: &str) {
        let mut e = self.entry("authorization", operation, "denied");
        e.project = project.map(str::to_owned);
        e.metadata = serde_json::json!({ "reason": reason });
        self.audit.record(e);
        metrics::counter!("audittrail_authz_denials_total").increment(1);
    }

    /// An audit entry about this caller.
    pub fn entry(&self, event_type: &str, operation: &str, result: &str) -> AuditEntry {
        let mut e = AuditEntry::new(event_type, operation, result);
        e.principal = Some(self.key.id.clone());
        e.source_ip = self.source_ip.clone();
        e.correlation_id = self.correlation_id.clone();
        e
    }

    pub fn record(&self, e: AuditEntry) {
        self.audit.record(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_maps_to_a_token() {
        let mut h = HeaderMap::new();
        // "abc:def" in base64.
        h.insert(header::AUTHORIZATION, "Basic YWJjOmRlZg==".parse().unwrap());
        assert_eq!(presented_token(&h).as_deref(), Some("sk-at-abc_def"));
        h.insert(header::AUTHORIZATION, "Bearer sk-at-x_y".parse().unwrap());
        assert_eq!(presented_token(&h).as_deref(), Some("sk-at-x_y"));
        h.insert(header::AUTHORIZATION, "Digest nope".parse().unwrap());
        assert_eq!(presented_token(&h), None);
    }
}
