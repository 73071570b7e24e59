//! The core promise, end to end: personal data sent to the server — in every field, in valid
//! batches and in rejected ones — appears in no response, no byte of the SQLite database or
//! its WAL, and no line of the server's log (at debug level).

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

/// Values the redactor must remove, each with the context a real trace would give it.
const SEEDS: &[&str] = &[
    "maria.gonzalez@example.org",
    "+1 415 555 0134",
    "078-05-1120",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "203.0.113.77",
    "sk-proj-Xk9aTq3LmN8pQ2rS7vW1yZ4bC6dE0fGhJkLmNoPqRsTu",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "Maria Gonzalez",
    "1600 Pennsylvania Avenue",
    "1984-03-12",
];

fn pii_event(i: usize) -> Value {
    json!({
        "event_id": format!("evt-{i}"),
        "trace_id": "pii-trace",
        "span_id": format!("span-{i}"),
        "session_id": "maria.gonzalez@example.org",
        "kind": "tool",
        "name": "lookup_customer",
        "agent": "support-bot",
        "model": "gpt-4o",
        "start_time": "2026-11-22T10:00:00Z",
        "input": {
            "messages": [{"role": "user", "content": "Hi, I'm Maria Gonzalez, born on 1984-03-12. My SSN is 078-05-1120 and you can call me at +1 415 555 0134."}],
            "tool_call": {"function": {"name": "charge", "arguments": "{\"card\": \"4111 1111 1111 1111\", \"iban\": \"DE89 3704 0044 0532 0130 00\"}"}}
        },
        "output": "Customer record: Maria Gonzalez, 1600 Pennsylvania Avenue, Washington, DC 20500; last login from 203.0.113.77. Email maria.gonzalez@example.org.",
        "attributes": {
            "maria.gonzalez@example.org": "key holding an email",
            "config": "OPENAI_API_KEY=sk-proj-Xk9aTq3LmN8pQ2rS7vW1yZ4bC6dE0fGhJkLmNoPqRsTu",
            "aws": {"access_key_id": "AKIAIOSFODNN7EXAMPLE"},
            "escaped": "token ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8 used by \\u004daria"
        }
    })
}

fn find_leaks(haystack: &[u8], place: &str, leaks: &mut Vec<String>) {
    for seed in SEEDS {
        if haystack.windows(seed.len()).any(|w| w == seed.as_bytes()) {
            leaks.push(format!("`{seed}` found in {place}"));
        }
    }
}

#[tokio::test]
async fn seeded_pii_reaches_no_response_file_or_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let log_path = dir.path().join("server.log");
    let mut server = common::serve_command(dir.path(), port)
        .env("AUDITTRAIL_LOG", "debug")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    common::wait_ready(&base).await;
    let key = common::bootstrap(&base).await;
    let client = common::client_with_key(&key);

    let mut responses: Vec<(String, Vec<u8>)> = Vec::new();
    let post = |body: String, path: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let r = client
                .post(format!("{base}{path}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
        }
    };

    // Valid batches.
    let (status, body) = post(
        json!({"events": [pii_event(0), pii_event(1)]}).to_string(),
        "/api/v1/traces",
    )
    .await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    responses.push(("ingest".into(), body));
    let (status, body) = post(pii_event(2).to_string(), "/api/v1/evaluate").await;
    assert_eq!(status, 200);
    responses.push(("evaluate".into(), body));

    // Rejected batches whose error messages could echo the values.
    let mut bad = pii_event(3);
    bad["start_time"] = json!("maria.gonzalez@example.org");
    bad["kind"] = json!("+1 415 555 0134");
    bad["078-05-1120"] = json!("unknown field named by an SSN");
    bad["usage"] = json!({"input_tokens": "4111 1111 1111 1111"});
    let rejected = [
        json!({"events": [pii_event(4), bad]}).to_string(),
        r#"{"events": [{"trace_id": "Maria Gonzalez", "note": "1600 Pennsylvania Avenue""#
            .to_string(),
        r#"{"events": "DE89 3704 0044 0532 0130 00"}"#.to_string(),
    ];
    for body in rejected {
        let (status, resp) = post(body, "/api/v1/traces").await;
        assert!(
            (400..500).contains(&status),
            "rejected with a 4xx, got {status}"
        );
        responses.push((format!("rejected ({status})"), resp));
    }

    for path in [
        "/api/v1/traces",
        "/api/v1/traces/pii-trace",
        "/api/v1/violations",
        "/api/v1/rules",
        "/metrics",
    ] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        responses.push((path.into(), r.bytes().await.unwrap().to_vec()));
    }
    let trace: Value = serde_json::from_slice(
        &responses
            .iter()
            .find(|(p, _)| p == "/api/v1/traces/pii-trace")
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(
        trace["spans"].as_array().unwrap().len(),
        2,
        "the valid events were stored"
    );

    // Read the files while the server still runs (WAL not yet checkpointed away), then stop it.
    let mut leaks = Vec::new();
    for (place, body) in &responses {
        find_leaks(body, &format!("the {place} response"), &mut leaks);
    }
    scan_database_files(dir.path(), &mut leaks);
    terminate(&mut server);
    let mut log = Vec::new();
    std::fs::File::open(&log_path)
        .unwrap()
        .read_to_end(&mut log)
        .unwrap();
    assert!(
        String::from_utf8_lossy(&log).contains("DEBUG"),
        "the log ran at debug level"
    );
    find_leaks(&log, "the server log", &mut leaks);
    scan_database_files(dir.path(), &mut leaks);
    assert!(
        !String::from_utf8_lossy(&log).contains(key.split('_').nth(1).unwrap()),
        "the key's secret never reaches the log"
    );
    assert!(leaks.is_empty(), "PII leaked:\n{}", leaks.join("\n"));
    assert!(
        trace["spans"][0]["redaction"]["input"]["US_SSN"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "{trace}"
    );

    assert!(Path::new(&log_path).exists());
}

/// The database, its WAL and shared-memory files, byte for byte.
fn scan_database_files(dir: &std::path::Path, leaks: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("audittrail.db")
        {
            find_leaks(&std::fs::read(&p).unwrap(), &p.display().to_string(), leaks);
        }
    }
}

/// SIGTERM, then wait: the graceful path flushes and checkpoints.
fn terminate(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
