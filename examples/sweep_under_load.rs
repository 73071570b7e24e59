//! Measures retention and erasure on a real server (in this process, on loopback):
//! 1. fills the log with `--events` events (the load generator's fill mode);
//! 2. ingest latency for `--duration` seconds without a sweep, then again while a retention
//!    sweep removes everything the fill wrote (the sweep's clock is set 90 days ahead, past
//!    the fill, so the sweep has the whole fill to remove);
//! 3. the end-to-end time of `POST /api/v1/erasure` for a subject with `--subject-records`
//!    records.
//!
//!   cargo run --release --example sweep_under_load -- --events 1000000
//!   cargo run --release --example sweep_under_load -- --database-url postgres://postgres@127.0.0.1/at_bench
use std::time::{Duration, Instant};

use audittrail::loadgen::{BenchArgs, Door};
use clap::Parser;
use serde_json::json;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Default: SQLite in a fresh temporary directory.
    #[arg(long)]
    database_url: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    subject_records: u64,
    #[arg(long, default_value_t = 20)]
    duration: u64,
    #[arg(long, default_value_t = 8)]
    connections: usize,
}

fn load(url: &str, key: &str, args: &Args, fill: Option<u64>) -> BenchArgs {
    BenchArgs {
        url: url.to_owned(),
        connections: args.connections,
        batch: if fill.is_some() { 500 } else { 100 },
        duration: args.duration,
        warmup: if fill.is_some() { 0 } else { 2 },
        door: Door::Http,
        key: Some(key.to_owned()),
        fill,
        read: false,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    audittrail::server::install_tls_provider();
    let dir = tempfile::tempdir()?;
    let db = args
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite:///{}", dir.path().join("audittrail.db").display()));
    let cli = audittrail::cli::Cli::try_parse_from([
        "audittrail",
        "--data-dir",
        &dir.path().display().to_string(),
        "--database-url",
        &db,
        "--secret-key",
        "bench-secret-key-0123456789abcdef0123456789",
        "--rules-dir",
        concat!(env!("CARGO_MANIFEST_DIR"), "/rules"),
        "--rate-limit-ingest",
        "1000000",
        "serve",
    ])?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let service = audittrail::server::build(cli.config).await?;
    let (store, writer) = (service.state.store.clone(), service.state.writer.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(service.serve(listener, async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let key = http
        .post(format!("{url}/api/v1/keys/bootstrap"))
        .json(&json!({"name": "bench"}))
        .send()
        .await?
        .json::<serde_json::Value>()
        .await?["key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let t = Instant::now();
    audittrail::loadgen::run(load(&url, &key, &args, Some(args.events))).await?;
    println!(
        "fill: {} events in {:.1} s",
        args.events,
        t.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cut = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let quiet = audittrail::loadgen::run(load(&url, &key, &args, None)).await?;
    println!("ingest without a sweep: {quiet}");

    let sweep = {
        let (store, writer) = (store.clone(), writer.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let t = Instant::now();
            let r = audittrail::retention::apply(
                &store,
                &writer,
                90,
                cut + chrono::Duration::days(90),
                false,
                "bench",
                |_, _| {},
            )
            .await;
            (r, t.elapsed())
        })
    };
    let during = audittrail::loadgen::run(load(&url, &key, &args, None)).await?;
    let (swept, took) = sweep.await?;
    let swept = swept?;
    println!("ingest during the sweep: {during}");
    println!(
        "sweep: {} records removed in {:.1} s ({:.0} records/s), {} carried, receipt at seq {:?}{}",
        swept.records_removed,
        took.as_secs_f64(),
        swept.records_removed as f64 / took.as_secs_f64(),
        swept.carried,
        swept.receipt_seq,
        if took.as_secs() > args.duration + 2 {
            " (the sweep outlasted the measured window)"
        } else {
            ""
        }
    );

    // A subject with many records: one session across traces.
    let mut sent = 0;
    while sent < args.subject_records {
        let n = (args.subject_records - sent).min(500);
        let events: Vec<_> = (0..n)
            .map(|i| {
                let mut e = audittrail::loadgen::sample_event(
                    &format!("subject-{}", (sent + i) / 20),
                    i as usize,
                );
                e["session_id"] = json!("subject-session");
                e["event_id"] = json!(format!("subject-{}", sent + i));
                e
            })
            .collect();
        let resp = http
            .post(format!("{url}/api/v1/traces"))
            .bearer_auth(&key)
            .json(&json!({ "events": events }))
            .send()
            .await?;
        anyhow::ensure!(resp.status().as_u16() == 202, "ingest: {}", resp.status());
        sent += n;
    }
    let t = Instant::now();
    let answer: serde_json::Value = http
        .post(format!("{url}/api/v1/erasure"))
        .bearer_auth(&key)
        .json(&json!({"session_id": "subject-session", "reason": "benchmark"}))
        .send()
        .await?
        .json()
        .await?;
    println!(
        "erasure: {} records erased in {:.2} s end to end (receipt at seq {})",
        answer["records_erased"],
        t.elapsed().as_secs_f64(),
        answer["receipt_seq"]
    );
    let _ = stop.send(());
    server.await??;
    Ok(())
}
