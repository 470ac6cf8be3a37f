//! SQL text (any bytes as UTF-8, lossily) through the read analysis and the write analysis,
//! then bound to a few parameters of each kind: nothing may panic, and an analysed read
//! binds to a `Read` or a typed error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stampcache::sql::{Param, Shape, WriteShape};
use stampcache::Op;

fuzz_target!(|data: &[u8]| {
    let sql = String::from_utf8_lossy(data);
    let params = [
        Param::from(7_i64),
        Param::from("text"),
        Param::array([1_i64, 2, 3]),
        Param::from(true),
    ];
    let shape = Shape::parse(&sql);
    for n in 0..=params.len() {
        let _ = shape.read(Op::Fetch, &params[..n]);
    }
    let writes = WriteShape::parse(&sql);
    for n in 0..=params.len() {
        let _ = writes.writes(&params[..n]);
    }
});
