//! The shipped `nginx.conf` in front of the real binary, with Debian's nginx: only the upstream
//! address, the listen port and the pid file are substituted.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command};
use std::time::Duration;

use common::{batch, event, free_port};
use serde_json::{Value, json};

struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(upstream_port: u16, listen: u16) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("nginx.conf"),
    )
    .unwrap();
    assert!(shipped.contains("server api:8000;") && shipped.contains("listen 80;"));
    let conf = shipped
        .replace(
            "server api:8000;",
            &format!("server 127.0.0.1:{upstream_port};"),
        )
        .replace("listen 80;", &format!("listen {listen};"))
        .replace("listen [::]:80;", &format!("listen [::]:{listen};"))
        .replace(
            "/tmp/nginx-audittrail.pid",
            &dir.path().join("nginx.pid").display().to_string(),
        );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let check = Command::new("nginx")
        .args(["-t", "-c"])
        .arg(&path)
        .output()
        .expect("Debian's nginx is installed (scripts/test.sh installs it)");
    assert!(
        check.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let child = Command::new("nginx")
        .args(["-g", "daemon off;", "-c"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Nginx { child, _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_nginx_conf_fronts_every_door() {
    let dir = tempfile::tempdir().unwrap();
    let app_port = free_port();
    let mut server = common::serve_command(dir.path(), app_port)
        .env("AUDITTRAIL_TRUSTED_PROXIES", "127.0.0.1")
        .spawn()
        .unwrap();
    let direct = format!("http://127.0.0.1:{app_port}");
    common::wait_ready(&direct).await;
    let owner = common::bootstrap(&direct).await;
    let listen = free_port();
    let _nginx = start_nginx(app_port, listen);
    let base = format!("http://127.0.0.1:{listen}");
    common::wait_ready(&base).await;
    let client = common::client_with_key(&owner);

    // Native ingest, OTLP and the Langfuse route, through nginx.
    let resp = client
        .post(format!("{base}/api/v1/traces"))
        .json(&batch(vec![event(
            "via-nginx",
            "s",
            "2026-11-22T10:00:00Z",
        )]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let otlp = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "name": "chat", "startTimeUnixNano": "1763805600000000000", "endTimeUnixNano": "1763805600500000000"
    }]}]}]});
    for path in ["/v1/traces", "/api/public/otel/v1/traces"] {
        let resp = client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(otlp.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }

    // A WebSocket upgrade and a message round trip.
    {
        use futures_util::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://127.0.0.1:{listen}/ws/ingest")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {owner}").parse().unwrap());
        let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), 101);
        let msg = json!({"seq": 7, "events": [event("ws-nginx", "s", "2026-11-22T10:00:00Z")]});
        ws.send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        let reply = loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => break serde_json::from_str::<Value>(t.as_str()).unwrap(),
                _ => continue,
            }
        };
        assert_eq!(
            (reply["seq"].as_u64(), reply["accepted"].as_u64()),
            (Some(7), Some(1)),
            "{reply}"
        );
    }

    // The dashboard through nginx, as a browser uses it: a sign-in form post carrying the
    // page's Origin (nginx must pass the Host with its port), the page with the cookie, and
    // the live feed's WebSocket with the cookie.
    let cookie = {
        let resp = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .post(format!("{base}/login"))
            .header("origin", &base)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("key={owner}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 303, "sign-in through nginx");
        resp.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    };
    let resp = common::client()
        .get(format!("{base}/traces"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'self'"),
        "the dashboard's policy passes through nginx"
    );
    assert!(resp.text().await.unwrap().contains("via-nginx"));
    {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://127.0.0.1:{listen}/ws/live")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        req.headers_mut().insert("origin", base.parse().unwrap());
        let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(resp.status().as_u16(), 101);
        let hello = loop {
            match ws.next().await.unwrap().unwrap() {
                Message::Text(t) => break serde_json::from_str::<Value>(t.as_str()).unwrap(),
                _ => continue,
            }
        };
        assert_eq!(hello["type"], "hello");
    }

    // Bodies over the application's limit stop at nginx: 413.
    let resp = client
        .post(format!("{base}/api/v1/traces"))
        .header("content-type", "application/json")
        .body(vec![b' '; 11 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);

    // Security headers on the application's 404 ...
    let resp = client
        .get(format!("{base}/api/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let expect_headers = |h: &reqwest::header::HeaderMap, what: &str| {
        for (name, value) in [
            ("x-frame-options", "DENY"),
            ("x-content-type-options", "nosniff"),
            ("x-xss-protection", "1; mode=block"),
            ("referrer-policy", "same-origin"),
        ] {
            let got: Vec<_> = h.get_all(name).iter().collect();
            assert_eq!(got.len(), 1, "{what}: {name} exactly once: {got:?}");
            assert_eq!(got[0], value, "{what}: {name}");
        }
    };
    expect_headers(resp.headers(), "404");

    // ... and on nginx's own 429: the query routes allow 10 r/s with a burst of 20.
    let mut limited = None;
    for _ in 0..60 {
        let resp = client
            .get(format!("{base}/api/v1/traces"))
            .send()
            .await
            .unwrap();
        if resp.status().as_u16() == 429 {
            limited = Some(resp);
            break;
        }
    }
    let limited = limited.expect("nginx answers 429 beyond the burst");
    expect_headers(limited.headers(), "nginx 429");
    // Ingest has its own, much larger budget: it still goes through right now.
    let resp = client
        .post(format!("{base}/api/v1/traces"))
        .json(&batch(vec![event(
            "after-burst",
            "s",
            "2026-11-22T10:00:00Z",
        )]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        202,
        "ingest is not throttled at 10 r/s"
    );

    // /metrics is not served to the outside.
    let resp = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    // The client's address reaches the audit log through X-Forwarded-For (and a forged one
    // the client sends is not believed): connect from 127.0.0.2.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let from_other = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .unwrap();
    let resp = from_other
        .get(format!("{base}/api/v1/keys"))
        .header("authorization", "Bearer sk-at-nope")
        .header("x-forwarded-for", "203.0.113.7")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = client
        .get(format!(
            "{direct}/api/v1/audit?event_type=authentication&result=failure"
        ))
        .send()
        .await
        .unwrap();
    let audit: Value = resp.json().await.unwrap();
    assert_eq!(audit["entries"][0]["source_ip"], "127.0.0.2", "{audit}");
    server.kill().unwrap();
    server.wait().unwrap();
}
