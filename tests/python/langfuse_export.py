"""Sends a trace with the real `langfuse` SDK (OTLP under the hood) to AuditTrail.

Usage: langfuse_export.py BASE_URL KEY_ID KEY_SECRET
The SDK authenticates with HTTP Basic: public key = AuditTrail key id, secret key = its secret.
Prints {"trace_id", "auth_check"} as JSON.
"""
import json
import sys

from langfuse import Langfuse

base, key_id, secret = sys.argv[1], sys.argv[2], sys.argv[3]
lf = Langfuse(public_key=key_id, secret_key=secret, host=base)
auth_ok = lf.auth_check()
with lf.start_as_current_observation(name="support-run", as_type="agent") as run:
    with lf.start_as_current_observation(
        name="answer",
        as_type="generation",
        model="gpt-4o-mini",
        input=[{"role": "user", "content": "hi"}],
    ) as gen:
        gen.update(output="hello there", usage_details={"input": 10, "output": 5})
    with lf.start_as_current_observation(name="lookup_order", as_type="tool", input={"order_id": 48213}) as tool:
        tool.update(output={"status": "shipped"})
    trace_id = lf.get_current_trace_id()
lf.flush()
lf.shutdown()
print(json.dumps({"trace_id": trace_id, "auth_check": auth_ok}))
