//! The rules' field-reads lexer (which fields of `event` and `trace` a rule source reads).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(src) = std::str::from_utf8(data) {
        for fields in audittrail::fuzzing::rule_fields_read(src).into_iter().flatten() {
            let mut sorted = fields.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(fields, sorted, "fields come sorted and unique");
        }
    }
});
