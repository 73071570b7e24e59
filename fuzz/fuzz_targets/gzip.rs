//! gzip handling of the OTLP door: decompression stops at the size limit; what decompresses
//! goes on to the protobuf and JSON decoders.
#![no_main]

use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if let Some(out) = audittrail::fuzzing::gunzip(data, LIMIT) {
        assert!(out.len() <= LIMIT, "the limit holds after decompression");
        audittrail::fuzzing::otlp_export(&out, false);
        audittrail::fuzzing::otlp_export(&out, true);
    }
});
