//! OTLP/HTTP protobuf bodies: decode, attribute mapping, validation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    audittrail::fuzzing::otlp_export(data, false);
});
