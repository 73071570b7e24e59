//! The native batch decoder and validation (`POST /api/v1/traces`, `/ws/ingest`), then the
//! redaction stage on whatever validates.
#![no_main]

use std::sync::{Arc, OnceLock};

use audittrail::event::Limits;
use audittrail::ingest::pricing::PriceTable;
use audittrail::pipeline::Pipeline;
use audittrail::redact::{RedactionStage, Redactor};
use libfuzzer_sys::fuzz_target;

fn pipeline() -> &'static Pipeline {
    static P: OnceLock<Pipeline> = OnceLock::new();
    P.get_or_init(|| Pipeline {
        limits: Limits::default(),
        max_batch_events: 1000,
        redaction: RedactionStage::new(
            Arc::new(Redactor::new(Default::default()).expect("default redactor")),
            b"fuzz-key".to_vec(),
        ),
        prices: PriceTable::builtin(),
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(events) = pipeline().normalize_batch(body) {
        if let Ok(redacted) = pipeline().redact(events) {
            for e in redacted {
                let body = e.into_body("p");
                assert!(body.is_object());
            }
        }
    }
});
