//! What the benches share: the test harness (`tests/common/mod.rs`: `redis-server` on a free
//! port, the shared workload's `Article`) and the one way a bench picks its Redis.
#![allow(dead_code)]

#[path = "../../tests/common/mod.rs"]
mod harness;

use harness::RedisServer;

// Not every bench uses it.
#[allow(unused_imports)]
pub use harness::Article;

/// The Redis a bench runs against, as `(server, url)`: `REDIS_URL` if it is set (a server
/// the bench may write to and flush; then `server` is `None`), else a `redis-server` of its
/// own on a free port. Keep `server` alive while the bench runs: dropping it stops that
/// server.
pub fn bench_redis() -> (Option<RedisServer>, String) {
    match std::env::var("REDIS_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let server = RedisServer::start(&[]);
            let url = server.url();
            (Some(server), url)
        }
    }
}

/// Seconds per call of `f`: the median over `rounds` rounds of `n` calls.
pub fn median_secs(rounds: usize, n: usize, f: &mut dyn FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..rounds)
        .map(|_| {
            let s = std::time::Instant::now();
            for _ in 0..n {
                f();
            }
            s.elapsed().as_secs_f64() / n as f64
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

/// Median over `rounds` rounds of (time of `n` calls of `ours`) / (time of `n` calls of
/// `bare`); the order flips every round, so a drift of the machine hits both sides alike.
pub fn median_ratio(
    rounds: usize,
    n: usize,
    ours: &mut dyn FnMut(),
    bare: &mut dyn FnMut(),
) -> f64 {
    let time = |f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_secs_f64()
    };
    let mut r: Vec<f64> = (0..rounds)
        .map(|i| {
            if i % 2 == 0 {
                let b = time(bare);
                time(ours) / b
            } else {
                let o = time(ours);
                o / time(bare)
            }
        })
        .collect();
    r.sort_by(|a, b| a.total_cmp(b));
    r[r.len() / 2]
}
