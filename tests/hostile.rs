//! Hostile and odd input, through the real server: each defect a fuzzing run found, as a
//! regression test.

mod common;

use std::time::Duration;

use common::{TestApp, batch, client_with_key, event, json_response, spawn_app};
use serde_json::{Value, json};

async fn key(app: &TestApp, projects: &[&str], permissions: &[&str]) -> String {
    let (status, body) = app
        .post_json(
            "/api/v1/keys",
            &json!({"name": "k", "projects": projects, "permissions": permissions}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

/// `n` events in project `project`, posted in batches of 500 with the owner key.
async fn fill(app: &TestApp, project: &str, n: usize) {
    for chunk in 0..n.div_ceil(500) {
        let events = (0..500.min(n - chunk * 500))
            .map(|i| {
                event(
                    &format!("{project}-t{}", (chunk * 500 + i) / 10),
                    &format!("s{i}"),
                    "2026-11-22T10:00:00Z",
                )
            })
            .collect();
        let resp = app
            .client
            .post(app.url("/api/v1/traces"))
            .header("x-audittrail-project", project)
            .json(&batch(events))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_ablation_jobs_at_once_leave_the_service_answering() {
    let app = spawn_app().await;
    fill(&app, "big", 3000).await;
    fill(&app, "small", 60).await;
    let keys = futures_util::future::join_all((0..11).map(|_| {
        key(
            &app,
            &["small"],
            &["rules:read", "traces:read", "traces:write"],
        )
    }))
    .await;
    // A candidate rule that spends its whole operation budget on every event keeps each job
    // busy for seconds, as a large history would.
    let slow = json!({"rules": {"slow": "const DESCRIPTION = \"slow\";\nconst SEVERITY = \"info\";\nfn check(event, trace) { let x = 0; loop { x += 1; } }\n"}});
    // Ten at once: all accepted (two run, eight wait with their position).
    let started = futures_util::future::join_all(keys[..10].iter().map(|k| {
        let client = client_with_key(k);
        let url = app.url("/api/v1/ablation");
        let slow = slow.clone();
        async move { json_response(client.post(url).json(&slow).send().await.unwrap()).await }
    }))
    .await;
    for (status, body) in &started {
        assert_eq!(*status, 202, "{body}");
        assert!(["queued", "running"].contains(&body["status"].as_str().unwrap()));
    }
    // Beyond the queue, and a second job for a key that has one: 429 with Retry-After.
    for k in [&keys[10], &keys[0]] {
        let resp = client_with_key(k)
            .post(app.url("/api/v1/ablation"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 429);
        assert!(resp.headers().contains_key("retry-after"));
    }
    // Meanwhile everything else answers normally, the owner's key included.
    let (status, health) = app.get("/api/v1/health").await;
    assert_eq!(
        (status, health["status"].as_str()),
        (200, Some("ok")),
        "{health}"
    );
    let small = client_with_key(&keys[0]);
    let (status, list) =
        json_response(small.get(app.url("/api/v1/traces")).send().await.unwrap()).await;
    assert_eq!(status, 200, "{list}");
    let resp = small
        .post(app.url("/api/v1/traces"))
        .json(&batch(vec![event(
            "during-jobs",
            "s",
            "2026-11-22T11:00:00Z",
        )]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    // The last one queued can be cancelled.
    let last = started[9].1["id"].as_str().unwrap();
    let (status, cancelled) = json_response(
        client_with_key(&keys[9])
            .delete(app.url(&format!("/api/v1/ablation/{last}")))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // Queued, it is cancelled at once; if a slot freed up and it started meanwhile (a loaded
    // machine), it stops at its next chunk.
    assert_eq!(status, 200, "{cancelled}");
    let mut state = cancelled["status"].as_str().unwrap_or_default().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while state == "cancelling" && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (_, v) = json_response(
            client_with_key(&keys[9])
                .get(app.url(&format!("/api/v1/ablation/{last}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        state = v["status"].as_str().unwrap_or_default().to_owned();
    }
    assert_eq!(state, "cancelled", "{cancelled}");
    // A job reads its own project's records only: 60 spans (61 if it started after the one
    // posted meanwhile), not the 3,000 of the other project.
    let first = started[0].1["id"].as_str().unwrap();
    let mut done = Value::Null;
    for _ in 0..1200 {
        let (_, s) = json_response(
            small
                .get(app.url(&format!("/api/v1/ablation/{first}")))
                .send()
                .await
                .unwrap(),
        )
        .await;
        if s["status"] == "done" {
            done = s;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(done["status"], "done", "{done}");
    let total = done["progress"]["total"].as_u64().unwrap();
    assert!((60..=61).contains(&total), "{done}");
    assert_eq!(done["result"]["events_compared"], total, "{done}");
    app.stop().await;
}

// Multi-threaded: the server keeps running while this thread waits for the database shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_error_while_checking_a_key_is_a_503_never_a_401() {
    let app = spawn_app().await;
    let fresh = key(&app, &["p"], &["traces:read"]).await;
    app.sql("ALTER TABLE api_keys RENAME TO api_keys_away");
    let resp = client_with_key(&fresh)
        .get(app.url("/api/v1/traces"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "auth_unavailable");
    app.sql("ALTER TABLE api_keys_away RENAME TO api_keys");
    let (status, _) = json_response(
        client_with_key(&fresh)
            .get(app.url("/api/v1/traces"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "the same key works once the database answers");
    app.stop().await;
}

#[tokio::test]
async fn multi_byte_expiries_are_a_422_and_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let port = common::free_port();
    let mut child = common::serve_command(dir.path(), port)
        .env("AUDITTRAIL_JSON_LOGS", "true")
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    common::wait_ready(&base).await;
    let owner = client_with_key(&common::bootstrap(&base).await);
    for expires_in in ["1é", "é", "1😀", "jane.roe@example.org 078-05-1120é"] {
        let resp = owner
            .post(format!("{base}/api/v1/keys"))
            .json(&json!({"name": "k", "projects": ["p"], "permissions": ["traces:read"], "expires_in": expires_in}))
            .send()
            .await
            .expect("an answer, not a dropped connection");
        let (status, body) = json_response(resp).await;
        assert_eq!(status, 422, "{expires_in}: {body}");
        assert!(!body.to_string().contains(expires_in), "{body}");
    }
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    for raw in ["jane.roe@example.org", "078-05-1120", "panic"] {
        assert!(!log.contains(raw), "{raw} in the server log");
    }
}

#[tokio::test]
async fn the_audit_log_records_route_templates_and_safe_request_ids_only() {
    let app = spawn_app().await;
    let anon = common::client();
    for request_id in ["jane.roe@example.org", &"x".repeat(200), "ok-id_1.2:3"] {
        let resp = anon
            .get(app.url("/api/v1/traces/jane.roe@example.org"))
            .header("x-request-id", request_id)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        let echoed = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        if request_id == "ok-id_1.2:3" {
            assert_eq!(echoed, request_id, "a safe id is kept");
        } else {
            assert_ne!(echoed, request_id, "an unsafe id is replaced");
            assert_eq!(echoed.len(), 36, "by a generated UUID");
        }
    }
    let (_, audit) = app
        .get("/api/v1/audit?event_type=authentication&result=failure")
        .await;
    let text = audit.to_string();
    assert!(!text.contains("jane.roe"), "{text}");
    assert_eq!(
        audit["entries"][0]["operation"], "GET /api/v1/traces/{trace_id}",
        "{audit}"
    );
    app.stop().await;
}

#[tokio::test]
async fn ids_that_hold_personal_data_are_pseudonyms_and_read_back_by_the_raw_id() {
    let app = spawn_app().await;
    let mut ev = event("jane.roe@example.org", "s1", "2026-11-22T10:00:00Z");
    ev["session_id"] = json!("+14155550134");
    ev["kind"] = json!("tool");
    ev["input"] = json!({"sql": "DELETE FROM customers"});
    let (status, resp) = app.post_json("/api/v1/traces", &batch(vec![ev])).await;
    assert_eq!(status, 202, "{resp}");
    let changed: Vec<(&str, &str)> = resp["pseudonymized_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["field"].as_str().unwrap(),
                p["stored_as"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(changed.len(), 2, "{resp}");
    assert!(changed.iter().all(|(_, v)| v.starts_with("pii-")));
    assert!(!resp.to_string().contains("jane.roe"), "{resp}");
    let (status, trace) = app.get("/api/v1/traces/jane.roe@example.org").await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["spans"].as_array().unwrap().len(), 1);
    let (_, list) = app.get("/api/v1/traces?session_id=%2B14155550134").await;
    assert_eq!(list["traces"].as_array().unwrap().len(), 1, "{list}");
    let (_, v) = app
        .get("/api/v1/violations?trace_id=jane.roe@example.org")
        .await;
    assert_eq!(v["violations"].as_array().unwrap().len(), 1, "{v}");
    app.stop().await;
}

#[tokio::test]
async fn times_and_token_counts_out_of_range_are_422_and_totals_never_overflow() {
    let app = spawn_app().await;
    let mut late = event("t", "s", "9999-12-31T23:59:59-23:59");
    late["end_time"] = json!(null);
    let (status, body) = app.post_json("/api/v1/traces", &batch(vec![late])).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["path"], "events[0].start_time");
    let (status, body) = app
        .get("/api/v1/traces?from=9999-12-31T23:59:59-23:59")
        .await;
    assert_eq!(
        (status, body["errors"][0]["path"].as_str()),
        (422, Some("from"))
    );

    let mut huge = event("t", "s", "2026-11-22T10:00:00Z");
    huge["usage"] = json!({"input_tokens": 9223372036854775808u64});
    let (status, body) = app.post_json("/api/v1/traces", &batch(vec![huge])).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["path"], "events[0].usage.input_tokens");

    // The largest counts allowed, many times on one trace: totals saturate, the token budget
    // fires, and no rule fails on an overflow.
    let max = 9007199254740991u64;
    for b in 0..2 {
        let events = (0..600)
            .map(|i| {
                let mut e = event("big-trace", &format!("s{b}-{i}"), "2026-11-22T10:00:00Z");
                e["usage"] = json!({"input_tokens": max, "output_tokens": max, "cost_usd": 1e300});
                e
            })
            .collect();
        let (status, resp) = app.post_json("/api/v1/traces", &batch(events)).await;
        assert_eq!(status, 202, "{resp}");
    }
    let (status, trace) = app.get("/api/v1/traces/big-trace").await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["trace"]["input_tokens"], i64::MAX);
    assert_eq!(trace["trace"]["span_count"], 1200);
    let (_, fired) = app
        .get("/api/v1/violations?rule=token_budget&trace_id=big-trace")
        .await;
    assert_eq!(fired["violations"].as_array().unwrap().len(), 1, "{fired}");
    let (_, errors) = app.get("/api/v1/violations?outcome=rule_error").await;
    assert_eq!(errors["violations"], json!([]), "{errors}");
    app.stop().await;
}

#[tokio::test]
async fn odd_corners_answer_consistently() {
    let app = spawn_app().await;
    // A bad cursor is 422 invalid_query everywhere.
    for path in [
        "/api/v1/audit?cursor=zz",
        "/api/v1/traces?cursor=zz",
        "/api/v1/violations?cursor=zz",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("invalid_query")),
            "{path}"
        );
    }
    // Rule problems name the file, never where the server keeps it.
    let (status, err) = app
        .post_json(
            "/api/v1/ablation",
            &json!({"rules": {"broken": "fn check(event, trace) { let x = ; }"}}),
        )
        .await;
    assert_eq!(status, 422);
    let path = err["errors"][0]["path"].as_str().unwrap();
    assert!(
        path.contains("broken.rhai") && !path.contains('/'),
        "{path}"
    );
    // JSON embedded in a string, nested past the limit, is refused at every depth.
    for depth in [70, 130, 300] {
        let mut text = "{\"email\": \"jane.roe@example.org\"}".to_owned();
        for _ in 1..depth {
            text = format!("[{text}]");
        }
        let mut e = event("deep", "s", "2026-11-22T10:00:00Z");
        e["input"] = json!({"arguments": text});
        let (status, body) = app.post_json("/api/v1/traces", &batch(vec![e])).await;
        assert_eq!(status, 422, "depth {depth}: {body}");
        assert!(!body.to_string().contains("jane.roe"));
    }
    app.stop().await;
}
