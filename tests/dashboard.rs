//! The dashboard as its users meet it: sessions and their refusals, CSRF and origin checks,
//! tenant scoping on every page and on the live feed, HTML errors, escaping, large traces, and
//! a whole visit in headless Chromium (tests/python/dashboard_browser.py) with screenshots in
//! `target/dashboard-screenshots/`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{TestApp, batch, client, event, spawn_app};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// `application/x-www-form-urlencoded`, as a browser sends a form.
fn form_body(pairs: &[(&str, &str)]) -> String {
    use audittrail::dashboard::fmt::url;
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", url(k), url(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A client that follows no redirects (to see the 303s).
fn browser() -> reqwest::Client {
    audittrail::server::install_tls_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn make_key(app: &TestApp, name: &str, projects: &[&str], permissions: &[&str]) -> String {
    let (status, body) = app
        .post_json(
            "/api/v1/keys",
            &json!({ "name": name, "projects": projects, "permissions": permissions }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

/// Signs in with `key`; returns the `Cookie` header value.
async fn sign_in(app: &TestApp, key: &str) -> String {
    let resp = browser()
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("key", key)]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        303,
        "sign-in answers with a redirect"
    );
    assert_eq!(resp.headers()["location"], "/");
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attr), "cookie lacks {attr}: {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: no Secure flag");
    assert!(!set.contains(key), "the cookie never holds the key");
    set.split(';').next().unwrap().to_owned()
}

async fn page(
    app: &TestApp,
    cookie: &str,
    path: &str,
) -> (u16, String, reqwest::header::HeaderMap) {
    let resp = browser()
        .get(app.url(path))
        .header("cookie", cookie)
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.text().await.unwrap(), headers)
}

/// The CSRF token in a page's forms.
fn csrf(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token")
        + 19;
    html[at..at + 64].to_owned()
}

async fn post_form(
    app: &TestApp,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
    origin: Option<&str>,
) -> (u16, String, Option<String>) {
    let mut req = browser()
        .post(app.url(path))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(form));
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    (status, resp.text().await.unwrap(), location)
}

async fn post_to(app: &TestApp, key: &str, project: &str, events: Vec<Value>) {
    let resp = client()
        .post(app.url("/api/v1/traces"))
        .bearer_auth(key)
        .header("x-audittrail-project", project)
        .json(&batch(events))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_checked_on_every_request() {
    let app = spawn_app().await;
    // No session: the dashboard sends the browser to a sign-in page.
    let resp = browser().get(app.url("/")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["location"], "/login?reason=none");
    let (status, html, headers) = page(&app, "", "/login").await;
    assert_eq!(status, 200);
    assert!(html.contains("<form method=\"post\" action=\"/login\""));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    // The API keeps its own policy.
    let resp = app
        .client
        .get(app.url("/api/v1/traces"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );

    // A wrong key is refused on the page (401 HTML), never with the key echoed.
    let resp = browser()
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("key", "sk-at-nope_wrongsecret")]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let text = resp.text().await.unwrap();
    assert!(text.contains("That key was not accepted.") && !text.contains("wrongsecret"));
    // A key that can read nothing the dashboard shows is told so.
    let writer = make_key(&app, "ingest-only", &["alpha"], &["traces:write"]).await;
    let resp = browser()
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("key", writer.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    // Rotating the key ends its sessions at the next request.
    let reader = make_key(&app, "reader", &["alpha"], &["traces:read"]).await;
    let cookie = sign_in(&app, &reader).await;
    assert_eq!(page(&app, &cookie, "/traces").await.0, 200);
    let id = reader["sk-at-".len()..]
        .split('_')
        .next()
        .unwrap()
        .to_owned();
    let (status, _) = app
        .post_json(&format!("/api/v1/keys/{id}/rotate"), &json!({}))
        .await;
    assert_eq!(status, 200);
    let resp = browser()
        .get(app.url("/traces"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["location"], "/login?reason=rotated");

    // A forged or altered cookie opens nothing.
    let reader = make_key(&app, "reader2", &["alpha"], &["traces:read"]).await;
    let cookie = sign_in(&app, &reader).await;
    let mut forged = cookie.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    let resp = browser()
        .get(app.url("/traces"))
        .header("cookie", &forged)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);

    // Sign-out needs the session's CSRF token and this origin; afterwards the cookie is dead.
    let (_, html, _) = page(&app, &cookie, "/").await;
    let token = csrf(&html);
    let (status, body, _) = post_form(
        &app,
        &cookie,
        "/logout",
        &[("csrf", "0".repeat(64).as_str())],
        None,
    )
    .await;
    assert_eq!(status, 403, "wrong CSRF token");
    assert!(body.contains("security token"));
    let (status, _, _) = post_form(
        &app,
        &cookie,
        "/logout",
        &[("csrf", token.as_str())],
        Some("https://evil.example"),
    )
    .await;
    assert_eq!(status, 403, "a cross-site form post");
    let (status, _, location) = post_form(
        &app,
        &cookie,
        "/logout",
        &[("csrf", token.as_str())],
        Some(&app.base),
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(location.as_deref(), Some("/login?reason=signed_out"));
    let resp = browser()
        .get(app.url("/traces"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["location"], "/login?reason=signed_out");

    // Sign-ins and sign-outs are in the audit log.
    let (_, audit) = app.get("/api/v1/audit?event_type=authentication").await;
    let ops: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert!(
        ops.contains(&"dashboard.login") && ops.contains(&"dashboard.logout"),
        "{ops:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_one_tenant_escape_what_they_show_and_answer_errors_in_html() {
    let app = spawn_app().await;
    let writer = make_key(&app, "w", &["alpha", "beta"], &["traces:write"]).await;
    let reader = make_key(&app, "r", &["alpha"], &["traces:read", "rules:read"]).await;
    let mut hostile = event("t-alpha", "root", "2026-11-27T10:00:00Z");
    hostile["name"] = json!("<script>alert(1)</script>");
    hostile["input"] = json!("write to jane.roe@example.org");
    post_to(&app, &writer, "alpha", vec![hostile]).await;
    post_to(
        &app,
        &writer,
        "beta",
        vec![event("t-beta", "root", "2026-11-27T10:00:00Z")],
    )
    .await;
    let cookie = sign_in(&app, &reader).await;

    for path in [
        "/",
        "/live",
        "/traces",
        "/violations",
        "/rules",
        "/traces/t-alpha",
    ] {
        let (status, html, _) = page(&app, &cookie, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(
            !html.contains("t-beta"),
            "{path} shows another project's trace"
        );
        assert!(
            !html.contains("<script>alert"),
            "{path} renders a name as markup"
        );
        assert!(!html.contains("jane.roe"), "{path} shows a raw value");
    }
    let (_, html, _) = page(&app, &cookie, "/traces/t-alpha").await;
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "escaped as text"
    );
    // Another project's trace and span are "not found", like missing ones, as HTML pages.
    for path in ["/traces/t-beta", "/traces/t-beta/spans/2", "/sessions/none"] {
        let (status, html, headers) = page(&app, &cookie, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(html.contains("404 · Not Found"));
    }
    // The span body is redacted and loads alone as a fragment for the side panel.
    let seq = app.sql("SELECT seq FROM events WHERE trace_id = 't-alpha' AND record_type = 'span'");
    let (status, html, _) = page(
        &app,
        &cookie,
        &format!("/traces/t-alpha/spans/{seq}?fragment=1"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("[REDACTED:EMAIL]") && !html.contains("<html"));
    // Bad filters name the field, in HTML.
    let (status, html, _) = page(&app, &cookie, "/traces?status=sideways").await;
    assert_eq!(status, 422);
    assert!(html.contains("status: must be ok or error"), "{html}");
    // Pages the key may not see.
    assert_eq!(page(&app, &cookie, "/keys").await.0, 403);
    assert_eq!(page(&app, &cookie, "/audit").await.0, 403);
    // Unknown pages are HTML for browsers, problem+json for the API.
    let (status, html, _) = page(&app, &cookie, "/no/such/page").await;
    assert_eq!(status, 404);
    assert!(html.contains("<!doctype html>"));
    let (status, body) = app.get("/api/v1/nothing-here").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    // The traces list filters by violations, like the API.
    let (_, body) = app.get("/api/v1/traces?has_violations=maybe").await;
    assert_eq!(body["errors"][0]["path"], "has_violations");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_with_several_projects_picks_one_in_the_header_bar() {
    let app = spawn_app().await;
    let writer = make_key(&app, "w", &["alpha", "beta"], &["traces:write"]).await;
    let reader = make_key(&app, "r", &["alpha", "beta"], &["traces:read"]).await;
    post_to(
        &app,
        &writer,
        "alpha",
        vec![event("in-alpha", "s", "2026-11-27T10:00:00Z")],
    )
    .await;
    post_to(
        &app,
        &writer,
        "beta",
        vec![event("in-beta", "s", "2026-11-27T10:00:00Z")],
    )
    .await;
    let cookie = sign_in(&app, &reader).await;
    let (_, html, _) = page(&app, &cookie, "/traces").await;
    assert!(
        html.contains("in-alpha") && !html.contains("in-beta"),
        "first project until picked"
    );
    assert!(html.contains("<option value=\"beta\""));
    let token = csrf(&html);
    let (status, _, location) = post_form(
        &app,
        &cookie,
        "/project",
        &[("csrf", &token), ("project", "beta"), ("next", "/traces")],
        Some(&app.base),
    )
    .await;
    assert_eq!((status, location.as_deref()), (303, Some("/traces")));
    let (_, html, _) = page(&app, &cookie, "/traces").await;
    assert!(html.contains("in-beta") && !html.contains("in-alpha"));
    // A project outside the key's scope cannot be picked; nor can the next hop leave the site.
    let (status, _, _) = post_form(
        &app,
        &cookie,
        "/project",
        &[("csrf", &token), ("project", "gamma"), ("next", "/")],
        Some(&app.base),
    )
    .await;
    assert_eq!(status, 404);
    let (_, _, location) = post_form(
        &app,
        &cookie,
        "/project",
        &[
            ("csrf", &token),
            ("project", "alpha"),
            ("next", "//evil.example/"),
        ],
        Some(&app.base),
    )
    .await;
    assert_eq!(location.as_deref(), Some("/"));
    app.stop().await;
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A live socket read one message at a time: records that arrive together in a
/// `{"type": "batch", "records": [...]}` frame come out one by one, in order.
struct Live {
    ws: Socket,
    pending: std::collections::VecDeque<Value>,
}

impl From<Socket> for Live {
    fn from(ws: Socket) -> Self {
        Live {
            ws,
            pending: Default::default(),
        }
    }
}

async fn live_socket(app: &TestApp, auth: (&str, &str)) -> Live {
    let mut req = format!("ws://{}/ws/live", app.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        reqwest::header::HeaderName::from_bytes(auth.0.as_bytes()).unwrap(),
        auth.1.parse().unwrap(),
    );
    let (ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("live socket opens");
    let mut live = Live::from(ws);
    let hello = next_json(&mut live).await;
    assert_eq!(hello["type"], "hello");
    live
}

async fn next_json(live: &mut Live) -> Value {
    loop {
        if let Some(v) = live.pending.pop_front() {
            return v;
        }
        let m = tokio::time::timeout(Duration::from_secs(20), live.ws.next())
            .await
            .expect("a live message within 20 s")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "batch" {
                let records = v["records"].as_array().expect("a batch has records");
                assert!(records.len() > 1, "a batch frame carries several records");
                live.pending.extend(records.iter().cloned());
            } else {
                live.pending.push_back(v);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_sends_committed_records_of_the_callers_projects_only() {
    let app = spawn_app().await;
    let writer = make_key(&app, "w", &["alpha", "beta"], &["traces:write"]).await;
    let reader = make_key(&app, "r", &["alpha"], &["traces:read"]).await;
    let bearer = format!("Bearer {reader}");
    let mut ws = live_socket(&app, ("authorization", &bearer)).await;

    // Beta first, then alpha: the first message must be alpha's.
    post_to(
        &app,
        &writer,
        "beta",
        vec![event("b1", "s", "2026-11-27T10:00:00Z")],
    )
    .await;
    let mut tool = event("a1", "t", "2026-11-27T10:00:01Z");
    tool["kind"] = json!("tool");
    tool["input"] = json!({ "sql": "DELETE FROM users" });
    post_to(&app, &writer, "alpha", vec![tool]).await;
    let span = next_json(&mut ws).await;
    assert_eq!(span["type"], "span");
    assert_eq!(span["project"], "alpha");
    assert_eq!(span["trace_id"], "a1");
    assert!(span["seq"].as_i64().unwrap() > 0);
    assert!(
        span.get("input").is_none(),
        "the feed carries summaries, not bodies"
    );
    let violation = next_json(&mut ws).await;
    assert_eq!(violation["type"], "violation");
    assert_eq!(violation["rule_id"], "bulk_delete_prevention");

    // A filter: violations only.
    ws.ws
        .send(Message::Text(
            json!({ "filter": { "types": ["violation"] } })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "filter");
    post_to(
        &app,
        &writer,
        "alpha",
        vec![event("a2", "s", "2026-11-27T10:00:02Z")],
    )
    .await;
    let mut tool = event("a3", "t", "2026-11-27T10:00:03Z");
    tool["kind"] = json!("tool");
    tool["input"] = json!({ "sql": "DELETE FROM orders" });
    post_to(&app, &writer, "alpha", vec![tool]).await;
    let next = next_json(&mut ws).await;
    assert_eq!(
        (next["type"].as_str(), next["trace_id"].as_str()),
        (Some("violation"), Some("a3"))
    );
    // A filter with a bad value is refused, naming the field.
    ws.ws
        .send(Message::Text(
            json!({ "filter": { "severity": "loud" } })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let err = next_json(&mut ws).await;
    assert_eq!(err["type"], "error");
    assert!(err["detail"].as_str().unwrap().starts_with("severity:"));

    // Catching up over HTTP: the same messages, the caller's projects only.
    let resp = client()
        .get(app.url("/api/v1/live?after_seq=0"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    let body: Value = resp.json().await.unwrap();
    let records = body["records"].as_array().unwrap();
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r["project"] == "alpha"), "{body}");
    assert!(records.iter().any(|r| r["trace_id"] == "a2"));
    assert_eq!(body["more"], false);
    let resp = client()
        .get(app.url("/api/v1/live?after_seq=-1"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);

    // Without credentials, or with a session cookie from another site, no socket.
    let req = format!("ws://{}/ws/live", app.addr)
        .into_client_request()
        .unwrap();
    assert!(tokio_tungstenite::connect_async(req).await.is_err());
    let cookie = sign_in(&app, &reader).await;
    let mut req = format!("ws://{}/ws/live", app.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 403)
        }
        other => panic!("cross-site live socket opened: {:?}", other.map(|_| ())),
    }
    // The same cookie from this origin works.
    let origin = app.base.clone();
    let mut req = format!("ws://{}/ws/live", app.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    req.headers_mut().insert("origin", origin.parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(next_json(&mut Live::from(ws)).await["type"], "hello");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_span_trace_is_drawn_a_page_at_a_time() {
    let app = spawn_app().await;
    let reader = make_key(&app, "r", &["default"], &["traces:read"]).await;
    let mut events = Vec::with_capacity(10_000);
    for i in 0..10_000u32 {
        let mut e = event("big", &format!("s{i}"), "2026-11-27T10:00:00Z");
        e["start_time"] = json!(format!(
            "2026-11-27T10:{:02}:{:02}.{:03}Z",
            i / 6000 % 60,
            i / 100 % 60,
            i % 1000
        ));
        e["end_time"] = json!("2026-11-27T11:00:00Z");
        if i > 0 {
            // A tree ten levels deep: parent is i / 10.
            e["parent_span_id"] = json!(format!("s{}", (i - 1) / 10));
        }
        e["input"] = json!("x".repeat(200));
        events.push(e);
    }
    for chunk in events.chunks(1000) {
        let (status, body) = app
            .post_json("/api/v1/traces", &batch(chunk.to_vec()))
            .await;
        assert!(status < 300, "{body}");
    }
    let cookie = sign_in(&app, &reader).await;
    let (status, html, _) = page(&app, &cookie, "/traces/big").await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Spans 1–500 of 10,000"),
        "first page of the tree"
    );
    assert_eq!(html.matches("class=\"wf-row").count(), 500);
    assert!(
        !html.contains("xxxxxxxxxx"),
        "span bodies are not in the page"
    );
    assert!(html.contains("href=\"/traces/big?page=2\""));
    let (_, last, _) = page(&app, &cookie, "/traces/big?page=20").await;
    assert!(last.contains("Spans 9501–10000 of 10,000"), "the last page");
    // `at` opens the page holding a span.
    let seq =
        app.sql("SELECT MAX(seq) FROM events WHERE trace_id = 'big' AND record_type = 'span'");
    let (_, at, _) = page(&app, &cookie, &format!("/traces/big?at={seq}")).await;
    assert!(at.contains(&format!("id=\"s{seq}\"")));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visit_in_chromium() {
    let app = spawn_app().await;
    let writer = make_key(&app, "writer", &["alpha", "beta"], &["traces:write"]).await;
    let reader = make_key(&app, "reader-a", &["alpha"], &["traces:read", "rules:read"]).await;
    post_to(
        &app,
        &writer,
        "beta",
        vec![event("beta-only", "s", "2026-11-27T10:00:00Z")],
    )
    .await;
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots");
    let cfg = json!({
        "base": app.base,
        "owner": app.owner_key,
        "reader_a": reader,
        "writer": writer,
        "beta_trace": "beta-only",
        "shots": shots,
    });
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "run scripts/test.sh: it makes .venv with Selenium"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromedriver").exists(),
        "Debian's chromium and chromium-driver are needed (scripts/test.sh installs them)"
    );
    let out = tokio::process::Command::new(python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/dashboard_browser.py"))
        .arg(cfg.to_string())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser script failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let expect = |k: &str, v: Value| assert_eq!(seen[k], v, "{k}: {seen}");
    expect("anonymous_lands_on", json!("/login?reason=none"));
    expect("wrong_key_message", json!("That key was not accepted."));
    expect(
        "cookie",
        json!({ "httpOnly": true, "sameSite": "Strict", "holds_key": false }),
    );
    expect("live_row_seen", json!(true));
    expect("beta_in_live", json!(false));
    expect("live_has_violation_row", json!(true));
    expect("span_count", json!("3"));
    expect("violated_spans", json!(["db.delete"]));
    expect("violation_rules_on_span", json!(["bulk_delete_prevention"]));
    expect("escaped_name_shown", json!(true));
    expect("script_alert_ran", json!(false));
    expect("panel_redacted", json!(true));
    expect("raw_email_in_panel", json!(false));
    expect("raw_email_in_page_source", json!(false));
    expect("alpha_in_list", json!(true));
    expect("beta_in_list", json!(false));
    expect("violations_page_has_rule", json!(true));
    expect("beta_trace_page", json!("404 · Not Found"));
    expect("beta_span_page", json!("404 · Not Found"));
    expect("keys_page_for_reader", json!("403 · Forbidden"));
    expect("after_sign_out", json!("/login?reason=signed_out"));
    expect("traces_after_sign_out", json!("/login?reason=none"));
    expect("new_secret_prefix", json!("sk-at-"));
    expect("secret_after_reload", json!(false));
    expect("new_key_listed", json!(true));
    expect("audit_has_login", json!(true));
    expect("revoke_status", json!(200));
    expect("after_revoke", json!("/login?reason=revoked"));
    expect("after_revoke_message", json!("This key was revoked."));
    expect("not_found_page", json!("404 · Not Found"));
    assert!(seen["rules_listed"].as_u64().unwrap() >= 1);
    for shot in seen["screenshots"].as_array().unwrap() {
        let len = std::fs::metadata(shot.as_str().unwrap()).unwrap().len();
        assert!(len > 10_000, "{shot} is {len} bytes: an empty page?");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reports_page_makes_lists_and_downloads_the_projects_reports() {
    let app = spawn_app().await;
    let writer = make_key(&app, "w", &["alpha", "beta"], &["traces:write"]).await;
    post_to(
        &app,
        &writer,
        "alpha",
        vec![event("r1", "s1", "2026-11-27T10:00:00Z")],
    )
    .await;
    let officer = make_key(
        &app,
        "officer",
        &["alpha"],
        &["reports:create", "reports:read"],
    )
    .await;
    let cookie = sign_in(&app, &officer).await;
    // No traces to read: the overview sends the officer to the reports.
    let (status, _, headers) = page(&app, &cookie, "/").await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/reports");
    let (status, html, _) = page(&app, &cookie, "/reports").await;
    assert_eq!(status, 200);
    assert!(html.contains("id=\"new-report\""), "the form is offered");
    assert!(html.contains("href=\"/reports\""), "the tab is in the bar");
    let token = csrf(&html);
    let origin = app.base.clone();
    // Without the CSRF token: refused, nothing started.
    let (status, _, _) = post_form(
        &app,
        &cookie,
        "/reports",
        &[("csrf", "nope"), ("standard", "soc2")],
        Some(&origin),
    )
    .await;
    assert_eq!(status, 403);
    let (status, body, location) = post_form(
        &app,
        &cookie,
        "/reports",
        &[
            ("csrf", &token),
            ("standard", "hipaa"),
            ("from", "2026-01-01T00:00"),
            ("to", "2099-01-01T00:00"),
        ],
        Some(&origin),
    )
    .await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(location.as_deref(), Some("/reports"));
    let mut link = None;
    for _ in 0..300 {
        let (_, html, _) = page(&app, &cookie, "/reports").await;
        if let Some(at) = html.find("href=\"/reports/") {
            let rest = &html[at + 6..];
            link = Some(rest[..rest.find('"').unwrap()].to_owned());
            assert!(html.contains("HIPAA"), "{html}");
            assert!(html.contains("verified"), "{html}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let link = link.expect("the report is listed within 30 s");
    let resp = browser()
        .get(app.url(&link))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/pdf");
    assert!(resp.bytes().await.unwrap().starts_with(b"%PDF-"));

    // A reader of another project sees neither the report nor its file.
    let other = make_key(&app, "other", &["beta"], &["reports:read"]).await;
    let other_cookie = sign_in(&app, &other).await;
    let (status, html, _) = page(&app, &other_cookie, "/reports").await;
    assert_eq!(status, 200);
    assert!(!html.contains("href=\"/reports/"), "{html}");
    assert!(
        !html.contains("id=\"new-report\""),
        "no form without reports:create"
    );
    let (status, _, _) = page(&app, &other_cookie, &link).await;
    assert_eq!(status, 404);
    app.stop().await;
}
