//! Dashboard sessions: what the cookie carries, how it is checked, and when a stored session
//! stops being valid. No HTTP and no database types: the dashboard reads the cookie and the
//! store keeps the rows.
//!
//! The cookie is `<id>.<mac>`: 32 random bytes and an HMAC of them under a key derived from
//! the server's secret, both hex. It never holds the API key or its secret. Only the SHA-256
//! of the id is stored, so a copy of the database opens no session; the HMAC lets forged
//! cookies be refused before any database lookup. CSRF tokens are an HMAC of the stored id
//! under a second derived key, so every session has its own and they need no storage.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::keys::KeyRecord;

/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The cookie's name.
pub const COOKIE: &str = "audittrail_session";

const ID_BYTES: usize = 32;

/// The keys that sign session cookies and CSRF tokens.
#[derive(Clone)]
pub struct SessionKeys {
    cookie: Hmac<Sha256>,
    csrf: Hmac<Sha256>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

fn derived(secret: &[u8], label: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(label);
    let key = mac.finalize().into_bytes();
    <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC accepts keys of any length")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A session just opened: the cookie value for the browser and the id hash for the store.
pub struct NewSession {
    pub cookie: String,
    pub id_hash: String,
}

impl SessionKeys {
    /// Derives the session keys from the server secret (labels keep them apart from the
    /// chain keys and pseudonyms made from the same secret).
    pub fn derive(secret: &[u8]) -> Self {
        SessionKeys {
            cookie: derived(secret, b"audittrail/dashboard-session/v1"),
            csrf: derived(secret, b"audittrail/dashboard-csrf/v1"),
        }
    }

    fn sign(&self, id: &[u8]) -> Vec<u8> {
        let mut mac = self.cookie.clone();
        mac.update(id);
        mac.finalize().into_bytes().to_vec()
    }

    /// A new random session.
    pub fn open(&self) -> Result<NewSession, String> {
        let mut id = [0u8; ID_BYTES];
        getrandom::fill(&mut id).map_err(|e| format!("no randomness: {e}"))?;
        Ok(NewSession {
            cookie: format!("{}.{}", hex(&id), hex(&self.sign(&id))),
            id_hash: id_hash(&id),
        })
    }

    /// The stored id hash of a cookie this server signed; `None` for anything else.
    pub fn verify(&self, cookie: &str) -> Option<String> {
        let (id, tag) = cookie.split_once('.')?;
        if id.len() != ID_BYTES * 2 || tag.len() != 64 {
            return None;
        }
        let id = unhex(id)?;
        let tag = unhex(tag)?;
        let mut mac = self.cookie.clone();
        mac.update(&id);
        mac.verify_slice(&tag).ok()?;
        Some(id_hash(&id))
    }

    /// The session's CSRF token (put in every form, checked on every POST).
    pub fn csrf_token(&self, id_hash: &str) -> String {
        let mut mac = self.csrf.clone();
        mac.update(id_hash.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `token` is this session's CSRF token (constant time).
    pub fn csrf_ok(&self, id_hash: &str, token: &str) -> bool {
        let Some(tag) = unhex(token) else {
            return false;
        };
        let mut mac = self.csrf.clone();
        mac.update(id_hash.as_bytes());
        mac.verify_slice(&tag).is_ok()
    }
}

fn id_hash(id: &[u8]) -> String {
    hex(&Sha256::digest(id))
}

/// Why a stored session no longer admits its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefused {
    #[error("not signed in")]
    Unknown,
    #[error("signed out")]
    Ended,
    #[error("the session expired; sign in again")]
    Expired,
    #[error("the API key was rotated since sign-in; sign in with the new key")]
    Rotated,
}

/// The checks a stored session passes on every request. `now` and the times are the log's
/// RFC 3339 text (UTC, fixed width), so they compare as strings. The key itself (revoked,
/// expired) is checked by the authenticator.
pub fn check(
    ended_at: Option<&str>,
    expires_at: &str,
    rotated_at_sign_in: Option<&str>,
    key: &KeyRecord,
    now: &str,
) -> Result<(), SessionRefused> {
    if ended_at.is_some() {
        return Err(SessionRefused::Ended);
    }
    if expires_at <= now {
        return Err(SessionRefused::Expired);
    }
    if key.rotated_at.as_deref() != rotated_at_sign_in {
        return Err(SessionRefused::Rotated);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_verify_only_when_signed_by_the_same_secret() {
        let keys = SessionKeys::derive(b"secret one");
        let s = keys.open().unwrap();
        assert_eq!(keys.verify(&s.cookie).as_deref(), Some(s.id_hash.as_str()));
        assert_eq!(SessionKeys::derive(b"secret two").verify(&s.cookie), None);
        // One flipped digit of the id or the tag is refused.
        let mut bad = s.cookie.clone().into_bytes();
        bad[0] = if bad[0] == b'0' { b'1' } else { b'0' };
        assert_eq!(keys.verify(std::str::from_utf8(&bad).unwrap()), None);
        assert_eq!(keys.verify("garbage"), None);
        assert_eq!(keys.verify(""), None);
        // The cookie never contains the stored hash.
        assert!(!s.cookie.contains(&s.id_hash));
    }

    #[test]
    fn csrf_tokens_are_per_session() {
        let keys = SessionKeys::derive(b"secret");
        let a = keys.open().unwrap();
        let b = keys.open().unwrap();
        let ta = keys.csrf_token(&a.id_hash);
        assert!(keys.csrf_ok(&a.id_hash, &ta));
        assert!(!keys.csrf_ok(&b.id_hash, &ta));
        assert!(!keys.csrf_ok(&a.id_hash, ""));
        assert!(!keys.csrf_ok(&a.id_hash, "zz"));
    }

    #[test]
    fn ended_expired_and_rotated_sessions_are_refused() {
        let key = KeyRecord {
            id: "k".into(),
            name: "n".into(),
            projects: vec!["p".into()],
            permissions: vec![],
            created_at: "2026-01-01T00:00:00.000000Z".into(),
            expires_at: None,
            rotated_at: None,
            revoked_at: None,
            is_owner: false,
        };
        let now = "2026-06-01T00:00:00.000000Z";
        let later = "2026-06-01T12:00:00.000000Z";
        assert_eq!(check(None, later, None, &key, now), Ok(()));
        assert_eq!(
            check(Some(now), later, None, &key, now),
            Err(SessionRefused::Ended)
        );
        assert_eq!(
            check(None, now, None, &key, now),
            Err(SessionRefused::Expired)
        );
        let rotated = KeyRecord {
            rotated_at: Some(now.into()),
            ..key
        };
        assert_eq!(
            check(None, later, None, &rotated, now),
            Err(SessionRefused::Rotated)
        );
    }
}
