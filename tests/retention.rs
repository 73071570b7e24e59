//! Retention sweeps end to end: the prefix older than the limit is removed through the
//! writer, `verify` still passes and names the sweep, straddling traces keep their running
//! totals for rules and replay, ingest keeps flowing during a sweep, and a project's own
//! shorter limit erases instead of removing.

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{batch, cli, client_with_key, db_sql, event, json_response, spawn_app, spawn_in};
use serde_json::{Value, json};

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

fn span(trace: &str, id: &str, session: &str, input_tokens: u64, output_tokens: u64) -> Value {
    let mut e = event(trace, id, "2026-11-22T10:00:00Z");
    e["session_id"] = json!(session);
    e["usage"] =
        json!({"input_tokens": input_tokens, "output_tokens": output_tokens, "cost_usd": 0.01});
    e
}

fn traces_table(dir: &Path) -> String {
    db_sql(
        dir,
        "SELECT project, trace_id, coalesce(agent,'-'), coalesce(session_id,'-'), start_time, \
         coalesce(end_time,'-'), span_count, error_count, input_tokens, output_tokens, cost_nanos, last_seq \
         FROM traces ORDER BY project, trace_id",
    )
}

/// Waits past a second boundary and returns the instant between two batches.
async fn cut_between() -> DateTime<Utc> {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let t = Utc::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    t
}

fn later(t: DateTime<Utc>, days: i64) -> String {
    (t + chrono::Duration::days(days)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_removes_the_old_prefix_verifies_and_keeps_straddling_totals_for_rules_and_replay()
{
    let app = spawn_app().await;
    let old = vec![
        span("long", "l1", "s-long", 150_000, 0),
        span("gone", "g1", "s-gone", 10, 5),
        span("gone", "g2", "s-gone", 10, 5),
    ];
    assert_eq!(app.post_json("/api/v1/traces", &batch(old)).await.0, 202);
    let cut = cut_between().await;
    let new = vec![
        span("long", "l2", "s-long", 10, 5),
        span("fresh", "f1", "s-fresh", 10, 5),
    ];
    assert_eq!(app.post_json("/api/v1/traces", &batch(new)).await.0, 202);
    let before = traces_table(app.dir.path());
    let dir = app.stop().await;

    // A sweep on the day the first batch is 90 days old removes it and nothing else.
    let now = later(cut, 90);
    let dry = cli(
        dir.path(),
        &[
            "--retention-days",
            "90",
            "retention",
            "apply",
            "--dry-run",
            "--now",
            &now,
        ],
    );
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let dry: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(dry["records_removed"], 3, "{dry}");
    assert_eq!(dry["receipt_seq"], Value::Null);
    let out = cli(
        dir.path(),
        &[
            "--retention-days",
            "90",
            "retention",
            "apply",
            "--now",
            &now,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let swept: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(swept["records_removed"], 3, "{swept}");
    assert_eq!(swept["base_seq"], 3, "{swept}");
    assert_eq!(
        swept["carried"], 2,
        "trace `long` and session `s-long` straddle: {swept}"
    );
    assert_eq!(
        db_sql(dir.path(), "SELECT COUNT(*) FROM events WHERE seq <= 3"),
        "0"
    );

    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("chain base at seq 3") && out.contains("3 record(s) swept on"),
        "{out}"
    );
    // A receipt that claims less was removed, or a base moved without the key, is caught.
    let forged = common::copy_dir(dir.path());
    db_sql(
        forged.path(),
        "UPDATE events SET body = replace(body, '\"removed\":3', '\"removed\":2') WHERE record_type = 'retention'",
    );
    let (code, out) = verify(forged.path());
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("edited"), "{out}");
    let forged = common::copy_dir(dir.path());
    db_sql(forged.path(), "UPDATE chain_base SET seq = 2 WHERE id = 1");
    let (code, out) = verify(forged.path());
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("chain base"), "{out}");

    // The straddling trace's summary is as before; the swept one is gone; replay agrees.
    let after = traces_table(dir.path());
    let long_row = |t: &str| {
        t.lines()
            .find(|l| l.contains("|long|"))
            .map(str::to_owned)
            .unwrap_or_default()
    };
    assert_eq!(long_row(&after), long_row(&before), "{after}");
    assert!(!after.contains("|gone|"), "{after}");
    let out = cli(dir.path(), &["replay"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(traces_table(dir.path()), after);

    // After a restart the evaluation stage rebuilds `long`'s totals from the carried ones:
    // 150,000 + 15 + 60,000 tokens crosses the 200,000 budget.
    let app = spawn_in(dir, &[]).await;
    let (status, resp) = app
        .post_json(
            "/api/v1/traces",
            &batch(vec![span("long", "l3", "s-long", 60_000, 0)]),
        )
        .await;
    assert_eq!(status, 202, "{resp}");
    let fired = resp["violations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["rule_id"] == "token_budget")
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        fired["message"].as_str().unwrap_or("").contains("210015"),
        "{resp}"
    );
    let dir = app.stop().await;
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_keeps_flowing_and_loses_nothing_during_a_sweep_in_chunks() {
    let app = spawn_app().await;
    for b in 0..10 {
        let events: Vec<Value> = (0..500)
            .map(|i| {
                span(
                    &format!("a-{b}-{}", i % 50),
                    &format!("a{b}-{i}"),
                    "s-a",
                    1,
                    1,
                )
            })
            .collect();
        assert_eq!(app.post_json("/api/v1/traces", &batch(events)).await.0, 202);
    }
    let cut = cut_between().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ingest = {
        let (client, url, stop) = (app.client.clone(), app.url("/api/v1/traces"), stop.clone());
        tokio::spawn(async move {
            let mut acknowledged = 0u64;
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 5 {
                let events: Vec<Value> = (0..20)
                    .map(|i| span(&format!("b-{n}"), &format!("b{n}-{i}"), "s-b", 1, 1))
                    .collect();
                let resp = client.post(&url).json(&batch(events)).send().await.unwrap();
                let (status, body) = json_response(resp).await;
                match status {
                    202 => acknowledged += 20,
                    503 => {} // retryable; never acknowledged
                    other => panic!("ingest during a sweep answered {other}: {body}"),
                }
                n += 1;
            }
            acknowledged
        })
    };
    let now: DateTime<Utc> = later(cut, 90).parse().unwrap();
    let report =
        audittrail::retention::apply(&app.store, app.writer(), 90, now, false, "test", |_, _| {})
            .await
            .expect("sweep");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let acknowledged = ingest.await.unwrap();
    // The 5,000 spans of the first batches, and the audit checkpoint records among them.
    assert!(report.records_removed >= 5000, "{report:?}");
    assert!(acknowledged >= 100);
    assert_eq!(
        app.sql("SELECT COUNT(*) FROM events WHERE trace_id LIKE 'b-%'"),
        acknowledged.to_string(),
        "every acknowledged event is stored"
    );
    assert_eq!(
        app.sql("SELECT COUNT(*) FROM events WHERE trace_id LIKE 'a-%'"),
        "0"
    );
    let dir = app.stop().await;
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_limit_erases_older_records_and_the_routes_check_their_input() {
    let app = spawn_app().await;
    let old: Vec<Value> = (0..4)
        .map(|i| {
            let mut e = span("p-old", &format!("o{i}"), "s-old", 10, 5);
            e["output"] = json!({"content": "ticket ORD-5512-OLD closed"});
            e
        })
        .collect();
    assert_eq!(app.post_json("/api/v1/traces", &batch(old)).await.0, 202);
    let cut = cut_between().await;
    assert_eq!(
        app.post_json(
            "/api/v1/traces",
            &batch(vec![span("p-new", "n1", "s-new", 10, 5)])
        )
        .await
        .0,
        202
    );

    // The routes: input checked and named, admin only.
    let put = |body: Value| {
        let c = app.client.clone();
        let url = app.url("/api/v1/projects/default/retention");
        async move { json_response(c.put(url).json(&body).send().await.unwrap()).await }
    };
    for bad in [
        json!({"days": -1}),
        json!({"days": "30"}),
        json!({}),
        json!({"days": 1.5}),
    ] {
        let (status, problem) = put(bad.clone()).await;
        assert_eq!(status, 422, "{bad}: {problem}");
        assert_eq!(problem["errors"][0]["path"], "days", "{problem}");
    }
    let (status, view) = put(json!({"days": 30})).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["effective_days"], 30);
    assert!(
        view["eu_ai_act_warning"]
            .as_str()
            .unwrap()
            .contains("six months")
    );
    let (_, created) = app
        .post_json(
            "/api/v1/keys",
            &json!({"name": "ops", "projects": ["default"], "permissions": ["traces:read", "keys:admin"]}),
        )
        .await;
    let ops = client_with_key(created["key"].as_str().unwrap());
    let resp = ops
        .post(app.url("/api/v1/retention/apply"))
        .json(&json!({"dry_run": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let (status, dry) = app
        .post_json("/api/v1/retention/apply", &json!({"dry_run": true}))
        .await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!(dry["records_removed"], 0, "everything is fresh: {dry}");
    let (status, problem) = app
        .post_json("/api/v1/retention/apply", &json!({"dry_run": "yes"}))
        .await;
    assert_eq!(
        (status, problem["errors"][0]["path"].clone()),
        (422, json!("dry_run"))
    );

    // 30 days after the cut, the project's older records are erased; the log keeps them.
    let now: DateTime<Utc> = later(cut, 30).parse().unwrap();
    let report =
        audittrail::retention::apply(&app.store, app.writer(), 90, now, false, "test", |_, _| {})
            .await
            .expect("sweep");
    assert_eq!(report.records_removed, 0, "{report:?}");
    assert_eq!(report.projects.len(), 1);
    assert_eq!(report.projects[0].records_erased, 4, "{report:?}");
    let again =
        audittrail::retention::apply(&app.store, app.writer(), 90, now, false, "test", |_, _| {})
            .await
            .expect("sweep");
    assert_eq!(
        again.projects[0].records_erased, 0,
        "already erased: {again:?}"
    );
    let (_, trace) = app.get("/api/v1/traces/p-old").await;
    assert_eq!(trace["spans"].as_array().unwrap().len(), 4, "{trace}");
    assert!(!trace.to_string().contains("ORD-5512-OLD"), "{trace}");
    let (_, fresh) = app.get("/api/v1/traces/p-new").await;
    assert!(fresh["spans"][0].get("output").is_some(), "{fresh}");
    let dir = app.stop().await;
    let (code, out) = verify(dir.path());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("4 erased record(s)"), "{out}");
}
