//! All six default rules on typical events: `cargo bench --bench rules`.
//! Target: median ≤ 20 µs per event for the whole rule set.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

use audittrail::rules::{RuleSet, RunningTotals};

fn rules_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("rules")
}

fn bench_rules(c: &mut Criterion) {
    let dir = rules_dir();
    let rules = RuleSet::load_dir(&dir).expect("default rules load");
    let llm = json!({"event_id": "0193a7c2", "project": "default", "trace_id": "tr-1", "span_id": "sp-3",
        "parent_span_id": "sp-1", "kind": "llm", "name": "chat.completions", "agent": "support-bot",
        "session_id": "sess-9", "start_time": "2026-11-22T10:00:00Z", "end_time": "2026-11-22T10:00:01Z",
        "duration_ms": 1234.0, "status": "ok", "model": "gpt-4o",
        "input": [{"role": "system", "content": "You are a helpful support agent."},
                  {"role": "user", "content": "Where is my order [EMAIL_1]?"}],
        "output": {"role": "assistant", "content": "Your order shipped yesterday and should arrive Friday."},
        "usage": {"input_tokens": 420, "output_tokens": 64, "cost_usd": 0.0031},
        "attributes": {"temperature": 0.2}, "redaction": {"input": {"EMAIL": 1}}});
    let tool = json!({"event_id": "0193a7c3", "project": "default", "trace_id": "tr-1", "span_id": "sp-4",
        "kind": "tool", "name": "sql.query", "session_id": "sess-9", "duration_ms": 85.0, "status": "ok",
        "input": {"sql": "SELECT id, status FROM orders WHERE customer_id = 42 LIMIT 5"},
        "output": {"rows": [[1, "shipped"]]}, "attributes": {"external": false}});
    let answer = json!({"event_id": "0193a7c4", "project": "default", "trace_id": "tr-1", "span_id": "sp-5",
        "kind": "answer", "session_id": "sess-9", "duration_ms": 5.0, "status": "ok",
        "output": "Your order shipped yesterday (see https://shop.example/orders/1) [1]."});
    let mut totals = RunningTotals::default();
    totals.observe(&json!({"trace_id": "tr-1", "kind": "retrieval",
        "output": {"documents": [{"id": "kb-1", "url": "https://shop.example/orders/1"}]}}));
    for (name, event) in [("llm", &llm), ("tool", &tool), ("answer", &answer)] {
        let view = totals.observe(event);
        c.bench_function(&format!("six_rules/{name}_event"), |b| {
            b.iter(|| rules.evaluate(black_box(event), black_box(&view)))
        });
    }
    // The load generator's four steps (~0.9 KB each): what the pipeline figures are made of.
    let mut totals_lg = RunningTotals::default();
    let steps: Vec<_> = (0..4)
        .map(|i| audittrail::loadgen::sample_event("0193a7c2deadbeef0193a7c2deadbeef", i))
        .collect();
    let views: Vec<_> = steps.iter().map(|e| totals_lg.observe(e)).collect();
    c.bench_function("six_rules/loadgen_4_steps", |b| {
        b.iter(|| {
            for (e, v) in steps.iter().zip(&views) {
                black_box(rules.evaluate(black_box(e), black_box(v)));
            }
        })
    });
    c.bench_function("running_totals/observe", |b| {
        b.iter(|| totals.observe(black_box(&llm)))
    });
}

criterion_group!(benches, bench_rules);
criterion_main!(benches);
