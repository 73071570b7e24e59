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
//!
//! No HTTP and no database types here: the HTTP layer hands in header values and maps the
//! errors to responses; keys are read through a [`KeyDirectory`] (the store implements it).

pub mod audit;
pub mod keys;
pub mod permission;
pub mod policy;
pub mod proxies;
pub mod session;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::event::format_time;
use audit::{AuditEntry, AuditSink};
use keys::KeyRecord;
use permission::Permission;

/// How long a verified key is trusted without re-checking its hash.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 10_000;
pub const PROJECT_HEADER: &str = "x-audittrail-project";
/// The project of keys scoped to every project (`*`) when the request names none.
pub const DEFAULT_PROJECT: &str = "default";

/// Where keys are looked up (the store).
pub trait KeyDirectory: Send + Sync {
    /// The key with this id and its secret's hash; an error means the lookup itself failed.
    fn find<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(KeyRecord, String)>, String>>;
    /// Changes whenever any key is added, rotated or revoked.
    fn fingerprint(&self) -> BoxFuture<'_, Result<String, String>>;
}

/// Verifies keys, with a short cache.
pub struct Authenticator {
    cache: Mutex<HashMap<[u8; 32], (KeyRecord, Instant)>>,
    /// Cache misses verify one at a time: concurrent requests with the same new key wait for
    /// one Argon2 run, and a flood of bad keys cannot occupy every core.
    verifying: tokio::sync::Mutex<()>,
    keys: Arc<dyn KeyDirectory>,
    audit: AuditSink,
    trusted_proxies: Vec<proxies::ProxyNet>,
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
    pub fn new(
        keys: Arc<dyn KeyDirectory>,
        audit: AuditSink,
        trusted_proxies: Vec<proxies::ProxyNet>,
    ) -> Self {
        Authenticator {
            cache: Mutex::new(HashMap::new()),
            verifying: tokio::sync::Mutex::new(()),
            keys,
            audit,
            trusted_proxies,
        }
    }

    pub fn audit(&self) -> &AuditSink {
        &self.audit
    }

    /// Clears the cache whenever any key is rotated or revoked behind the server's back (the
    /// `keys` CLI writes the database directly): checked every second, one cheap query.
    pub fn spawn_change_watch(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut last: Option<String> = None;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(auth) = me.upgrade() else { return };
                let now = auth.keys.fingerprint().await.ok();
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

    /// Forgets every cached verification (a session's key check wants the stored state now).
    pub fn forget_all(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
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
                let (rec, hash) = match self.keys.find(id).await {
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

    /// The key with this id as stored now, if it is still valid (sessions re-check it).
    pub async fn current(&self, key_id: &str) -> Result<KeyRecord, AuthError> {
        match self.keys.find(key_id).await {
            Ok(Some((rec, _))) => self.check_validity(rec),
            Ok(None) => Err(AuthError::Invalid),
            Err(_) => Err(AuthError::Unavailable),
        }
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
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> Option<IpAddr> {
        let peer = peer?;
        if proxies::trusted(&self.trusted_proxies, peer)
            && let Some(ip) = forwarded_for
                .and_then(|f| f.rsplit(',').next())
                .and_then(|s| s.trim().parse().ok())
        {
            return Some(ip);
        }
        Some(peer)
    }

    /// Whether `peer` is one of the configured proxies (nginx).
    pub fn trusts(&self, peer: IpAddr) -> bool {
        proxies::trusted(&self.trusted_proxies, peer)
    }
}

/// The token in an `Authorization` header value: Bearer, or Basic with id as user and secret
/// as password.
pub fn presented_token(authorization: Option<&str>) -> Option<String> {
    let value = authorization?.trim();
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

/// A verified caller: its key, where it came from, and the project it asked for.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key: KeyRecord,
    pub source_ip: Option<String>,
    pub correlation_id: Option<String>,
    /// `X-AuditTrail-Project`, or the project a dashboard session picked.
    pub requested_project: Option<String>,
    pub audit: AuditSink,
}

/// Why a verified key may not do what it asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// 403: the message names the permission.
    #[error("this API key lacks the permission `{}`", .0.as_str())]
    MissingPermission(Permission),
    /// 400: a key with several projects must name one.
    #[error("this key is scoped to several projects: name one in the X-AuditTrail-Project header")]
    ProjectRequired,
    /// 400: the named project is not a valid id.
    #[error("X-AuditTrail-Project: 1-64 letters, digits, `-`, `_` or `.`")]
    InvalidProject,
    /// 404: outside the key's projects (indistinguishable from a missing project).
    #[error("no such project")]
    OutOfScope,
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

    /// Checks `permission` and resolves the project the request acts on. Denials of a
    /// permission or a project are audited.
    pub fn authorize(&self, permission: Permission, operation: &str) -> Result<String, Denied> {
        if !self.may(permission) {
            self.deny(
                operation,
                None,
                &format!("missing permission {}", permission.as_str()),
            );
            return Err(Denied::MissingPermission(permission));
        }
        let project = match (&self.requested_project, self.key.projects.as_slice()) {
            (Some(p), _) => p.trim().to_owned(),
            (None, [only]) if only != "*" => only.clone(),
            (None, _) if self.all_projects() => DEFAULT_PROJECT.to_owned(),
            (None, _) => return Err(Denied::ProjectRequired),
        };
        if !permission::valid_project_id(&project) {
            return Err(Denied::InvalidProject);
        }
        if !self.in_scope(&project) {
            self.deny(operation, Some(&project), "project outside the key's scope");
            return Err(Denied::OutOfScope);
        }
        Ok(project)
    }

    /// The projects this key may pick, `*` meaning any.
    pub fn projects(&self) -> &[String] {
        &self.key.projects
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
        // The project the caller acts in, when there is one: the one it asked for, or its only
        // one (reports count a project's security events by it).
        e.project = self
            .requested_project
            .clone()
            .or_else(|| match self.key.projects.as_slice() {
                [only] if only != "*" => Some(only.clone()),
                _ => None,
            });
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
        // "abc:def" in base64.
        assert_eq!(
            presented_token(Some("Basic YWJjOmRlZg==")).as_deref(),
            Some("sk-at-abc_def")
        );
        assert_eq!(
            presented_token(Some("Bearer sk-at-x_y")).as_deref(),
            Some("sk-at-x_y")
        );
        assert_eq!(presented_token(Some("Digest nope")), None);
        assert_eq!(presented_token(None), None);
    }
}
