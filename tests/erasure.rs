//! GDPR erasure end to end (`POST /api/v1/erasure`, `audittrail erase`): what is removed,
//! what stays verifiable, and that replay still rebuilds the same projections.

mod common;

use std::path::Path;

use common::{batch, cli, client_with_key, db_sql, event, json_response, spawn_app, spawn_in};
use serde_json::{Value, json};

const CANARY: &str = "ORD-7731-CANARY";

fn verify(dir: &Path) -> (Option<i32>, String) {
    let out = cli(dir, &["verify"]);
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Three sessions: `alice` (2 traces, the canary and an e-mail in outputs), `bob`, `carol`.
fn events() -> Vec<Value> {
    let mut out = Vec::new();
    for (i, (trace, session)) in [
        ("ta1", "alice"),
        ("ta2", "alice"),
        ("tb1", "bob"),
        ("tc1", "carol"),
    ]
    .into_iter()
    .enumerate()
    {
        for s in 0..3 {
            let mut e = event(
                trace,
                &format!("{trace}-s{s}"),
                &format!("2026-11-22T10:0{i}:0{s}Z"),
            );
            e["session_id"] = json!(session);
            e["agent"] = json!(format!("{session}-bot"));
            if session == "alice" {
                e["output"] = json!({"content": format!("Your order {CANARY} ships today")});
                e["input"] = json!({"messages": [{"role": "user", "content": "mail me at Jane.Roe@example.org"}]});
            }
            out.push(e);
        }
    }
    // carol mentions the same e-mail once: erasure by value reaches her record too.
    out[9]["input"] =
        json!({"messages": [{"role": "user", "content": "cc jane.roe@example.org please"}]});
    out
}

fn traces_table(dir: &Path) -> String {
    db_sql(
        dir,
        "SELECT project, trace_id, coalesce(agent,'-'), coalesce(session_id,'-'), start_time, \
         coalesce(end_time,'-'), span_count, error_count, input_tokens, output_tokens, cost_nanos, last_seq \
         FROM traces ORDER BY project, trace_id",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_session_keeps_the_facts_verifiable_and_replay_rebuilds_the_same_projections() {
    let app = spawn_app().await;
    let (status, _) = app.post_json("/api/v1/traces", &batch(events())).await;
    assert_eq!(status, 202);
    // A backup before the erasure: the answer must list it.
    let backup = app.dir.path().join("before.db");
    let out = cli(app.dir.path(), &["backup", backup.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, before) = app.get("/api/v1/traces?session_id=alice").await;
    let tokens_before: Vec<Value> = before["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["input_tokens"].clone())
        .collect();
    assert_eq!(tokens_before.len(), 2, "{before}");

    let (status, answer) = app
        .post_json(
            "/api/v1/erasure",
            &json!({"session_id": "alice", "reason": "Art. 17 request #12"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["records_erased"], 6, "{answer}");
    assert_eq!(answer["selector"], "session_id");
    assert_eq!(answer["seqs"].as_array().unwrap().len(), 6);
    let listed = answer["backups_predating"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|b| b["file"].as_str().unwrap().ends_with("before.db")),
        "{answer}"
    );
    assert!(
        !answer.to_string().contains("alice"),
        "the answer never repeats the subject"
    );

    // Read back: the spans keep their facts, lose their personal part.
    let (status, trace) = app.get("/api/v1/traces/ta1").await;
    assert_eq!(status, 200);
    let text = trace.to_string();
    assert!(!text.contains(CANARY) && !text.contains("alice"), "{text}");
    assert_eq!(trace["spans"].as_array().unwrap().len(), 3, "{trace}");
    assert_eq!(trace["spans"][0]["usage"]["input_tokens"], 10, "{trace}");
    let (_, gone) = app.get("/api/v1/traces?session_id=alice").await;
    assert_eq!(gone["traces"].as_array().unwrap().len(), 0, "{gone}");
    let (_, bob) = app.get("/api/v1/traces/tb1").await;
    assert_eq!(
        bob["spans"][0]["session_id"], "bob",
        "other subjects untouched"
    );

    // The audit log records the act without the subject.
    let (_, audit) = app.get("/api/v1/audit?event_type=data_erasure").await;
    let entry = &audit["entries"][0];
    assert_eq!(entry["operation"], "data.erase", "{audit}");
    assert!(!audit.to_string().contains("alice"), "{audit}");

    // Ablation says how many records it could not re-evaluate instead of guessing.
    let (status, job) = app.post_json("/api/v1/ablation", &json!({})).await;
    assert_eq!(status, 202, "{job}");
    let url = format!("/api/v1/ablation/{}", job["id"].as_str().unwrap());
    let mut done = Value::Null;
    for _ in 0..1200 {
        let (_, s) = app.get(&url).await;
        if s["status"] == "done" {
            done = s;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(done["result"]["erased_skipped"], 6, "{done}");

    let dir = app.stop().await;
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("6 erased record(s)"), "{out}");

    // Replay rebuilds exactly the projections the erasure left.
    let projected = traces_table(dir.path());
    assert!(
        projected.contains("ta1|-|-|"),
        "personal fields cleared: {projected}"
    );
    let out = cli(dir.path(), &["replay"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(traces_table(dir.path()), projected);

    // An edited fact of an erased record is still an edit.
    let copy = common::copy_dir(dir.path());
    let seq = answer["seqs"][0].as_i64().unwrap();
    db_sql(
        copy.path(),
        &format!(
            "UPDATE events SET body = replace(body, '\"input_tokens\":10', '\"input_tokens\":1') WHERE seq = {seq}"
        ),
    );
    let (code, out) = verify(copy.path());
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(&format!("record seq {seq}")) && out.contains("edited"),
        "{out}"
    );

    // Nothing of the subject is left in the data directory's database files (SQLite).
    if !common::postgres() {
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("audittrail.db") {
                continue; // the backup predates the erasure, as the answer said
            }
            let bytes = std::fs::read(&path).unwrap();
            for needle in [CANARY.as_bytes(), b"alice-bot", b"mail me at"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} still holds {:?}",
                    path.display(),
                    String::from_utf8_lossy(needle)
                );
            }
        }
    } else {
        assert_eq!(
            db_sql(
                dir.path(),
                &format!(
                    "SELECT COUNT(*) FROM events WHERE body LIKE '%{CANARY}%' OR agent = 'alice-bot'"
                )
            ),
            "0"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_by_value_finds_records_through_the_keyed_index_and_bad_requests_name_the_field() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_json("/api/v1/traces", &batch(events())).await.0,
        202
    );
    assert_eq!(
        db_sql(
            app.dir.path(),
            "SELECT COUNT(*) FROM redacted_values WHERE pseudonym LIKE '%jane%'"
        ),
        "0",
        "the index holds keyed pseudonyms, never values"
    );
    for (body, field) in [
        (json!({"reason": "x"}), "$"),
        (
            json!({"session_id": "a", "agent": "b", "reason": "x"}),
            "agent",
        ),
        (json!({"session_id": "a"}), "reason"),
        (json!({"session_id": "", "reason": "x"}), "session_id"),
        (json!({"session_id": 7, "reason": "x"}), "session_id"),
        (
            json!({"email": "jane.roe@example.org", "reason": "x"}),
            "email",
        ),
    ] {
        let (status, problem) = app.post_json("/api/v1/erasure", &body).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["path"], field, "{problem}");
        assert!(!problem.to_string().contains("jane.roe"), "{problem}");
    }
    // A key without data:erase may not erase.
    let (_, created) = app
        .post_json(
            "/api/v1/keys",
            &json!({"name": "reader", "projects": ["default"], "permissions": ["traces:read", "traces:write"]}),
        )
        .await;
    let reader = client_with_key(created["key"].as_str().unwrap());
    let resp = reader
        .post(app.url("/api/v1/erasure"))
        .json(&json!({"value": "jane.roe@example.org", "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_response(resp).await.0, 403);

    // Another spelling of the same address finds alice's six records and carol's one.
    let (status, answer) = app
        .post_json(
            "/api/v1/erasure",
            &json!({"value": " JANE.ROE@Example.org", "reason": "Art. 17 request #13"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["records_erased"], 7, "{answer}");
    // Erasing again finds nothing left (the index entries went with the records).
    let (_, again) = app
        .post_json(
            "/api/v1/erasure",
            &json!({"value": "jane.roe@example.org", "reason": "repeat"}),
        )
        .await;
    assert_eq!(again["records_erased"], 0, "{again}");
    let (_, carol) = app.get("/api/v1/traces/tc1").await;
    let erased = carol["spans"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.get("input").is_none())
        .count();
    assert_eq!(erased, 1, "only carol's record with the address: {carol}");
    let dir = app.stop().await;
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_erases_only_while_no_server_writes_the_database() {
    let app = spawn_app().await;
    assert_eq!(
        app.post_json("/api/v1/traces", &batch(events())).await.0,
        202
    );
    if !common::postgres() {
        let out = cli(
            app.dir.path(),
            &["erase", "--agent", "bob-bot", "--reason", "request #14"],
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("POST /api/v1/erasure"), "{err}");
    }
    let dir = app.stop().await;
    let out = cli(dir.path(), &["erase", "--agent", "bob-bot"]);
    assert!(!out.status.success(), "--reason is required");
    let out = cli(
        dir.path(),
        &["erase", "--agent", "bob-bot", "--reason", "request #14"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["records_erased"], 3, "{answer}");
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}");
    // The receipt and the audit entry are there after a restart.
    let app = spawn_in(dir, &[]).await;
    let (_, audit) = app.get("/api/v1/audit?event_type=data_erasure").await;
    assert_eq!(audit["entries"][0]["principal"], "cli", "{audit}");
    app.stop().await;
}
