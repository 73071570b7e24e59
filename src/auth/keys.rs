//! API keys: `sk-at-<id>_<secret>`. The secret is shown once; only its Argon2id hash is kept.
//!
//! Key administration is rare, so it writes on its own short-lived connection (SQLite's busy
//! timeout serialises it with the event writer). Argon2 runs on a blocking thread.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use sqlx::{Row, SqlitePool};

use super::permission::Permission;
use crate::event::format_time;
use crate::store::{Store, StoreError};

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
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("key hashing failed: {0}")]
    Hash(String),
    #[error(
        "this is the last active admin:all key; create another admin:all key before revoking it"
    )]
    LastAdmin,
}

impl From<sqlx::Error> for KeyError {
    fn from(e: sqlx::Error) -> Self {
        KeyError::Store(e.into())
    }
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

async fn hash_secret(secret: String) -> Result<String, KeyError> {
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

async fn issue(spec: &KeySpec, is_owner: bool) -> Result<(KeyRecord, String, String), KeyError> {
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

async fn insert(
    store: &Store,
    r: &KeyRecord,
    hash: &str,
    only_if_no_owner: bool,
) -> Result<bool, KeyError> {
    let mut conn = store.write_connection().await?;
    let sql = if only_if_no_owner {
        "INSERT INTO api_keys (id, name, secret_hash, projects, permissions, created_at, expires_at, is_owner) \
         SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM api_keys WHERE is_owner = 1)"
    } else {
        "INSERT INTO api_keys (id, name, secret_hash, projects, permissions, created_at, expires_at, is_owner) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    };
    let done = sqlx::query(sql)
        .bind(&r.id)
        .bind(&r.name)
        .bind(hash)
        .bind(serde_json::to_string(&r.projects).unwrap_or_default())
        .bind(serde_json::to_string(&r.permissions).unwrap_or_default())
        .bind(&r.created_at)
        .bind(&r.expires_at)
        .bind(r.is_owner)
        .execute(&mut conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Creates the owner key (every project, `admin:all`) if none exists yet.
pub async fn bootstrap(store: &Store, name: &str) -> Result<IssuedKey, KeyError> {
    let spec = KeySpec {
        name: name.into(),
        projects: vec!["*".into()],
        permissions: vec![Permission::AdminAll],
        expires_at: None,
    };
    let (record, key, hash) = issue(&spec, true).await?;
    if !insert(store, &record, &hash, true).await? {
        return Err(KeyError::AlreadyBootstrapped);
    }
    Ok(IssuedKey { record, key })
}

pub async fn create(store: &Store, spec: &KeySpec) -> Result<IssuedKey, KeyError> {
    let (record, key, hash) = issue(spec, false).await?;
    insert(store, &record, &hash, false).await?;
    Ok(IssuedKey { record, key })
}

fn record(row: &sqlx::sqlite::SqliteRow) -> Result<KeyRecord, sqlx::Error> {
    let list = |col: &str| -> Result<String, sqlx::Error> { row.try_get(col) };
    Ok(KeyRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        projects: serde_json::from_str(&list("projects")?).unwrap_or_default(),
        permissions: serde_json::from_str(&list("permissions")?).unwrap_or_default(),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        rotated_at: row.try_get("rotated_at")?,
        revoked_at: row.try_get("revoked_at")?,
        is_owner: row.try_get("is_owner")?,
    })
}

/// A key and its secret's hash, for verification.
pub async fn find(pool: &SqlitePool, id: &str) -> Result<Option<(KeyRecord, String)>, KeyError> {
    let row = sqlx::query("SELECT * FROM api_keys WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    match row {
        Some(row) => Ok(Some((record(&row)?, row.try_get("secret_hash")?))),
        None => Ok(None),
    }
}

pub async fn list(pool: &SqlitePool) -> Result<Vec<KeyRecord>, KeyError> {
    let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id")
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(record).collect::<Result<_, _>>()?)
}

/// New secret for an existing, unrevoked key; the old secret stops working at once.
pub async fn rotate(store: &Store, id: &str) -> Result<IssuedKey, KeyError> {
    let (mut rec, _) = find(&store.readers, id).await?.ok_or(KeyError::NotFound)?;
    if rec.revoked_at.is_some() {
        return Err(KeyError::Invalid(
            "the key is revoked; create a new one".into(),
        ));
    }
    let secret = random_alnum(SECRET_LEN)?;
    let hash = hash_secret(secret.clone()).await?;
    let now = format_time(&Utc::now());
    let mut conn = store.write_connection().await?;
    let done = sqlx::query(
        "UPDATE api_keys SET secret_hash = ?, rotated_at = ? WHERE id = ? AND revoked_at IS NULL",
    )
    .bind(&hash)
    .bind(&now)
    .bind(id)
    .execute(&mut conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(KeyError::NotFound);
    }
    rec.rotated_at = Some(now);
    Ok(IssuedKey {
        key: format!("{PREFIX}{}_{secret}", rec.id),
        record: rec,
    })
}

/// Revokes a key for good. The last active `admin:all` key cannot be revoked: nobody could
/// administer the installation afterwards (except from the shell).
pub async fn revoke(store: &Store, id: &str) -> Result<KeyRecord, KeyError> {
    let now = format_time(&Utc::now());
    let mut conn = store.write_connection().await?;
    // One statement, so two concurrent revocations cannot remove the last two admins.
    let done = sqlx::query(
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?1) WHERE id = ?2 \
         AND (permissions NOT LIKE '%\"admin:all\"%' OR revoked_at IS NOT NULL OR EXISTS ( \
           SELECT 1 FROM api_keys other WHERE other.id <> ?2 AND other.revoked_at IS NULL \
           AND (other.expires_at IS NULL OR other.expires_at > ?1) \
           AND other.permissions LIKE '%\"admin:all\"%'))",
    )
    .bind(&now)
    .bind(id)
    .execute(&mut conn)
    .await?;
    let (rec, _) = find(&store.readers, id).await?.ok_or(KeyError::NotFound)?;
    if done.rows_affected() == 0 {
        return Err(KeyError::LastAdmin);
    }
    Ok(rec)
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
