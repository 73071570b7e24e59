//! Entry points for the `cargo fuzz` targets in `fuzz/`: thin wrappers over the parsers the
//! server runs on untrusted input, so each target exercises exactly the production code. Not an
//! API; hidden from the docs.

use crate::event::{self, Limits};
use crate::ingest::otlp::{self, Wire};

/// Decodes an OTLP body (protobuf or JSON) and runs every span through the attribute mapping
/// and the native validation, as `POST /v1/traces` does. Returns how many spans were valid.
pub fn otlp_export(bytes: &[u8], json: bool) -> usize {
    let wire = if json { Wire::Json } else { Wire::Protobuf };
    let Ok(req) = otlp::decode(bytes, wire) else {
        return 0;
    };
    let prices = crate::ingest::pricing::PriceTable::builtin();
    let mut valid = 0;
    for rs in &req.resource_spans {
        let resource = rs
            .resource
            .as_ref()
            .map(|r| crate::ingest::otel_map::attrs(&r.attributes))
            .unwrap_or_default();
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let native = crate::ingest::otel_map::span_to_event("p", &resource, span, &prices);
                if event::parse_event(native, "span", &Limits::default(), || "id".into()).is_ok() {
                    valid += 1;
                }
            }
        }
    }
    valid
}

/// Decompresses as the OTLP door does, with its size limit.
pub fn gunzip(bytes: &[u8], limit: usize) -> Option<Vec<u8>> {
    otlp::gunzip(bytes, limit).ok()
}

/// The rules' field-reads lexer over a rule source, for parameters `event` and `trace`.
pub fn rule_fields_read(src: &str) -> [Option<Vec<String>>; 2] {
    crate::rules::reads::fields_read(src, ["event", "trace"])
}
