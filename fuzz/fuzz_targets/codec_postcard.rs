//! A stored entry's payload (any bytes) decoded by the `Postcard` codec as each type users
//! cache; what decodes must encode and decode again the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stampcache::codec::Postcard;
use stampcache_fuzz::decode_as_user_types;

fuzz_target!(|data: &[u8]| {
    decode_as_user_types::<Postcard>(data);
});
