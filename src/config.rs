//! Configuration: one struct, read once from the environment (or flags), validated once.
//!
//! Each field's doc is the operator's manual; the README's configuration table mirrors it.
//! Nothing else in the crate reads `std::env`. Secrets never appear in `Debug` output or logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The deployment guide's default secret; refused in production.
pub const DEFAULT_SECRET_KEY: &str = "dev-secret-key-change-in-production";

/// A secret string whose `Debug` shows nothing.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

fn parse_secret(s: &str) -> Result<Secret, String> {
    Ok(Secret(s.to_owned()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Key material for the event chain's HMAC links and pseudonyms. At least 32 bytes in
    /// production (`openssl rand -hex 32`). Changing it makes existing links unverifiable.
    #[arg(long, env = "AUDITTRAIL_SECRET_KEY", hide_env_values = true, value_parser = parse_secret, default_value = DEFAULT_SECRET_KEY, hide_default_value = true)]
    pub secret_key: Secret,

    /// Read the secret key from this file instead (Docker/Kubernetes secrets).
    #[arg(long, env = "AUDITTRAIL_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,

    /// Database. Unset: embedded SQLite at `$AUDITTRAIL_DATA_DIR/audittrail.db`. SQLAlchemy-style
    /// URLs are accepted with SQLAlchemy's meaning: `sqlite+aiosqlite:///data/audittrail.db` is
    /// the relative path `data/audittrail.db`, `sqlite:////var/lib/x.db` is absolute.
    /// `postgres://`, `postgresql://` and `postgresql+asyncpg://user:pw@host:5432/db` select
    /// Postgres (libpq's `?sslmode=` is honoured).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = parse_secret)]
    pub database_url: Option<Secret>,

    /// Read `DATABASE_URL` from this file instead.
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,

    /// `development` or `production`. Production refuses to start with unsafe settings.
    #[arg(
        long,
        env = "AUDITTRAIL_ENVIRONMENT",
        value_enum,
        default_value = "development"
    )]
    pub environment: Environment,

    /// Verbose error details. Refused in production.
    #[arg(long, env = "AUDITTRAIL_DEBUG", default_value_t = false, action = clap::ArgAction::Set)]
    pub debug: bool,

    /// Allowed CORS origins, a JSON list (`["https://audit.example.com"]`). `*` is refused in
    /// production.
    #[arg(long, env = "AUDITTRAIL_CORS_ORIGINS", default_value = "[]")]
    pub cors_origins: String,

    /// Address to listen on.
    #[arg(long, env = "AUDITTRAIL_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,

    /// Directory for the embedded database, chain checkpoints and reports.
    #[arg(long, env = "AUDITTRAIL_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Directory of constitutional rules (`*.rhai`). Read only; AuditTrail never writes to it.
    #[arg(long, env = "AUDITTRAIL_RULES_DIR", default_value = "rules")]
    pub rules_dir: PathBuf,

    /// Redact personal data before anything is stored. Keep it on.
    #[arg(long, env = "AUDITTRAIL_PII_REDACTION_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub pii_redaction_enabled: bool,

    /// PII types NOT to redact, comma-separated (EMAIL, PHONE, US_SSN, CREDIT_CARD, IBAN,
    /// IP_ADDRESS, API_KEY, PERSON, ADDRESS, DATE_OF_BIRTH).
    #[arg(long, env = "AUDITTRAIL_PII_DISABLED_TYPES", value_delimiter = ',')]
    pub pii_disabled_types: Vec<String>,

    /// Replace PII with keyed pseudonyms (`[EMAIL:3f2a9c01d4e7]`: the same value always gets the
    /// same token, keyed by the secret key) instead of `[REDACTED:EMAIL]`.
    #[arg(long, env = "AUDITTRAIL_PII_PSEUDONYMS", default_value_t = false, action = clap::ArgAction::Set)]
    pub pii_pseudonyms: bool,

    /// Operator terms and patterns to redact (format in the README). Default: `pii-terms.txt`
    /// in the data directory or the rules directory, if present.
    #[arg(long, env = "AUDITTRAIL_PII_TERMS_FILE")]
    pub pii_terms_file: Option<PathBuf>,

    /// Webhooks (comma-separated URLs, Slack-compatible) that receive violations at or above
    /// `AUDITTRAIL_ALERT_MIN_SEVERITY`. The URLs are secrets and never logged.
    #[arg(
        long,
        env = "AUDITTRAIL_ALERT_WEBHOOK_URLS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub alert_webhook_urls: Vec<String>,

    /// Lowest severity sent to webhooks: info, warning, high or critical.
    #[arg(long, env = "AUDITTRAIL_ALERT_MIN_SEVERITY", default_value = "high")]
    pub alert_min_severity: String,

    /// Days to keep events (used by retention sweeps).
    #[arg(long, env = "AUDITTRAIL_RETENTION_DAYS", default_value_t = 90)]
    pub retention_days: u32,

    /// Log as JSON lines (for log aggregation) instead of human-readable text.
    #[arg(long, env = "AUDITTRAIL_JSON_LOGS", default_value_t = false, action = clap::ArgAction::Set)]
    pub json_logs: bool,

    /// Proxies (comma-separated addresses or networks, e.g. nginx's `10.0.0.5` or
    /// `172.16.0.0/12`) whose `X-Forwarded-For` is believed for the client address in the audit
    /// log and rate limits, and whose `X-Forwarded-Proto: https` turns on HSTS. Empty: use the
    /// peer address.
    #[arg(long, env = "AUDITTRAIL_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<crate::auth::proxies::ProxyNet>,

    /// Ingest requests per second per API key (bursts of twice that); 429 beyond.
    #[arg(long, env = "AUDITTRAIL_RATE_LIMIT_INGEST", default_value_t = 1000)]
    pub rate_limit_ingest: u32,

    /// Query and administration requests per second per API key (bursts of twice that).
    #[arg(long, env = "AUDITTRAIL_RATE_LIMIT_QUERIES", default_value_t = 100)]
    pub rate_limit_queries: u32,

    /// Requests processed at once; more wait their turn (bounded work and memory). Limit
    /// connections themselves in nginx (`limit_conn`).
    #[arg(
        long,
        env = "AUDITTRAIL_MAX_CONCURRENT_REQUESTS",
        default_value_t = 1024
    )]
    pub max_concurrent_requests: usize,

    /// Largest request body accepted, in bytes (413 beyond).
    #[arg(long, env = "AUDITTRAIL_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most events in one ingest batch (422 beyond).
    #[arg(long, env = "AUDITTRAIL_MAX_BATCH_EVENTS", default_value_t = 1000)]
    pub max_batch_events: usize,

    /// Append requests that may wait for the writer before ingest answers 503 + Retry-After.
    #[arg(long, env = "AUDITTRAIL_WRITER_QUEUE", default_value_t = 512)]
    pub writer_queue: usize,

    /// Most events the writer commits in one transaction.
    #[arg(long, env = "AUDITTRAIL_WRITER_BATCH_EVENTS", default_value_t = 4096)]
    pub writer_batch_events: usize,

    /// Reader connections to the database (both backends).
    #[arg(long, env = "AUDITTRAIL_READ_POOL_SIZE", default_value_t = 8)]
    pub read_pool_size: u32,

    /// Seconds to wait for a database connection (connecting, or a free pooled one).
    #[arg(long, env = "AUDITTRAIL_DB_CONNECT_TIMEOUT_SECS", default_value_t = 5)]
    pub db_connect_timeout_secs: u64,

    /// Background jobs (ablation runs, reports) of one kind running at once; each holds one
    /// of the store's job connections, apart from the readers.
    #[arg(long, env = "AUDITTRAIL_MAX_JOBS", default_value_t = 2)]
    pub max_jobs: u32,

    /// Jobs of one kind that may wait for a free slot; beyond, starting one answers 429.
    #[arg(long, env = "AUDITTRAIL_MAX_QUEUED_JOBS", default_value_t = 8)]
    pub max_queued_jobs: usize,

    /// Seconds before a request is answered 408 (ingest includes the wait for durability).
    #[arg(long, env = "AUDITTRAIL_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Seconds to finish in-flight requests after SIGTERM/SIGINT before exiting.
    #[arg(long, env = "AUDITTRAIL_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,

    /// Cluster mode: the NATS server(s), e.g. `nats://nats:4222` (comma-separated for several).
    /// Set, `serve` is an ingest node (publishes redacted batches to JetStream and acknowledges
    /// after the stream's ack) and `audittrail worker` stores them; the database must be
    /// Postgres. May carry credentials (`nats://user:pw@host`): never logged.
    #[arg(long, env = "AUDITTRAIL_NATS_URL", hide_env_values = true, value_parser = parse_secret)]
    pub nats_url: Option<Secret>,

    /// The JetStream stream between ingest nodes and workers (created or checked at start-up).
    #[arg(long, env = "AUDITTRAIL_NATS_STREAM", default_value = "AUDITTRAIL")]
    pub nats_stream: String,

    /// Prefix of every subject this installation uses (`<prefix>.log.events`,
    /// `<prefix>.log.audit`, `<prefix>.live`), so several installations can share one NATS.
    #[arg(
        long,
        env = "AUDITTRAIL_NATS_SUBJECT_PREFIX",
        default_value = "audittrail"
    )]
    pub nats_subject_prefix: String,

    /// Stream replicas (1 for a single NATS server; 3 on a NATS cluster).
    #[arg(long, env = "AUDITTRAIL_NATS_REPLICAS", default_value_t = 1)]
    pub nats_replicas: usize,

    /// Bytes the stream may hold before ingest answers 503 (the backlog a stopped worker
    /// leaves). Consumed batches are removed, so this bounds the backlog, not the history.
    #[arg(long, env = "AUDITTRAIL_NATS_MAX_BYTES", default_value_t = 1 << 30)]
    pub nats_max_bytes: i64,

    /// Seconds a batch may wait in the stream before NATS drops it; 0 (the default) keeps it
    /// until a worker stored it. Anything else can lose acknowledged events if workers stay
    /// down longer than this.
    #[arg(long, env = "AUDITTRAIL_NATS_MAX_AGE_SECS", default_value_t = 0)]
    pub nats_max_age_secs: u64,

    /// Seconds within which a re-sent batch (same project and event ids) is stored once by the
    /// stream itself; later repeats are still dropped by the worker's duplicate check.
    #[arg(
        long,
        env = "AUDITTRAIL_NATS_DUPLICATE_WINDOW_SECS",
        default_value_t = 120
    )]
    pub nats_duplicate_window_secs: u64,

    /// `audittrail worker` only: where its health and metrics listen (`/api/v1/health`,
    /// `/metrics`). Unset: no listener. The worker ignores `AUDITTRAIL_BIND`.
    #[arg(long, env = "AUDITTRAIL_WORKER_BIND")]
    pub worker_bind: Option<SocketAddr>,
}

/// Where the event log lives, resolved from `DATABASE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    Sqlite(PathBuf),
    /// A `postgres://` URL (it holds a password: never log it).
    Postgres(Secret),
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Secret {}

/// Settings derived from [`Config`] once every check passed.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub secret_key: Secret,
    pub database: DatabaseTarget,
    pub cors_origins: Vec<String>,
}

impl Config {
    /// Whether `AUDITTRAIL_NATS_URL` is set (an empty value, as compose files pass through,
    /// is unset).
    pub fn cluster_mode(&self) -> bool {
        self.nats_url
            .as_ref()
            .is_some_and(|u| !u.expose().trim().is_empty())
    }

    /// Checks everything and reports every problem at once.
    pub fn resolve(&self) -> Result<Resolved, Vec<String>> {
        let mut problems = Vec::new();
        let production = self.environment == Environment::Production;
        let secret_key = match &self.secret_key_file {
            Some(path) => read_secret_file(
                "AUDITTRAIL_SECRET_KEY_FILE",
                path,
                production,
                &mut problems,
            ),
            None => Some(self.secret_key.clone()),
        };
        let url = match &self.database_url_file {
            Some(path) => read_secret_file("DATABASE_URL_FILE", path, production, &mut problems),
            None => self.database_url.clone(),
        };
        let database = match resolve_database(url.as_ref().map(Secret::expose), &self.data_dir) {
            Ok(db) => Some(db),
            Err(e) => {
                problems.push(format!("DATABASE_URL: {e}"));
                None
            }
        };
        let cors_origins = match serde_json::from_str::<Vec<String>>(&self.cors_origins) {
            Ok(list) => list,
            Err(_) => {
                problems.push("AUDITTRAIL_CORS_ORIGINS: must be a JSON list of origins, e.g. [\"https://audit.example.com\"]".into());
                Vec::new()
            }
        };
        if self.environment == Environment::Production {
            if let Some(key) = &secret_key {
                if key.expose() == DEFAULT_SECRET_KEY {
                    problems.push("AUDITTRAIL_SECRET_KEY: the default key is not allowed in production (generate one with `openssl rand -hex 32`)".into());
                } else if key.expose().len() < 32 {
                    problems.push(
                        "AUDITTRAIL_SECRET_KEY: must be at least 32 bytes in production".into(),
                    );
                }
            }
            if self.debug {
                problems.push("AUDITTRAIL_DEBUG: must be false in production".into());
            }
            if cors_origins.iter().any(|o| o.trim() == "*") {
                problems.push(
                    "AUDITTRAIL_CORS_ORIGINS: `*` is not allowed in production; list your origins"
                        .into(),
                );
            }
        }
        if crate::rules::Severity::parse(&self.alert_min_severity).is_none() {
            problems.push(
                "AUDITTRAIL_ALERT_MIN_SEVERITY: must be info, warning, high or critical".into(),
            );
        }
        if self
            .alert_webhook_urls
            .iter()
            .any(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            problems
                .push("AUDITTRAIL_ALERT_WEBHOOK_URLS: every entry must be an http(s) URL".into());
        }
        if let (true, Some(DatabaseTarget::Sqlite(_))) = (self.cluster_mode(), &database) {
            problems.push("AUDITTRAIL_NATS_URL: cluster mode stores in Postgres; set DATABASE_URL to a postgres:// URL (embedded SQLite is one machine only)".into());
        }
        if self.cluster_mode() {
            let token = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            };
            if !token(&self.nats_stream) {
                problems.push("AUDITTRAIL_NATS_STREAM: letters, digits, `_` and `-` only".into());
            }
            if !self.nats_subject_prefix.split('.').all(token) {
                problems.push("AUDITTRAIL_NATS_SUBJECT_PREFIX: dot-separated tokens of letters, digits, `_` and `-` (no wildcards)".into());
            }
            if self.nats_replicas == 0 || self.nats_replicas > 5 {
                problems.push("AUDITTRAIL_NATS_REPLICAS: 1 to 5".into());
            }
            if self.nats_max_bytes < 1 << 20 {
                problems.push("AUDITTRAIL_NATS_MAX_BYTES: at least 1048576 (1 MiB)".into());
            }
        }
        if self.max_batch_events == 0 || self.writer_queue == 0 || self.writer_batch_events == 0 {
            problems.push("AUDITTRAIL_MAX_BATCH_EVENTS, AUDITTRAIL_WRITER_QUEUE and AUDITTRAIL_WRITER_BATCH_EVENTS must be positive".into());
        }
        match (secret_key, database, problems.is_empty()) {
            (Some(secret_key), Some(database), true) => Ok(Resolved {
                secret_key,
                database,
                cors_origins,
            }),
            _ => Err(problems),
        }
    }
}

fn read_secret_file(
    var: &str,
    path: &Path,
    production: bool,
    problems: &mut Vec<String>,
) -> Option<Secret> {
    #[cfg(unix)]
    if production {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            problems.push(format!(
                "{var}: {} is readable by group or others (mode {:o}); restrict it to the owner (chmod 0400)",
                path.display(),
                meta.permissions().mode() & 0o777
            ));
            return None;
        }
    }
    match std::fs::read_to_string(path) {
        Ok(text) => Some(Secret(text.trim_end_matches(['\n', '\r']).to_owned())),
        Err(e) => {
            problems.push(format!("{var}: cannot read {}: {e}", path.display()));
            None
        }
    }
}

/// Resolves `DATABASE_URL` to a target. SQLite URLs follow SQLAlchemy: three slashes then a
/// relative path, four slashes for an absolute one; the driver suffix (`+aiosqlite`) is ignored.
pub fn resolve_database(url: Option<&str>, data_dir: &Path) -> Result<DatabaseTarget, String> {
    let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
        return Ok(DatabaseTarget::Sqlite(data_dir.join("audittrail.db")));
    };
    let (scheme, rest) = url
        .split_once(':')
        .ok_or("expected a URL such as sqlite:///data/audittrail.db")?;
    let driver = scheme.split('+').next().unwrap_or(scheme);
    match driver {
        "sqlite" => {
            let rest = rest.split('?').next().unwrap_or(rest);
            let path = if let Some(p) = rest.strip_prefix("///") {
                // sqlite:///relative or sqlite:////absolute (the fourth slash starts the path).
                p
            } else if let Some(p) = rest.strip_prefix("//") {
                if p.is_empty() {
                    return Err(
                        "an in-memory SQLite database cannot hold a durable log; give a file path"
                            .into(),
                    );
                }
                return Err("SQLite URLs take the form sqlite:///relative/path.db or sqlite:////absolute/path.db".into());
            } else {
                rest
            };
            if path.is_empty() || path == ":memory:" {
                return Err(
                    "an in-memory SQLite database cannot hold a durable log; give a file path"
                        .into(),
                );
            }
            Ok(DatabaseTarget::Sqlite(PathBuf::from(path)))
        }
        "postgres" | "postgresql" => {
            crate::store::Location::postgres(url)?;
            Ok(DatabaseTarget::Postgres(Secret(url.to_owned())))
        }
        _ => Err("unsupported scheme; use sqlite:///path or postgres://…".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(url: &str) -> PathBuf {
        match resolve_database(Some(url), Path::new("data")).expect("resolves") {
            DatabaseTarget::Sqlite(p) => p,
            other => panic!("expected sqlite, got {other:?}"),
        }
    }

    #[test]
    fn sqlalchemy_urls_keep_their_meaning() {
        assert_eq!(
            sqlite("sqlite+aiosqlite:///data/audittrail.db"),
            PathBuf::from("data/audittrail.db")
        );
        assert_eq!(
            sqlite("sqlite+aiosqlite:////app/data/audittrail.db"),
            PathBuf::from("/app/data/audittrail.db")
        );
        assert_eq!(sqlite("sqlite:///x.db?mode=rwc"), PathBuf::from("x.db"));
        assert_eq!(sqlite("sqlite:x.db"), PathBuf::from("x.db"));
        assert_eq!(
            resolve_database(None, Path::new("d")),
            Ok(DatabaseTarget::Sqlite(PathBuf::from("d/audittrail.db")))
        );
        assert!(matches!(
            resolve_database(Some("postgresql+asyncpg://u:p@h/db"), Path::new("d")),
            Ok(DatabaseTarget::Postgres(_))
        ));
    }

    #[test]
    fn memory_and_host_forms_are_refused() {
        for bad in [
            "sqlite://",
            "sqlite:///:memory:",
            "sqlite://host/x.db",
            "mysql://x",
            "nonsense",
        ] {
            assert!(
                resolve_database(Some(bad), Path::new("d")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_do_not_debug_print() {
        assert_eq!(format!("{:?}", Secret("hunter2".into())), "Secret(..)");
    }
}
