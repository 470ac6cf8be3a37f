//! The codec choice: encode and decode a `Vec` of 100 rows of the shared workload with each
//! codec, in one run. `cargo bench --bench codecs --features postcard,bincode`
//! (wincode is not here: it has no serde support, and our values are serde types).

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::Article;
use criterion::Criterion;
use stampcache::codec::{Bincode, Bitcode, Codec, Postcard};

fn bench<C: Codec>(c: &mut Criterion, name: &str, rows: &Vec<Article>) {
    let bytes = C::encode(rows).unwrap();
    println!("{name}: {} bytes", bytes.len());
    let mut g = c.benchmark_group(name);
    g.bench_function("encode", |b| b.iter(|| black_box(C::encode(rows).unwrap())));
    g.bench_function("decode", |b| {
        b.iter(|| black_box(C::decode::<Vec<Article>>(&bytes).unwrap()))
    });
    g.finish();
}

fn main() {
    let rows: Vec<Article> = (0..100).map(Article::new).collect();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    bench::<Postcard>(&mut c, "postcard", &rows);
    bench::<Bitcode>(&mut c, "bitcode", &rows);
    bench::<Bincode>(&mut c, "bincode", &rows);
    c.final_summary();
}
