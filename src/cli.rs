//! The command line: one binary, one subcommand per operator task.

use std::time::Duration;

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Config;
use crate::server;
use crate::store::checkpoint::CheckpointFile;
use crate::store::{replay, verify};

#[derive(Debug, Parser)]
#[command(
    name = "audittrail",
    version,
    about = "Audit and governance service for AI agents"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: Config,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (HTTP API) on AUDITTRAIL_BIND.
    Serve,
    /// Cluster mode: store what the ingest nodes publish to NATS JetStream (needs
    /// AUDITTRAIL_NATS_URL and a Postgres DATABASE_URL). One worker writes, others wait as
    /// standbys; health and metrics on AUDITTRAIL_WORKER_BIND.
    Worker,
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Walk the event log's hash chain; exits non-zero naming the first bad record.
    Verify,
    /// Rebuild the read models (trace summaries) from the event log. Stop the server first.
    Replay,
    /// Copy the whole log (records, chain, keys, audit log) into another, empty database, e.g.
    /// from the embedded SQLite file to Postgres. An interrupted copy resumes when run again.
    Copy {
        /// The target's URL (`postgres://user:pw@host:5432/db`); the schema is created there.
        #[arg(long, hide_env_values = true)]
        to: String,
    },
    /// Redact text from stdin with the configured redactor (to try a configuration).
    Redact {
        /// Read `{"id","text"}` lines; write `{"id","spans":[[start,end,"TYPE"],…],"redacted"}`
        /// per line (code-point offsets), flushed as each is ready.
        #[arg(long)]
        jsonl: bool,
    },
    /// Load generator: post batches of realistic events and report events/s and latency.
    Bench(crate::loadgen::BenchArgs),
    /// Write a consistent, checked backup of the live database to DEST (one file): SQLite
    /// `VACUUM INTO` then integrity_check and verify; Postgres `pg_dump -Fc`, restored into a
    /// scratch database and verified. Safe while the server runs.
    Backup {
        /// The backup file to write (never overwritten).
        dest: std::path::PathBuf,
    },
    /// Replace the database with a backup after checking it (stop the server first).
    Restore {
        /// A file written by `audittrail backup`.
        src: std::path::PathBuf,
    },
    /// Exit 0 if the server on AUDITTRAIL_BIND's port answers /api/v1/health with ok or
    /// degraded, 1 otherwise (the container's HEALTHCHECK; no curl needed).
    Healthcheck,
    /// API keys: create, list, rotate, revoke (for operators with shell access).
    ///
    /// These commands act with the rights of whoever can read the database and the secret
    /// key: they may create, rotate or revoke any key, including the owner key and the last
    /// admin:all key, without the limits the HTTP API applies to keys acting on keys. Each
    /// action is recorded in the audit log with principal `cli`.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Constitutional rules: check, test against fixtures, replay history (ablation).
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Compliance report as a PDF (`report --standard soc2 --from … --to … --out r.pdf`), or
    /// `report verify FILE` to re-derive a report's figures from the log and compare.
    Report(ReportCommand),
    /// Erase a data subject (GDPR Art. 17) in one project: the personal part of every record
    /// that names them, with a chained receipt `verify` checks. Writes the database directly:
    /// on a running server use POST /api/v1/erasure instead.
    Erase(EraseArgs),
    /// Retention: `retention apply [--dry-run]` sweeps the log now (AUDITTRAIL_RETENTION_DAYS,
    /// and projects' own shorter limits). Writes the database directly: on a running server use
    /// POST /api/v1/retention/apply instead (the server also sweeps hourly by itself).
    #[command(subcommand)]
    Retention(RetentionCommand),
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Remove (or, with --dry-run, count) the records older than the retention limit.
    Apply {
        /// Say what would be removed and erased; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// The sweep's clock (default: now), e.g. to see what a sweep on a later date removes.
        #[arg(long)]
        now: Option<chrono::DateTime<chrono::Utc>>,
    },
}

#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("subject")
        .required(true)
        .args(["session_id", "agent", "trace_id", "value"])
))]
pub struct EraseArgs {
    /// Every record of this session.
    #[arg(long)]
    pub session_id: Option<String>,
    /// Every record of this agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// Every record of this trace.
    #[arg(long)]
    pub trace_id: Option<String>,
    /// Every record the redactor removed this personal value from (an e-mail, a phone
    /// number…), found through the index of keyed pseudonyms.
    #[arg(long)]
    pub value: Option<String>,
    /// Why (kept in the receipt).
    #[arg(long)]
    pub reason: String,
    /// The project.
    #[arg(long, default_value = "default")]
    pub project: String,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReportCommand {
    #[command(subcommand)]
    pub verify: Option<ReportVerify>,
    /// soc2, gdpr, hipaa or eu-ai-act.
    #[arg(long, required = true)]
    pub standard: Option<String>,
    /// Start of the period (RFC 3339).
    #[arg(long, required = true)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// End of the period (RFC 3339; cut at `--now`).
    #[arg(long, required = true)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// A project to report on (repeat for several; default: every project with records).
    #[arg(long = "project")]
    pub projects: Vec<String>,
    /// The report's clock (default: now). Fixing it makes the output reproducible.
    #[arg(long)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// Where to write the PDF.
    #[arg(long, required = true)]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ReportVerify {
    /// Re-derive a report's figures from the log over the same positions, verify the chain
    /// and re-render it to compare byte for byte. Exit 0: it matches; 2: a figure (named) or
    /// the text differs, or the chain does not verify; 3: records of its range have since
    /// been removed or erased.
    Verify {
        /// The report's PDF.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// Projects the key may touch, comma-separated (`*` for all).
        #[arg(long, value_delimiter = ',', required = true)]
        projects: Vec<String>,
        /// Permissions, comma-separated (traces:write, traces:read, rules:read, reports:create,
        /// reports:read, keys:admin, system:metrics, system:health, data:erase, admin:all).
        #[arg(long, value_delimiter = ',', required = true)]
        permissions: Vec<String>,
        /// Lifetime such as 90d, 12h or 30m (default: no expiry).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Give a key a new secret; the old one stops working at once.
    Rotate { id: String },
    /// Revoke a key for good.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Compile every rule file and list every problem (exit 1 if any).
    Check {
        /// Rules directory (default: AUDITTRAIL_RULES_DIR).
        dir: Option<std::path::PathBuf>,
    },
    /// Run each rule against its fixtures in DIR/tests/<rule_id>.json.
    Test { dir: Option<std::path::PathBuf> },
    /// Re-evaluate the stored log through a rule set and print what would change. Read-only.
    Replay {
        /// Candidate rules directory (default: AUDITTRAIL_RULES_DIR).
        #[arg(long)]
        rules: Option<std::path::PathBuf>,
        /// Leave this rule out of the candidate set (repeatable).
        #[arg(long)]
        disable: Vec<String>,
        /// Compare only events that started at or after this RFC 3339 time.
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// ...and before this time.
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
    },
}

/// What the process should exit with.
pub type ExitCode = std::process::ExitCode;

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(cli.config.bind).await?;
            let service = server::build(cli.config).await?;
            tracing::info!(addr = %listener.local_addr()?, version = crate::VERSION, "AuditTrail listening");
            service.serve(listener, server::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker => {
            crate::worker::run(cli.config, server::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate => {
            let resolved = cli.config.resolve().map_err(server::ServeError::Config)?;
            let store = server::open_store(&cli.config, &resolved).await?;
            println!("migrated {}", store.describe());
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify => {
            let resolved = cli.config.resolve().map_err(server::ServeError::Config)?;
            let store = server::open_store(&cli.config, &resolved).await?;
            let total = store.count_records().await?;
            let bar = progress_bar(total, "verifying");
            // A damaged checkpoint file is a note, not a reason to stop checking the database.
            let side_file = store
                .sqlite_path()
                .map(CheckpointFile::beside)
                .and_then(|f| {
                    f.read().unwrap_or_else(|e| {
                        eprintln!("note: {e}");
                        None
                    })
                });
            let mut conn = store.read_connection().await?;
            let result = verify::verify(
                &mut conn,
                &server::chain_key(&resolved),
                side_file.as_ref(),
                |n| bar.set_position(n),
            )
            .await;
            bar.finish_and_clear();
            match result {
                Ok(r) => {
                    println!("{}", describe_verified(&r));
                    for note in &r.notes {
                        println!("note: {note}");
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(verify::VerifyError::Fault(fault)) => {
                    eprintln!("TAMPERED: {fault}");
                    Ok(ExitCode::from(2))
                }
                Err(verify::VerifyError::Store(e)) => Err(e.into()),
            }
        }
        Command::Replay => {
            let resolved = cli.config.resolve().map_err(server::ServeError::Config)?;
            let store = server::open_store(&cli.config, &resolved).await?;
            let total = store.count_records().await?;
            let bar = progress_bar(total, "replaying");
            let report = replay::rebuild(&store, |n| bar.set_position(n)).await?;
            bar.finish_and_clear();
            println!(
                "rebuilt {} trace summaries from {} span records and {} rule outcomes",
                report.traces, report.records, report.outcomes
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Copy { to } => {
            let resolved = cli.config.resolve().map_err(server::ServeError::Config)?;
            let source = server::open_store(&cli.config, &resolved).await?;
            let target_location =
                match crate::config::resolve_database(Some(&to), &cli.config.data_dir)
                    .map_err(|e| anyhow::anyhow!("--to: {e}"))?
                {
                    crate::config::DatabaseTarget::Sqlite(p) => crate::store::Location::Sqlite(p),
                    crate::config::DatabaseTarget::Postgres(url) => {
                        crate::store::Location::postgres(url.expose())
                            .map_err(|e| anyhow::anyhow!("--to: {e}"))?
                    }
                };
            let describe = target_location.describe();
            let target = crate::store::Store::open(
                target_location,
                crate::store::PoolSizes {
                    readers: 2,
                    jobs: 1,
                    acquire_timeout: Duration::from_secs(cli.config.db_connect_timeout_secs.max(1)),
                },
            )
            .await?;
            let bar = progress_bar(source.count_records().await?, "copying");
            let result =
                crate::store::copy::copy(&source, &target, &server::chain_key(&resolved), |n| {
                    bar.set_position(n)
                })
                .await;
            bar.finish_and_clear();
            match result {
                Ok(r) => {
                    println!(
                        "{} {} records (up to seq {}), {} audit entries and {} keys into {describe}; run `audittrail verify` against it to compare head links",
                        if r.resumed {
                            "resumed and copied"
                        } else {
                            "copied"
                        },
                        r.records,
                        r.until_seq,
                        r.audit_entries,
                        r.keys
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(crate::store::copy::CopyError::TargetNotEmpty) => {
                    eprintln!(
                        "error: {describe}: {}",
                        crate::store::copy::CopyError::TargetNotEmpty
                    );
                    Ok(ExitCode::from(2))
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Rules(cmd) => rules_command(&cli.config, cmd).await,
        Command::Report(cmd) => report_command(&cli.config, cmd).await,
        Command::Keys(cmd) => keys_command(&cli.config, cmd).await,
        Command::Redact { jsonl } => {
            let resolved = cli.config.resolve().map_err(server::ServeError::Config)?;
            let redactor = crate::redact::setup::build_redactor(&cli.config, &resolved)
                .map_err(server::ServeError::Config)?;
            let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
            if jsonl {
                crate::redact::jsonl::run(stdin.lock(), stdout.lock(), &redactor)?;
            } else {
                crate::redact::redact_text_cli(stdin.lock(), stdout.lock(), &redactor)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Backup { dest } => {
            let resolved = cli.config.resolve().map_err(server::ServeError::Config)?;
            let store = server::open_store(&cli.config, &resolved).await?;
            let key = server::chain_key(&resolved);
            let result = crate::store::backup::backup(&store, &key, &dest).await;
            if let Ok(c) = &result {
                // Recorded so an erasure can list the backups that still hold its subject.
                let mut e =
                    crate::auth::audit::AuditEntry::new("backup", "backup.create", "success");
                e.principal = Some("cli".into());
                e.resource = Some(dest.display().to_string());
                e.metadata = serde_json::json!({ "head_seq": c.head_seq, "records": c.records });
                if let Err(err) = crate::store::audit_log::append_now(&store, &key, &[e]).await {
                    eprintln!(
                        "warning: the backup is good but could not be recorded in the audit log: {err}"
                    );
                }
            }
            store.close().await;
            match result {
                Ok(c) => {
                    println!(
                        "backup {}: {} records verified, head seq {}, head link {}",
                        dest.display(),
                        c.records,
                        c.head_seq,
                        c.head_link
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("backup failed: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Restore { src } => {
            let resolved = cli.config.resolve().map_err(server::ServeError::Config)?;
            let location = server::location(&resolved).map_err(server::ServeError::Config)?;
            match crate::store::backup::restore(&location, &server::chain_key(&resolved), &src)
                .await
            {
                Ok(c) => {
                    println!(
                        "restored {} into {}: {} records verified, head seq {}, head link {}",
                        src.display(),
                        location.describe(),
                        c.records,
                        c.head_seq,
                        c.head_link
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("restore failed: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Healthcheck => Ok(healthcheck(
            cli.config
                .worker_bind
                .map_or(cli.config.bind.port(), |b| b.port()),
        )
        .await),
        Command::Erase(args) => erase(&cli.config, args).await,
        Command::Retention(RetentionCommand::Apply { dry_run, now }) => {
            retention_apply(&cli.config, dry_run, now).await
        }
        Command::Bench(args) => {
            let report = crate::loadgen::run(args).await?;
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn keys_command(config: &Config, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    use crate::auth::audit::AuditEntry;
    use crate::auth::keys::{self, KeySpec};
    use crate::auth::permission::Permission;
    let resolved = config.resolve().map_err(server::ServeError::Config)?;
    let store = server::open_store(config, &resolved).await?;
    let (operation, resource, output) = match cmd {
        KeysCommand::Create {
            name,
            projects,
            permissions,
            expires_in,
        } => {
            let mut perms = Vec::new();
            for p in &permissions {
                perms.push(
                    Permission::parse(p).ok_or_else(|| {
                        anyhow::anyhow!("--permissions: unknown permission `{p}`")
                    })?,
                );
            }
            let expires_at = match expires_in {
                Some(s) => Some(chrono::Utc::now() + keys::parse_expires_in(&s)?),
                None => None,
            };
            let issued = crate::store::keys::create(
                &store,
                &KeySpec {
                    name,
                    projects,
                    permissions: perms,
                    expires_at,
                },
            )
            .await?;
            let id = issued.record.id.clone();
            (
                "keys.create",
                Some(id),
                serde_json::to_string_pretty(&issued)?
                    + "\nStore the key now: it is not shown again.",
            )
        }
        KeysCommand::List => {
            let list = crate::store::keys::list(&store).await?;
            return {
                println!("{}", serde_json::to_string_pretty(&list)?);
                Ok(ExitCode::SUCCESS)
            };
        }
        KeysCommand::Rotate { id } => {
            let issued = crate::store::keys::rotate(&store, &id).await?;
            (
                "keys.rotate",
                Some(id),
                serde_json::to_string_pretty(&issued)?
                    + "\nThe old secret no longer works (running servers forget it within a minute at most; rotate through the API to make it immediate).",
            )
        }
        KeysCommand::Revoke { id } => {
            let rec = crate::store::keys::revoke(&store, &id).await?;
            ("keys.revoke", Some(id), serde_json::to_string_pretty(&rec)?)
        }
    };
    let mut e = AuditEntry::new("key_management", operation, "success");
    e.principal = Some("cli".into());
    e.resource = resource;
    crate::store::audit_log::append_now(&store, &server::chain_key(&resolved), &[e]).await?;
    println!("{output}");
    Ok(ExitCode::SUCCESS)
}

async fn erase(config: &Config, args: EraseArgs) -> anyhow::Result<ExitCode> {
    use crate::retention::erasure;
    let resolved = config.resolve().map_err(server::ServeError::Config)?;
    if !crate::auth::permission::valid_project_id(&args.project) {
        anyhow::bail!("--project: 1-64 letters, digits, `-`, `_` or `.`");
    }
    let redaction =
        crate::redact::setup::build_stage(config, &resolved).map_err(server::ServeError::Config)?;
    let (field, value) = [
        ("session_id", &args.session_id),
        ("agent", &args.agent),
        ("trace_id", &args.trace_id),
        ("value", &args.value),
    ]
    .into_iter()
    .find_map(|(f, v)| v.as_deref().map(|v| (f, v)))
    .ok_or_else(|| {
        anyhow::anyhow!("name the subject with one of --session-id, --agent, --trace-id, --value")
    })?;
    let flag = |e: Vec<crate::event::FieldError>| {
        anyhow::anyhow!(
            "{}",
            e.iter()
                .map(|e| format!("--{}: {}", e.path.replace('_', "-"), e.message))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    let selector = erasure::selector(field, value, &redaction).map_err(flag)?;
    let reason = erasure::reason(Some(&args.reason)).map_err(flag)?;
    let offline = server::offline_writer(config, &resolved, "POST /api/v1/erasure").await?;
    let result = offline
        .writer
        .erase(crate::store::receipt::EraseRequest {
            project: args.project.clone(),
            selector,
            reason,
            requested_by: "cli".into(),
        })
        .await;
    let mut e = crate::auth::audit::AuditEntry::new(
        "data_erasure",
        "data.erase",
        if result.is_ok() { "success" } else { "failure" },
    );
    e.principal = Some("cli".into());
    e.project = Some(args.project.clone());
    if let Ok(erased) = &result {
        e.resource = Some(format!("receipt:{}", erased.receipt_seq));
        e.metadata = serde_json::json!({
            "selector": field,
            "records": erased.receipt.seqs.len(),
            "receipt_seq": erased.receipt_seq,
        });
    }
    offline.audit.record(e);
    let backups = erasure::backups_before(&offline.store, chrono::Utc::now()).await;
    offline.finish().await;
    let erased = result.map_err(|e| anyhow::anyhow!("erasure failed, nothing was erased: {e}"))?;
    let answer = erasure::answer(erased, backups?);
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(ExitCode::SUCCESS)
}

async fn retention_apply(
    config: &Config,
    dry_run: bool,
    now: Option<chrono::DateTime<chrono::Utc>>,
) -> anyhow::Result<ExitCode> {
    let resolved = config.resolve().map_err(server::ServeError::Config)?;
    if let Some(w) = crate::retention::short_retention_warning(config.retention_days) {
        eprintln!("warning: {w}");
    }
    let offline = server::offline_writer(config, &resolved, "POST /api/v1/retention/apply").await?;
    let bar = progress_bar(0, "sweeping");
    let result = crate::retention::apply(
        &offline.store,
        &offline.writer,
        config.retention_days,
        now.unwrap_or_else(chrono::Utc::now),
        dry_run,
        "cli",
        |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .await;
    bar.finish_and_clear();
    if let Ok(r) = &result
        && !dry_run
    {
        let mut e = crate::auth::audit::AuditEntry::new("retention", "retention.apply", "success");
        e.principal = Some("cli".into());
        e.metadata = serde_json::json!({
            "records_removed": r.records_removed,
            "base_seq": r.base_seq,
            "receipt_seq": r.receipt_seq,
        });
        offline.audit.record(e);
    }
    offline.finish().await;
    let report = result?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(ExitCode::SUCCESS)
}

/// GET /api/v1/health on 127.0.0.1:`port` (the container binds 0.0.0.0, which is reachable
/// there too): success on `ok` or `degraded`.
async fn healthcheck(port: u16) -> ExitCode {
    let url = format!("http://127.0.0.1:{port}/api/v1/health");
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client.get(&url).send().await {
        Ok(resp) => {
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            match body["status"].as_str() {
                Some(s @ ("ok" | "degraded")) => {
                    println!("{s}");
                    ExitCode::SUCCESS
                }
                other => {
                    eprintln!("unhealthy: status {}", other.unwrap_or("missing"));
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("unhealthy: {url} unreachable ({e})");
            ExitCode::FAILURE
        }
    }
}

/// The verdict of a successful `verify`, for people and for comparing two copies of a log.
fn describe_verified(r: &verify::VerifyReport) -> String {
    let mut out = format!(
        "ok: {} records verified (seq {}..={}), head link {}",
        r.records,
        r.base_seq + 1,
        r.head_seq,
        r.head_link
    );
    if r.base_seq > 0 {
        out.push_str(&format!(
            "\n    chain base at seq {} (authenticated)",
            r.base_seq
        ));
        match &r.last_sweep {
            Some(s) => out.push_str(&format!(
                "; {} record(s) swept on {} by retention ({} days, by {}), receipt at seq {}",
                s.removed, s.at, s.days, s.requested_by, s.receipt_seq
            )),
            None => {
                out.push_str("; the retention receipt that moved it has itself been swept since")
            }
        }
    }
    out.push_str(&format!(
        "\n    {} erased record(s), each covered by one of {} erasure receipt(s)",
        r.erased, r.receipts
    ));
    out.push_str(&format!(
        "\n    head checkpoint: {}",
        if r.head_checkpoint {
            "present and matching"
        } else {
            "absent"
        }
    ));
    out.push_str(&format!(
        "\n    audit log: {} entries chained, {} audit checkpoint(s) matched{}",
        r.audit.chained,
        r.audit.checkpoints,
        if r.audit.legacy > 0 {
            format!(", {} older entries not covered", r.audit.legacy)
        } else {
            String::new()
        }
    ));
    out
}

/// `event.kind, event.usage; trace.tokens`, or which argument is converted whole (a rule
/// that uses `event` other than as `event.field` gets all of it, which costs time per event).
fn describe_reads(rule: &crate::rules::Rule) -> String {
    let part = |name: &str, r: Option<&[String]>| match r {
        None => format!("all of {name} (not only read as {name}.field)"),
        Some([]) => format!("nothing of {name}"),
        Some(fields) => fields
            .iter()
            .map(|f| format!("{name}.{f}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let (event, trace) = rule.reads();
    format!("{}; {}", part("event", event), part("trace", trace))
}

async fn rules_command(config: &Config, cmd: RulesCommand) -> anyhow::Result<ExitCode> {
    use crate::rules::RuleSet;
    match cmd {
        RulesCommand::Check { dir } => {
            let dir = dir.unwrap_or_else(|| config.rules_dir.clone());
            match RuleSet::load_dir(&dir) {
                Ok(set) => {
                    for r in set.rules() {
                        println!(
                            "ok  {:<28} {:<9} {}",
                            r.id(),
                            r.severity().as_str(),
                            r.description()
                        );
                        println!("    reads {}", describe_reads(r));
                    }
                    println!("{} rules compiled", set.rules().len());
                    Ok(ExitCode::SUCCESS)
                }
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    eprintln!("{} problems", errors.len());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        RulesCommand::Test { dir } => {
            let dir = dir.unwrap_or_else(|| config.rules_dir.clone());
            let report = crate::rules::run_fixtures(&dir);
            println!("{report}");
            Ok(if report.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        RulesCommand::Replay {
            rules,
            disable,
            from,
            to,
        } => {
            let dir = rules.unwrap_or_else(|| config.rules_dir.clone());
            let set = match RuleSet::load_dir(&dir) {
                Ok(set) => set,
                Err(errors) => {
                    for e in &errors {
                        eprintln!("{e}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
            };
            let set = std::sync::Arc::new(set.without(&disable));
            let resolved = config.resolve().map_err(server::ServeError::Config)?;
            let store = server::open_store(config, &resolved).await?;
            let bar = progress_bar(store.count_records().await?, "re-evaluating");
            let mut conn = store.read_connection().await?;
            let range = crate::ablation::AblationRange { from, to };
            let never = std::sync::atomic::AtomicBool::new(false);
            let mut report = crate::ablation::AblationReport::default();
            let mut done = 0;
            let projects = crate::store::history::projects(&mut conn.exec()).await?;
            for project in projects {
                let one = crate::ablation::run(&mut conn, &project, &set, &range, &never, |n| {
                    bar.set_position(done + n)
                })
                .await?;
                done = bar.position();
                report.merge(one);
            }
            bar.finish_and_clear();
            println!("{report}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn report_command(config: &Config, cmd: ReportCommand) -> anyhow::Result<ExitCode> {
    use crate::report::{self, Verdict};
    let resolved = config.resolve().map_err(server::ServeError::Config)?;
    let store = server::open_store(config, &resolved).await?;
    let key = server::chain_key(&resolved);
    let bar = progress_bar(0, "reading the log");
    let mut tick = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    if let Some(ReportVerify::Verify { file }) = cmd.verify {
        let pdf = std::fs::read(&file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        let verdict = report::verify(&store, &key, &pdf, &mut tick).await?;
        bar.finish_and_clear();
        return Ok(match verdict {
            Verdict::Matches(f) => {
                println!(
                    "OK: {} report on {} from {} to {}: every figure re-derived from the log \
                     (seq {}–{}, head {}), chain verified, and the file is byte for byte the \
                     report they render to",
                    f.standard.as_str(),
                    f.projects.join(", "),
                    f.from,
                    f.cut_at,
                    f.log.first_seq.map_or("-".into(), |s| s.to_string()),
                    f.log.last_seq.map_or("-".into(), |s| s.to_string()),
                    f.log.head_link.as_deref().unwrap_or("-"),
                );
                ExitCode::SUCCESS
            }
            Verdict::Differs { what } => {
                eprintln!("MISMATCH: {what}");
                ExitCode::from(2)
            }
            Verdict::Edited { detail } => {
                eprintln!("MISMATCH: {detail}");
                ExitCode::from(2)
            }
            Verdict::Removed { what } => {
                eprintln!("CANNOT CHECK: {what}; the figures can no longer be re-derived");
                ExitCode::from(3)
            }
            Verdict::NotAReport => {
                eprintln!("{} holds no AuditTrail report facts", file.display());
                ExitCode::from(2)
            }
        });
    }
    let (Some(standard), Some(from), Some(to), Some(out)) =
        (cmd.standard, cmd.from, cmd.to, cmd.out)
    else {
        anyhow::bail!("--standard, --from, --to and --out are required");
    };
    let standard = report::Standard::parse(&standard)
        .ok_or_else(|| anyhow::anyhow!("--standard must be one of soc2, gdpr, hipaa, eu-ai-act"))?;
    // Over every project, the security events that name none (failed sign-ins, the owner's
    // actions) are counted too.
    let global_audit = cmd.projects.is_empty();
    let projects = if cmd.projects.is_empty() {
        let mut conn = store.read_connection().await?;
        crate::store::history::projects(&mut conn.exec()).await?
    } else {
        cmd.projects
    };
    let (rules, _) = crate::rules::RuleSet::load_dir_per_file(&config.rules_dir, None);
    let (rules, rules_digest) = report::rule_set_facts(&rules);
    let params = report::Params {
        standard,
        projects,
        from,
        to,
        now: cmd.now.unwrap_or_else(chrono::Utc::now),
        retention_days: config.retention_days,
        pii_redaction: config.pii_redaction_enabled,
        rules,
        rules_digest,
        global_audit,
    };
    let facts = report::build(&store, &key, &params, &mut tick).await?;
    bar.finish_and_clear();
    let pdf = report::render(&facts);
    std::fs::write(&out, &pdf)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    let g = &facts.figures;
    println!(
        "wrote {} ({} bytes): {} events, {} traces, {} violations over seq {}–{}; chain {}",
        out.display(),
        pdf.len(),
        g.events,
        g.traces,
        g.violations,
        facts.log.first_seq.map_or("-".into(), |s| s.to_string()),
        facts.log.last_seq.map_or("-".into(), |s| s.to_string()),
        if facts.log.chain_verified {
            "verified"
        } else {
            "NOT verified"
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub fn progress_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .expect("static progress template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
