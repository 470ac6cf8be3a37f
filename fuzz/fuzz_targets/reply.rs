//! Redis replies through the store's reply parsers: the hit check (`MGET entry stamps`),
//! the hit-or-stale check (with dead stamps), the prepare token, and the typed conversions;
//! a hit's payload then through the default codec as the types users cache.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stampcache::fuzzing;
use stampcache_fuzz::{decode_as_user_types, mget_reply, redis_value, Input};

fuzz_target!(|data: &[u8]| {
    let mut r = Input::new(data);
    let (reply, stamps) = match r.u8() % 3 {
        // An arbitrary reply (and stamp count for the stale check).
        0 => {
            let stamps = usize::from(r.u8() % 6);
            (redis_value(&mut r, 0), stamps)
        }
        // An MGET reply shaped as the store sends it, checksums included.
        1 => mget_reply(&mut r, false),
        _ => mget_reply(&mut r, true),
    };
    if let Ok(Some(payload)) = fuzzing::redis_hit(reply.clone()) {
        decode_as_user_types::<stampcache::DefaultCodec>(&payload);
    }
    if let Ok(Some((payload, _fresh))) = fuzzing::redis_hit_or_stale(reply.clone(), stamps) {
        decode_as_user_types::<stampcache::DefaultCodec>(&payload);
    }
    if let Ok(token) = fuzzing::redis_token(reply.clone()) {
        assert_eq!(token.len(), fuzzing::CHECKSUM_LEN);
    }
    let _ = fuzzing::redis_typed(reply);
});
