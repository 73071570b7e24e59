#!/usr/bin/env python3
"""Writes seed corpora for the cargo-fuzz targets (fuzz/corpus/<target>/) from the project's
own fixtures: rule fixtures and sources, the redactor's development corpus, OTLP bodies built
with the official opentelemetry-proto package. Run by scripts/fuzz.sh."""
import gzip, hashlib, json, pathlib, sys

root = pathlib.Path(__file__).resolve().parent.parent
corpus = root / "fuzz" / "corpus"

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)

# Native batches: every fixture event of every rule, one batch each and all together.
events = []
for f in sorted((root / "rules" / "tests").glob("*.json")):
    for case in json.loads(f.read_text()):
        ev = dict(case["event"])
        ev.pop("project", None)
        ev.setdefault("start_time", "2026-11-22T10:00:00Z")
        events.append(ev)
        put("native_batch", json.dumps({"events": [ev]}))
put("native_batch", json.dumps({"events": events[:50]}))

# Rule sources for the field-reads lexer.
for f in sorted((root / "rules").glob("*.rhai")):
    put("rule_reads", f.read_text())

# The redactor's development corpus (texts only).
dev = pathlib.Path(root.parent / "shared" / "pii-dev" / "dev.jsonl")
if dev.exists():
    for i, line in enumerate(dev.read_text().splitlines()):
        if i % 10 == 0:
            put("redactor", json.loads(line)["text"])
put("redactor", json.dumps({"input": {"email": "jane.roe@example.org", "args": "{\"ssn\": \"078-05-1120\"}"}}))

# OTLP bodies, JSON and protobuf, plain and gzip.
span = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "name": "chat", "kind": "SPAN_KIND_CLIENT", "startTimeUnixNano": "1763805600000000000",
        "endTimeUnixNano": "1763805600500000000",
        "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
                       {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "12"}},
                       {"key": "gen_ai.prompt", "value": {"stringValue": "{\"messages\": [\"hi\"]}"}}],
        "status": {"code": 1}}
otlp_json = json.dumps({"resourceSpans": [{"resource": {"attributes": [
    {"key": "service.name", "value": {"stringValue": "agent"}}]},
    "scopeSpans": [{"scope": {"name": "t"}, "spans": [span]}]}]})
put("otlp_json", otlp_json)
put("gzip", gzip.compress(otlp_json.encode()))
try:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
    msg = json_format.Parse(otlp_json.replace("SPAN_KIND_CLIENT", "3"), trace_service_pb2.ExportTraceServiceRequest())
    pb = msg.SerializeToString()
    put("otlp_protobuf", pb)
    put("gzip", gzip.compress(pb))
except ImportError:
    print("opentelemetry-proto missing: no protobuf seed", file=sys.stderr)

for s in ["2026-11-22T10:00:00Z", "9999-12-31T23:59:59-23:59", "2026-11-22T10:00:00.123456789+05:30",
          "323032362d31312d32325431303a30303a30302e3030303030305a0a74726163652d31"]:
    put("cursor_and_time", s)
for s in ["90d", "12h", "30m", "1é", "1😀", "0d", "36500d"]:
    put("expires_in", s)
