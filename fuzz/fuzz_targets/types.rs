//! Column text as PostgreSQL sends it, converted by type OID (the known types, and one
//! unknown); a converted value has a canonical encoding.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use stampcache::fuzzing;

fuzz_target!(|data: &[u8]| {
    static OIDS: OnceLock<Vec<u32>> = OnceLock::new();
    let oids = OIDS.get_or_init(fuzzing::known_type_oids);
    let Some((&pick, text)) = data.split_first() else {
        return;
    };
    let oid = oids.get(usize::from(pick)).copied().unwrap_or(1700); // numeric: unknown
    if let Some(v) = fuzzing::column_value(oid, text) {
        let _ = v.encode();
    }
});
