//! OTLP/HTTP with real clients: the official OpenTelemetry Python SDK and exporter, the
//! `langfuse` package, plus protobuf and OTLP/JSON bodies built here per the spec.
//! The Python clients live in `.venv` (created by `scripts/test.sh`); without it these tests
//! fail, they do not skip.

mod common;

use std::io::Write;
use std::path::PathBuf;

use common::{TestApp, spawn_app};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::{Value, json};

fn python() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh, which creates it with the OpenTelemetry SDK and langfuse",
        p.display()
    );
    p
}

async fn run_python(script: &str, args: &[&str]) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    // Async: the in-process server must keep serving while the client runs.
    let out = tokio::process::Command::new(python())
        .arg(path)
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| panic!("{script} printed: {stdout}"))
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn kv_int(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
        ..Default::default()
    }
}

fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "proto-agent")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn llm_span(trace: u8, span: u8) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![span; 8],
        name: "chat".into(),
        start_time_unix_nano: 1_763_805_600_000_000_000,
        end_time_unix_nano: 1_763_805_601_000_000_000,
        attributes: vec![
            kv("gen_ai.operation.name", "chat"),
            kv("gen_ai.request.model", "gpt-4o-mini"),
            kv_int("gen_ai.usage.input_tokens", 100),
            kv_int("gen_ai.usage.output_tokens", 50),
        ],
        ..Default::default()
    }
}

async fn post(app: &TestApp, path: &str, ct: &str, body: Vec<u8>, gzip: bool) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).header("content-type", ct);
    let body = if gzip {
        req = req.header("content-encoding", "gzip");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&body).unwrap();
        enc.finish().unwrap()
    } else {
        body
    };
    req.body(body).send().await.unwrap()
}

#[tokio::test]
async fn protobuf_gzip_partial_success_and_retries() {
    let app = spawn_app().await;
    let mut bad = llm_span(7, 2);
    bad.trace_id.clear(); // invalid: no trace id
    let body = request(vec![llm_span(7, 1), bad]).encode_to_vec();
    for gzip in [false, true] {
        let resp = post(
            &app,
            "/v1/traces",
            "application/x-protobuf",
            body.clone(),
            gzip,
        )
        .await;
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
        let decoded = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
        let partial = decoded.partial_success.expect("partial success reported");
        assert_eq!(partial.rejected_spans, 1);
        assert!(
            partial.error_message.contains("trace_id"),
            "{}",
            partial.error_message
        );
    }
    let trace = "07".repeat(16);
    let (_, body) = app.get(&format!("/api/v1/traces/{trace}")).await;
    assert_eq!(
        body["trace"]["span_count"], 1,
        "the retry (gzip) stored nothing twice: {body}"
    );
    let span = &body["spans"][0];
    assert_eq!(
        (
            span["kind"].as_str(),
            span["model"].as_str(),
            span["agent"].as_str()
        ),
        (Some("llm"), Some("gpt-4o-mini"), Some("proto-agent"))
    );
    assert!(span["usage"]["cost_usd"].as_f64().unwrap() > 0.0);

    let resp = post(
        &app,
        "/v1/traces",
        "application/x-protobuf",
        b"\x0a\xff\xff\xff garbage".to_vec(),
        false,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["code"], "invalid_protobuf");
    let resp = post(&app, "/v1/traces", "text/plain", b"x".to_vec(), false).await;
    assert_eq!(resp.status().as_u16(), 415);
    let (_, list) = app.get("/api/v1/traces").await;
    assert_eq!(
        list["traces"].as_array().unwrap().len(),
        1,
        "nothing stored from bad bodies"
    );
    app.stop().await;
}

#[tokio::test]
async fn otlp_json_per_the_spec_answers_json() {
    let app = spawn_app().await;
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-agent"}}]},
        "scopeSpans": [{"scope": {"name": "t"}, "spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "parentSpanId": "eee19b7ec3c1b173",
            "name": "retrieve", "kind": "SPAN_KIND_INTERNAL",
            "startTimeUnixNano": "1763805600000000000", "endTimeUnixNano": "1763805600500000000",
            "attributes": [
                {"key": "openinference.span.kind", "value": {"stringValue": "RETRIEVER"}},
                {"key": "input.value", "value": {"stringValue": "refund policy"}},
                {"key": "llm.token_count.prompt", "value": {"intValue": "12"}}
            ],
            "status": {"code": 1}
        }]}]
    }]});
    let resp = post(
        &app,
        "/v1/traces",
        "application/json",
        body.to_string().into_bytes(),
        true,
    )
    .await;
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let (_, t) = app
        .get("/api/v1/traces/5b8efff798038103d269b633813fc60c")
        .await;
    let span = &t["spans"][0];
    assert_eq!(span["kind"], "retrieval");
    assert_eq!(span["parent_span_id"], "eee19b7ec3c1b173");
    assert_eq!(span["input"], "refund policy");
    assert_eq!(span["usage"]["input_tokens"], 12);
    assert_eq!(span["status"], "ok");
    assert_eq!(span["duration_ms"], 500.0);
    app.stop().await;
}

#[tokio::test]
async fn the_official_opentelemetry_sdk_exports_with_genai_attributes() {
    let app = spawn_app().await;
    for mode in ["plain", "gzip"] {
        let ids = run_python("otel_export.py", &[&app.base, &app.owner_key, mode]).await;
        let trace_id = ids["trace_id"].as_str().unwrap();
        let (status, body) = app.get(&format!("/api/v1/traces/{trace_id}")).await;
        assert_eq!(status, 200, "{body}");
        let spans = body["spans"].as_array().unwrap();
        assert_eq!(spans.len(), 3);
        let by_kind = |k: &str| {
            spans
                .iter()
                .find(|s| s["kind"] == k)
                .unwrap_or_else(|| panic!("no {k} span in {body}"))
        };
        let llm = by_kind("llm");
        assert_eq!(llm["model"], "gpt-4o-2024-08-06");
        assert_eq!(
            (
                llm["usage"]["input_tokens"].as_u64(),
                llm["usage"]["output_tokens"].as_u64()
            ),
            (Some(1200), Some(300))
        );
        assert!(
            (llm["usage"]["cost_usd"].as_f64().unwrap() - (1200.0 * 2.5 + 300.0 * 10.0) / 1e6)
                .abs()
                < 1e-9,
            "price table: {llm}"
        );
        assert_eq!(llm["parent_span_id"], ids["root_span_id"]);
        assert_eq!(llm["span_id"], ids["llm_span_id"]);
        assert_eq!(llm["input"], "Where is order 48213?");
        assert_eq!(llm["attributes"]["gen_ai.system"], "openai");
        let tool = by_kind("tool");
        assert_eq!(tool["name"], "lookup_order");
        assert_eq!(tool["attributes"]["custom.team"], "support");
        let agent = by_kind("agent");
        assert_eq!(agent["agent"], "otel-test-agent");
        assert_eq!(agent["session_id"], "sess-otel");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_langfuse_sdk_switches_by_changing_its_host() {
    let app = spawn_app().await;
    let (status, key) = app
        .post_json("/api/v1/keys", &json!({"name": "lf", "projects": ["lf-project"], "permissions": ["traces:write", "traces:read"]}))
        .await;
    assert_eq!(status, 201);
    let token = key["key"].as_str().unwrap();
    let (id, secret) = token.trim_start_matches("sk-at-").split_once('_').unwrap();
    let out = run_python("langfuse_export.py", &[&app.base, id, secret]).await;
    assert_eq!(out["auth_check"], true);
    let trace_id = out["trace_id"].as_str().unwrap();
    let reader = common::client_with_key(token);
    let body: Value = reader
        .get(app.url(&format!("/api/v1/traces/{trace_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let spans = body["spans"].as_array().unwrap_or_else(|| panic!("{body}"));
    let generation = spans
        .iter()
        .find(|s| s["kind"] == "llm")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(generation["model"], "gpt-4o-mini");
    assert_eq!(
        (
            generation["usage"]["input_tokens"].as_u64(),
            generation["usage"]["output_tokens"].as_u64()
        ),
        (Some(10), Some(5))
    );
    assert_eq!(generation["project"], "lf-project");
    assert!(
        spans
            .iter()
            .any(|s| s["kind"] == "tool" && s["name"] == "lookup_order"),
        "{body}"
    );
    app.stop().await;
}
