//! The native batch decoder and validation (`POST /api/v1/traces`, `/ws/ingest`), then the
//! redaction stage on whatever validates, then the record format: the stored text is exactly
//! serde_json's, the digest checks, and the erased form still checks its facts.
#![no_main]

use std::sync::{Arc, OnceLock};

use audittrail::event::Limits;
use audittrail::ingest::pricing::PriceTable;
use audittrail::pipeline::Pipeline;
use audittrail::redact::{RedactionStage, Redactor};
use audittrail::store::chain::ChainKey;
use audittrail::store::personal::{self, Form, Header};
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
        record_key: key().personal().clone(),
    })
}

fn key() -> &'static ChainKey {
    static K: OnceLock<ChainKey> = OnceLock::new();
    K.get_or_init(|| ChainKey::derive(b"fuzz-secret"))
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
                let h = Header {
                    project: "p",
                    event_id: "e",
                    record_type: "span",
                    recorded_at: "2026-11-27T00:00:00.000000Z",
                };
                let k = key().personal();
                let (digest, text) = personal::seal(&h, &body, k);
                assert_eq!(text, serde_json::to_string(&body).unwrap());
                assert_eq!(personal::check(&h, &text, &digest, k), Some(Form::V2));
                let gone = personal::erased("span", &text, k).expect("a span body erases");
                assert_eq!(personal::check(&h, &gone, &digest, k), Some(Form::Erased));
            }
        }
    }
});
