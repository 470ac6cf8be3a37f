//! `rediss://` URLs against a real TLS-only redis-server. Needs the `tls` feature:
//! `cargo test --features tls --test tls` (CI runs it; `required-features` in Cargo.toml).

mod common;

use common::{Loads, RedisServer};
use stampcache::{Cache, Cond, Read};

#[test]
fn rediss_urls_reach_a_tls_server() {
    let dir = std::env::temp_dir().join(format!("stampcache-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let server = RedisServer::start_tls(&dir);
    let cache = Cache::from_url(&server.url()).unwrap();
    let read = Read::count("blog.article").filter(Cond::eq("category", 1));
    let loads = Loads::default();
    let _: u64 = cache.get_or_compute(&read, loads.of(1)).unwrap();
    let _: u64 = cache.get_or_compute(&read, loads.of(1)).unwrap();
    assert_eq!(loads.count(), 1, "the second read is a hit over TLS");
    cache
        .invalidate_obj("blog.article", &stampcache::Row::new().with("category", 1))
        .unwrap();
    let _: u64 = cache.get_or_compute(&read, loads.of(2)).unwrap();
    assert_eq!(loads.count(), 2);
    let _ = std::fs::remove_dir_all(dir);
}
