//! A stored entry (any bytes) through the type check: read as a list of rows and as a
//! string. Whatever passes the check and decodes must encode to bytes that read back the
//! same; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stampcache::fuzzing::{typed_decode, typed_encode};

fuzz_target!(|data: &[u8]| {
    if let Ok(rows) = typed_decode::<Vec<(i64, String, Option<bool>)>>(data) {
        let again = typed_encode(&rows).expect("a decoded value encodes");
        assert_eq!(typed_decode::<Vec<(i64, String, Option<bool>)>>(&again).ok(), Some(rows));
    }
    let _ = typed_decode::<String>(data);
});
