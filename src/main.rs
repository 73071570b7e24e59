//! The `audittrail` binary: parse configuration, start logging, hand over to the library.

use clap::Parser;
use tracing_subscriber::EnvFilter;

// glibc malloc spent a third of ingest CPU in allocation under load; mimalloc is far cheaper
// for the many short-lived JSON allocations of the pipeline.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One TLS crypto provider for every client (webhooks): ring, which sqlx already uses.
    audittrail::server::install_tls_provider();
    let cli = audittrail::cli::Cli::parse();
    let filter =
        EnvFilter::try_from_env("AUDITTRAIL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.config.json_logs {
        builder.json().init();
    } else {
        builder.init();
    }
    match audittrail::cli::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
