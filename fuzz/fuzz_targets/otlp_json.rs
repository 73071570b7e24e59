//! OTLP/HTTP JSON bodies: decode (with lenient enum names), attribute mapping, validation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    audittrail::fuzzing::otlp_export(data, true);
});
