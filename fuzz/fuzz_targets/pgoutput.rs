//! pgoutput messages: one message decoded alone, then the input cut into messages (each
//! preceded by its length, one byte) and streamed through the consumer's decoding state:
//! relations, tuples to row images (column text by type), transactions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stampcache::fuzzing;
use stampcache_fuzz::Input;

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::pgoutput(data);
    let mut r = Input::new(data);
    let mut messages = Vec::new();
    while !r.is_empty() {
        messages.push(r.bytes());
    }
    for (bytes, result) in messages.iter().zip(fuzzing::pgoutput_stream(&messages)) {
        if result.is_ok() {
            assert!(
                fuzzing::pgoutput(bytes).is_ok(),
                "streamed but does not decode"
            );
        }
    }
});
