//! The *append* stage: the event log and its read models, on SQLite or Postgres.
//!
//! Input: [`RedactedEvent`](crate::redact::event::RedactedEvent)s (the only event type the
//! store accepts), evaluated by the pipeline and handed to the [`writer`] as write operations.
//! Output: durable log records, chained by HMAC links ([`chain`]), with the trace summaries
//! ([`projection`]) and rule outcomes ([`violations`]) updated in the same transaction.
//!
//! This is the only module that names a database. One [`Store`] runs on the backend
//! `DATABASE_URL` picked ([`db::Backend`]); every query is written once, built with sea-query
//! for the backend at hand ([`db`]), and table and column names live in [`schema`].
//!
//! Invariants:
//! - one writer task ([`writer`]) owns the only write connection and assigns log positions;
//!   on Postgres it holds an advisory lock, so a second server waits as a standby instead of
//!   forking the chain; a request is acknowledged only after its transaction committed;
//! - readers use a separate pool and never block the writer; background jobs have their own;
//! - the `events` table is append-only; projections can be dropped and rebuilt ([`replay`]).
//!
//! Failure policy: a failed commit fails every request of that group (nothing of it is
//! stored, the chain head does not move); the writer keeps running and reports itself
//! unhealthy until a commit succeeds again.

pub mod audit_log;
pub mod backup;
pub mod chain;
pub mod chain_state;
pub mod checkpoint;
pub mod copy;

pub mod db;
pub mod erase;
pub mod history;
pub mod keys;
pub mod personal;
pub mod projection;
pub mod query;
pub mod receipt;
pub mod record;
pub mod replay;
pub mod report;
pub mod schema;
pub mod sessions;
pub mod stream_progress;
pub mod sweep;
pub mod verify;
pub mod violations;
pub mod writer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection};

pub use db::Backend;
use db::{Conn, Pool, Raw};
pub use record::{PreparedEvent, WireEvent};
pub use writer::{AppendError, AppendOutcome, Committed, CommittedRecord, WriterHandle};

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
    #[error("{0}")]
    Connect(String),
    #[error("corrupt log record at seq {seq}: {reason}")]
    Corrupt { seq: i64, reason: String },
    #[error("checkpoint file {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    /// Cluster mode: a batch does not continue the stream position the log holds (an earlier
    /// message failed, or another worker wrote meanwhile); nothing of it was stored.
    #[error(
        "stream position: expected to continue from {stored}, the batch continues from {after}"
    )]
    OutOfOrder { stored: u64, after: u64 },
}

/// Where the log lives, resolved from `DATABASE_URL`.
#[derive(Clone)]
pub enum Location {
    /// The embedded SQLite file.
    Sqlite(PathBuf),
    /// A Postgres database; `describe` names host, port and database, never the password.
    Postgres {
        options: Box<PgConnectOptions>,
        describe: String,
        /// The URL as given (it may hold the password): for `pg_dump`/`pg_restore` only,
        /// passed through their environment, never printed.
        url: String,
    },
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Location {
    /// Parses a Postgres URL (`postgres://`, `postgresql://`, or SQLAlchemy's
    /// `postgresql+asyncpg://`), honouring libpq's `sslmode`.
    pub fn postgres(url: &str) -> Result<Location, String> {
        let url = match url.split_once("://") {
            Some((scheme, rest)) => {
                format!("{}://{rest}", scheme.split('+').next().unwrap_or(scheme))
            }
            None => url.to_owned(),
        };
        let options = PgConnectOptions::from_str(&url).map_err(|e| {
            // The parser's message may quote the URL, which holds the password: never show it.
            let what = if url.contains("sslmode=") || e.to_string().contains("sslmode") {
                "unknown sslmode (use disable, allow, prefer, require, verify-ca or verify-full)"
            } else {
                "not a valid postgres:// URL"
            };
            format!("DATABASE_URL: {what}")
        })?;
        // libpq's default is `prefer`; sqlx agrees. Statements carry redacted bodies only, but
        // they are still kept out of the logs.
        let options = options.disable_statement_logging();
        let describe = format!(
            "postgres://{}@{}:{}/{}{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(options.get_username()),
            match options.get_ssl_mode() {
                PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => " (TLS)",
                _ => "",
            }
        );
        Ok(Location::Postgres {
            options: Box::new(options),
            describe,
            url,
        })
    }

    /// What to show operators: the file path, or user@host:port/database.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres { describe, .. } => describe.clone(),
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Location::Sqlite(_) => Backend::Sqlite,
            Location::Postgres { .. } => Backend::Postgres,
        }
    }
}

/// How many connections the store keeps.
#[derive(Debug, Clone, Copy)]
pub struct PoolSizes {
    /// Reader connections (the request path).
    pub readers: u32,
    /// Connections for background jobs, apart from the readers.
    pub jobs: u32,
    /// How long to wait for a connection (also the connect timeout).
    pub acquire_timeout: Duration,
}

/// An opened store: its pools plus what is needed to open the writer's connections.
#[derive(Clone)]
pub struct Store {
    readers: Pool,
    /// Connections for background jobs (ablation, reports): their own budget, so long jobs
    /// never take the request path's readers.
    jobs: Pool,
    location: Location,
    timeout: Duration,
}

impl Store {
    /// Opens (creating if needed) the database, runs migrations and opens the pools.
    pub async fn open(location: Location, sizes: PoolSizes) -> Result<Self, StoreError> {
        let timeout = sizes.acquire_timeout;
        let (readers, jobs) = match &location {
            Location::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                        path: dir.to_owned(),
                        source,
                    })?;
                }
                let mut conn = write_options(path).connect().await?;
                sqlx::migrate!("migrations/sqlite").run(&mut conn).await?;
                conn.close().await?;
                let readers = SqlitePoolOptions::new()
                    .max_connections(sizes.readers.max(1))
                    .acquire_timeout(timeout)
                    .connect_with(read_options(path))
                    .await?;
                // Opened lazily: most installations rarely run a job.
                let jobs = SqlitePoolOptions::new()
                    .max_connections(sizes.jobs.max(1))
                    .min_connections(0)
                    // A burst of jobs gives its connections (and their page caches) back soon.
                    .idle_timeout(Duration::from_secs(30))
                    .acquire_timeout(Duration::from_secs(600))
                    .connect_lazy_with(read_options(path));
                (Pool::Sqlite(readers), Pool::Sqlite(jobs))
            }
            Location::Postgres {
                options, describe, ..
            } => {
                let mut conn = connect_pg(options, describe, timeout).await?;
                // sqlx's migrator holds an advisory lock while it runs, so two nodes starting
                // together apply each migration once.
                sqlx::migrate!("migrations/postgres").run(&mut conn).await?;
                conn.close().await?;
                let readers = PgPoolOptions::new()
                    .max_connections(sizes.readers.max(1))
                    .acquire_timeout(timeout)
                    .connect_with((**options).clone())
                    .await
                    .map_err(|e| StoreError::Connect(pg_error(describe, &e)))?;
                let jobs = PgPoolOptions::new()
                    .max_connections(sizes.jobs.max(1))
                    .min_connections(0)
                    .idle_timeout(Duration::from_secs(30))
                    .acquire_timeout(Duration::from_secs(600))
                    .connect_lazy_with((**options).clone());
                (Pool::Postgres(readers), Pool::Postgres(jobs))
            }
        };
        Ok(Store {
            readers,
            jobs,
            location,
            timeout,
        })
    }

    pub fn backend(&self) -> Backend {
        self.location.backend()
    }

    /// The database as operators should see it (never a password).
    pub fn describe(&self) -> String {
        self.location.describe()
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The readers' pool (store modules only).
    pub(crate) fn readers(&self) -> &Pool {
        &self.readers
    }

    /// A new write connection. Only the writer task (and offline commands such as `replay`)
    /// call this; the server holds exactly one.
    pub async fn write_connection(&self) -> Result<Conn, StoreError> {
        Ok(match &self.location {
            Location::Sqlite(path) => Conn::Sqlite(write_options(path).connect().await?),
            Location::Postgres {
                options, describe, ..
            } => Conn::Postgres(connect_pg(options, describe, self.timeout).await?),
        })
    }

    /// A dedicated read connection, outside the readers' pool.
    pub async fn read_connection(&self) -> Result<Conn, StoreError> {
        Ok(match &self.location {
            Location::Sqlite(path) => Conn::Sqlite(read_options(path).connect().await?),
            Location::Postgres {
                options, describe, ..
            } => Conn::Postgres(connect_pg(options, describe, self.timeout).await?),
        })
    }

    /// A connection from the jobs' own budget; waits while every one is in use.
    pub async fn job_connection(&self) -> Result<Conn, StoreError> {
        self.jobs.acquire().await
    }

    /// A connection from the readers' pool.
    pub async fn reader(&self) -> Result<Conn, StoreError> {
        self.readers.acquire().await
    }

    /// SQLite only: copies the WAL back into the database file in the background (PASSIVE:
    /// never blocks the writer or readers) every 25 ms while the WAL holds more than ~1 MB, so
    /// the writer's own catch-up pass (see `writer::bound_wal`) finds almost nothing left.
    pub fn spawn_checkpointer(&self) -> Option<tokio::task::JoinHandle<()>> {
        let Location::Sqlite(path) = &self.location else {
            return None;
        };
        let path = path.clone();
        Some(tokio::spawn(async move {
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
        }))
    }

    /// The SQLite database's `-wal` file (none on Postgres).
    pub fn wal_path(&self) -> Option<PathBuf> {
        match &self.location {
            Location::Sqlite(path) => Some(wal_path(path)),
            Location::Postgres { .. } => None,
        }
    }

    /// The SQLite database file (none on Postgres).
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.location {
            Location::Sqlite(path) => Some(path),
            Location::Postgres { .. } => None,
        }
    }

    /// Closes the pools; on SQLite also folds the WAL back into the database file, so that a
    /// stopped server leaves one self-contained file (SQLite removes `-wal` and `-shm` when
    /// the last connection closes). Call it after the writer has stopped.
    pub async fn close(&self) {
        self.readers.close().await;
        self.jobs.close().await;
        if let Location::Sqlite(path) = &self.location {
            match write_options(path).connect().await {
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
    }

    /// Cheap liveness probe of the read side.
    pub async fn ping(&self) -> bool {
        self.readers
            .execute(&Raw::new("SELECT 1", []))
            .await
            .is_ok()
    }

    /// Reader pool figures for `/metrics`: (open, idle, max).
    pub fn pool_gauges(&self) -> (u32, usize, u32) {
        let (open, idle) = self.readers.sizes();
        (open, idle, self.readers.max_connections())
    }

    /// The SQLite journal mode of the live database (`wal`), for checks; `None` on Postgres.
    pub async fn journal_mode(&self) -> Result<Option<String>, StoreError> {
        if self.backend() != Backend::Sqlite {
            return Ok(None);
        }
        let row = self
            .readers
            .fetch_optional(&Raw::new("PRAGMA journal_mode", []))
            .await?;
        Ok(row.map(|r| r.first_text()).transpose()?.flatten())
    }

    /// Number of records in the log, for progress bars.
    pub async fn count_records(&self) -> Result<u64, StoreError> {
        let row = self
            .readers
            .fetch_optional(&Raw::new("SELECT COUNT(*) FROM events", []))
            .await?;
        let n = row.map(|r| r.first_int()).transpose()?.flatten();
        Ok(u64::try_from(n.unwrap_or(0)).unwrap_or(0))
    }
}

/// Connects to Postgres, turning failures into a start-up message that names host and
/// database but never the password.
async fn connect_pg(
    options: &PgConnectOptions,
    describe: &str,
    timeout: Duration,
) -> Result<sqlx::PgConnection, StoreError> {
    match tokio::time::timeout(timeout, options.connect()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(StoreError::Connect(pg_error(describe, &e))),
        Err(_) => Err(StoreError::Connect(format!(
            "cannot reach PostgreSQL at {describe}: no answer within {} s",
            timeout.as_secs()
        ))),
    }
}

/// A connection failure in words, from the error's kind and SQLSTATE only.
fn pg_error(describe: &str, e: &sqlx::Error) -> String {
    let why = match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") | Some("28000") => {
                "authentication failed (check the user and password)".to_owned()
            }
            Some("3D000") => {
                "the database does not exist (create it first, e.g. `createdb`)".to_owned()
            }
            Some(code) => format!("the server refused the connection (SQLSTATE {code})"),
            None => "the server refused the connection".to_owned(),
        },
        sqlx::Error::Io(io) => format!("unreachable ({})", io.kind()),
        sqlx::Error::Tls(_) => "the TLS handshake failed (check sslmode)".to_owned(),
        sqlx::Error::PoolTimedOut => "no connection within the timeout".to_owned(),
        _ => "the connection failed".to_owned(),
    };
    format!("cannot connect to PostgreSQL at {describe}: {why}")
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

pub(crate) fn base_options(path: &Path) -> SqliteConnectOptions {
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
        // 16 MiB: the pages appends touch (the right edges of the log and its indexes) stay
        // cached; the OS page cache holds the rest. Every connection has its own cache, so
        // these sizes are what bound the process's memory as the log grows.
        .pragma("cache_size", "-16384")
        // Freed cells are zeroed, so an erased body leaves no bytes behind in the file.
        .pragma("secure_delete", "ON")
}

fn read_options(path: &Path) -> SqliteConnectOptions {
    base_options(path)
        .read_only(true)
        .pragma("cache_size", "-8192")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_in_every_form_select_postgres_and_never_show_the_password() {
        for url in [
            "postgres://app:hunter2@db.example:5433/audit",
            "postgresql://app:hunter2@db.example:5433/audit?sslmode=require",
            "postgresql+asyncpg://app:hunter2@db.example:5433/audit",
        ] {
            let loc = Location::postgres(url).expect(url);
            assert_eq!(loc.backend(), Backend::Postgres);
            let d = loc.describe();
            assert!(d.starts_with("postgres://app@db.example:5433/audit"), "{d}");
            assert!(!d.contains("hunter2"), "{d}");
        }
        assert!(
            Location::postgres("postgres://u:p@h/db?sslmode=require")
                .unwrap()
                .describe()
                .ends_with("(TLS)")
        );
        let err = Location::postgres("postgres://u:hunter2@h/db?sslmode=bogus").unwrap_err();
        assert!(err.contains("sslmode") && !err.contains("hunter2"), "{err}");
    }
}
