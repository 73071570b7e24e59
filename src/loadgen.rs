//! `audittrail bench`: the load generator behind the README's throughput figures.
//!
//! Opens `--connections` keep-alive connections, each posting batches of `--batch` realistic
//! ~1 KB events (LLM calls, tool calls, retrievals, answers) as fast as acknowledgements come
//! back, for `--duration` seconds after a warm-up. Every batch gets a fresh trace id so the
//! projection sees realistic trace churn. Prints events/s and request latency percentiles.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Events per batch.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Unmeasured warm-up seconds.
    #[arg(long, default_value_t = 3)]
    pub warmup: u64,
    /// Which door to load: `http` (native JSON), `otlp` (OTLP/HTTP protobuf) or `ws` (WebSocket).
    #[arg(long, default_value = "http")]
    pub door: Door,
    /// API key with traces:write. Without one, the bench bootstraps the owner key of a fresh
    /// server (and prints it).
    #[arg(long, env = "AUDITTRAIL_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Fill mode: post until this many events are stored, then stop (no warm-up or timing
    /// window). Events spread over 30 days, 8 agents and some failing traces, so filters and
    /// time ranges have realistic work to do. HTTP door only.
    #[arg(long)]
    pub fill: Option<u64>,
    /// Read mode: time the query routes (trace list with each filter, a trace's detail) for
    /// `--duration` seconds instead of posting. Needs a key with traces:read on a filled server.
    #[arg(long)]
    pub read: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Door {
    Http,
    Otlp,
    Ws,
}

/// The sample batch as an OTLP protobuf body with the given trace id (16 bytes).
fn otlp_body(trace: &[u8; 16], n: usize, session: &str) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use prost::Message;
    let s = |k: &str, v: String| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    };
    let spans = (0..n)
        .map(|i| {
            let e = sample_event("0000000000000000", i);
            let mut attrs = vec![s(
                "openinference.span.kind",
                match e["kind"].as_str() {
                    Some("llm") => "LLM",
                    Some("tool") => "TOOL",
                    Some("retrieval") => "RETRIEVER",
                    _ => "AGENT",
                }
                .into(),
            )];
            if let Some(m) = e["model"].as_str() {
                attrs.push(s("llm.model_name", m.into()));
            }
            attrs.push(s("input.value", e["input"].to_string()));
            attrs.push(s("output.value", e["output"].to_string()));
            attrs.push(s("session.id", session.into()));
            let mut span_id = [0u8; 8];
            span_id[..4].copy_from_slice(&(i as u32 + 1).to_be_bytes());
            Span {
                trace_id: trace.to_vec(),
                span_id: span_id.to_vec(),
                name: e["name"].as_str().unwrap_or("span").into(),
                start_time_unix_nano: 1_763_805_600_000_000_000 + i as u64 * 1_000_000,
                end_time_unix_nano: 1_763_805_600_000_000_000 + i as u64 * 1_000_000 + 500_000,
                attributes: attrs,
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                attributes: vec![s("service.name", "support-bot".into())],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

#[derive(Debug)]
pub struct BenchReport {
    pub events: u64,
    pub requests: u64,
    pub errors: u64,
    pub busy: u64,
    pub seconds: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub event_bytes: usize,
    /// The server process's CPU time per measured event (from its `/metrics`), when the key
    /// may read metrics and the server runs on Linux.
    pub server_cpu_us_per_event: Option<f64>,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.0} events/s ({} events in {:.1} s, {} requests, ~{} B/event), latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms, {} errors, {} busy (503)",
            self.events as f64 / self.seconds,
            self.events,
            self.seconds,
            self.requests,
            self.event_bytes,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.errors,
            self.busy
        )?;
        if let Some(cpu) = self.server_cpu_us_per_event {
            write!(f, ", server CPU {cpu:.1} µs/event")?;
        }
        Ok(())
    }
}

/// The server's `audittrail_process_cpu_seconds`, if its `/metrics` is readable with this key.
async fn server_cpu_seconds(client: &reqwest::Client, base: &str) -> Option<f64> {
    let resp = client.get(format!("{base}/metrics")).send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let text = resp.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("audittrail_process_cpu_seconds "))
        .and_then(|v| v.trim().parse().ok())
}

/// A realistic agent step of about 1 KB of JSON.
pub fn sample_event(trace: &str, i: usize) -> Value {
    let start = format!(
        "2026-11-22T10:{:02}:{:02}.{:03}Z",
        (i / 60) % 60,
        i % 60,
        i % 1000
    );
    let end = format!(
        "2026-11-22T10:{:02}:{:02}.{:03}Z",
        (i / 60) % 60,
        i % 60,
        (i % 1000).min(998) + 1
    );
    let common = |kind: &str, name: &str| {
        json!({
            "trace_id": trace, "span_id": format!("{trace}-{i:04}"),
            "parent_span_id": if i == 0 { Value::Null } else { json!(format!("{trace}-0000")) },
            "kind": kind, "name": name, "agent": "support-bot", "session_id": format!("sess-{}", &trace[..8]),
            "start_time": start, "end_time": end, "status": "ok",
        })
    };
    let mut e = match i % 4 {
        0 => {
            let mut e = common("llm", "chat.completions");
            e["model"] = json!("gpt-4o-mini");
            e["input"] = json!({"messages": [
                {"role": "system", "content": "You are a helpful support assistant for an online bookstore. Answer briefly and cite the order record you used."},
                {"role": "user", "content": "Hi, my order from last Tuesday still shows as processing. Could you check what is going on and whether it will arrive before the weekend? I am travelling from Sunday and would rather have it redirected to the pickup point near the station if it cannot make it in time."}
            ]});
            e["output"] = json!({"role": "assistant", "content": "I checked order 48213: it left the warehouse this morning and the carrier estimates delivery on Friday. You will get a tracking link by email shortly."});
            e["usage"] = json!({"input_tokens": 412, "output_tokens": 58, "cost_usd": 0.000097});
            e
        }
        1 => {
            let mut e = common("tool", "lookup_order");
            e["input"] =
                json!({"order_id": 48213, "fields": ["status", "carrier", "eta", "items"]});
            e["output"] = json!({"status": "shipped", "carrier": "DHL", "eta": "2026-11-27", "items": [{"sku": "BK-1142", "title": "Designing Data-Intensive Applications", "qty": 1}], "warehouse": "LEJ-2"});
            e["attributes"] =
                json!({"tool.version": "2.3.1", "http.status_code": 200, "latency_bucket": "fast"});
            e
        }
        2 => {
            let mut e = common("retrieval", "kb.search");
            e["input"] = json!({"query": "shipping delays carrier handover weekend delivery policy", "top_k": 3});
            e["output"] = json!({"documents": [
                {"id": "kb-311", "url": "https://help.example.com/shipping/delays", "score": 0.82, "snippet": "Orders handed to the carrier before noon usually arrive within two business days."},
                {"id": "kb-207", "url": "https://help.example.com/shipping/weekend", "score": 0.77, "snippet": "Weekend delivery is available in selected regions for an extra fee."},
                {"id": "kb-118", "url": "https://help.example.com/shipping/pickup-points", "score": 0.71, "snippet": "Parcels can be redirected to a pickup point until the carrier starts the delivery round."}
            ]});
            e
        }
        _ => {
            let mut e = common("answer", "final_answer");
            e["output"] = json!({"content": "Your order 48213 shipped this morning with DHL and should arrive on Friday, see https://help.example.com/shipping/delays for how handovers work. Weekend delivery is possible in some regions for a fee, and if you will be away you can redirect the parcel to a pickup point until the carrier starts its delivery round (https://help.example.com/shipping/pickup-points). Let me know if you would like me to arrange that for you now."});
            e["attributes"] = json!({"sources_cited": 1, "confidence": 0.91});
            e
        }
    };
    e["attributes"]["bench"] = json!(true);
    e
}

/// Traces (requests) of one connection that share a session id.
const TRACES_PER_SESSION: u64 = 8;
/// The session id [`sample_event`] gives the template's placeholder trace.
const TEMPLATE_SESSION: &str = "sess-TRACEIDT";

/// One batch body with placeholder trace and session ids, rendered once and specialised per
/// request.
fn batch_template(n: usize) -> String {
    let events: Vec<Value> = (0..n)
        .map(|i| sample_event("TRACEIDTRACEIDTRACEIDTRACEID0000", i))
        .collect();
    json!({ "events": events }).to_string()
}

/// Posts one body and reads the answer: 200 for an accepted batch (HTTP 200 or 202), the
/// status otherwise, 0 when the request failed.
async fn post_status(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> u16 {
    match client
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let st = r.status().as_u16();
            let _ = r.bytes().await;
            if st == 202 { 200 } else { st }
        }
        Err(_) => 0,
    }
}

/// The agents and days a fill spreads its events over.
const FILL_AGENTS: u64 = 8;
const FILL_DAYS: u64 = 30;

/// Makes the `n`th request of a fill look like a different agent, day and outcome.
fn vary(body: String, n: u64, worker: usize) -> String {
    let k = n.wrapping_mul(2_654_435_761).wrapping_add(worker as u64);
    let day = 1 + k % FILL_DAYS;
    let mut body = body
        .replace("support-bot", &format!("agent-{}", k % FILL_AGENTS))
        .replace("2026-11-22T", &format!("2026-10-{day:02}T"));
    if k.is_multiple_of(17) {
        body = body.replacen("\"status\":\"ok\"", "\"status\":\"error\"", 1);
    }
    body
}

pub async fn run(args: BenchArgs) -> anyhow::Result<BenchReport> {
    if args.read {
        return read_bench(&args).await;
    }
    let template = Arc::new(batch_template(args.batch.max(1)));
    let event_bytes = template.len() / args.batch.max(1);
    let base = args.url.trim_end_matches('/').to_owned();
    let key = match args.key.clone() {
        Some(k) => k,
        None => {
            let resp = reqwest::Client::new()
                .post(format!("{base}/api/v1/keys/bootstrap"))
                .body("{\"name\": \"bench\"}")
                .send()
                .await?;
            if resp.status().as_u16() != 201 {
                anyhow::bail!(
                    "no --key given and bootstrap answered {} (the server already has an owner key): pass --key",
                    resp.status()
                );
            }
            let body: Value = resp.json().await?;
            let key = body["key"].as_str().unwrap_or_default().to_owned();
            eprintln!("bootstrapped the owner key of this fresh server: {key}");
            key
        }
    };
    let auth = format!("Bearer {key}");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, auth.parse()?);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .default_headers(headers)
        .build()?;
    let url = format!("{base}/api/v1/traces");
    let otlp_url = format!("{base}/v1/traces");
    let ws_url = format!("{}/ws/ingest", base.replacen("http", "ws", 1));
    let measuring = Arc::new(AtomicBool::new(args.fill.is_some()));
    let stop = Arc::new(AtomicBool::new(false));
    let stored = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let fill = args.fill;
    let mut tasks = Vec::new();
    for worker in 0..args.connections.max(1) {
        let (client, url, template, measuring, stop, stored) = (
            client.clone(),
            url.clone(),
            template.clone(),
            measuring.clone(),
            stop.clone(),
            stored.clone(),
        );
        let batch = args.batch.max(1) as u64;
        let (args_door, otlp_url, ws_url, auth) =
            (args.door, otlp_url.clone(), ws_url.clone(), auth.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut events, mut errors, mut busy) = (0u64, 0u64, 0u64);
            let mut n = 0u64;
            let door = args_door;
            let mut ws = None;
            if door == Door::Ws {
                use tokio_tungstenite::tungstenite::client::IntoClientRequest;
                let mut req = ws_url.as_str().into_client_request().expect("valid ws url");
                req.headers_mut()
                    .insert("authorization", auth.parse().expect("header"));
                ws = tokio_tungstenite::connect_async(req)
                    .await
                    .ok()
                    .map(|(s, _)| s);
                if ws.is_none() {
                    return (lat, 0, 1, 0);
                }
            }
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let trace = format!(
                    "{:016x}{:08x}{:08x}",
                    std::process::id() as u64 * 1_000_003 + worker as u64,
                    n as u32,
                    worker as u32
                );
                // a session spans TRACES_PER_SESSION consecutive traces of one connection,
                // so the server keeps meeting new sessions as agents do
                let session = format!(
                    "sess-{:x}-{worker}-{}",
                    std::process::id(),
                    n / TRACES_PER_SESSION
                );
                let t = Instant::now();
                let status: u16 = match door {
                    Door::Http => {
                        let mut body = template
                            .replace("TRACEIDTRACEIDTRACEIDTRACEID0000", &trace)
                            .replace(TEMPLATE_SESSION, &session);
                        if fill.is_some() {
                            body = vary(body, n, worker);
                        }
                        post_status(&client, &url, "application/json", body).await
                    }
                    Door::Otlp => {
                        let mut id = [0u8; 16];
                        for (i, b) in trace.as_bytes().chunks(2).take(16).enumerate() {
                            id[i] = u8::from_str_radix(std::str::from_utf8(b).unwrap_or("00"), 16)
                                .unwrap_or(0);
                        }
                        let body = otlp_body(&id, batch as usize, &session);
                        post_status(&client, &otlp_url, "application/x-protobuf", body).await
                    }
                    Door::Ws => {
                        use futures_util::{SinkExt, StreamExt};
                        use tokio_tungstenite::tungstenite::Message;
                        let socket = ws.as_mut().expect("connected above");
                        let body = template
                            .replacen("{", &format!("{{\"seq\": {n}, "), 1)
                            .replace("TRACEIDTRACEIDTRACEIDTRACEID0000", &trace)
                            .replace(TEMPLATE_SESSION, &session);
                        if socket.send(Message::Text(body.into())).await.is_err() {
                            0
                        } else {
                            let mut st = 0;
                            while let Some(Ok(m)) = socket.next().await {
                                if let Message::Text(t) = m {
                                    st = if t.as_str().contains("\"error\"") {
                                        if t.as_str().contains("overloaded") {
                                            503
                                        } else {
                                            500
                                        }
                                    } else {
                                        200
                                    };
                                    break;
                                }
                            }
                            st
                        }
                    }
                };
                let ok = match status {
                    200 => true,
                    503 => {
                        busy += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        false
                    }
                    _ => {
                        errors += 1;
                        false
                    }
                };
                if measuring.load(Ordering::Relaxed) {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    if ok {
                        events += batch;
                    }
                }
                if ok
                    && let Some(target) = fill
                    && stored.fetch_add(batch, Ordering::Relaxed) + batch >= target
                {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            (lat, events, errors, busy)
        }));
    }
    let (seconds, cpu_before, cpu_after) = if let Some(target) = fill {
        // Fill: no warm-up, measured until the target count is stored.
        let cpu_before = server_cpu_seconds(&client, &base).await;
        let started = Instant::now();
        let mut last_report = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if last_report.elapsed() >= Duration::from_secs(10) {
                last_report = Instant::now();
                eprintln!(
                    "filled {} of {target} events",
                    stored.load(Ordering::Relaxed)
                );
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        (
            seconds,
            cpu_before,
            server_cpu_seconds(&client, &base).await,
        )
    } else {
        tokio::time::sleep(Duration::from_secs(args.warmup)).await;
        let cpu_before = server_cpu_seconds(&client, &base).await;
        measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.duration.max(1))).await;
        measuring.store(false, Ordering::Relaxed);
        let seconds = started.elapsed().as_secs_f64();
        let cpu_after = server_cpu_seconds(&client, &base).await;
        stop.store(true, Ordering::Relaxed);
        (seconds, cpu_before, cpu_after)
    };
    let mut lat = Vec::new();
    let (mut events, mut errors, mut busy) = (0, 0, 0);
    for t in tasks {
        let (l, e, er, b) = t.await?;
        lat.extend(l);
        events += e;
        errors += er;
        busy += b;
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize]
        }
    };
    Ok(BenchReport {
        events,
        requests: lat.len() as u64,
        errors,
        busy,
        seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
        event_bytes,
        server_cpu_us_per_event: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) if events > 0 => Some((b - a) * 1e6 / events as f64),
            _ => None,
        },
    })
}

/// Read mode: times each query route for `--duration` seconds with `--connections` clients,
/// trace ids for the detail route taken from the first page of the list.
async fn read_bench(args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let base = args.url.trim_end_matches('/').to_owned();
    let key = args
        .key
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--read needs --key (traces:read)"))?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {key}").parse()?,
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()?;
    let first: Value = client
        .get(format!("{base}/api/v1/traces?limit=500"))
        .send()
        .await?
        .json()
        .await?;
    let ids: Vec<String> = first["traces"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t["trace_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(
        !ids.is_empty(),
        "the server holds no traces: fill it first (--fill N)"
    );
    let routes: Vec<(&str, String)> = vec![
        ("list", "/api/v1/traces?limit=50".into()),
        ("list agent", "/api/v1/traces?limit=50&agent=agent-3".into()),
        ("list status", "/api/v1/traces?limit=50&status=error".into()),
        (
            "list session",
            format!(
                "/api/v1/traces?limit=50&session_id={}",
                first["traces"][7]["session_id"].as_str().unwrap_or("x")
            ),
        ),
        (
            "list range",
            "/api/v1/traces?limit=50&from=2026-10-10T00:00:00Z&to=2026-10-12T00:00:00Z".into(),
        ),
        (
            "list page 2",
            format!(
                "/api/v1/traces?limit=50&cursor={}",
                first["next_cursor"].as_str().unwrap_or("")
            ),
        ),
        ("detail", "DETAIL".into()),
        ("violations", "/api/v1/violations?limit=50".into()),
        // The dashboard's pages, signed in with the same key.
        ("page overview", "/".into()),
        ("page list", "/traces".into()),
        ("page list agent", "/traces?agent=agent-3".into()),
        ("page detail", "PAGE_DETAIL".into()),
    ];
    // A dashboard session for the page routes (no redirects followed: a 303 is a failure).
    let session = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?
        .post(format!("{base}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={key}"))
        .send()
        .await?;
    let cookie = session
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .ok_or_else(|| {
            anyhow::anyhow!("signing in to the dashboard failed: {}", session.status())
        })?;
    let pages = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut report = String::new();
    let mut all = Vec::new();
    for (name, path) in routes {
        let stop_at = Instant::now() + Duration::from_secs(args.duration.max(1));
        let mut tasks = Vec::new();
        for w in 0..args.connections.max(1) {
            let page = name.starts_with("page");
            let client = if page { pages.clone() } else { client.clone() };
            let (base, path, ids, cookie) =
                (base.clone(), path.clone(), ids.clone(), cookie.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut n = w;
                while Instant::now() < stop_at {
                    n += 7;
                    let url = match path.as_str() {
                        "DETAIL" => format!("{base}/api/v1/traces/{}", ids[n % ids.len()]),
                        "PAGE_DETAIL" => format!("{base}/traces/{}", ids[n % ids.len()]),
                        _ => format!("{base}{path}"),
                    };
                    let mut req = client.get(url);
                    if page {
                        req = req.header(reqwest::header::COOKIE, &cookie);
                    }
                    let t = Instant::now();
                    let ok = req.send().await.is_ok_and(|r| r.status().is_success());
                    if ok {
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await?);
        }
        lat.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| {
            lat.get(((lat.len().max(1) - 1) as f64 * p) as usize)
                .copied()
                .unwrap_or(0.0)
        };
        report.push_str(&format!(
            "{name:<14} {:>6} requests  p50 {:>6.1} ms  p95 {:>6.1} ms  p99 {:>6.1} ms\n",
            lat.len(),
            pct(0.5),
            pct(0.95),
            pct(0.99)
        ));
        all.extend(lat);
    }
    eprint!("{report}");
    all.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        all.get(((all.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok(BenchReport {
        events: 0,
        requests: all.len() as u64,
        errors: 0,
        busy: 0,
        seconds: args.duration as f64 * 12.0,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: all.last().copied().unwrap_or(0.0),
        event_bytes: 0,
        server_cpu_us_per_event: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_of_the_template_carries_the_placeholders_replaced_per_request() {
        let template = batch_template(8);
        let body: Value = serde_json::from_str(&template).expect("template is JSON");
        let events = body["events"].as_array().expect("events");
        assert_eq!(events.len(), 8);
        for e in events {
            assert_eq!(e["session_id"], TEMPLATE_SESSION, "{e}");
            assert_eq!(e["trace_id"], "TRACEIDTRACEIDTRACEIDTRACEID0000");
        }
        let one = template
            .replace("TRACEIDTRACEIDTRACEIDTRACEID0000", "t1")
            .replace(TEMPLATE_SESSION, "s1");
        assert!(!one.contains("TRACEID"), "{one}");
        assert_eq!(one.matches("\"session_id\":\"s1\"").count(), 8);
    }
}
