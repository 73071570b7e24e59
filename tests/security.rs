//! Keys, permissions, tenants, the audit log and the production guard, through the real server.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{
    TestApp, base_args, batch, binary, client_with_key, event, spawn_app, spawn_app_with,
};
use serde_json::{Value, json};

async fn create_key(app: &TestApp, projects: &[&str], permissions: &[&str]) -> (String, String) {
    let (status, body) = app
        .post_json(
            "/api/v1/keys",
            &json!({"name": "k", "projects": projects, "permissions": permissions}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

async fn call(
    client: &reqwest::Client,
    method: &str,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = match method {
        "GET" => client.get(url),
        "POST" => client.post(url),
        "DELETE" => client.delete(url),
        "PUT" => client.put(url),
        other => panic!("{other}"),
    };
    if let Some(b) = body {
        req = req.json(&b);
    }
    common::json_response(req.send().await.unwrap()).await
}

#[tokio::test]
async fn bootstrap_works_once_and_keys_live_their_whole_life() {
    let app = spawn_app().await;
    // The harness already bootstrapped: a second bootstrap is refused.
    let (status, body) = call(
        &common::client(),
        "POST",
        app.url("/api/v1/keys/bootstrap"),
        Some(json!({"name": "again"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "already_bootstrapped");
    assert!(app.owner_key.starts_with("sk-at-"));

    let (id, key) = create_key(&app, &["proj-a"], &["traces:write", "traces:read"]).await;
    let agent = client_with_key(&key);
    let (status, _) = call(
        &agent,
        "POST",
        app.url("/api/v1/traces"),
        Some(batch(vec![event("t", "s", "2026-11-22T10:00:00Z")])),
    )
    .await;
    assert_eq!(status, 202);

    let (status, rotated) = app
        .post_json(&format!("/api/v1/keys/{id}/rotate"), &json!({}))
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_key = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, key);
    let (status, body) = call(&agent, "GET", app.url("/api/v1/traces"), None).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (401, Some("invalid API key")),
        "the old secret is dead at once"
    );
    let (status, _) = call(
        &client_with_key(&new_key),
        "GET",
        app.url("/api/v1/traces"),
        None,
    )
    .await;
    assert_eq!(status, 200);

    let (status, _) = call(
        &app.client,
        "DELETE",
        app.url(&format!("/api/v1/keys/{id}")),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &client_with_key(&new_key),
        "GET",
        app.url("/api/v1/traces"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (401, Some("API key revoked"))
    );

    let (_, list) = app.get("/api/v1/keys").await;
    let text = list.to_string();
    for secret in [&key, &new_key, &app.owner_key] {
        assert!(
            !text.contains(secret.split('_').nth(1).unwrap()),
            "no secret in the key list"
        );
    }
    assert!(!text.contains("argon2"), "no hash in the key list");
    let listed = list["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert!(listed["revoked_at"].is_string() && listed["rotated_at"].is_string());

    let (_, audit) = app.get("/api/v1/audit?event_type=key_management").await;
    let ops: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    for op in [
        "keys.bootstrap",
        "keys.create",
        "keys.rotate",
        "keys.revoke",
    ] {
        assert!(ops.contains(&op), "{op} audited: {ops:?}");
    }
    let (_, failures) = app
        .get("/api/v1/audit?event_type=authentication&result=failure")
        .await;
    assert!(
        !failures["entries"].as_array().unwrap().is_empty(),
        "failed authentications are audited"
    );
    assert!(
        !audit
            .to_string()
            .contains(new_key.split('_').nth(1).unwrap()),
        "no secret in the audit log"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_get_401_with_a_clear_message() {
    let app = spawn_app().await;
    let anon = common::client();
    let cases = [
        (None, "missing credentials"),
        (Some("Bearer nonsense"), "malformed API key"),
        (
            Some("Bearer sk-at-aaaaaaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"),
            "invalid API key",
        ),
    ];
    for (header, message) in cases {
        let mut req = anon.get(app.url("/api/v1/traces"));
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        assert!(resp.headers().contains_key("www-authenticate"));
        let body: Value = resp.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains(message), "{body}");
    }
    // Expired: the key's expiry passed before its first use.
    let (id, key) = create_key(&app, &["p"], &["traces:read"]).await;
    app.sql(&format!(
        "UPDATE api_keys SET expires_at = '2000-01-01T00:00:00.000000Z' WHERE id = '{id}'"
    ));
    let (status, body) = call(
        &client_with_key(&key),
        "GET",
        app.url("/api/v1/traces"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (401, Some("API key expired"))
    );
    // Public routes stay public.
    assert_eq!(
        anon.get(app.url("/api/v1/health"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert_eq!(
        anon.get(app.url("/api/v1/instance"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    app.stop().await;
}

/// The README's route → permission table. Every route that needs a key is here; `{trace}`,
/// `{job}` and `{key}` are replaced by real ids of project `p`.
const ROUTES: &[(&str, &str, &str)] = &[
    ("POST", "/api/v1/traces", "traces:write"),
    ("POST", "/api/v1/evaluate", "traces:write"),
    ("GET", "/api/v1/traces", "traces:read"),
    ("GET", "/api/v1/traces/{trace}", "traces:read"),
    ("GET", "/api/v1/violations", "traces:read"),
    ("GET", "/api/v1/rules", "rules:read"),
    ("POST", "/api/v1/ablation", "rules:read"),
    ("GET", "/api/v1/ablation/{job}", "rules:read"),
    ("DELETE", "/api/v1/ablation/{job}", "rules:read"),
    ("POST", "/v1/traces", "traces:write"),
    ("POST", "/api/public/otel/v1/traces", "traces:write"),
    ("GET", "/ws/ingest", "traces:write"),
    ("GET", "/api/v1/keys", "keys:admin"),
    ("POST", "/api/v1/keys", "keys:admin"),
    ("POST", "/api/v1/keys/{key}/rotate", "keys:admin"),
    ("DELETE", "/api/v1/keys/{key}", "keys:admin"),
    ("GET", "/api/v1/audit", "admin:all"),
    ("POST", "/api/v1/reports", "reports:create"),
    ("GET", "/api/v1/reports", "reports:read"),
    ("GET", "/api/v1/reports/{report}", "reports:read"),
    ("GET", "/api/v1/reports/{report}.pdf", "reports:read"),
    ("GET", "/api/v1/health/deep", "system:health"),
    ("GET", "/metrics", "system:metrics"),
    ("POST", "/api/v1/erasure", "data:erase"),
    ("POST", "/api/v1/retention/apply", "admin:all"),
    ("GET", "/api/v1/projects/p/retention", "admin:all"),
    ("PUT", "/api/v1/projects/p/retention", "admin:all"),
];

const ALL: &[&str] = &[
    "traces:write",
    "traces:read",
    "rules:read",
    "reports:create",
    "reports:read",
    "keys:admin",
    "system:metrics",
    "system:health",
    "data:erase",
];

/// A valid body for each route that takes one.
fn valid_body(method: &str, path: &str) -> Option<Value> {
    let otlp = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "name": "retrieve", "startTimeUnixNano": "1763805600000000000", "endTimeUnixNano": "1763805600500000000"
    }]}]}]});
    match (method, path) {
        ("POST", "/api/v1/traces") => Some(batch(vec![event("walk", "s", "2026-11-22T10:00:00Z")])),
        ("POST", "/api/v1/evaluate") => {
            Some(json!({"kind": "tool", "name": "lookup", "input": {"id": 1}}))
        }
        ("POST", "/api/v1/ablation") => Some(json!({})),
        ("POST", "/api/v1/retention/apply") => Some(json!({"dry_run": true})),
        ("PUT", "/api/v1/projects/p/retention") => Some(json!({"days": 400})),
        ("POST", "/api/v1/erasure") => {
            Some(json!({"session_id": "nobody", "reason": "route walk"}))
        }
        ("POST", "/api/v1/reports") => Some(
            json!({"standard": "soc2", "from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"}),
        ),
        ("POST", "/v1/traces") | ("POST", "/api/public/otel/v1/traces") => Some(otlp),
        ("POST", "/api/v1/keys") => {
            Some(json!({"name": "child", "projects": ["p"], "permissions": ["keys:admin"]}))
        }
        ("POST", _) => Some(json!({})),
        _ => None,
    }
}

/// Opens the WebSocket door with `key`: the upgrade's status (101 when allowed).
async fn ws_status(app: &TestApp, key: &str) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = app
        .url("/ws/ingest")
        .replace("http://", "ws://")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("websocket: {e}"),
    }
}

#[tokio::test]
async fn every_route_requires_its_permission_and_works_with_it_alone() {
    let app = spawn_app().await;
    // Real ids in project `p`: a trace, an ablation job, and keys a keys:admin key may manage.
    let owner_in_p = |method: reqwest::Method, path: &str| {
        app.client
            .request(method, app.url(path))
            .header("x-audittrail-project", "p")
    };
    let resp = owner_in_p(reqwest::Method::POST, "/api/v1/traces")
        .json(&batch(vec![event(
            "trace-in-p",
            "s",
            "2026-11-22T10:00:00Z",
        )]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let resp = owner_in_p(reqwest::Method::POST, "/api/v1/ablation")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let job: Value = resp.json().await.unwrap();
    let job = job["id"].as_str().unwrap().to_owned();
    let resp = owner_in_p(reqwest::Method::POST, "/api/v1/reports")
        .json(&valid_body("POST", "/api/v1/reports"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let report: Value = resp.json().await.unwrap();
    let report = report["id"].as_str().unwrap().to_owned();
    for _ in 0..300 {
        let resp = owner_in_p(reqwest::Method::GET, &format!("/api/v1/reports/{report}"))
            .send()
            .await
            .unwrap();
        let v: Value = resp.json().await.unwrap();
        if v["status"] == "done" {
            break;
        }
        assert!(v["status"] != "failed", "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    for (method, template, permission) in ROUTES {
        let (target, _) = create_key(&app, &["p"], &["keys:admin"]).await;
        let path = template
            .replace("{trace}", "trace-in-p")
            .replace("{job}", &job)
            .replace("{report}", &report)
            .replace("{key}", &target);
        let body = valid_body(method, template);
        let (_, anon) = call(&common::client(), method, app.url(&path), body.clone()).await;
        assert_eq!(anon["status"], 401, "{method} {path} without a key: {anon}");

        let others: Vec<&str> = ALL.iter().copied().filter(|p| p != permission).collect();
        let (_, without) = create_key(&app, &["p"], &others).await;
        let (status, resp) = call(
            &client_with_key(&without),
            method,
            app.url(&path),
            body.clone(),
        )
        .await;
        assert_eq!(status, 403, "{method} {path} without {permission}: {resp}");
        assert!(
            resp["detail"].as_str().unwrap().contains(permission),
            "403 names the permission: {resp}"
        );

        let (_, with) = create_key(&app, &["p"], &[permission]).await;
        if *template == "/ws/ingest" {
            assert_eq!(
                ws_status(&app, &with).await,
                101,
                "{path} with {permission}"
            );
            continue;
        }
        let (status, resp) = call(&client_with_key(&with), method, app.url(&path), body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} with only {permission}: {status} {resp}"
        );
    }
    let (_, denials) = app.get("/api/v1/audit?event_type=authorization").await;
    assert!(
        denials["entries"].as_array().unwrap().len() >= ROUTES.len(),
        "denials are audited"
    );
    app.stop().await;
}

#[tokio::test]
async fn tenants_cannot_see_or_touch_each_other() {
    let app = spawn_app().await;
    let (_, key_a) = create_key(
        &app,
        &["tenant-a"],
        &["traces:write", "traces:read", "rules:read"],
    )
    .await;
    let (_, key_b) = create_key(
        &app,
        &["tenant-b"],
        &["traces:write", "traces:read", "rules:read"],
    )
    .await;
    let (a, b) = (client_with_key(&key_a), client_with_key(&key_b));
    let mut bad = event("secret-trace", "s", "2026-11-22T10:00:00Z");
    bad["kind"] = json!("tool");
    bad["input"] = json!({"sql": "DROP TABLE customers"});
    let (status, resp) = call(
        &a,
        "POST",
        app.url("/api/v1/traces"),
        Some(batch(vec![bad])),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(resp["violations"][0]["rule_id"], "bulk_delete_prevention");

    // Table of everything B might try against A's data: all must look like nothing is there.
    let reads: &[(&str, &str)] = &[
        ("/api/v1/traces/secret-trace", "404"),
        ("/api/v1/traces", "empty:traces"),
        ("/api/v1/traces?agent=support-bot", "empty:traces"),
        ("/api/v1/violations", "empty:violations"),
        (
            "/api/v1/violations?trace_id=secret-trace",
            "empty:violations",
        ),
    ];
    for (path, expect) in reads {
        let (status, body) = call(&b, "GET", app.url(path), None).await;
        match expect.split_once(':') {
            Some(("empty", field)) => {
                assert_eq!(status, 200, "{path}");
                assert_eq!(body[field], json!([]), "{path}: {body}");
            }
            _ => assert_eq!(status, 404, "{path}: {body}"),
        }
    }
    let (_, rules) = call(&b, "GET", app.url("/api/v1/rules"), None).await;
    let hits: i64 = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["hits"].as_i64().unwrap())
        .sum();
    assert_eq!(hits, 0, "rule hits are per tenant");

    // Naming the other tenant's project reads and writes nothing (404, ids don't leak).
    for (method, path, body) in [
        ("GET", "/api/v1/traces/secret-trace", None),
        ("GET", "/api/v1/traces", None),
        (
            "POST",
            "/api/v1/traces",
            Some(batch(vec![event("intrusion", "s", "2026-11-22T10:00:00Z")])),
        ),
    ] {
        let resp = b
            .request(method.parse().unwrap(), app.url(path))
            .header("x-audittrail-project", "tenant-a");
        let resp = match body {
            Some(b) => resp.json(&b),
            None => resp,
        };
        assert_eq!(
            resp.send().await.unwrap().status().as_u16(),
            404,
            "{method} {path}"
        );
    }
    let (status, _) = call(&a, "GET", app.url("/api/v1/traces/intrusion"), None).await;
    assert_eq!(status, 404, "B wrote nothing into A");
    let (status, body) = call(&a, "GET", app.url("/api/v1/traces/secret-trace"), None).await;
    assert_eq!(status, 200, "{body}");

    // A key scoped to several projects must name one.
    let (_, multi) = create_key(&app, &["tenant-a", "tenant-b"], &["traces:read"]).await;
    let (status, body) = call(
        &client_with_key(&multi),
        "GET",
        app.url("/api/v1/traces"),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("project_required"))
    );
    let resp = client_with_key(&multi)
        .get(app.url("/api/v1/traces"))
        .header("x-audittrail-project", "tenant-a")
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["traces"][0]["trace_id"], "secret-trace");
    app.stop().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let app = spawn_app_with(&["--rate-limit-queries", "1"]).await;
    let mut limited = 0;
    for _ in 0..10 {
        let resp = app.get_with_headers("/api/v1/traces", &[]).await;
        if resp.status().as_u16() == 429 {
            limited += 1;
            assert!(resp.headers().contains_key("retry-after"));
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["code"], "rate_limited");
        }
    }
    assert!(
        limited >= 5,
        "a budget of 1/s (burst 2) lets at most a few of 10 quick requests through"
    );
    // Ingest has its own budget.
    let (status, _) = app
        .post_json(
            "/api/v1/traces",
            &batch(vec![event("t", "s", "2026-11-22T10:00:00Z")]),
        )
        .await;
    assert_eq!(status, 202);
    app.stop().await;
}

#[tokio::test]
async fn responses_carry_security_headers_and_exact_cors() {
    let app = spawn_app_with(&["--cors-origins", "[\"https://audit.example.com\"]"]).await;
    let resp = app
        .get_with_headers("/api/v1/health", &[("origin", "https://audit.example.com")])
        .await;
    let h = resp.headers();
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(
        h["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert!(
        !h.contains_key("strict-transport-security"),
        "no HSTS over plain HTTP from an untrusted peer"
    );
    assert_eq!(
        h["access-control-allow-origin"],
        "https://audit.example.com"
    );
    let resp = app
        .get_with_headers("/api/v1/health", &[("origin", "https://evil.example.net")])
        .await;
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
    app.stop().await;
}

fn run_prod(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut a = base_args(dir);
    a.remove(0);
    // The harness passes a secret flag; production tests supply their own.
    for flag in ["--secret-key", "--environment"] {
        let i = a.iter().position(|x| x == flag).unwrap();
        a.drain(i..i + 2);
    }
    let mut cmd = Command::new(binary());
    cmd.args(a)
        .args(args)
        .env("AUDITTRAIL_ENVIRONMENT", "production")
        .env_remove("AUDITTRAIL_SECRET_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn production_refuses_unsafe_settings_listing_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_prod(
        dir.path(),
        &[
            ("AUDITTRAIL_DEBUG", "true"),
            ("AUDITTRAIL_CORS_ORIGINS", "[\"*\"]"),
        ],
        &["migrate"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "AUDITTRAIL_SECRET_KEY: the default key is not allowed",
        "AUDITTRAIL_DEBUG: must be false",
        "AUDITTRAIL_CORS_ORIGINS: `*` is not allowed",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in: {err}");
    }
    let out = run_prod(
        dir.path(),
        &[("AUDITTRAIL_SECRET_KEY", "too-short")],
        &["migrate"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 32 bytes"));
}

#[test]
fn production_refuses_secret_files_readable_by_others() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "0123456789abcdef0123456789abcdef0123456789\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let path = file.to_str().unwrap();
    let out = run_prod(
        dir.path(),
        &[("AUDITTRAIL_SECRET_KEY_FILE", path)],
        &["migrate"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("readable by group or others"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    let out = run_prod(
        dir.path(),
        &[("AUDITTRAIL_SECRET_KEY_FILE", path)],
        &["migrate"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// Multi-threaded: the CLI runs as a blocking child process while the in-process server must
// keep serving (and finish any transaction it holds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_key_commands_manage_keys_the_server_honours() {
    let app = spawn_app().await;
    let mut args = base_args(app.dir.path());
    args.remove(0);
    let out = Command::new(binary())
        .args(&args)
        .args([
            "keys",
            "create",
            "--name",
            "ci",
            "--projects",
            "default",
            "--permissions",
            "traces:read",
            "--expires-in",
            "90d",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let issued: Value =
        serde_json::from_str(text.split("\nStore the key").next().unwrap()).unwrap();
    let key = issued["key"].as_str().unwrap().to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    let client = client_with_key(&key);
    assert_eq!(
        call(&client, "GET", app.url("/api/v1/traces"), None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(
            &client,
            "POST",
            app.url("/api/v1/traces"),
            Some(batch(vec![]))
        )
        .await
        .0,
        403
    );
    let out = Command::new(binary())
        .args(&args)
        .args(["keys", "revoke", &id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut revoked = false;
    for _ in 0..40 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if call(&client, "GET", app.url("/api/v1/traces"), None)
            .await
            .0
            == 401
        {
            revoked = true;
            break;
        }
    }
    assert!(
        revoked,
        "a CLI revocation reaches the running server within seconds"
    );
    let list = Command::new(binary())
        .args(&args)
        .args(["keys", "list"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(key.split('_').nth(1).unwrap()));
    app.stop().await;
}

#[tokio::test]
async fn hsts_only_when_a_trusted_proxy_says_the_request_came_over_tls() {
    let app = spawn_app_with(&["--trusted-proxies", "127.0.0.1"]).await;
    let via_tls = app
        .get_with_headers("/api/v1/health", &[("x-forwarded-proto", "https")])
        .await;
    assert_eq!(
        via_tls.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let plain = app.get_with_headers("/api/v1/health", &[]).await;
    assert!(!plain.headers().contains_key("strict-transport-security"));
    app.stop().await;
}

#[tokio::test]
async fn a_project_scoped_admin_pages_through_only_its_projects_audit_entries() {
    let app = spawn_app().await;
    let (_, intruder) = create_key(&app, &["tenant-z"], &["traces:read"]).await;
    let intruder = client_with_key(&intruder);
    // Denied attempts against two other projects, interleaved.
    for _ in 0..3 {
        for target in ["tenant-a", "tenant-c"] {
            let resp = intruder
                .get(app.url("/api/v1/traces"))
                .header("x-audittrail-project", target)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 404);
        }
    }
    let (_, admin_a) = create_key(&app, &["tenant-a"], &["admin:all"]).await;
    let admin_a = client_with_key(&admin_a);
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = call(
            &admin_a,
            "GET",
            app.url(&format!("/api/v1/audit?limit=2&cursor={cursor}")),
            None,
        )
        .await;
        assert_eq!(status, 200, "{page}");
        let entries = page["entries"].as_array().unwrap();
        assert!(
            entries.iter().all(|e| e["project"] == "tenant-a"),
            "only tenant-a: {page}"
        );
        seen.extend(entries.iter().map(|e| e["id"].as_i64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => {
                assert_eq!(entries.len(), 2, "pages are full until the last one");
                cursor = c.to_owned();
            }
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        3,
        "the three denials against tenant-a, each once"
    );
    app.stop().await;
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_audit_entries_and_no_secrets() {
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
    let owner = common::bootstrap(&base).await;
    let owner_client = client_with_key(&owner);
    let resp = owner_client
        .post(format!("{base}/api/v1/traces"))
        .json(&batch(vec![event(
            "json-logs",
            "s",
            "2026-11-22T10:00:00Z",
        )]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let wrong = format!("{}XXXX", &owner[..owner.len() - 4]);
    let resp = client_with_key(&wrong)
        .get(format!("{base}/api/v1/traces"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // SIGTERM: a clean shutdown flushes the log.
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let mut audit_lines = 0;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert!(v.is_object(), "{line}");
        if v["target"] == "audit" {
            audit_lines += 1;
        }
    }
    assert!(
        audit_lines >= 2,
        "bootstrap and the failed authentication: {text}"
    );
    let owner_secret = owner.split('_').nth(1).unwrap();
    for secret in [owner_secret, &wrong, common::TEST_SECRET] {
        assert!(!text.contains(secret), "a secret reached the log");
    }
}
