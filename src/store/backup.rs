//! Backups and restores that can be trusted: a consistent snapshot of the live database in one
//! file, checked before it is called a backup, and a restore that checks again.
//!
//! SQLite: `VACUUM INTO` writes a consistent copy of the live database (never a `cp` of a file
//! whose WAL holds committed transactions), then the copy's `PRAGMA integrity_check` and its
//! chain (`verify`) must pass. The head checkpoint is inside the database, so that one file is
//! all a restore needs. Postgres: `pg_dump --format=custom`, checked by restoring it into a
//! scratch database and verifying the chain there.
//!
//! A restore replaces the database only after the backup verified, removes stale `-wal`/`-shm`
//! files, and refuses while a server runs on the database (it holds the database's lock file).

use std::path::{Path, PathBuf};
use std::process::Command;

use sqlx::{ConnectOptions, Connection};

use super::chain::ChainKey;
use super::checkpoint::{Checkpoint, CheckpointFile};
use super::verify::{self, VerifyReport};
use super::{Location, PoolSizes, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Failed(String),
    #[error("the backup does not verify: {0}")]
    Tampered(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a checked backup or restore holds.
#[derive(Debug, Clone)]
pub struct Checked {
    pub records: u64,
    pub head_seq: i64,
    pub head_link: String,
}

impl From<VerifyReport> for Checked {
    fn from(r: VerifyReport) -> Self {
        Checked {
            records: r.records,
            head_seq: r.head_seq,
            head_link: r.head_link,
        }
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> BackupError {
    BackupError::Failed(format!("{what}: {e}"))
}

/// Opens `location` and verifies its chain (and audit log).
async fn verify_at(location: Location, key: &ChainKey) -> Result<Checked, BackupError> {
    let store = Store::open(
        location,
        PoolSizes {
            readers: 1,
            jobs: 1,
            acquire_timeout: std::time::Duration::from_secs(10),
        },
    )
    .await?;
    let mut conn = store.read_connection().await?;
    let result = verify::verify(&mut conn, key, None, |_| {}).await;
    conn.close().await;
    store.close().await;
    match result {
        Ok(report) => Ok(report.into()),
        Err(verify::VerifyError::Fault(f)) => Err(BackupError::Tampered(f.to_string())),
        Err(verify::VerifyError::Store(e)) => Err(e.into()),
    }
}

/// Writes a checked backup of `store` to `dest` (a file).
pub async fn backup(store: &Store, key: &ChainKey, dest: &Path) -> Result<Checked, BackupError> {
    if dest.exists() {
        return Err(BackupError::Failed(format!(
            "{} exists; a backup never overwrites a file",
            dest.display()
        )));
    }
    match store.location() {
        Location::Sqlite(path) => {
            let tmp = dest.with_extension("partial");
            let _ = std::fs::remove_file(&tmp);
            let mut conn = super::base_options(path)
                .connect()
                .await
                .map_err(|e| failed("opening the database", e))?;
            sqlx::query("VACUUM INTO ?")
                .bind(tmp.display().to_string())
                .execute(&mut conn)
                .await
                .map_err(|e| failed("VACUUM INTO", e))?;
            conn.close().await.map_err(|e| failed("closing", e))?;
            let mut copy = super::base_options(&tmp)
                .connect()
                .await
                .map_err(|e| failed("opening the copy", e))?;
            let check: String = sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_one(&mut copy)
                .await
                .map_err(|e| failed("integrity_check", e))?;
            // A restored file should open in WAL mode like the original; folding everything
            // into the main file keeps the backup one self-contained file.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut copy)
                .await
                .map_err(|e| failed("checkpoint of the copy", e))?;
            copy.close()
                .await
                .map_err(|e| failed("closing the copy", e))?;
            if check != "ok" {
                let _ = std::fs::remove_file(&tmp);
                return Err(BackupError::Failed(format!("integrity_check: {check}")));
            }
            let checked = match verify_at(Location::Sqlite(tmp.clone()), key).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    return Err(e);
                }
            };
            for side in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{side}", tmp.display()));
            }
            std::fs::rename(&tmp, dest).map_err(|e| failed("moving the backup in place", e))?;
            Ok(checked)
        }
        Location::Postgres {
            options,
            describe,
            url,
        } => {
            let out = pg_tool(Command::new("pg_dump"), url)
                .args(["--format=custom", "--no-owner", "--file"])
                .arg(dest)
                .output()
                .map_err(|e| failed("running pg_dump (install postgresql-client)", e))?;
            if !out.status.success() {
                return Err(BackupError::Failed(format!(
                    "pg_dump of {describe} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            // The check: restore into a scratch database and verify the chain there.
            let scratch = format!(
                "{}_backup_check_{}",
                options.get_database().unwrap_or("audittrail"),
                std::process::id()
            );
            let checked = check_pg_dump(options, url, &scratch, dest, key).await;
            if checked.is_err() {
                let _ = std::fs::remove_file(dest);
            }
            checked
        }
    }
}

/// A Postgres command-line tool connected to the database of `url`: the URL without its
/// password is the `--dbname` argument, the password goes into the child's `PGPASSWORD`, so
/// it never shows in a process listing.
fn pg_tool(mut cmd: Command, url: &str) -> Command {
    let (bare, password) = split_password(url);
    cmd.arg(format!("--dbname={bare}"));
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    cmd
}

/// `url` without the password of its user info, and the password (percent-decoded).
fn split_password(url: &str) -> (String, Option<String>) {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return (url.to_owned(), None);
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.find('@') else {
        return (url.to_owned(), None);
    };
    let userinfo = &rest[..at];
    let Some((user, pass)) = userinfo.split_once(':') else {
        return (url.to_owned(), None);
    };
    let mut decoded = Vec::new();
    let bytes = pass.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = pass
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            decoded.push(v);
            i += 3;
            continue;
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    (
        format!("{}{user}{}", &url[..scheme_end], &rest[at..]),
        Some(String::from_utf8_lossy(&decoded).into_owned()),
    )
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..path_start]);
    if !query.is_empty() {
        out.push('?');
        out.push_str(query);
    }
    out
}

async fn check_pg_dump(
    options: &sqlx::postgres::PgConnectOptions,
    url: &str,
    scratch: &str,
    dump: &Path,
    key: &ChainKey,
) -> Result<Checked, BackupError> {
    let admin = options.clone().database("postgres");
    let mut conn = admin
        .connect()
        .await
        .map_err(|e| failed("connecting to create the check database", e))?;
    let create = format!("CREATE DATABASE \"{scratch}\"");
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(&mut conn)
        .await
        .map_err(|e| failed("creating the check database", e))?;
    let target = options.clone().database(scratch);
    let target_url = with_database(url, scratch);
    let result = async {
        let out = pg_tool(Command::new("pg_restore"), &target_url)
            .args(["--no-owner", "--exit-on-error"])
            .arg(dump)
            .output()
            .map_err(|e| failed("running pg_restore", e))?;
        if !out.status.success() {
            return Err(BackupError::Failed(format!(
                "the dump does not restore: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let describe = format!("scratch database {scratch}");
        verify_at(
            Location::Postgres {
                options: Box::new(target.clone()),
                describe,
                url: target_url.clone(),
            },
            key,
        )
        .await
    }
    .await;
    let drop = format!("DROP DATABASE IF EXISTS \"{scratch}\" WITH (FORCE)");
    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    result
}

/// Restores the checked backup `src` into the configured database (SQLite: replaces the file;
/// Postgres: into an empty database) and verifies the result.
pub async fn restore(
    location: &Location,
    key: &ChainKey,
    src: &Path,
) -> Result<Checked, BackupError> {
    match location {
        Location::Sqlite(path) => {
            let lock = ServerLock::path_for(path);
            let _held = ServerLock::take(&lock).map_err(|_| {
                BackupError::Failed(
                    "a server is running on this database; stop it before restoring".into(),
                )
            })?;
            // The backup first: nothing is replaced by a backup that does not verify.
            let staged = path.with_extension("restoring");
            let _ = std::fs::remove_file(&staged);
            std::fs::copy(src, &staged).map_err(|e| failed("copying the backup", e))?;
            let expected = verify_at(Location::Sqlite(staged.clone()), key).await?;
            for side in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{side}", staged.display()));
                let _ = std::fs::remove_file(format!("{}{side}", path.display()));
            }
            std::fs::File::open(&staged)
                .and_then(|f| f.sync_all())
                .map_err(|e| failed("syncing the restored file", e))?;
            std::fs::rename(&staged, path).map_err(|e| failed("replacing the database", e))?;
            // The checkpoint file beside the database follows the restored head.
            let link = expected.head_link.clone();
            CheckpointFile::beside(path)
                .write(&Checkpoint {
                    seq: expected.head_seq,
                    link,
                })
                .map_err(BackupError::Store)?;
            let restored = verify_at(location.clone(), key).await?;
            if restored.head_link != expected.head_link || restored.records != expected.records {
                return Err(BackupError::Failed(
                    "the restored database differs from the backup".into(),
                ));
            }
            Ok(restored)
        }
        Location::Postgres { url, .. } => {
            let out = pg_tool(Command::new("pg_restore"), url)
                .args(["--no-owner", "--exit-on-error", "--single-transaction"])
                .arg(src)
                .output()
                .map_err(|e| failed("running pg_restore (install postgresql-client)", e))?;
            if !out.status.success() {
                return Err(BackupError::Failed(format!(
                    "pg_restore failed (restore into an empty database): {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            verify_at(location.clone(), key).await
        }
    }
}

/// The lock a running server holds on its SQLite database (`<db>.lock`), so that a second
/// server, or a restore, cannot work on the same file at the same time.
pub struct ServerLock {
    _file: std::fs::File,
}

impl ServerLock {
    pub fn path_for(db: &Path) -> PathBuf {
        PathBuf::from(format!("{}.lock", db.display()))
    }

    /// Takes the lock, or fails at once if another process holds it.
    pub fn take(path: &Path) -> std::io::Result<ServerLock> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        file.try_lock().map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::WouldBlock, "held by another process")
        })?;
        Ok(ServerLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_urls_never_carry_the_password() {
        let (bare, pw) = split_password("postgres://app:s%40cret@db:5432/audit?sslmode=require");
        assert_eq!(bare, "postgres://app@db:5432/audit?sslmode=require");
        assert_eq!(pw.as_deref(), Some("s@cret"));
        assert_eq!(split_password("postgres://app@db/audit").1, None);
        assert_eq!(
            with_database("postgres://app:pw@db:5432/audit?sslmode=require", "x"),
            "postgres://app:pw@db:5432/x?sslmode=require"
        );
    }
}
