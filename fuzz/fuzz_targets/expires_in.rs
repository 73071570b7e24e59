//! Key lifetimes (`expires_in`): never panics, and an error never repeats the input.
#![no_main]

use audittrail::auth::keys::parse_expires_in;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Err(e) = parse_expires_in(s) {
            let msg = e.to_string();
            assert_eq!(msg, "expires_in: use a number followed by d, h or m (e.g. 90d)");
        }
    }
});
