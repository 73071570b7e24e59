//! API keys: `sk-at-<id>_<secret>`. The secret is shown once; only its Argon2id hash is kept.
//!
//! What a key is and how its secret is made and checked; storing keys is `store::keys`.
//! Argon2 runs on a blocking thread.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::permission::Permission;
use crate::event::format_time;

pub const PREFIX: &str = "sk-at-";
const ID_LEN: usize = 16;
const SECRET_LEN: usize = 40;

/// A key as listed: everything but the secret.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub projects: Vec<String>,
    pub permissions: Vec<Permission>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub rotated_at: Option<String>,
    pub revoked_at: Option<String>,
    pub is_owner: bool,
}

/// A key just created or rotated: the only time its full token exists outside the client.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedKey {
    #[serde(flatten)]
    pub record: KeyRecord,
    /// `sk-at-<id>_<secret>`; store it now, it is not shown again.
    pub key: String,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("an owner key already exists; bootstrap works once")]
    AlreadyBootstrapped,
    #[error("no such key")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    /// The store failed (the message is for the log, never the client).
    #[error("the key store failed: {0}")]
    Store(String),
    #[error("key hashing failed: {0}")]
    Hash(String),
    #[error(
        "this is the last active admin:all key; create another admin:all key before revoking it"
    )]
    LastAdmin,
}

/// Splits a presented token into (id, secret) if it has the right shape.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (ok(id, ID_LEN) && ok(secret, SECRET_LEN)).then_some((id, secret))
}

fn random_alnum(n: usize) -> Result<String, KeyError> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    let mut buf = [0u8; 64];
    while out.len() < n {
        getrandom::fill(&mut buf).map_err(|e| KeyError::Hash(format!("no randomness: {e}")))?;
        // Rejection sampling keeps the distribution uniform over 62 symbols.
        for b in buf {
            if (b as usize) < 62 * 4 && out.len() < n {
                out.push(ALPHABET[(b as usize) % 62] as char);
            }
        }
    }
    Ok(out)
}

pub async fn hash_secret(secret: String) -> Result<String, KeyError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(secret.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| KeyError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| KeyError::Hash(e.to_string()))?
}

/// Checks a secret against its stored hash (constant-time inside argon2), off the runtime.
pub async fn verify_secret(secret: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(secret.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false)
}

/// Parses `90d`, `12h`, `30m`. Any other text, multi-byte characters included, is an error
/// that never repeats the text (it may be anything a client sent).
pub fn parse_expires_in(s: &str) -> Result<Duration, KeyError> {
    let bad =
        || KeyError::Invalid("expires_in: use a number followed by d, h or m (e.g. 90d)".into());
    let s = s.trim();
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii() => (&s[..i], c),
        _ => return Err(bad()),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || num.len() > 9 {
        return Err(bad());
    }
    let n: i64 = num.parse().map_err(|_| bad())?;
    if n <= 0 || n > 36_500 * 24 * 60 {
        return Err(bad());
    }
    match unit {
        'd' if n <= 36_500 => Ok(Duration::days(n)),
        'h' if n <= 36_500 * 24 => Ok(Duration::hours(n)),
        'm' => Ok(Duration::minutes(n)),
        _ => Err(bad()),
    }
}

/// What a new key may do.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub name: String,
    pub projects: Vec<String>,
    pub permissions: Vec<Permission>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl KeySpec {
    pub fn validate(&self) -> Result<(), KeyError> {
        if self.name.trim().is_empty() || self.name.len() > 128 {
            return Err(KeyError::Invalid(
                "name: must be 1 to 128 characters".into(),
            ));
        }
        if self.projects.is_empty() {
            return Err(KeyError::Invalid(
                "projects: name at least one project (or \"*\")".into(),
            ));
        }
        if let Some(bad) = self
            .projects
            .iter()
            .find(|p| p.as_str() != "*" && !super::permission::valid_project_id(p))
        {
            let _ = bad;
            return Err(KeyError::Invalid(
                "projects: ids are 1-64 letters, digits, `-`, `_` or `.`".into(),
            ));
        }
        if self.permissions.is_empty() {
            return Err(KeyError::Invalid(
                "permissions: name at least one permission".into(),
            ));
        }
        Ok(())
    }
}

/// A new key for `spec`: its record, its token (shown once) and the hash to store.
pub async fn issue(
    spec: &KeySpec,
    is_owner: bool,
) -> Result<(KeyRecord, String, String), KeyError> {
    spec.validate()?;
    let id = random_alnum(ID_LEN)?.to_ascii_lowercase();
    let secret = random_alnum(SECRET_LEN)?;
    let hash = hash_secret(secret.clone()).await?;
    let record = KeyRecord {
        id: id.clone(),
        name: spec.name.trim().to_owned(),
        projects: spec.projects.clone(),
        permissions: spec.permissions.clone(),
        created_at: format_time(&Utc::now()),
        expires_at: spec.expires_at.as_ref().map(format_time),
        rotated_at: None,
        revoked_at: None,
        is_owner,
    };
    Ok((record, format!("{PREFIX}{id}_{secret}"), hash))
}

/// A new secret for key `id`: the token (shown once) and the hash to store.
pub async fn new_secret(id: &str) -> Result<(String, String), KeyError> {
    let secret = random_alnum(SECRET_LEN)?;
    let hash = hash_secret(secret.clone()).await?;
    Ok((format!("{PREFIX}{id}_{secret}"), hash))
}

/// The spec of the owner key: every project, `admin:all`.
pub fn owner_spec(name: &str) -> KeySpec {
    KeySpec {
        name: name.into(),
        projects: vec!["*".into()],
        permissions: vec![Permission::AdminAll],
        expires_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shape_is_checked() {
        let good = format!("{PREFIX}{}_{}", "a".repeat(ID_LEN), "B".repeat(SECRET_LEN));
        assert_eq!(
            parse_token(&good),
            Some(("aaaaaaaaaaaaaaaa", "B".repeat(SECRET_LEN).as_str()))
        );
        for bad in [
            "",
            "sk-at-",
            "Bearer x",
            "sk-at-short_secret",
            &good[..good.len() - 1],
            &good.replace('_', "-"),
        ] {
            assert_eq!(parse_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn random_tokens_differ_and_are_alphanumeric() {
        let a = random_alnum(40).unwrap();
        assert_eq!(a.len(), 40);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a, random_alnum(40).unwrap());
    }

    #[test]
    fn expiry_parses() {
        assert_eq!(parse_expires_in("90d").unwrap(), Duration::days(90));
        assert_eq!(parse_expires_in("12h").unwrap(), Duration::hours(12));
        for bad in [
            "",
            "d",
            "-1d",
            "+1d",
            "10y",
            "abc",
            "1é",
            "é",
            "1😀",
            "😀d",
            "１d",
            "99999999999d",
        ] {
            let err = parse_expires_in(bad).unwrap_err().to_string();
            assert_eq!(
                err, "expires_in: use a number followed by d, h or m (e.g. 90d)",
                "{bad:?}: the message is fixed, never the value"
            );
        }
    }
}
