//! The event log's promises, checked with the real binary: `verify` passes on an untouched
//! log and names the first bad record after each kind of tampering; `replay` rebuilds the
//! trace summaries identically; a SIGKILL loses no acknowledged event.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{TEST_SECRET, base_args, batch, binary, cli, copy_dir, db_sql, event, spawn_app};
use serde_json::json;

/// A log of 30 span records over 3 traces, written by the real server, stopped cleanly.
async fn populated_log() -> tempfile::TempDir {
    let app = spawn_app().await;
    for t in 0..3 {
        let events = (0..10)
            .map(|i| {
                event(
                    &format!("trace-{t}"),
                    &format!("s{i}"),
                    &format!("2026-11-22T10:00:{i:02}Z"),
                )
            })
            .collect();
        assert_eq!(app.post_json("/api/v1/traces", &batch(events)).await.0, 202);
    }
    app.stop().await
}

#[tokio::test]
async fn verify_names_the_first_tampered_record() {
    let original = populated_log().await;
    let out = cli(original.path(), &["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 30 spans, and the audit checkpoint the writer appended at shutdown.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("31 records verified"), "{stdout}");

    let cases: &[(&str, &str, &str)] = &[
        (
            "edited body",
            "UPDATE events SET body = replace(body, 'hi there', 'bye') WHERE seq = 12",
            "seq 12",
        ),
        (
            "deleted record",
            "DELETE FROM events WHERE seq = 7",
            "records seq 7..=7 are missing",
        ),
        (
            "reordered records",
            "UPDATE events SET seq = -1 WHERE seq = 4; UPDATE events SET seq = 4 WHERE seq = 5; UPDATE events SET seq = 5 WHERE seq = -1",
            "seq 4",
        ),
        (
            "inserted record",
            "UPDATE events SET seq = seq + 100 WHERE seq > 15; UPDATE events SET seq = seq - 99 WHERE seq > 100; \
             INSERT INTO events (seq, project, event_id, record_type, trace_id, event_time, recorded_at, body, digest, link) \
             SELECT 16, project, 'forged', record_type, trace_id, event_time, recorded_at, body, digest, link FROM events WHERE seq = 15",
            "seq 16",
        ),
        (
            "edited link",
            "UPDATE events SET link = digest WHERE seq = 20",
            "seq 20",
        ),
        (
            "truncated tail",
            "DELETE FROM events WHERE seq > 27",
            "removed from the tail",
        ),
    ];
    for (what, sql, expected) in cases {
        let copy = copy_dir(original.path());
        db_sql(copy.path(), sql);
        let out = cli(copy.path(), &["verify"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{what}: verify must fail; stderr: {stderr}"
        );
        assert!(
            stderr.contains(expected),
            "{what}: expected `{expected}` in: {stderr}"
        );
    }

    // Without the key nobody can re-chain an edit: recomputing digests is not enough.
    let copy = copy_dir(original.path());
    let out = Command::new(binary())
        .args(base_args(copy.path()).iter().skip(1).map(|a| {
            if a == TEST_SECRET {
                "another-secret-key-0123456789abcdef"
            } else {
                a
            }
        }))
        .arg("verify")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a different key does not verify"
    );
}

#[tokio::test]
async fn replay_rebuilds_identical_trace_summaries() {
    let dir = populated_log().await;
    // Rows as `a|b|c` lines, NULL empty: the same text from the sqlite3 shell and from psql.
    let q = "SELECT project, trace_id, agent, session_id, start_time, end_time, span_count, \
             error_count, input_tokens, output_tokens, cost_nanos, last_seq FROM traces ORDER BY project, trace_id";
    let before = db_sql(dir.path(), q);
    assert_eq!(before.lines().count(), 3, "{before}");
    db_sql(
        dir.path(),
        "UPDATE traces SET span_count = 999, cost_nanos = 0",
    );
    let out = cli(dir.path(), &["replay"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("rebuilt 3 trace summaries from 30 span records and")
    );
    let after = db_sql(dir.path(), q);
    assert_eq!(before, after);
    assert!(
        cli(dir.path(), &["verify"]).status.success(),
        "replay never touches the log"
    );
}

#[tokio::test]
async fn sigkill_under_load_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let start = |dir: &Path| common::serve_command(dir, port).spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start(dir.path());
    common::wait_ready(&base).await;
    let client = common::client_with_key(&common::bootstrap(&base).await);

    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut tasks = Vec::new();
    for w in 0..16 {
        let (client, base) = (client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut n = 0;
            loop {
                n += 1;
                let events = (0..20)
                    .map(|i| {
                        let mut e = event(
                            &format!("w{w}-b{n}"),
                            &format!("s{i}"),
                            "2026-11-22T10:00:00Z",
                        );
                        e["event_id"] = json!(format!("w{w}-b{n}-e{i}"));
                        e
                    })
                    .collect();
                match client
                    .post(format!("{base}/api/v1/traces"))
                    .json(&batch(events))
                    .send()
                    .await
                {
                    Ok(r) if r.status().as_u16() == 202 => {
                        acked.extend((0..20).map(|i| format!("w{w}-b{n}-e{i}")))
                    }
                    Ok(_) => {}
                    Err(_) => break, // the server died mid-request: not acknowledged
                }
                if Instant::now() > stop_at + Duration::from_secs(5) {
                    break;
                }
            }
            acked
        }));
    }
    tokio::time::sleep_until(stop_at.into()).await;
    server.kill().unwrap(); // SIGKILL: no shutdown, no flush
    server.wait().unwrap();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(acked.len() > 100, "the load ran ({} acked)", acked.len());

    let mut server = start(dir.path());
    common::wait_ready(&base).await;
    let stored: std::collections::HashSet<String> =
        db_sql(dir.path(), "SELECT event_id FROM events")
            .lines()
            .map(str::to_owned)
            .collect();
    let missing: Vec<_> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    server.kill().unwrap();
    server.wait().unwrap();
    let out = cli(dir.path(), &["verify"]);
    assert!(
        out.status.success(),
        "chain verifies after the crash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
