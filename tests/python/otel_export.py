"""Exports an agent trace with the official OpenTelemetry SDK and OTLP/HTTP exporter.

Usage: otel_export.py BASE_URL API_KEY [gzip]
Prints {"trace_id", "root_span_id", "llm_span_id"} as JSON.
"""
import json
import sys

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

base, key = sys.argv[1], sys.argv[2]
compression = Compression.Gzip if len(sys.argv) > 3 and sys.argv[3] == "gzip" else Compression.NoCompression
exporter = OTLPSpanExporter(
    endpoint=f"{base}/v1/traces",
    headers={"Authorization": f"Bearer {key}"},
    compression=compression,
)
provider = TracerProvider(resource=Resource.create({"service.name": "otel-test-agent"}))
provider.add_span_processor(BatchSpanProcessor(exporter))
tracer = provider.get_tracer("audittrail-test")

with tracer.start_as_current_span("invoke_agent support") as root:
    root.set_attribute("gen_ai.operation.name", "invoke_agent")
    root.set_attribute("session.id", "sess-otel")
    with tracer.start_as_current_span("chat gpt-4o") as llm:
        llm.set_attribute("gen_ai.operation.name", "chat")
        llm.set_attribute("gen_ai.system", "openai")
        llm.set_attribute("gen_ai.request.model", "gpt-4o")
        llm.set_attribute("gen_ai.response.model", "gpt-4o-2024-08-06")
        llm.set_attribute("gen_ai.usage.input_tokens", 1200)
        llm.set_attribute("gen_ai.usage.output_tokens", 300)
        llm.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "Where is order 48213?"})
        llm.add_event("gen_ai.content.completion", {"gen_ai.completion": "It ships on Friday."})
    with tracer.start_as_current_span("execute_tool lookup_order") as tool:
        tool.set_attribute("gen_ai.operation.name", "execute_tool")
        tool.set_attribute("gen_ai.tool.name", "lookup_order")
        tool.set_attribute("custom.team", "support")
    ids = {
        "trace_id": format(root.get_span_context().trace_id, "032x"),
        "root_span_id": format(root.get_span_context().span_id, "016x"),
        "llm_span_id": format(llm.get_span_context().span_id, "016x"),
    }

ok = provider.force_flush(10_000)
provider.shutdown()
if not ok:
    sys.exit("export did not complete")
print(json.dumps(ids))
