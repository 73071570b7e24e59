//! Benchmarks of the redact stage alone (no I/O): plain-text detection on realistic agent
//! trace text, the clean-text fast path, and `redact_json` on a full chat/tool-call event.
//! Run: `cargo bench --bench redact`.

use std::hint::black_box;

use audittrail::redact::{Redactor, RedactorConfig, TypeCounts};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;

const LOG: &str = r#"2024-10-26T04:14:34.373Z INFO  [gateway] login succeeded user=laura31@carter-hernandez.org ip=71.16.98.4 request_id=0df7c18f-2b89-44f9-998f-a54aea1ff1f8 latency_ms=88
2024-10-26T04:14:35.101Z WARN  [payments] card 4111 1111 1111 1111 declined for Shannon Munoz, refund to DE89 3704 0044 0532 0130 00
2024-10-26T04:14:36.902Z INFO  [db] connected to postgres://app:Tr0ub4dor!3@db-17.internal:5432/main (build 8.6.4.118, commit 25798cce0330d32c6840617a13deb43213822625)
2024-10-26T04:14:37.000Z DEBUG [agent] tool_call id=call_l3nojGcvlZGxKJEROAZn2AHi name=lookup_customer args={"ssn": "694-66-9779", "dob": "1953-01-29"}
"#;

const CHAT: &str = "Hi, my name is Maria Mcguire and my email is maria.m+news@example.org. \
I was born on 24/06/1996 and live at 23040 Karen Pine, Justinfurt, VA 74307. Call me at \
(202) 825-1980. I'm using Jenkins 2.440 with Kafka 3.7; the key I pasted was \
sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z, please rotate it.";

const CLEAN: &str = "The deployment of version 2.12.9 finished in 3897 ms. All 42 checks passed, \
the cache hit ratio was 0.93 and no retries were needed. Next run is scheduled for Monday \
after the dependency bump lands in main; see the runbook for the rollback procedure.";

fn event() -> serde_json::Value {
    json!({
        "model": "gpt-4o-2024-08-06",
        "messages": [
            {"role": "system", "content": "You are a helpful support agent for Raymond-Powell."},
            {"role": "user", "content": CHAT},
            {"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_l3nojGcvlZGxKJEROAZn2AHi", "type": "function",
                "function": {"name": "create_customer", "arguments": "{\"name\": \"Kevin Watson\", \"email\": \"jasonc@rollins.com\", \"phone\": \"+44 20 7946 0958\", \"iban\": \"GB82WEST12345698765432\"}"}
            }]},
            {"role": "tool", "tool_call_id": "call_l3nojGcvlZGxKJEROAZn2AHi", "content": LOG},
            {"role": "assistant", "content": CLEAN}
        ],
        "temperature": 0.2,
        "metadata": {"trace_id": "4cb3c1f4a44d5cdbc6e5aa61853b7b24", "client_ip": "73.164.44.7"}
    })
}

fn bench(c: &mut Criterion) {
    let r = Redactor::new(RedactorConfig::default()).expect("default redactor builds");
    let text = format!("{LOG}\n{CHAT}\n{CLEAN}");

    let mut g = c.benchmark_group("redact");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("detect_mixed_text", |b| {
        b.iter(|| r.detect(black_box(&text)))
    });
    g.throughput(Throughput::Bytes(CLEAN.len() as u64));
    g.bench_function("redact_str_clean_fast_path", |b| {
        b.iter(|| {
            let mut counts = TypeCounts::new();
            r.redact_str(black_box(CLEAN), &mut counts).len()
        })
    });
    let ev = event();
    g.throughput(Throughput::Bytes(ev.to_string().len() as u64));
    g.bench_function("redact_json_chat_event", |b| {
        b.iter_batched(
            || ev.clone(),
            |mut v| {
                let mut counts = TypeCounts::new();
                r.redact_json(&mut v, &mut counts)
                    .expect("event is shallow");
                v
            },
            BatchSize::SmallInput,
        )
    });
    // The load generator's four agent steps (~0.9 KB each, many short fields): the per-event
    // cost the pipeline figures include.
    let steps: Vec<_> = (0..4)
        .map(|i| audittrail::loadgen::sample_event("0193a7c2deadbeef0193a7c2deadbeef", i))
        .collect();
    g.throughput(Throughput::Bytes(
        steps.iter().map(|e| e.to_string().len() as u64).sum(),
    ));
    g.bench_function("redact_json_loadgen_4_steps", |b| {
        b.iter_batched(
            || steps.clone(),
            |mut vs| {
                let mut counts = TypeCounts::new();
                for v in &mut vs {
                    r.redact_json(v, &mut counts).expect("event is shallow");
                }
                vs
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
