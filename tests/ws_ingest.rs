//! The WebSocket door with a real client (tokio-tungstenite).

mod common;

use std::time::Duration;

use common::{event, spawn_app_with};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(
    base: &str,
    key: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("{}/ws/ingest", base.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    if let Some(k) = key {
        req.headers_mut()
            .insert("authorization", format!("Bearer {k}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.map(|(s, _)| s)
}

async fn next_json(ws: &mut Socket) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("reply in time")
            .expect("open")
            .unwrap()
        {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn msg(seq: u64, events: Vec<Value>) -> Message {
    Message::Text(json!({"seq": seq, "events": events}).to_string().into())
}

#[tokio::test]
async fn acks_in_order_survive_bad_messages_and_bound_size() {
    let app = spawn_app_with(&["--max-body-bytes", "50000"]).await;
    assert!(
        connect(&app.base, None).await.is_err(),
        "the upgrade needs a key"
    );
    let mut ws = connect(&app.base, Some(&app.owner_key)).await.unwrap();
    let (_, inst) = app.get("/api/v1/instance").await;
    assert_eq!(inst["connected_agents"], 1);

    for seq in 1..=5 {
        ws.send(msg(
            seq,
            vec![event(&format!("ws-{seq}"), "s", "2026-11-22T10:00:00Z")],
        ))
        .await
        .unwrap();
    }
    for seq in 1..=5 {
        let ack = next_json(&mut ws).await;
        assert_eq!(ack["seq"], seq, "acks come back in order");
        assert_eq!(ack["accepted"], 1);
    }

    // A bad message gets an error reply; the same socket keeps working.
    ws.send(Message::Text("{not json".into())).await.unwrap();
    let err = next_json(&mut ws).await;
    assert_eq!(err["error"]["code"], "malformed_json");
    let mut bad = event("ws-bad", "s", "2026-11-22T10:00:00Z");
    bad["start_time"] = json!("yesterday");
    ws.send(msg(6, vec![bad])).await.unwrap();
    let err = next_json(&mut ws).await;
    assert_eq!(
        (
            err["seq"].as_u64(),
            err["error"]["errors"][0]["path"].as_str()
        ),
        (Some(6), Some("events[0].start_time"))
    );
    ws.send(msg(7, vec![event("ws-good", "s", "2026-11-22T10:00:00Z")]))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["accepted"], 1);
    assert_eq!(app.get("/api/v1/traces/ws-good").await.0, 200);
    assert_eq!(app.get("/api/v1/traces/ws-bad").await.0, 404);

    // A message over the limit closes the socket with 1009.
    ws.send(Message::Text(
        format!("{{\"seq\": 8, \"pad\": \"{}\"}}", "x".repeat(60_000)).into(),
    ))
    .await
    .unwrap();
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            _ => break None,
        }
    };
    assert_eq!(closed, Some(1009));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, inst) = app.get("/api/v1/instance").await;
    assert_eq!(inst["connected_agents"], 0);
    app.stop().await;
}

#[tokio::test]
async fn acknowledged_sequence_numbers_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let start = || common::serve_command(dir.path(), port).spawn().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start();
    common::wait_ready(&base).await;
    let key = common::bootstrap(&base).await;
    let mut ws = connect(&base, Some(&key)).await.unwrap();
    let mut acked = Vec::new();
    let mut seq = 0u64;
    let killer = tokio::time::sleep(Duration::from_millis(800));
    tokio::pin!(killer);
    loop {
        seq += 1;
        let events = (0..20).map(|i| {
            let mut e = event(
                &format!("k9-{seq}"),
                &format!("s{i}"),
                "2026-11-22T10:00:00Z",
            );
            e["event_id"] = json!(format!("k9-{seq}-{i}"));
            e
        });
        ws.send(msg(seq, events.collect())).await.unwrap();
        tokio::select! {
            ack = next_json_opt(&mut ws) => match ack {
                Some(a) if a["accepted"] == 20 => acked.push(a["seq"].as_u64().unwrap()),
                _ => break,
            },
            _ = &mut killer => {
                server.kill().unwrap(); // SIGKILL while a message may be in flight
                server.wait().unwrap();
                break;
            }
        }
    }
    assert!(acked.len() > 5, "the load ran");
    let mut server = start();
    common::wait_ready(&base).await;
    let client = common::client_with_key(&key);
    for s in &acked {
        let body: Value = client
            .get(format!("{base}/api/v1/traces/k9-{s}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["trace"]["span_count"], 20, "acked seq {s} is durable");
    }
    server.kill().unwrap();
    server.wait().unwrap();
}

async fn next_json_opt(ws: &mut Socket) -> Option<Value> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            _ => return None,
        }
    }
}
