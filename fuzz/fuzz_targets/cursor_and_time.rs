//! Query parsers: the trace-list cursor (decode, and round trip of what decodes) and RFC 3339
//! timestamps (what parses keeps the fixed-width stored form).
#![no_main]

use audittrail::event::{format_time, parse_time};
use audittrail::store::query::Cursor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(c) = Cursor::decode(s) {
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
    }
    if let Ok(t) = parse_time(s) {
        assert_eq!(format_time(&t).len(), 27, "fixed width");
    }
});
