//! Shared-tier hits of large values against a bare redis-rs `GET` of the same bytes and
//! their decoding, in one run: a simple-cache hit (`simple().cached`, one `GET`), a
//! cached-function hit (`cached_as`, one `MGET` of the entry and its stamps) and a table
//! read hit, for values of 100 B, 100 KB and 1 MB. Ratios are medians of interleaved rounds
//! (ours / bare). Prints readable lines, then one JSON object.
//!
//! `cargo bench --bench large_hits` (REDIS_URL to use a server that may be written to;
//! `LARGE_HITS_ROUNDS` to change the 15 rounds).

mod common;

use std::hint::black_box;
use std::time::Duration;

use stampcache::{Cache, Codec, Cond, DefaultCodec, Dep, Read};

fn ratio(rounds: usize, n: usize, ours: &mut dyn FnMut(), bare: &mut dyn FnMut()) -> f64 {
    common::median_ratio(rounds, n, ours, bare)
}

/// Median time of one call of `f`, in microseconds.
fn micros(n: usize, f: &mut dyn FnMut()) -> f64 {
    common::median_secs(7, n, f) * 1e6
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list
    }
    let rounds: usize = std::env::var("LARGE_HITS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let (_server, url) = common::bench_redis();
    let cache = Cache::builder()
        .redis(&url)
        .prefix("lhbench:")
        .build()
        .unwrap();
    cache.invalidate_all().unwrap();
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut bare = client.get_connection().unwrap();
    let ttl = Duration::from_secs(3600);

    let mut out: Vec<String> = Vec::new();
    for (label, size, n) in [
        ("100b", 100usize, 200usize),
        ("100kb", 100_000, 50),
        ("1mb", 1_000_000, 10),
    ] {
        let value: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let bytes = DefaultCodec::encode(&value).unwrap();
        let bare_key = format!("lhbench:bare:{label}");
        let _: () = redis::cmd("SET")
            .arg(&bare_key)
            .arg(&bytes)
            .query(&mut bare)
            .unwrap();
        let mut bare_get = || {
            let v: Vec<u8> = redis::cmd("GET").arg(&bare_key).query(&mut bare).unwrap();
            black_box(DefaultCodec::decode::<Vec<u8>>(&v).unwrap());
        };

        let simple = cache.simple();
        let _: Vec<u8> = simple
            .cached("large", &label, ttl, || value.clone())
            .unwrap();
        let mut simple_hit = || {
            let v: Vec<u8> = simple
                .cached("large", &label, ttl, || unreachable!("a hit"))
                .unwrap();
            black_box(v);
        };

        let deps = || [Dep::table("bench.large")];
        let _: Vec<u8> = cache
            .cached_as(deps())
            .name("large")
            .args(&label)
            .get_or_compute(|| value.clone())
            .unwrap();
        let mut func_hit = || {
            let v: Vec<u8> = cache
                .cached_as(deps())
                .name("large")
                .args(&label)
                .get_or_compute(|| unreachable!("a hit"))
                .unwrap();
            black_box(v);
        };

        let read = Read::fetch("bench.large").filter(Cond::eq("size", label));
        let _: Vec<u8> = cache.get_or_compute(&read, || value.clone()).unwrap();
        let mut read_hit = || {
            let v: Vec<u8> = cache
                .get_or_compute(&read, || unreachable!("a hit"))
                .unwrap();
            black_box(v);
        };

        let bare_us = micros(n, &mut bare_get);
        let r_simple = ratio(rounds, n, &mut simple_hit, &mut bare_get);
        let r_func = ratio(rounds, n, &mut func_hit, &mut bare_get);
        let r_read = ratio(rounds, n, &mut read_hit, &mut bare_get);
        println!(
            "{label:>6}: bare GET+decode {bare_us:.1} us | simple {r_simple:.2}x | \
             cached_as {r_func:.2}x | read {r_read:.2}x"
        );
        out.push(format!("\"bare_get_decode_{label}_us\": {bare_us:.1}"));
        out.push(format!("\"ratio_simple_{label}_vs_bare\": {r_simple:.3}"));
        out.push(format!("\"ratio_cached_as_{label}_vs_bare\": {r_func:.3}"));
        out.push(format!("\"ratio_read_{label}_vs_bare\": {r_read:.3}"));
    }
    println!("{{\"bench\": \"large_hits\", {}}}", out.join(", "));
}
