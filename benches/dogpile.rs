//! 64 concurrent misses of one key: database calls and latency (p50, p99), with the
//! cross-process lock on and off. 8 caches (as 8 processes: each has its own in-process
//! single flight) x 8 threads; the "database" sleeps 20 ms per call. One JSON line.
//!
//! `cargo bench --bench dogpile` (REDIS_URL to use a server that may be written to).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use stampcache::{Cache, Cond, Profile, Read};

fn run(url: &str, lock: bool, round: usize) -> (usize, Vec<Duration>) {
    let prefix = format!("dpbench:{lock}:{round}:");
    let caches: Vec<Cache> = (0..8)
        .map(|_| {
            Cache::builder()
                .redis(url)
                .prefix(prefix.clone())
                .profile("blog.*", Profile::new().lock(lock))
                .build()
                .unwrap()
        })
        .collect();
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(64));
    let read = Read::fetch("blog.article").filter(Cond::eq("category", 1));
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let (cache, calls, barrier, read) = (
                caches[i % 8].clone(),
                calls.clone(),
                barrier.clone(),
                read.clone(),
            );
            std::thread::spawn(move || {
                barrier.wait();
                let t = Instant::now();
                let v: Vec<u64> = cache
                    .get_or_compute(&read, || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        vec![1; 100]
                    })
                    .unwrap();
                assert_eq!(v.len(), 100);
                t.elapsed()
            })
        })
        .collect();
    let times = handles.into_iter().map(|h| h.join().unwrap()).collect();
    (calls.load(Ordering::SeqCst), times)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (_server, url) = common::bench_redis();
    let mut fields = Vec::new();
    for lock in [false, true] {
        let mut calls = Vec::new();
        let mut times = Vec::new();
        for round in 0..10 {
            let (c, t) = run(&url, lock, round);
            calls.push(c);
            times.extend(t);
        }
        times.sort();
        let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
        let name = if lock { "lock_on" } else { "lock_off" };
        let mean_calls = calls.iter().sum::<usize>() as f64 / calls.len() as f64;
        fields.push(format!(
            "\"{name}\": {{\"db_calls_per_burst\": {mean_calls:.1}, \"max_db_calls\": {}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}}}",
            calls.iter().max().unwrap(),
            pct(0.5),
            pct(0.99)
        ));
    }
    println!(
        "{{\"bench\": \"dogpile_64_misses\", {}}}",
        fields.join(", ")
    );
}
