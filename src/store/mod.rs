//! The *append* stage: the event log and its read models.
//!
//! Input: [`RedactedEvent`](crate::redact::event::RedactedEvent)s (the only event type the
//! store accepts) grouped into [`AppendRequest`]s. Output: durable log records, chained by
//! HMAC links ([`chain`]), with the trace summaries ([`projection`]) updated in the same
//! transaction.
//!
//! Invariants:
//! - one writer task ([`writer`]) owns the only write connection and assigns log positions;
//!   a request is acknowledged only after its transaction committed with `synchronous=FULL`;
//! - readers use a separate pool and never block the writer (WAL);
//! - the `events` table is append-only; projections can be dropped and rebuilt ([`replay`]).
//!
//! Failure policy: a failed commit fails every request of that group (nothing of it is
//! stored, the chain head does not move); the writer keeps running and reports itself
//! unhealthy until a commit succeeds again.

pub mod audit_log;
pub mod chain;
pub mod chain_state;
pub mod checkpoint;
pub mod history;
pub mod projection;
pub mod query;
pub mod receipt;
pub mod record;
pub mod replay;
pub mod schema;
pub mod verify;
pub mod violations;
pub mod writer;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection};

pub use record::PreparedEvent;
pub use writer::{AppendError, AppendOutcome, WriterHandle};

/// Errors of the store. Messages are for operators (logs); the API maps them to opaque 5xx.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt log record at seq {seq}: {reason}")]
    Corrupt { seq: i64, reason: String },
    #[error("checkpoint file {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
}

/// Where the embedded database lives.
#[derive(Debug, Clone)]
pub struct SqliteLocation {
    pub path: PathBuf,
}

/// An opened store: the readers' pool plus what is needed to start the one writer.
#[derive(Clone)]
pub struct Store {
    pub readers: SqlitePool,
    /// Connections for background jobs (ablation, reports): their own budget, so long jobs
    /// never take the request path's readers.
    jobs: SqlitePool,
    location: SqliteLocation,
}

impl Store {
    /// Opens (creating if needed) the database, runs migrations and opens the reader pool.
    pub async fn open(
        location: SqliteLocation,
        readers: u32,
        job_connections: u32,
    ) -> Result<Self, StoreError> {
        if let Some(dir) = location.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut conn = write_options(&location.path).connect().await?;
        migrate(&mut conn).await?;
        conn.close().await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(read_options(&location.path))
            .await?;
        // Opened lazily: most installations rarely run a job.
        let jobs = SqlitePoolOptions::new()
            .max_connections(job_connections.max(1))
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(600))
            .connect_lazy_with(read_options(&location.path));
        Ok(Store {
            readers,
            jobs,
            location,
        })
    }

    /// A connection from the jobs' own budget; waits while every one is in use.
    pub async fn job_connection(
        &self,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>, StoreError> {
        Ok(self.jobs.acquire().await?)
    }

    /// A new write connection. Only the writer task (and offline commands such as `replay`)
    /// call this; the server holds exactly one.
    pub async fn write_connection(&self) -> Result<SqliteConnection, StoreError> {
        Ok(write_options(&self.location.path).connect().await?)
    }

    /// A dedicated read-only connection, outside the readers' pool (the writer's evaluation
    /// stage holds one for duplicate checks and rebuilding running totals).
    pub async fn read_connection(&self) -> Result<SqliteConnection, StoreError> {
        Ok(read_options(&self.location.path).connect().await?)
    }

    /// Copies the WAL back into the database file in the background (PASSIVE: never blocks the
    /// writer or readers): every 25 ms while the WAL holds more than ~1 MB, so the writer's own
    /// catch-up pass (see `writer::bound_wal`) finds almost nothing left to copy.
    pub fn spawn_checkpointer(&self) -> tokio::task::JoinHandle<()> {
        let path = self.location.path.clone();
        tokio::spawn(async move {
            let mut conn = match base_options(&path)
                .synchronous(SqliteSynchronous::Full)
                .connect()
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot open the checkpoint connection; the WAL will grow until restart");
                    return;
                }
            };
            let wal = wal_path(&path);
            let mut tick = tokio::time::interval(Duration::from_millis(25));
            let mut last = std::time::Instant::now();
            loop {
                tick.tick().await;
                let big = std::fs::metadata(&wal)
                    .map(|m| m.len() > 1 << 20)
                    .unwrap_or(false);
                if !big && last.elapsed() < Duration::from_secs(1) {
                    continue;
                }
                last = std::time::Instant::now();
                match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                    .fetch_one(&mut conn)
                    .await
                {
                    Ok((busy, wal_pages, done)) => {
                        tracing::debug!(busy, wal_pages, done, "WAL checkpoint")
                    }
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; will retry"),
                }
            }
        })
    }

    pub fn wal_path(&self) -> PathBuf {
        wal_path(&self.location.path)
    }

    pub fn path(&self) -> &Path {
        &self.location.path
    }

    /// Closes the readers and folds the WAL back into the database file, so that a stopped
    /// server leaves one self-contained file (SQLite removes `-wal` and `-shm` when the last
    /// connection closes). Call it after the writer has stopped.
    pub async fn close(&self) {
        self.readers.close().await;
        self.jobs.close().await;
        match write_options(&self.location.path).connect().await {
            Ok(mut conn) => {
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&mut conn)
                    .await
                {
                    tracing::warn!(error = %e, "final WAL checkpoint failed; the -wal file stays beside the database");
                }
                let _ = conn.close().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the database for the final WAL checkpoint")
            }
        }
    }

    /// Cheap liveness probe of the read side.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.readers).await.is_ok()
    }
}

/// Parses a stored record body; a body that is not JSON is a corrupt record at `seq`.
pub fn parse_body(seq: i64, body: &str) -> Result<serde_json::Value, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        seq,
        reason: format!("body is not JSON: {e}"),
    })
}

fn wal_path(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", db.display()))
}

pub async fn migrate(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    sqlx::migrate!("migrations/sqlite").run(conn).await?;
    Ok(())
}

fn base_options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        // Statements carry redacted bodies; keep them out of logs entirely.
        .disable_statement_logging()
}

fn write_options(path: &Path) -> SqliteConnectOptions {
    // FULL: the WAL is fsynced at every commit, so an acknowledged event survives a power
    // cut, not only a process crash. Group commit amortises that fsync over many requests.
    base_options(path)
        .create_if_missing(true)
        .synchronous(SqliteSynchronous::Full)
        // Checkpoints run on their own connection (see `checkpointer`), not inside the
        // writer's COMMIT where they would stall every waiting request.
        .pragma("wal_autocheckpoint", "0")
        .pragma("journal_size_limit", "67108864")
        .pragma("temp_store", "memory")
        .pragma("cache_size", "-65536")
}

fn read_options(path: &Path) -> SqliteConnectOptions {
    base_options(path)
        .read_only(true)
        .pragma("cache_size", "-16384")
}
