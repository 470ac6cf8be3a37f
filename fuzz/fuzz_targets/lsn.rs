//! WAL positions (`X/Y`, as a user or the server writes them): parsed, and what parses
//! prints back to the same position.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stampcache::cdc::Lsn;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(lsn) = s.parse::<Lsn>() {
        assert_eq!(lsn.to_string().parse::<Lsn>(), Ok(lsn));
    }
});
