//! OpenTelemetry span → native event (as JSON, validated afterwards like any native event).
//!
//! Mapping (first match wins; the README has the table):
//! - kind: `openinference.span.kind`, `langfuse.observation.type`, `gen_ai.operation.name`,
//!   a model attribute (→ llm), else `log`;
//! - model: `gen_ai.response.model`, `gen_ai.request.model`, `llm.model_name`,
//!   `langfuse.observation.model.name`;
//! - tokens: `gen_ai.usage.input_tokens` / `output_tokens`, the older `prompt_tokens` /
//!   `completion_tokens`, `llm.token_count.prompt` / `completion`, Langfuse usage details;
//! - cost: `langfuse.observation.cost_details` total, else the price table;
//! - input/output: `input.value` / `output.value`, `langfuse.observation.input` / `output`,
//!   `gen_ai.prompt` / `gen_ai.completion`, `gen_ai.input.messages` / `gen_ai.output.messages`,
//!   and the older `gen_ai.content.prompt` / `gen_ai.content.completion` span events;
//! - name: `tool.name` / `gen_ai.tool.name` for tools, else the span name;
//! - agent: `gen_ai.agent.name`, `langfuse.trace.name`, else the resource's `service.name`;
//! - session: `session.id`, `langfuse.session.id`, `gen_ai.conversation.id`.
//!
//! Every other attribute is kept in `attributes`; the provider (`gen_ai.system` /
//! `gen_ai.provider.name`) stays there too.

use chrono::{TimeZone, Utc};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::pricing::PriceTable;
use crate::event::format_time;

/// Attribute keys the mapping consumes (kept out of `attributes`).
const CONSUMED: &[&str] = &[
    "openinference.span.kind",
    "langfuse.observation.type",
    "gen_ai.operation.name",
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.model_name",
    "langfuse.observation.model.name",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.prompt",
    "llm.token_count.completion",
    "langfuse.observation.usage_details",
    "langfuse.observation.cost_details",
    "input.value",
    "output.value",
    "langfuse.observation.input",
    "langfuse.observation.output",
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "tool.name",
    "gen_ai.tool.name",
    "gen_ai.agent.name",
    "langfuse.trace.name",
    "session.id",
    "langfuse.session.id",
    "gen_ai.conversation.id",
];

pub fn any_to_json(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(any_to_json).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(attrs(&kv.values)),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex(b)),
        Some(_) => Value::Null,
    }
}

pub fn attrs(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(any_to_json).unwrap_or(Value::Null),
            )
        })
        .collect()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Strings that hold JSON (OpenInference `input.value`, Langfuse input) become JSON.
fn maybe_json(v: Value) -> Value {
    match &v {
        Value::String(s) if s.trim_start().starts_with(['{', '[']) => {
            serde_json::from_str(s).unwrap_or(v)
        }
        _ => v,
    }
}

fn first<'a>(a: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| a.get(*k).filter(|v| !v.is_null()))
}

fn int(v: Option<&Value>) -> Option<u64> {
    let v = v?;
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        .or_else(|| v.as_str()?.parse().ok())
}

fn kind_of(a: &Map<String, Value>) -> &'static str {
    let s = |k: &str| {
        a.get(k)
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
    };
    if let Some(k) = s("openinference.span.kind") {
        return match k.as_str() {
            "llm" | "embedding" => "llm",
            "tool" => "tool",
            "retriever" | "reranker" => "retrieval",
            "agent" | "chain" => "agent",
            _ => "log",
        };
    }
    if let Some(k) = s("langfuse.observation.type") {
        return match k.as_str() {
            "generation" | "embedding" => "llm",
            "tool" => "tool",
            "retriever" => "retrieval",
            "agent" | "chain" | "span" => "agent",
            _ => "log",
        };
    }
    if let Some(op) = s("gen_ai.operation.name") {
        return match op.as_str() {
            "chat" | "text_completion" | "generate_content" | "embeddings" => "llm",
            "execute_tool" => "tool",
            "invoke_agent" | "create_agent" => "agent",
            _ => "log",
        };
    }
    if first(
        a,
        &[
            "gen_ai.request.model",
            "gen_ai.response.model",
            "llm.model_name",
        ],
    )
    .is_some()
    {
        return "llm";
    }
    "log"
}

/// Event ids derive from (project, trace id, span id): an exporter's retry stores nothing twice.
pub fn event_id(project: &str, trace_id: &str, span_id: &str) -> String {
    let d = Sha256::digest(format!("{project}\u{1f}{trace_id}\u{1f}{span_id}").as_bytes());
    format!("otel-{}", hex(&d[..16]))
}

fn time(nanos: u64) -> Value {
    if nanos == 0 {
        return Value::Null;
    }
    let t = Utc.timestamp_nanos(nanos.min(i64::MAX as u64) as i64);
    Value::String(format_time(&t))
}

/// The native event for one span, before validation.
pub fn span_to_event(
    project: &str,
    resource: &Map<String, Value>,
    span: &Span,
    prices: &PriceTable,
) -> Value {
    let a = attrs(&span.attributes);
    let trace_id = hex(&span.trace_id);
    let span_id = hex(&span.span_id);
    let kind = kind_of(&a);
    let model = first(
        &a,
        &[
            "gen_ai.response.model",
            "gen_ai.request.model",
            "llm.model_name",
            "langfuse.observation.model.name",
        ],
    )
    .and_then(Value::as_str)
    .map(str::to_owned);
    let usage = a
        .get("langfuse.observation.usage_details")
        .cloned()
        .map(maybe_json)
        .unwrap_or(Value::Null);
    let input_tokens = int(first(
        &a,
        &[
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
            "llm.token_count.prompt",
        ],
    ))
    .or_else(|| int(usage.get("input").or(usage.get("prompt_tokens"))));
    let output_tokens = int(first(
        &a,
        &[
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
        ],
    ))
    .or_else(|| int(usage.get("output").or(usage.get("completion_tokens"))));
    let cost_details = a
        .get("langfuse.observation.cost_details")
        .cloned()
        .map(maybe_json)
        .unwrap_or(Value::Null);
    let cost = cost_details
        .get("total")
        .and_then(Value::as_f64)
        .or_else(|| {
            let (i, o) = (input_tokens.unwrap_or(0), output_tokens.unwrap_or(0));
            if i == 0 && o == 0 {
                None
            } else {
                model.as_deref().and_then(|m| prices.cost(m, i, o))
            }
        });
    let mut input = first(
        &a,
        &[
            "input.value",
            "langfuse.observation.input",
            "gen_ai.prompt",
            "gen_ai.input.messages",
        ],
    )
    .cloned()
    .map(maybe_json);
    let mut output = first(
        &a,
        &[
            "output.value",
            "langfuse.observation.output",
            "gen_ai.completion",
            "gen_ai.output.messages",
        ],
    )
    .cloned()
    .map(maybe_json);
    for ev in &span.events {
        let ea = attrs(&ev.attributes);
        match ev.name.as_str() {
            "gen_ai.content.prompt" if input.is_none() => {
                input = ea.get("gen_ai.prompt").cloned().map(maybe_json)
            }
            "gen_ai.content.completion" if output.is_none() => {
                output = ea.get("gen_ai.completion").cloned().map(maybe_json)
            }
            _ => {}
        }
    }
    let name = if kind == "tool" {
        first(&a, &["tool.name", "gen_ai.tool.name"])
            .and_then(Value::as_str)
            .unwrap_or(&span.name)
            .to_owned()
    } else {
        span.name.clone()
    };
    let agent = first(&a, &["gen_ai.agent.name", "langfuse.trace.name"])
        .or_else(|| resource.get("service.name"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let session = first(
        &a,
        &[
            "session.id",
            "langfuse.session.id",
            "gen_ai.conversation.id",
        ],
    )
    .and_then(Value::as_str)
    .map(str::to_owned);
    let status = match span.status.as_ref().map(|s| s.code) {
        Some(2) => "error",
        Some(1) => "ok",
        _ => "unset",
    };
    let mut extra: Map<String, Value> = a
        .into_iter()
        .filter(|(k, _)| !CONSUMED.contains(&k.as_str()))
        .collect();
    for (k, v) in resource {
        if k != "service.name" {
            extra
                .entry(format!("resource.{k}"))
                .or_insert_with(|| v.clone());
        }
    }
    if let Some(st) = span.status.as_ref().filter(|s| !s.message.is_empty()) {
        extra.insert(
            "otel.status_message".into(),
            Value::String(st.message.clone()),
        );
    }
    let other_events: Vec<Value> = span
        .events
        .iter()
        .filter(|e| !e.name.starts_with("gen_ai.content."))
        .map(|e| json!({"name": e.name, "time": time(e.time_unix_nano), "attributes": attrs(&e.attributes)}))
        .collect();
    if !other_events.is_empty() {
        extra.insert("otel.events".into(), Value::Array(other_events));
    }
    json!({
        "event_id": event_id(project, &trace_id, &span_id),
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": if span.parent_span_id.is_empty() { Value::Null } else { Value::String(hex(&span.parent_span_id)) },
        "kind": kind,
        "name": if name.is_empty() { Value::Null } else { Value::String(name) },
        "agent": agent,
        "session_id": session,
        "start_time": time(span.start_time_unix_nano),
        "end_time": time(span.end_time_unix_nano),
        "status": status,
        "model": model,
        "input": input.unwrap_or(Value::Null),
        "output": output.unwrap_or(Value::Null),
        "usage": {"input_tokens": input_tokens.unwrap_or(0), "output_tokens": output_tokens.unwrap_or(0), "cost_usd": cost.unwrap_or(0.0)},
        "attributes": extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Status;

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn genai_llm_span_maps_model_tokens_cost_and_parentage() {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            parent_span_id: vec![3; 8],
            name: "chat gpt-4o".into(),
            start_time_unix_nano: 1_763_805_600_000_000_000,
            end_time_unix_nano: 1_763_805_601_500_000_000,
            attributes: vec![
                kv(
                    "gen_ai.operation.name",
                    any_value::Value::StringValue("chat".into()),
                ),
                kv(
                    "gen_ai.request.model",
                    any_value::Value::StringValue("gpt-4o".into()),
                ),
                kv(
                    "gen_ai.usage.input_tokens",
                    any_value::Value::IntValue(1000),
                ),
                kv(
                    "gen_ai.usage.output_tokens",
                    any_value::Value::IntValue(500),
                ),
                kv(
                    "gen_ai.system",
                    any_value::Value::StringValue("openai".into()),
                ),
                kv("custom.flag", any_value::Value::BoolValue(true)),
            ],
            status: Some(Status {
                code: 1,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut resource = Map::new();
        resource.insert("service.name".into(), json!("support-bot"));
        let e = span_to_event("default", &resource, &span, &PriceTable::builtin());
        assert_eq!(e["kind"], "llm");
        assert_eq!(e["model"], "gpt-4o");
        assert_eq!(e["agent"], "support-bot");
        assert_eq!(e["parent_span_id"], "0303030303030303");
        assert_eq!(e["usage"]["input_tokens"], 1000);
        assert!(
            e["usage"]["cost_usd"].as_f64().unwrap() > 0.0,
            "cost from the price table"
        );
        assert_eq!(e["attributes"]["custom.flag"], true);
        assert_eq!(e["attributes"]["gen_ai.system"], "openai");
        assert!(
            e["attributes"].get("gen_ai.request.model").is_none(),
            "mapped keys are consumed"
        );
        assert_eq!(e["status"], "ok");
        assert_eq!(
            e["event_id"],
            event_id("default", &"01".repeat(16), &"02".repeat(8))
        );
    }

    #[test]
    fn openinference_tool_span_maps_name_and_io() {
        let span = Span {
            trace_id: vec![9; 16],
            span_id: vec![8; 8],
            name: "tool".into(),
            start_time_unix_nano: 1,
            attributes: vec![
                kv(
                    "openinference.span.kind",
                    any_value::Value::StringValue("TOOL".into()),
                ),
                kv("tool.name", any_value::Value::StringValue("run_sql".into())),
                kv(
                    "input.value",
                    any_value::Value::StringValue("{\"sql\": \"select 1\"}".into()),
                ),
            ],
            ..Default::default()
        };
        let e = span_to_event("p", &Map::new(), &span, &PriceTable::builtin());
        assert_eq!(e["kind"], "tool");
        assert_eq!(e["name"], "run_sql");
        assert_eq!(e["input"]["sql"], "select 1");
    }
}
