//! Storing dashboard sign-ins: open, find, pick a project, end, and sweep expired ones.
//!
//! Only the SHA-256 of a session id is stored (the caller hashes); what makes a session valid
//! (its key still valid and not rotated since) is decided by the dashboard. Sessions are rare
//! writes on their own short-lived connection, like keys.

use sea_query::{Expr, ExprTrait, Query};

use super::schema::DashboardSessions as S;
use super::{Store, StoreError};

/// One stored sign-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub key_id: String,
    pub key_rotated_at: Option<String>,
    pub project: Option<String>,
    pub created_at: String,
    pub expires_at: String,
    pub ended_at: Option<String>,
}

pub async fn open(store: &Store, id_hash: &str, row: &SessionRow) -> Result<(), StoreError> {
    let q = Query::insert()
        .into_table(S::Table)
        .columns([
            S::IdHash,
            S::KeyId,
            S::KeyRotatedAt,
            S::Project,
            S::CreatedAt,
            S::ExpiresAt,
        ])
        .values_panic([
            id_hash.into(),
            row.key_id.clone().into(),
            row.key_rotated_at.clone().into(),
            row.project.clone().into(),
            row.created_at.clone().into(),
            row.expires_at.clone().into(),
        ])
        .to_owned();
    let mut conn = store.write_connection().await?;
    let done = conn.exec().execute(&q).await;
    conn.close().await;
    done.map(|_| ())
}

pub async fn find(store: &Store, id_hash: &str) -> Result<Option<SessionRow>, StoreError> {
    let q = Query::select()
        .columns([
            S::KeyId,
            S::KeyRotatedAt,
            S::Project,
            S::CreatedAt,
            S::ExpiresAt,
            S::EndedAt,
        ])
        .from(S::Table)
        .and_where(Expr::col(S::IdHash).eq(id_hash))
        .to_owned();
    let Some(row) = store.readers().fetch_optional(&q).await? else {
        return Ok(None);
    };
    Ok(Some(SessionRow {
        key_id: row.text("key_id")?,
        key_rotated_at: row.opt_text("key_rotated_at")?,
        project: row.opt_text("project")?,
        created_at: row.text("created_at")?,
        expires_at: row.text("expires_at")?,
        ended_at: row.opt_text("ended_at")?,
    }))
}

async fn update(store: &Store, q: sea_query::UpdateStatement) -> Result<bool, StoreError> {
    let mut conn = store.write_connection().await?;
    let done = conn.exec().execute(&q).await;
    conn.close().await;
    Ok(done? == 1)
}

/// Records the project picked in the header bar.
pub async fn set_project(store: &Store, id_hash: &str, project: &str) -> Result<bool, StoreError> {
    let q = Query::update()
        .table(S::Table)
        .value(S::Project, project)
        .and_where(Expr::col(S::IdHash).eq(id_hash))
        .and_where(Expr::col(S::EndedAt).is_null())
        .to_owned();
    update(store, q).await
}

/// Signs out: the session is refused from now on, whatever its cookie says.
pub async fn end(store: &Store, id_hash: &str, at: &str) -> Result<bool, StoreError> {
    let q = Query::update()
        .table(S::Table)
        .value(S::EndedAt, at)
        .and_where(Expr::col(S::IdHash).eq(id_hash))
        .and_where(Expr::col(S::EndedAt).is_null())
        .to_owned();
    update(store, q).await
}

/// Deletes sessions that expired before `now`; returns how many.
pub async fn sweep(store: &Store, now: &str) -> Result<u64, StoreError> {
    let q = Query::delete()
        .from_table(S::Table)
        .and_where(Expr::col(S::ExpiresAt).lt(now))
        .to_owned();
    let mut conn = store.write_connection().await?;
    let done = conn.exec().execute(&q).await;
    conn.close().await;
    done
}
