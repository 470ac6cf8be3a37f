//! PostgreSQL connection strings: libpq `key=value` strings and `postgres://` URLs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stampcache::cdc::CdcError;
use stampcache::fuzzing;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = fuzzing::conninfo(s) {
        assert!(
            matches!(e, CdcError::Config(_)),
            "not a config error: {e:?}"
        );
    }
});
