//! Ingest and query through the real server: round trip, pagination, filters, idempotency,
//! every error path, health, instance and metrics.

mod common;

use common::{batch, event, spawn_app, spawn_app_with};
use serde_json::{Value, json};

#[tokio::test]
async fn ingest_then_read_back_trace_with_spans_in_order() {
    let app = spawn_app().await;
    let mut late = event("trace-a", "s2", "2026-11-22T10:00:05Z");
    late["end_time"] = json!("2026-11-22T10:00:07Z");
    late["status"] = json!("error");
    let early = event("trace-a", "s1", "2026-11-22T10:00:01Z");
    let (status, body) = app
        .post_json("/api/v1/traces", &batch(vec![late, early]))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["event_ids"].as_array().unwrap().len(), 2);

    let (status, body) = app.get("/api/v1/traces/trace-a").await;
    assert_eq!(status, 200);
    let t = &body["trace"];
    assert_eq!(t["span_count"], 2);
    assert_eq!(t["input_tokens"], 20);
    assert_eq!(t["output_tokens"], 10);
    assert_eq!(t["total_tokens"], 30);
    assert_eq!(t["cost_usd"], 0.002);
    assert_eq!(t["status"], "error");
    assert_eq!(t["agent"], "support-bot");
    assert_eq!(t["start_time"], "2026-11-22T10:00:01.000000Z");
    assert_eq!(t["end_time"], "2026-11-22T10:00:07.000000Z");
    let spans: Vec<&str> = body["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["span_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        spans,
        ["s1", "s2"],
        "spans come back in start-time order, not arrival order"
    );
    assert_eq!(body["spans"][1]["duration_ms"], 2000.0);
    assert_eq!(body["spans"][0]["model"], "gpt-4o");
    assert_eq!(body["spans"][0]["project"], "default");

    let (status, body) = app.get("/api/v1/traces/no-such-trace").await;
    assert_eq!(status, 404);
    assert_eq!(body["code"], "not_found");
    app.stop().await;
}

#[tokio::test]
async fn list_paginates_with_cursor_and_filters() {
    let app = spawn_app().await;
    let mut events = Vec::new();
    for i in 0..7 {
        let mut e = event(&format!("t{i}"), "root", &format!("2026-11-22T10:00:0{i}Z"));
        e["agent"] = json!(if i % 2 == 0 { "even-bot" } else { "odd-bot" });
        e["session_id"] = json!(format!("sess-{}", i % 3));
        if i == 3 {
            e["status"] = json!("error");
        }
        events.push(e);
    }
    assert_eq!(app.post_json("/api/v1/traces", &batch(events)).await.0, 202);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/traces?limit=3&cursor={c}"),
            None => "/api/v1/traces?limit=3".into(),
        };
        let (status, body) = app.get(&path).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        seen.extend(
            body["traces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["trace_id"].as_str().unwrap().to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        ["t6", "t5", "t4", "t3", "t2", "t1", "t0"],
        "newest first, each once"
    );

    let ids = |body: &Value| -> Vec<String> {
        body["traces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["trace_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&app.get("/api/v1/traces?agent=odd-bot").await.1),
        ["t5", "t3", "t1"]
    );
    assert_eq!(
        ids(&app.get("/api/v1/traces?session_id=sess-0").await.1),
        ["t6", "t3", "t0"]
    );
    assert_eq!(ids(&app.get("/api/v1/traces?status=error").await.1), ["t3"]);
    assert_eq!(
        ids(&app.get("/api/v1/traces?status=ok&agent=odd-bot").await.1),
        ["t5", "t1"]
    );
    assert_eq!(
        ids(&app
            .get("/api/v1/traces?from=2026-11-22T10:00:02Z&to=2026-11-22T10:00:04Z")
            .await
            .1),
        ["t3", "t2"],
        "from is inclusive, to exclusive"
    );

    for (query, path) in [
        ("status=maybe", "status"),
        ("from=yesterday", "from"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("cursor=zz", "cursor"),
    ] {
        let (status, body) = app.get(&format!("/api/v1/traces?{query}")).await;
        assert_eq!(status, 422, "{query}");
        assert_eq!(body["errors"][0]["path"], path, "{query}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn retried_batches_are_stored_once() {
    let app = spawn_app().await;
    let mut e1 = event("retry", "s1", "2026-11-22T10:00:00Z");
    e1["event_id"] = json!("client-1");
    let mut e2 = event("retry", "s2", "2026-11-22T10:00:01Z");
    e2["event_id"] = json!("client-2");
    let b = batch(vec![e1.clone(), e2]);
    let (s1, first) = app.post_json("/api/v1/traces", &b).await;
    let (s2, second) = app.post_json("/api/v1/traces", &b).await;
    assert_eq!((s1, s2), (202, 202));
    assert_eq!(
        first["event_ids"], second["event_ids"],
        "a retry gets the same ids back"
    );
    assert_eq!(second["duplicates"], 2);
    // The same id twice inside one batch is stored once too.
    let (_, third) = app
        .post_json("/api/v1/traces", &batch(vec![e1.clone(), e1]))
        .await;
    assert_eq!(third["duplicates"], 2);
    let (_, body) = app.get("/api/v1/traces/retry").await;
    assert_eq!(body["trace"]["span_count"], 2);
    assert_eq!(body["spans"].as_array().unwrap().len(), 2);
    app.stop().await;
}

/// Many clients retrying the same batch at once: the writer evaluates one group of requests
/// while it commits the previous one, and each event must still be stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_store_each_event_once() {
    let app = spawn_app().await;
    let events: Vec<Value> = (0..40)
        .map(|i| {
            let mut e = event(
                &format!("race-{}", i % 4),
                &format!("s{i}"),
                "2026-11-22T10:00:00Z",
            );
            e["event_id"] = json!(format!("race-{i}"));
            e
        })
        .collect();
    let b = batch(events);
    for round in 0..3 {
        let posts = (0..16).map(|_| app.post_json("/api/v1/traces", &b));
        let replies = futures_util::future::join_all(posts).await;
        let stored: u64 = replies
            .iter()
            .map(|(status, body)| {
                assert_eq!(*status, 202, "{body}");
                40 - body["duplicates"].as_u64().unwrap()
            })
            .sum();
        let expected = if round == 0 { 40 } else { 0 };
        assert_eq!(
            stored, expected,
            "round {round}: events newly stored across all replies"
        );
    }
    for t in 0..4 {
        let (_, body) = app.get(&format!("/api/v1/traces/race-{t}")).await;
        assert_eq!(body["trace"]["span_count"], 10, "{body}");
        assert_eq!(body["spans"].as_array().unwrap().len(), 10);
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_rejected_with_paths_and_stores_nothing() {
    let app = spawn_app_with(&["--max-body-bytes", "20000", "--max-batch-events", "5"]).await;
    let secret = "jane.doe@example.com";

    let resp = app
        .post_raw("/api/v1/traces", format!("{{\"events\": [\"{secret}\""))
        .await;
    assert_eq!(resp.status().as_u16(), 400);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    let text = resp.text().await.unwrap();
    assert!(
        text.contains("malformed_json") && text.contains("line 1"),
        "{text}"
    );
    assert!(!text.contains(secret));

    let good = event("bad-batch", "ok", "2026-11-22T10:00:00Z");
    let mut bad_time = event("bad-batch", "bad", "2026-11-22T10:00:00Z");
    bad_time["start_time"] = json!(secret);
    let (status, body) = app
        .post_json("/api/v1/traces", &batch(vec![good.clone(), bad_time]))
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        body["detail"],
        "events[1].start_time: invalid RFC 3339 timestamp"
    );
    assert!(
        !body.to_string().contains(secret),
        "errors never echo values"
    );

    let cases: Vec<(Value, &str)> = vec![
        (json!([good.clone()]), "$"),
        (json!({"events": "nope"}), "events"),
        (json!({"events": []}), "events"),
        (json!({}), "events"),
        (batch(vec![good.clone(); 6]), "events"),
        (
            batch(vec![
                json!({"trace_id": "t", "span_id": "s", "kind": "llm"}),
            ]),
            "events[0].start_time",
        ),
        (
            batch(vec![
                json!({"trace_id": 5, "span_id": "s", "kind": "llm", "start_time": "2026-11-22T10:00:00Z"}),
            ]),
            "events[0].trace_id",
        ),
        (
            batch(vec![
                json!({"trace_id": "t", "span_id": "s", "kind": "llm", "start_time": "2026-11-22T10:00:00Z", "usage": {"cost_usd": -1}}),
            ]),
            "events[0].usage.cost_usd",
        ),
        (
            batch(vec![
                json!({"trace_id": "t", "span_id": "s", "kind": "llm", "start_time": "2026-11-22T10:00:00Z", secret: 1}),
            ]),
            "events[0]",
        ),
    ];
    for (body, path) in cases {
        let (status, resp) = app.post_json("/api/v1/traces", &body).await;
        assert_eq!(status, 422, "{path}: {resp}");
        assert_eq!(resp["code"], "validation_failed");
        assert_eq!(resp["errors"][0]["path"], path, "{resp}");
        assert!(!resp.to_string().contains(secret));
    }

    let huge = batch(vec![
        json!({"trace_id": "t", "span_id": "s", "kind": "llm", "start_time": "2026-11-22T10:00:00Z", "input": "x".repeat(30_000)}),
    ]);
    let (status, body) = app.post_json("/api/v1/traces", &huge).await;
    assert_eq!(status, 413);
    assert_eq!(body["code"], "body_too_large");

    let (_, list) = app.get("/api/v1/traces").await;
    assert_eq!(
        list["traces"],
        json!([]),
        "no rejected batch stored anything"
    );
    let (status, body) = app.get("/api/v1/nope").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    app.stop().await;
}

#[tokio::test]
async fn full_write_queue_answers_503_with_retry_after_and_loses_nothing_acknowledged() {
    let app = spawn_app_with(&["--writer-queue", "1", "--writer-batch-events", "100"]).await;
    let mut tasks = Vec::new();
    for i in 0..48 {
        let client = app.client.clone();
        let url = app.url("/api/v1/traces");
        tasks.push(tokio::spawn(async move {
            let events: Vec<Value> = (0..100)
                .map(|j| event(&format!("q{i}"), &format!("s{j}"), "2026-11-22T10:00:00Z"))
                .collect();
            let resp = client.post(url).json(&batch(events)).send().await.unwrap();
            let status = resp.status().as_u16();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            (i, status, retry)
        }));
    }
    let mut accepted = Vec::new();
    let mut busy = 0;
    for t in tasks {
        let (i, status, retry) = t.await.unwrap();
        match status {
            202 => accepted.push(i),
            503 => {
                busy += 1;
                assert_eq!(retry.as_deref(), Some("1"));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        busy > 0,
        "a one-slot queue under 48 concurrent batches must push back"
    );
    for i in accepted {
        let (status, body) = app.get(&format!("/api/v1/traces/q{i}")).await;
        assert_eq!(status, 200);
        assert_eq!(body["trace"]["span_count"], 100);
    }
    app.stop().await;
}

// Multi-threaded: the server's writer must be able to finish a transaction while this thread
// waits for the database shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_instance_and_metrics_report_real_state() {
    let app = spawn_app().await;
    // The six default rules, redaction on, an empty queue, a working store: exactly `ok`.
    let (status, body) = app.get("/api/v1/health").await;
    assert_eq!(status, 200);
    assert_eq!(body["db_connected"], true);
    assert_eq!(body["rules_loaded"], 6);
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    // The deployment guide's promise: the live SQLite database runs in WAL mode.
    if !common::postgres() {
        assert_eq!(app.sql("PRAGMA journal_mode"), "wal");
    }
    assert_eq!(
        body.as_object().unwrap().len(),
        4,
        "health reveals only the guide's fields"
    );

    let (_, inst) = app.get("/api/v1/instance").await;
    for field in [
        "version",
        "connected_agents",
        "rule_count",
        "uptime_seconds",
    ] {
        assert!(inst.get(field).is_some(), "{field} missing");
    }

    app.post_json(
        "/api/v1/traces",
        &batch(vec![event("m", "s", "2026-11-22T10:00:00Z")]),
    )
    .await;
    let text = app.get_text("/metrics").await;
    for metric in [
        "audittrail_events_accepted_total{door=\"http\"}",
        "audittrail_http_request_duration_seconds_bucket",
        "audittrail_writer_queue_depth",
        "audittrail_writer_batch_events",
    ] {
        assert!(text.contains(metric), "{metric} missing from /metrics");
    }

    app.stop().await;
}

// Multi-threaded: the server keeps running while this thread waits for the database shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_commits_make_health_503_and_lose_nothing_acknowledged() {
    let app = spawn_app().await;
    let ok = batch(vec![event("before", "s", "2026-11-22T10:00:00Z")]);
    assert_eq!(app.post_json("/api/v1/traces", &ok).await.0, 202);

    // Another process breaks the store: every append now fails inside the transaction.
    if common::postgres() {
        app.sql(
            "CREATE FUNCTION disk_on_fire() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'disk on fire'; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER break_appends BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION disk_on_fire()",
        );
    } else {
        app.sql("CREATE TRIGGER break_appends BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk on fire'); END");
    }
    let (status, body) = app
        .post_json(
            "/api/v1/traces",
            &batch(vec![event("during", "s", "2026-11-22T10:00:00Z")]),
        )
        .await;
    assert_eq!(status, 503, "retryable: nothing was stored");
    assert_eq!(body["code"], "store_unavailable");
    assert!(
        !body.to_string().contains("disk on fire"),
        "5xx bodies carry no internal detail"
    );
    let (status, health) = app.get("/api/v1/health").await;
    assert_eq!(status, 503, "{health}");
    assert_eq!(health["status"], "error");
    assert_eq!(health["db_connected"], false);

    // Repaired: the next commit succeeds and health recovers; the failed batch left no trace.
    app.sql(if common::postgres() {
        "DROP TRIGGER break_appends ON events"
    } else {
        "DROP TRIGGER break_appends"
    });
    assert_eq!(
        app.post_json(
            "/api/v1/traces",
            &batch(vec![event("after", "s", "2026-11-22T10:00:00Z")])
        )
        .await
        .0,
        202
    );
    let (status, health) = app.get("/api/v1/health").await;
    assert_eq!(
        (status, health["db_connected"].as_bool()),
        (200, Some(true))
    );
    assert_eq!(app.get("/api/v1/traces/during").await.0, 404);
    assert_eq!(app.get("/api/v1/traces/before").await.0, 200);
    app.stop().await;
}
