//! The `audittrail` binary: parse configuration, start logging, hand over to the library.

use clap::Parser;
use tracing_subscriber::EnvFilter;

// glibc malloc spent a third of ingest CPU in allocation under load; mimalloc is far cheaper
// for the many short-lived JSON allocations of the pipeline.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logs a panic's location, never its message: a message may quote request data (a slicing
/// panic prints the string it sliced). With `AUDITTRAIL_DEBUG=true` the message is logged too.
fn install_panic_hook(debug: bool) {
    std::panic::set_hook(Box::new(move |info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_else(|| "unknown".into());
        let thread = std::thread::current()
            .name()
            .unwrap_or("unnamed")
            .to_owned();
        if debug {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%location, %thread, %message, "panic");
        } else {
            tracing::error!(%location, %thread, "panic (its message is not logged: it may contain request data)");
        }
    }));
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One TLS crypto provider for every client (webhooks): ring, which sqlx already uses.
    audittrail::server::install_tls_provider();
    let cli = audittrail::cli::Cli::parse();
    let filter = EnvFilter::try_from_env("AUDITTRAIL_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.config.json_logs {
        builder.json().init();
    } else {
        builder.init();
    }
    install_panic_hook(cli.config.debug);
    match audittrail::cli::run(cli).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
