//! The same events into SQLite and Postgres must read back the same through every route, and
//! the chains must agree: the traps (NUL characters, text outside the BMP, nanosecond times,
//! megabyte bodies) included.

mod common;

use common::{batch, database_url_on, event, spawn_in};
use serde_json::{Value, json};

/// Fields that legitimately differ between two servers: generated ids and times of writing.
fn normalise(mut v: Value) -> Value {
    match &mut v {
        Value::Object(m) => {
            for k in ["violation_id", "at", "created_at", "recorded_at"] {
                m.remove(k);
            }
            for (_, x) in m.iter_mut() {
                *x = normalise(x.take());
            }
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                *x = normalise(x.take());
            }
        }
        _ => {}
    }
    v
}

fn odd_events() -> Vec<Value> {
    let mut out = Vec::new();
    let mut nul = event("parity-nul", "s1", "2026-11-22T10:00:00.123456789Z");
    nul["name"] = json!("tool\u{0000}name");
    nul["agent"] = json!("agent\u{0000}x");
    nul["input"] = json!({"text": "before\u{0000}after", "emoji": "🦀 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{10FFFF}"});
    out.push(nul);
    let mut big = event("parity-big", "s1", "2026-11-22T10:00:01.000000001Z");
    big["output"] = json!({"content": "lorem ipsum dolor sit amet ".repeat(40_000)});
    out.push(big);
    let mut bad = event("parity-viol", "s1", "2026-11-22T10:00:02Z");
    bad["kind"] = json!("tool");
    bad["input"] = json!({"sql": "DELETE FROM customers"});
    out.push(bad);
    for i in 0..30 {
        let mut e = event(
            &format!("parity-{}", i % 7),
            &format!("s{i}"),
            &format!("2026-11-22T10:01:{:02}.5Z", i),
        );
        e["agent"] = json!(format!("agent-{}", i % 3));
        e["session_id"] = json!(format!("sess-{}", i % 4));
        if i % 5 == 0 {
            e["status"] = json!("error");
        }
        e["usage"] =
            json!({"input_tokens": 100 * i, "output_tokens": 7 * i, "cost_usd": 0.001 * i as f64});
        out.push(e);
    }
    // Client-chosen ids: generated ones would differ between the two servers.
    for (i, e) in out.iter_mut().enumerate() {
        e["event_id"] = json!(format!("parity-event-{i}"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_answer_every_read_route_the_same() {
    let mut apps = Vec::new();
    for pg in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let url = database_url_on(dir.path(), pg);
        apps.push(spawn_in(dir, &["--database-url", &url]).await);
    }
    for chunk in odd_events().chunks(5) {
        for app in &apps {
            let (status, body) = app
                .post_json("/api/v1/traces", &batch(chunk.to_vec()))
                .await;
            assert_eq!(status, 202, "{body}");
        }
    }
    let routes = [
        "/api/v1/traces?limit=500",
        "/api/v1/traces?limit=3",
        "/api/v1/traces?agent=agent-1",
        "/api/v1/traces?status=error",
        "/api/v1/traces?session_id=sess-2",
        "/api/v1/traces?from=2026-11-22T10:01:10Z&to=2026-11-22T10:01:20Z",
        "/api/v1/traces/parity-nul",
        "/api/v1/traces/parity-big",
        "/api/v1/traces/parity-3",
        "/api/v1/violations",
        "/api/v1/violations?severity=critical",
        "/api/v1/violations?outcome=rule_error",
        "/api/v1/rules",
    ];
    for route in routes {
        let (s1, a) = apps[0].get(route).await;
        let (s2, b) = apps[1].get(route).await;
        assert_eq!((s1, s2), (200, 200), "{route}");
        assert_eq!(normalise(a), normalise(b), "{route}");
    }
    // Pages follow the same cursors to the same end.
    let mut cursors = [String::new(), String::new()];
    loop {
        let mut pages = Vec::new();
        for (i, app) in apps.iter().enumerate() {
            let (_, page) = app
                .get(&format!("/api/v1/traces?limit=2&cursor={}", cursors[i]))
                .await;
            cursors[i] = page["next_cursor"].as_str().unwrap_or("").to_owned();
            pages.push(page);
        }
        assert_eq!(pages[0], pages[1]);
        if cursors[0].is_empty() {
            break;
        }
    }
    // The NUL survived in the stored body, exactly as it was hashed.
    let (_, nul) = apps[1].get("/api/v1/traces/parity-nul").await;
    assert_eq!(nul["spans"][0]["input"]["text"], "before\u{0000}after");
    assert_eq!(nul["spans"][0]["start_time"], "2026-11-22T10:00:00.123456Z");
    let mut verified = Vec::new();
    for app in apps {
        verified.push(app.stop().await);
    }
    // Both chains verify over the same number of records.
    let counts: Vec<String> = verified
        .iter()
        .zip([false, true])
        .map(|(dir, pg)| {
            let url = database_url_on(dir.path(), pg);
            let mut args = common::base_args(dir.path());
            args.remove(0);
            let i = args.iter().position(|a| a == "--database-url").unwrap();
            args[i + 1] = url;
            let out = std::process::Command::new(common::binary())
                .args(&args)
                .arg("verify")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split(" records verified").next().unwrap().to_owned()
        })
        .collect();
    assert_eq!(counts[0], counts[1]);
}
