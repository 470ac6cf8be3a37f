//! What the type tag of entries costs, in one run: decoding entry bytes through the type
//! check against the codec alone (the difference is the check), beside a shared-tier hit
//! on Redis and a tracked local hit (whose check is the `Arc` downcast it always had).
//! Prints one JSON object; the aims are under 2% of a shared hit and under 10 ns.
//!
//! `cargo bench --bench type_check --features fuzzing` (REDIS_URL to use a server that may
//! be written to).

mod common;

use std::hint::black_box;

use common::Article;
use stampcache::fuzzing::{typed_decode, typed_encode};
use stampcache::{Bitcode, Cache, Codec, Cond, LocalMode, Read};

/// Median nanoseconds of one call, over 21 rounds of `n` calls.
fn nanos(n: usize, f: &mut dyn FnMut()) -> f64 {
    common::median_secs(21, n, f) * 1e9
}

/// (typed decode, codec decode) in ns for `rows` articles.
fn decode_pair(rows: usize) -> (f64, f64) {
    let value: Vec<Article> = (0..rows as i64).map(Article::new).collect();
    let typed = typed_encode(&value).expect("encodes");
    let raw = Bitcode::encode(&value).expect("encodes");
    let n = if rows > 10 { 2_000 } else { 200_000 };
    // Interleaved, so both see the same machine.
    let t = nanos(n, &mut || {
        black_box(typed_decode::<Vec<Article>>(black_box(&typed)).expect("decodes"));
    });
    let r = nanos(n, &mut || {
        black_box(Bitcode::decode::<Vec<Article>>(black_box(&raw)).expect("decodes"));
    });
    (t, r)
}

fn main() {
    let (one_typed, one_raw) = decode_pair(1);
    let (hundred_typed, hundred_raw) = decode_pair(100);
    let check_ns = (one_typed - one_raw).max(0.0);

    let (_server, url) = common::bench_redis();
    let shared = Cache::builder()
        .redis(url.clone())
        .prefix("bench-type-shared:")
        .build()
        .expect("cache");
    let tracked = Cache::builder()
        .redis(url)
        .prefix("bench-type-tracked:")
        .local(LocalMode::Tracked)
        .build()
        .expect("cache");
    let read = Read::fetch("blog.article").filter(Cond::eq("category", 1));
    let rows: Vec<Article> = (0..1).map(Article::new).collect();
    for cache in [&shared, &tracked] {
        let _: Vec<Article> = cache
            .get_or_compute(&read, || rows.clone())
            .expect("filled");
    }
    let shared_hit_ns = nanos(2_000, &mut || {
        black_box(
            shared
                .get_or_compute_arc::<Vec<Article>, _>(&read, || unreachable!("a hit"))
                .expect("hit"),
        );
    });
    let local_hit_ns = nanos(200_000, &mut || {
        black_box(
            tracked
                .get_or_compute_arc::<Vec<Article>, _>(&read, || unreachable!("a hit"))
                .expect("hit"),
        );
    });
    println!(
        "{{\"typed_decode_1_row_ns\": {one_typed:.1}, \"codec_decode_1_row_ns\": {one_raw:.1}, \
         \"type_check_ns\": {check_ns:.1}, \
         \"typed_decode_100_rows_ns\": {hundred_typed:.0}, \"codec_decode_100_rows_ns\": {hundred_raw:.0}, \
         \"shared_hit_ns\": {shared_hit_ns:.0}, \"check_share_of_shared_hit\": {:.5}, \
         \"tracked_local_hit_ns\": {local_hit_ns:.1}, \"local_hit_type_check\": \"Arc downcast (a TypeId compare)\"}}",
        check_ns / shared_hit_ns
    );
}
