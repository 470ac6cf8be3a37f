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
