//! Constitutional rules through the real server: each default rule fires on its bad case and
//! stays silent on the good one, guard mode, hot reload (good and broken edits), runaway rules,
//! a rules directory the server never writes to, and deterministic replay across restarts.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{base_args, batch, binary, spawn_in};
use serde_json::{Value, json};

fn copy_rules(dst: &Path) {
    std::fs::create_dir_all(dst.join("tests")).unwrap();
    for entry in std::fs::read_dir(common::rules_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "rhai") {
            std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
    }
}

async fn app_with_rules(rules: &Path) -> common::TestApp {
    let dir = tempfile::tempdir().unwrap();
    spawn_in(dir, &["--rules-dir", rules.to_str().unwrap()]).await
}

fn ev(trace: &str, span: &str, kind: &str) -> Value {
    json!({"trace_id": trace, "span_id": span, "kind": kind, "name": kind, "agent": "bot", "session_id": format!("s-{trace}"),
           "start_time": "2026-11-22T10:00:00Z", "end_time": "2026-11-22T10:00:01Z", "status": "ok"})
}

fn fired(resp: &Value) -> Vec<String> {
    resp["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["rule_id"].as_str().unwrap().to_owned())
        .collect()
}

/// For each of the six default rules: events it must fire on, and events it must not.
fn default_rule_cases() -> Vec<(&'static str, Vec<Value>, Vec<Value>)> {
    let mut cases: Vec<(&str, Vec<Value>, Vec<Value>)> = Vec::new();

    let mut bad = ev("bd-bad", "s", "tool");
    bad["input"] = json!({"sql": "DELETE FROM customers"});
    let mut good = ev("bd-good", "s", "tool");
    good["input"] = json!({"sql": "DELETE FROM customers WHERE id = 42"});
    cases.push(("bulk_delete_prevention", vec![bad], vec![good]));

    let mut bad = ev("cost-bad", "s", "llm");
    bad["usage"] = json!({"input_tokens": 10, "output_tokens": 10, "cost_usd": 7.5});
    let mut good = ev("cost-good", "s", "llm");
    good["usage"] = json!({"input_tokens": 10, "output_tokens": 10, "cost_usd": 0.5});
    cases.push(("cost_guard", vec![bad], vec![good]));

    let mut bad = ev("lat-bad", "s", "retrieval");
    bad["end_time"] = json!("2026-11-22T10:00:09Z");
    let good = ev("lat-good", "s", "retrieval");
    cases.push(("latency_slo", vec![bad], vec![good]));

    let mut bad = ev("tok-bad", "s", "llm");
    bad["usage"] = json!({"input_tokens": 150000, "output_tokens": 60000});
    let mut good = ev("tok-good", "s", "llm");
    good["usage"] = json!({"input_tokens": 1500, "output_tokens": 600});
    cases.push(("token_budget", vec![bad], vec![good]));

    let mut bad = ev("pii-bad", "s", "llm");
    bad["output"] = json!({"content": "Sure, write to jane.roe@example.org"});
    let mut good = ev("pii-good", "s", "llm");
    good["output"] = json!({"content": "Sure, I can help with that."});
    cases.push(("pii_guard", vec![bad], vec![good]));

    let mut retrieval = ev("cite-bad", "r", "retrieval");
    retrieval["output"] =
        json!({"documents": [{"id": "kb-311", "url": "https://help.example.com/refunds"}]});
    let mut answer = ev("cite-bad", "a", "answer");
    answer["output"] = json!({"content": "Refunds take five days."});
    let mut retrieval_ok = retrieval.clone();
    retrieval_ok["trace_id"] = json!("cite-good");
    let mut answer_ok = ev("cite-good", "a", "answer");
    answer_ok["output"] =
        json!({"content": "Refunds take five days (https://help.example.com/refunds)."});
    cases.push((
        "cite_sources",
        vec![retrieval, answer],
        vec![retrieval_ok, answer_ok],
    ));
    cases
}

/// Posts every default rule's bad and good cases and checks each fires exactly where it must.
async fn assert_default_rules_fire(app: &common::TestApp) {
    for (rule, bad, good) in default_rule_cases() {
        let (status, resp) = app.post_json("/api/v1/traces", &batch(bad)).await;
        assert_eq!(status, 202, "{resp}");
        assert!(
            fired(&resp).contains(&rule.to_owned()),
            "{rule} must fire: {resp}"
        );
        let (status, resp) = app.post_json("/api/v1/traces", &batch(good)).await;
        assert_eq!(status, 202);
        assert!(
            !fired(&resp).contains(&rule.to_owned()),
            "{rule} must stay silent: {resp}"
        );
    }
}

#[tokio::test]
async fn each_default_rule_fires_on_its_bad_case_and_not_on_the_good_one() {
    let app = common::spawn_app().await;
    assert_default_rules_fire(&app).await;
    let (_, list) = app.get("/api/v1/violations?rule=cost_guard").await;
    assert_eq!(list["violations"].as_array().unwrap().len(), 1);
    assert_eq!(list["violations"][0]["trace_id"], "cost-bad");
    let (_, list) = app.get("/api/v1/violations?severity=critical").await;
    assert!(
        list["violations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["severity"] == "critical")
    );
    let (status, _) = app.get("/api/v1/violations?severity=apocalyptic").await;
    assert_eq!(status, 422);

    let (_, rules) = app.get("/api/v1/rules").await;
    let rules = rules["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 6);
    let bd = rules
        .iter()
        .find(|r| r["id"] == "bulk_delete_prevention")
        .unwrap();
    assert_eq!(bd["severity"], "critical");
    assert_eq!(bd["hits"], 1);
    assert_eq!(
        bd["reads"],
        json!({"event": ["input", "kind", "name"], "trace": []}),
        "the fields the rule is given"
    );
    assert!(
        bd["description"].as_str().unwrap().len() > 10,
        "description comes from the file"
    );
    app.stop().await;
}

#[tokio::test]
async fn guard_mode_decides_and_does_not_count_toward_totals() {
    let app = common::spawn_app().await;
    let (status, resp) = app
        .post_json(
            "/api/v1/evaluate",
            &json!({"kind": "tool", "name": "shell", "input": {"command": "rm -rf /"}}),
        )
        .await;
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["decision"], "deny");
    assert_eq!(resp["violations"][0]["rule_id"], "bulk_delete_prevention");

    let (_, resp) = app
        .post_json(
            "/api/v1/evaluate",
            &json!({"kind": "tool", "name": "shell", "input": {"command": "ls -la"}}),
        )
        .await;
    assert_eq!(resp["decision"], "allow");

    // A guard request over budget warns (high) but is not added to the trace's totals.
    let mut guard = ev("g", "proposed", "llm");
    guard["usage"] = json!({"cost_usd": 9.0});
    let (_, resp) = app.post_json("/api/v1/evaluate", &guard).await;
    assert_eq!(resp["decision"], "warn", "{resp}");
    let mut real = ev("g", "real", "llm");
    real["usage"] = json!({"cost_usd": 1.0});
    let (_, resp) = app.post_json("/api/v1/traces", &batch(vec![real])).await;
    assert!(
        !fired(&resp).contains(&"cost_guard".to_owned()),
        "guard cost did not count: {resp}"
    );

    let (status, resp) = app
        .post_json(
            "/api/v1/evaluate",
            &json!({"kind": "tool", "start_time": "not a time"}),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(resp["errors"][0]["path"], "$.start_time");
    app.stop().await;
}

#[tokio::test]
async fn reload_applies_good_edits_and_rejects_broken_ones_with_position() {
    let rules = tempfile::tempdir().unwrap();
    copy_rules(rules.path());
    let app = app_with_rules(rules.path()).await;
    let mut probe = ev("r1", "s", "llm");
    probe["usage"] = json!({"input_tokens": 600, "output_tokens": 0});
    let (_, resp) = app
        .post_json("/api/v1/traces", &batch(vec![probe.clone()]))
        .await;
    assert!(!fired(&resp).contains(&"token_budget".to_owned()));

    let path = rules.path().join("token_budget.rhai");
    let src = std::fs::read_to_string(&path)
        .unwrap()
        .replace("TRACE_TOKEN_BUDGET = 200000", "TRACE_TOKEN_BUDGET = 500");
    std::fs::write(&path, src).unwrap();
    let mut fired_after_edit = false;
    for i in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut p = probe.clone();
        p["trace_id"] = json!(format!("r-edit-{i}"));
        let (_, resp) = app.post_json("/api/v1/traces", &batch(vec![p])).await;
        if fired(&resp).contains(&"token_budget".to_owned()) {
            fired_after_edit = true;
            break;
        }
    }
    assert!(
        fired_after_edit,
        "the edited threshold is in force after reload"
    );

    std::fs::write(rules.path().join("broken.rhai"), "const DESCRIPTION = \"x\";\nconst SEVERITY = \"high\";\nfn check(event, trace) {\n  let x = ;\n}\n").unwrap();
    let mut problems = Value::Null;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (_, r) = app.get("/api/v1/rules").await;
        if !r["load_problems"].as_array().unwrap().is_empty() {
            problems = r;
            break;
        }
    }
    let p = &problems["load_problems"][0];
    assert!(
        p["file"].as_str().unwrap().ends_with("broken.rhai"),
        "{problems}"
    );
    assert_eq!(p["line"], 4);
    assert!(p["column"].as_u64().is_some());
    assert_eq!(
        problems["rules"].as_array().unwrap().len(),
        6,
        "the previous rule set stays in force"
    );
    let (_, health) = app.get("/api/v1/health").await;
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["rules_loaded"], 6);
    let mut p = probe.clone();
    p["trace_id"] = json!("r-after-broken");
    let (_, resp) = app.post_json("/api/v1/traces", &batch(vec![p])).await;
    assert!(
        fired(&resp).contains(&"token_budget".to_owned()),
        "old rules keep working"
    );
    app.stop().await;
}

#[tokio::test]
async fn one_broken_file_never_switches_the_others_off() {
    let rules = tempfile::tempdir().unwrap();
    copy_rules(rules.path());
    std::fs::write(
        rules.path().join("broken.rhai"),
        "const DESCRIPTION = \"x\";\nconst SEVERITY = \"high\";\nfn check(event, trace) {\n  let x = ;\n}\n",
    )
    .unwrap();
    let app = app_with_rules(rules.path()).await;
    let (_, listed) = app.get("/api/v1/rules").await;
    assert_eq!(listed["rules"].as_array().unwrap().len(), 6, "{listed}");
    let problem = &listed["load_problems"][0];
    assert!(problem["file"].as_str().unwrap().ends_with("broken.rhai"));
    assert_eq!(
        (problem["line"].as_u64(), problem["column"].is_u64()),
        (Some(4), true)
    );
    let (status, health) = app.get("/api/v1/health").await;
    assert_eq!((status, health["status"].as_str()), (200, Some("degraded")));
    assert_eq!(health["rules_loaded"], 6);
    let (_, deep) = app.get("/api/v1/health/deep").await;
    assert!(
        deep["rules"]["problems"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("broken.rhai"),
        "{deep}"
    );
    assert_default_rules_fire(&app).await;

    // On reload, a broken edit to one file keeps its previous version; another file's good
    // edit applies.
    let token_budget = rules.path().join("token_budget.rhai");
    std::fs::write(
        &token_budget,
        "const DESCRIPTION = \"half\";\nfn check(event, trace) {",
    )
    .unwrap();
    let cost_guard = rules.path().join("cost_guard.rhai");
    let src = std::fs::read_to_string(&cost_guard).unwrap();
    assert!(
        src.contains("TRACE_BUDGET_USD = 5.0"),
        "the test edits this threshold"
    );
    std::fs::write(
        &cost_guard,
        src.replace("TRACE_BUDGET_USD = 5.0", "TRACE_BUDGET_USD = 0.01"),
    )
    .unwrap();
    let mut applied = false;
    for i in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut probe = ev(&format!("cheap-{i}"), "s", "llm");
        probe["usage"] = json!({"input_tokens": 1, "output_tokens": 1, "cost_usd": 0.05});
        let (_, resp) = app.post_json("/api/v1/traces", &batch(vec![probe])).await;
        if fired(&resp).contains(&"cost_guard".to_owned()) {
            applied = true;
            break;
        }
    }
    assert!(applied, "the good edit to cost_guard is in force");
    let (_, listed) = app.get("/api/v1/rules").await;
    let files: Vec<&str> = listed["load_problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with("token_budget.rhai")),
        "{listed}"
    );
    assert_eq!(listed["rules"].as_array().unwrap().len(), 6, "{listed}");
    let mut bad = ev("tok-after-broken-edit", "s", "llm");
    bad["usage"] = json!({"input_tokens": 150000, "output_tokens": 60000});
    let (_, resp) = app.post_json("/api/v1/traces", &batch(vec![bad])).await;
    assert!(
        fired(&resp).contains(&"token_budget".to_owned()),
        "the previous token_budget keeps protecting: {resp}"
    );
    app.stop().await;
}

#[tokio::test]
async fn runaway_rules_are_stopped_and_the_event_is_still_stored() {
    let rules = tempfile::tempdir().unwrap();
    std::fs::write(
        rules.path().join("spin.rhai"),
        "const DESCRIPTION = \"spins\";\nconst SEVERITY = \"info\";\nfn check(event, trace) { loop { } }\n",
    )
    .unwrap();
    std::fs::write(
        rules.path().join("hog.rhai"),
        "const DESCRIPTION = \"allocates\";\nconst SEVERITY = \"info\";\nfn check(event, trace) { let s = \"x\"; while true { s += s; } }\n",
    )
    .unwrap();
    let before = dir_snapshot(rules.path());
    let app = app_with_rules(rules.path()).await;
    let (status, resp) = app
        .post_json("/api/v1/traces", &batch(vec![ev("spin", "s", "llm")]))
        .await;
    assert_eq!(status, 202, "{resp}");
    assert_eq!(fired(&resp).len(), 2);
    assert!(
        resp["violations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["outcome"] == "rule_error")
    );
    assert_eq!(app.get("/api/v1/traces/spin").await.0, 200);
    let (_, errs) = app.get("/api/v1/violations?outcome=rule_error").await;
    assert_eq!(errs["violations"].as_array().unwrap().len(), 2);
    let (_, rules_resp) = app.get("/api/v1/rules").await;
    assert!(
        rules_resp["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["last_error"].is_string())
    );
    let metrics = app.get_text("/metrics").await;
    assert!(metrics.contains("audittrail_rule_errors_total"));
    app.stop().await;
    assert_eq!(
        before,
        dir_snapshot(rules.path()),
        "the server never writes to the rules directory"
    );
}

fn dir_snapshot(dir: &Path) -> Vec<(String, u64, std::time::SystemTime)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.modified().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn replaying_the_log_reproduces_the_stored_violations_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_in(dir, &[]).await;
    // The trace crosses the token budget only after a restart: totals must come back from the log.
    let mut first = ev("long", "s1", "llm");
    first["usage"] = json!({"input_tokens": 120000, "output_tokens": 0, "cost_usd": 3.0});
    app.post_json("/api/v1/traces", &batch(vec![first])).await;
    let mut tool = ev("other", "t", "tool");
    tool["input"] = json!({"command": "rm -rf ~"});
    app.post_json("/api/v1/traces", &batch(vec![tool])).await;
    let dir = app.stop().await;

    let app = spawn_in(dir, &[]).await;
    let mut second = ev("long", "s2", "llm");
    second["usage"] = json!({"input_tokens": 100000, "output_tokens": 0, "cost_usd": 3.0});
    let (_, resp) = app.post_json("/api/v1/traces", &batch(vec![second])).await;
    let rules = fired(&resp);
    assert!(
        rules.contains(&"token_budget".to_owned()) && rules.contains(&"cost_guard".to_owned()),
        "{resp}"
    );
    let dir = app.stop().await;
    assert_replay_matches(dir.path());

    let mut args = base_args(dir.path());
    args.remove(0);
    let out = Command::new(binary())
        .args(&args)
        .args(["rules", "replay", "--disable", "token_budget"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("token_budget"))
        .unwrap_or_default();
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        ["token_budget", "0", "1", "0"],
        "{stdout}"
    );
}

#[tokio::test]
async fn violations_at_or_above_the_threshold_reach_the_webhook() {
    use axum::routing::post;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Value>(16);
    let receiver = axum::Router::new().route(
        "/hook",
        post(move |axum::Json(v): axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(v).await;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    // A second, dead webhook: its retries must not hold up ingest or the live one.
    let dead = "http://127.0.0.1:9/dead";
    let app = common::spawn_app_with(&[
        "--alert-webhook-urls",
        &format!("{hook},{dead}"),
        "--alert-min-severity",
        "high",
    ])
    .await;
    let mut slow = ev("alert-slow", "s", "retrieval");
    slow["end_time"] = json!("2026-11-22T10:00:09Z"); // latency_slo: warning, below the threshold
    let mut drop = ev("alert-drop", "s", "tool");
    drop["input"] = json!({"sql": "DROP TABLE customers"}); // critical
    for e in [slow, drop] {
        let (status, _) = app.post_json("/api/v1/traces", &batch(vec![e])).await;
        assert_eq!(status, 202);
    }
    let alert = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("alert delivered")
        .unwrap();
    assert!(
        alert["text"]
            .as_str()
            .unwrap()
            .contains("bulk_delete_prevention"),
        "{alert}"
    );
    assert_eq!(alert["audittrail"]["violation"]["severity"], "critical");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "the warning was not sent"
    );
    app.stop().await;
}

#[tokio::test]
async fn ablation_jobs_compare_history_with_a_changed_rule_set() {
    let app = common::spawn_app().await;
    let mut costly = ev("abl", "s", "llm");
    costly["usage"] = json!({"cost_usd": 8.0});
    app.post_json("/api/v1/traces", &batch(vec![costly])).await;

    async fn run(app: &common::TestApp, body: Value) -> Value {
        let (status, started) = app.post_json("/api/v1/ablation", &body).await;
        assert_eq!(status, 202, "{started}");
        let id = started["id"].as_str().unwrap().to_owned();
        for _ in 0..100 {
            let (_, s) = app.get(&format!("/api/v1/ablation/{id}")).await;
            if !["running", "queued"].contains(&s["status"].as_str().unwrap()) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("ablation job did not finish");
    }
    let same = run(&app, json!({})).await;
    assert_eq!(
        (same["status"].as_str(), same["identical"].as_bool()),
        (Some("done"), Some(true)),
        "{same}"
    );
    let off = run(&app, json!({"disable": ["cost_guard"]})).await;
    assert_eq!(
        off["result"]["rules"]["cost_guard"]["would_disappear"], 1,
        "{off}"
    );
    let new_rule = "const DESCRIPTION = \"any llm\";\nconst SEVERITY = \"info\";\nfn check(event, trace) { if event.kind == \"llm\" { return #{message: \"llm call\"}; } }\n";
    let added = run(&app, json!({"rules": {"every_llm": new_rule}})).await;
    assert_eq!(
        added["result"]["rules"]["every_llm"]["would_fire"], 1,
        "{added}"
    );

    let (status, err) = app
        .post_json(
            "/api/v1/ablation",
            &json!({"rules": {"broken": "fn check(event, trace) { let x = ; }"}}),
        )
        .await;
    assert_eq!(status, 422);
    assert!(
        err["errors"][0]["path"]
            .as_str()
            .unwrap()
            .contains("broken.rhai"),
        "{err}"
    );
    app.stop().await;
}

/// `audittrail rules replay` on a stopped server's data: the stored violations must be exactly
/// what the rules give when the log is replayed in order.
fn assert_replay_matches(dir: &Path) {
    let mut args = base_args(dir);
    args.remove(0);
    let out = Command::new(binary())
        .args(&args)
        .args(["rules", "replay"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("no differences"), "{stdout}");
}

fn with_tokens(mut e: Value, tokens: u64) -> Value {
    e["usage"] = json!({"input_tokens": tokens, "output_tokens": 0, "cost_usd": 0.01});
    e
}

/// Many concurrent requests feeding the same traces: the writer evaluates one group while it
/// commits the previous one, yet each trace crosses its token budget exactly once, and a
/// replay of the log reproduces the stored violations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_see_exact_running_totals() {
    let app = spawn_in(tempfile::tempdir().unwrap(), &[]).await;
    // 8 traces x 60 events x 5,000 tokens: the 41st event of each trace passes 200,000.
    let requests: Vec<Value> = (0..24)
        .map(|r| {
            batch(
                (0..20)
                    .map(|j| {
                        let g = r * 20 + j;
                        with_tokens(
                            ev(&format!("conc-{}", g % 8), &format!("s{g}"), "llm"),
                            5000,
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    let replies =
        futures_util::future::join_all(requests.iter().map(|b| app.post_json("/api/v1/traces", b)))
            .await;
    let mut crossings: Vec<String> = Vec::new();
    for (status, body) in &replies {
        assert_eq!(*status, 202, "{body}");
        for v in body["violations"].as_array().unwrap() {
            if v["rule_id"] == "token_budget" {
                crossings.push(v["trace_id"].as_str().unwrap().to_owned());
            }
        }
    }
    crossings.sort();
    let expected: Vec<String> = (0..8).map(|t| format!("conc-{t}")).collect();
    assert_eq!(crossings, expected, "one budget crossing per trace");
    let dir = app.stop().await;
    assert_replay_matches(dir.path());
}

/// A commit that fails (here: a trigger that aborts it) must not leak into the totals later
/// events are judged by. Each later event is either refused (a retryable 503, since it was
/// evaluated against the failed batch) or accepted with totals that leave the failed events out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_leaves_no_trace_in_later_totals() {
    let app = spawn_in(tempfile::tempdir().unwrap(), &[]).await;
    if common::postgres() {
        app.sql(
            "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
               IF NEW.body LIKE '%POISON-PILL%' THEN RAISE EXCEPTION 'injected failure'; END IF; \
               RETURN NEW; END $$ LANGUAGE plpgsql; \
             CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison()",
        );
    } else {
        app.sql(
            "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.body LIKE '%POISON-PILL%' \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        );
    }
    let mut refused = 0;
    for k in 0..12 {
        let trace = format!("fail-{k}");
        let mut pill = with_tokens(ev(&trace, "pill", "llm"), 150_000);
        pill["name"] = json!("POISON-PILL");
        let pill = batch(vec![pill]);
        let later: Vec<Value> = (0..6)
            .map(|i| {
                batch(vec![with_tokens(
                    ev(&trace, &format!("later-{i}"), "llm"),
                    10_000,
                )])
            })
            .collect();
        let filler = batch(
            (0..50)
                .map(|i| ev(&format!("filler-{k}"), &format!("f{i}"), "tool"))
                .collect(),
        );
        let (pill_reply, later_replies, filler_reply) = tokio::join!(
            app.post_json("/api/v1/traces", &pill),
            futures_util::future::join_all(
                later.iter().map(|b| app.post_json("/api/v1/traces", b))
            ),
            app.post_json("/api/v1/traces", &filler),
        );
        // A failed commit is 503 store_unavailable: nothing of the batch was stored.
        assert_eq!(pill_reply.0, 503, "{}", pill_reply.1);
        assert_eq!(
            pill_reply.1["code"], "store_unavailable",
            "{}",
            pill_reply.1
        );
        assert!(matches!(filler_reply.0, 202 | 503), "{}", filler_reply.1);
        for (status, body) in later_replies {
            match status {
                202 => assert!(
                    !fired(&body).contains(&"token_budget".to_owned()),
                    "an accepted event was judged with the failed event's tokens: {body}"
                ),
                // Committed in the same transaction as the pill.
                503 if body["code"] == "store_unavailable" => {}
                503 => {
                    assert_eq!(body["code"], "retry", "{body}");
                    refused += 1;
                }
                other => panic!("unexpected status {other}: {body}"),
            }
        }
    }
    eprintln!("{refused} requests were refused for a retry");
    // The writer recovers: a clean request goes through and health is ok again.
    let (status, _) = app
        .post_json("/api/v1/traces", &batch(vec![ev("after", "a", "llm")]))
        .await;
    assert_eq!(status, 202);
    let (_, health) = app.get("/api/v1/health").await;
    assert_eq!(health["status"], "ok", "{health}");
    let dir = app.stop().await;
    assert_replay_matches(dir.path());
}

#[test]
fn rules_check_lists_what_each_rule_reads() {
    let dir = tempfile::tempdir().unwrap();
    let header = "const DESCRIPTION = \"d\";\nconst SEVERITY = \"info\";\n";
    std::fs::write(
        dir.path().join("narrow.rhai"),
        format!("{header}// the event's kind only\nfn check(event, trace) {{ if event.kind == \"x\" && trace.tokens > 1 {{ #{{}} }} }}"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("whole.rhai"),
        format!("{header}fn check(event, trace) {{ if type_of(event) == \"map\" {{ #{{}} }} }}"),
    )
    .unwrap();
    let out = Command::new(binary())
        .args(["rules", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("reads event.kind; trace.tokens"),
        "{stdout}"
    );
    assert!(
        stdout.contains("reads all of event (not only read as event.field); nothing of trace"),
        "{stdout}"
    );
}
