//! Storing API keys: bootstrap (once), create, find, list, rotate, revoke.
//!
//! Key administration is rare, so it writes on its own short-lived connection (on SQLite the
//! busy timeout serialises it with the event writer). What keys may do to keys is decided in
//! `auth::policy`; this module only stores.

use sea_query::{Expr, ExprTrait, Order, Query};

use super::db::{Raw, Row};
use super::schema::ApiKeys;
use super::{Store, StoreError};
use crate::auth::KeyDirectory;
use crate::auth::keys::{self, IssuedKey, KeyError, KeyRecord, KeySpec};
use crate::event::format_time;
use futures_util::future::BoxFuture;

impl From<StoreError> for KeyError {
    fn from(e: StoreError) -> Self {
        KeyError::Store(e.to_string())
    }
}

const COLUMNS: [ApiKeys; 10] = [
    ApiKeys::Id,
    ApiKeys::Name,
    ApiKeys::SecretHash,
    ApiKeys::Projects,
    ApiKeys::Permissions,
    ApiKeys::CreatedAt,
    ApiKeys::ExpiresAt,
    ApiKeys::RotatedAt,
    ApiKeys::RevokedAt,
    ApiKeys::IsOwner,
];

fn record(row: &Row) -> Result<KeyRecord, StoreError> {
    Ok(KeyRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        projects: serde_json::from_str(&row.text("projects")?).unwrap_or_default(),
        permissions: serde_json::from_str(&row.text("permissions")?).unwrap_or_default(),
        created_at: row.text("created_at")?,
        expires_at: row.opt_text("expires_at")?,
        rotated_at: row.opt_text("rotated_at")?,
        revoked_at: row.opt_text("revoked_at")?,
        is_owner: row.flag("is_owner")?,
    })
}

/// Inserts a new key; with `only_if_no_owner`, only while no owner key exists.
async fn insert(
    store: &Store,
    r: &KeyRecord,
    hash: &str,
    only_if_no_owner: bool,
) -> Result<bool, StoreError> {
    let mut conn = store.write_connection().await?;
    let values: Vec<sea_query::Value> = vec![
        r.id.clone().into(),
        r.name.clone().into(),
        hash.to_owned().into(),
        serde_json::to_string(&r.projects)
            .unwrap_or_default()
            .into(),
        serde_json::to_string(&r.permissions)
            .unwrap_or_default()
            .into(),
        r.created_at.clone().into(),
        r.expires_at.clone().into(),
        r.is_owner.into(),
    ];
    let sql = if only_if_no_owner {
        "INSERT INTO api_keys (id, name, secret_hash, projects, permissions, created_at, expires_at, is_owner) \
         SELECT ?, ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM api_keys WHERE is_owner)"
    } else {
        "INSERT INTO api_keys (id, name, secret_hash, projects, permissions, created_at, expires_at, is_owner) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    };
    let done = conn.exec().execute(&Raw::new(sql, values)).await;
    conn.close().await;
    match done {
        Ok(n) => Ok(n == 1),
        // The one-owner index caught a concurrent bootstrap.
        Err(StoreError::Db(sqlx::Error::Database(e)))
            if only_if_no_owner && e.is_unique_violation() =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Creates the owner key (every project, `admin:all`) if none exists yet.
pub async fn bootstrap(store: &Store, name: &str) -> Result<IssuedKey, KeyError> {
    let (record, key, hash) = keys::issue(&keys::owner_spec(name), true).await?;
    if !insert(store, &record, &hash, true).await? {
        return Err(KeyError::AlreadyBootstrapped);
    }
    Ok(IssuedKey { record, key })
}

pub async fn create(store: &Store, spec: &KeySpec) -> Result<IssuedKey, KeyError> {
    let (record, key, hash) = keys::issue(spec, false).await?;
    insert(store, &record, &hash, false).await?;
    Ok(IssuedKey { record, key })
}

/// A key and its secret's hash, for verification.
pub async fn find(store: &Store, id: &str) -> Result<Option<(KeyRecord, String)>, StoreError> {
    let q = Query::select()
        .columns(COLUMNS)
        .from(ApiKeys::Table)
        .and_where(Expr::col(ApiKeys::Id).eq(id))
        .to_owned();
    match store.readers().fetch_optional(&q).await? {
        Some(row) => Ok(Some((record(&row)?, row.text("secret_hash")?))),
        None => Ok(None),
    }
}

pub async fn list(store: &Store) -> Result<Vec<KeyRecord>, StoreError> {
    let q = Query::select()
        .columns(COLUMNS)
        .from(ApiKeys::Table)
        .order_by(ApiKeys::CreatedAt, Order::Asc)
        .order_by(ApiKeys::Id, Order::Asc)
        .to_owned();
    store
        .readers()
        .fetch_all(&q)
        .await?
        .iter()
        .map(record)
        .collect()
}

/// New secret for an existing, unrevoked key; the old secret stops working at once.
pub async fn rotate(store: &Store, id: &str) -> Result<IssuedKey, KeyError> {
    let (mut rec, _) = find(store, id).await?.ok_or(KeyError::NotFound)?;
    if rec.revoked_at.is_some() {
        return Err(KeyError::Invalid(
            "the key is revoked; create a new one".into(),
        ));
    }
    let (token, hash) = keys::new_secret(&rec.id).await?;
    let now = format_time(&chrono::Utc::now());
    let q = Query::update()
        .table(ApiKeys::Table)
        .value(ApiKeys::SecretHash, hash)
        .value(ApiKeys::RotatedAt, now.clone())
        .and_where(Expr::col(ApiKeys::Id).eq(id))
        .and_where(Expr::col(ApiKeys::RevokedAt).is_null())
        .to_owned();
    let mut conn = store.write_connection().await?;
    let done = conn.exec().execute(&q).await;
    conn.close().await;
    if done? != 1 {
        return Err(KeyError::NotFound);
    }
    rec.rotated_at = Some(now);
    Ok(IssuedKey {
        key: token,
        record: rec,
    })
}

/// Revokes a key for good. The last active `admin:all` key cannot be revoked: nobody could
/// administer the installation afterwards (except from the shell).
pub async fn revoke(store: &Store, id: &str) -> Result<KeyRecord, KeyError> {
    let now = format_time(&chrono::Utc::now());
    // One statement, so two concurrent revocations cannot remove the last two admins.
    let sql = "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? \
         AND (permissions NOT LIKE '%\"admin:all\"%' OR revoked_at IS NOT NULL OR EXISTS ( \
           SELECT 1 FROM api_keys other WHERE other.id <> ? AND other.revoked_at IS NULL \
           AND (other.expires_at IS NULL OR other.expires_at > ?) \
           AND other.permissions LIKE '%\"admin:all\"%'))";
    let values: [sea_query::Value; 4] = [now.clone().into(), id.into(), id.into(), now.into()];
    let mut conn = store.write_connection().await?;
    let done = conn.exec().execute(&Raw::new(sql, values)).await;
    conn.close().await;
    let done = done?;
    let (rec, _) = find(store, id).await?.ok_or(KeyError::NotFound)?;
    if done == 0 {
        return Err(KeyError::LastAdmin);
    }
    Ok(rec)
}

/// A cheap fingerprint of the key table that changes whenever a key is added, rotated or
/// revoked (also by the CLI, behind the server's back): the authenticator clears its cache
/// when it moves.
pub async fn fingerprint(store: &Store) -> Result<String, StoreError> {
    let row = store
        .readers()
        .fetch_optional(&Raw::new(
            "SELECT COUNT(*) AS n, MAX(rotated_at) AS rotated, MAX(revoked_at) AS revoked FROM api_keys",
            [],
        ))
        .await?;
    match row {
        Some(r) => Ok(format!(
            "{}/{}/{}",
            r.int("n")?,
            r.opt_text("rotated")?.unwrap_or_default(),
            r.opt_text("revoked")?.unwrap_or_default()
        )),
        None => Ok(String::new()),
    }
}

/// The authenticator reads keys through the store.
impl KeyDirectory for Store {
    fn find<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(KeyRecord, String)>, String>> {
        Box::pin(async move { find(self, id).await.map_err(|e| e.to_string()) })
    }

    fn fingerprint(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move { fingerprint(self).await.map_err(|e| e.to_string()) })
    }
}
