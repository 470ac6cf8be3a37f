//! The local tier against real Redis servers: two caches on one Redis stand for two
//! processes, and one test runs a real second process (this binary, re-executed as a
//! writer). Own harness, so the child role needs no test of its own; it prints
//! `N passed, N failed` like any runner.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Article, Loads, RedisServer};
use stampcache::{Builder, Cache, Cond, LocalMode, Profile, Read};

const CHILD_URL: &str = "STAMPCACHE_CHILD_URL";
const CHILD_PREFIX: &str = "STAMPCACHE_CHILD_PREFIX";

fn count(c: i64) -> Read {
    Read::count("blog.article").filter(Cond::eq("category", c))
}

fn builder(server: &RedisServer, prefix: &str) -> Builder {
    Cache::builder()
        .redis(server.url())
        .prefix(prefix)
        .tracking_heartbeat(Duration::from_millis(100))
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Reads until a read is answered from the local tier (the first fill of a new stamp can be
/// killed by the push of its own creation).
fn warm_local(cache: &Cache, read: &Read, value: u64) {
    let before = cache.stats().local.hits;
    wait_until("a local hit", Duration::from_secs(3), || {
        let _: u64 = cache.get_or_compute(read, || value).unwrap();
        cache.stats().local.hits > before
    });
}

fn strict_hits_are_confirmed_and_see_other_processes_writes() {
    let server = RedisServer::start(&[]);
    let a = builder(&server, "s:")
        .local(LocalMode::Strict)
        .build()
        .unwrap();
    let b = builder(&server, "s:").build().unwrap();
    let loads = Loads::default();
    let _: u64 = a.get_or_compute(&count(1), loads.of(1)).unwrap();
    let _: u64 = a.get_or_compute(&count(1), loads.of(1)).unwrap();
    let st = a.stats().local;
    assert_eq!((loads.count(), st.hits, st.validations), (1, 1, 1));
    b.on_insert("blog.article", &Article::new(1)).unwrap();
    let v: u64 = a.get_or_compute(&count(1), loads.of(2)).unwrap();
    assert_eq!(
        v, 2,
        "a strict local hit never outlives another process' invalidation"
    );
    assert_eq!(a.stats().local.validation_failures, 1);
}

fn tracked_stops_serving_within_100ms_of_another_process_write() {
    let server = RedisServer::start(&[]);
    let a = builder(&server, "t:")
        .local(LocalMode::Tracked)
        .build()
        .unwrap();
    wait_until("the push channel", Duration::from_secs(3), || {
        a.push_channel_up()
    });
    warm_local(&a, &count(1), 1);
    let validations = a.stats().local.validations;
    for _ in 0..10 {
        let v: u64 = a.get_or_compute(&count(1), || unreachable!()).unwrap();
        assert_eq!(v, 1);
    }
    assert_eq!(
        a.stats().local.validations,
        validations,
        "tracked hits ask Redis nothing"
    );

    // Process B: this binary again, as a writer.
    let status = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_URL, server.url())
        .env(CHILD_PREFIX, "t:")
        .status()
        .unwrap();
    assert!(status.success(), "writer process failed");
    let returned = Instant::now();
    wait_until("the fresh value", Duration::from_millis(100), || {
        a.get_or_compute(&count(1), || 2u64).unwrap() == 2
    });
    println!(
        "    tracked: fresh {:?} after B returned",
        returned.elapsed()
    );
    assert!(a.stats().local.pushes > 0);
}

fn killed_push_connection_serves_nothing_locally_until_back() {
    let server = RedisServer::start(&[]);
    let a = builder(&server, "k:")
        .local(LocalMode::Tracked)
        .build()
        .unwrap();
    wait_until("the push channel", Duration::from_secs(3), || {
        a.push_channel_up()
    });
    warm_local(&a, &count(1), 1);
    let id = a.push_client_id();
    let flushes = a.stats().local.flushes;
    let mut conn = server.conn();
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query(&mut conn)
        .unwrap();
    wait_until("the loss to be noticed", Duration::from_secs(1), || {
        a.stats().local.flushes > flushes
    });
    // Until the channel is back, reads go to Redis: no local hit, and no local fill.
    let hits = a.stats().local.hits;
    while !a.push_channel_up() {
        let _: u64 = a.get_or_compute(&count(1), || 1).unwrap();
        assert_eq!(
            a.stats().local.hits,
            hits,
            "served locally while the channel was down"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_ne!(a.push_client_id(), id, "a new push connection");
    warm_local(&a, &count(1), 1);
}

fn restarted_redis_leaves_no_tier_serving_old_values() {
    let mut server = RedisServer::start(&[]);
    let opts = |b: Builder| b.retry_after(Duration::ZERO).degrade_on_failure(true);
    let tracked = opts(builder(&server, "r:").local(LocalMode::Tracked))
        .build()
        .unwrap();
    let strict = opts(builder(&server, "r:").local(LocalMode::Strict))
        .build()
        .unwrap();
    wait_until("the push channel", Duration::from_secs(3), || {
        tracked.push_channel_up()
    });
    warm_local(&tracked, &count(1), 1);
    warm_local(&strict, &count(1), 1);
    server.restart();
    // Redis lost everything, so an invalidation made now would find nothing to delete:
    // the old values must not survive anywhere.
    for cache in [&tracked, &strict] {
        let v: u64 = cache.get_or_compute(&count(1), || 2).unwrap();
        assert_eq!(v, 2);
    }
}

fn bounded_serves_unconfirmed_only_within_its_bound() {
    let server = RedisServer::start(&[]);
    let bound = Duration::from_millis(300);
    let a = builder(&server, "b:")
        .profile("blog.*", Profile::new().local(LocalMode::Bounded(bound)))
        .build()
        .unwrap();
    let b = builder(&server, "b:").build().unwrap();
    let _: u64 = a.get_or_compute(&count(1), || 1).unwrap();
    let filled = Instant::now();
    b.on_insert("blog.article", &Article::new(1)).unwrap();
    let v: u64 = a.get_or_compute(&count(1), || 2).unwrap();
    if filled.elapsed() < bound {
        assert_eq!(v, 1, "within the bound the local copy answers");
    }
    std::thread::sleep(bound.saturating_sub(filled.elapsed()) + Duration::from_millis(10));
    let v: u64 = a.get_or_compute(&count(1), || 2).unwrap();
    assert_eq!(
        v, 2,
        "past the bound it is confirmed, found dead and reloaded"
    );
    // Own writes take effect at once.
    a.on_insert("blog.article", &Article::new(1)).unwrap();
    let v: u64 = a.get_or_compute(&count(1), || 3).unwrap();
    assert_eq!(v, 3);
}

fn local_get_keeps_its_copy_but_reads_its_own_writes() {
    let server = RedisServer::start(&[]);
    let a = builder(&server, "l:")
        .profile("blog.*", Profile::new().local_get(true))
        .build()
        .unwrap();
    let b = builder(&server, "l:").build().unwrap();
    let _: u64 = a.get_or_compute(&count(1), || 1).unwrap();
    b.on_insert("blog.article", &Article::new(1)).unwrap();
    let v: u64 = a.get_or_compute(&count(1), || 2).unwrap();
    assert_eq!(v, 1, "local_get is TTL-only, as in cacheops");
    a.on_insert("blog.article", &Article::new(1)).unwrap();
    let v: u64 = a.get_or_compute(&count(1), || 3).unwrap();
    assert_eq!(v, 3, "but this process' own invalidations reach it");
}

fn memory_shrinks_as_entries_leave() {
    let server = RedisServer::start(&[]);
    let a = builder(&server, "m:")
        .local(LocalMode::Strict)
        .profile("blog.*", Profile::new().timeout(Duration::from_millis(300)))
        .build()
        .unwrap();
    for c in 0..500 {
        let _: u64 = a.get_or_compute(&count(c), || 1).unwrap();
    }
    let (entries, slots) = a.local_sizes();
    assert!(
        entries >= 400 && slots >= 400,
        "filled: {entries} entries, {slots} slots"
    );
    std::thread::sleep(Duration::from_millis(400));
    wait_until("expired entries to leave", Duration::from_secs(5), || {
        a.local_sizes() == (0, 0)
    });
}

fn values_are_shared_not_cloned_or_decoded() {
    let server = RedisServer::start(&[]);
    let a = builder(&server, "v:")
        .local(LocalMode::TtlOnly)
        .build()
        .unwrap();
    let first = a
        .get_or_compute_arc(&count(1), || vec![Article::new(1)])
        .unwrap();
    let second = a
        .get_or_compute_arc(&count(1), || -> Vec<Article> { unreachable!() })
        .unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &second),
        "a local hit clones the Arc"
    );
    // The same read asked as another type is a miss, not a panic.
    let other: Vec<i64> = a.get_or_compute(&count(1), || vec![7]).unwrap();
    assert_eq!(other, vec![7]);
}

fn tracked_works_when_the_url_asks_for_resp3() {
    let server = RedisServer::start(&[]);
    let url = format!("{}?protocol=resp3", server.url());
    let a = Cache::builder()
        .redis(&url)
        .prefix("r3:")
        .local(LocalMode::Tracked)
        .build()
        .unwrap();
    let b = builder(&server, "r3:").build().unwrap();
    wait_until("the push channel", Duration::from_secs(3), || {
        a.push_channel_up()
    });
    warm_local(&a, &count(1), 1);
    b.on_insert("blog.article", &Article::new(1)).unwrap();
    wait_until("the fresh value", Duration::from_millis(100), || {
        a.get_or_compute(&count(1), || 2u64).unwrap() == 2
    });
}

fn own_writes_reach_local_copies_after_redis_lost_everything() {
    let server = RedisServer::start(&[]);
    for mode in [
        LocalMode::TtlOnly,
        LocalMode::Bounded(Duration::from_secs(60)),
    ] {
        let a = builder(&server, "lost:").local(mode).build().unwrap();
        warm_local(&a, &count(1), 1);
        let _: () = redis::cmd("FLUSHDB").query(&mut server.conn()).unwrap();
        a.on_insert("blog.article", &Article::new(1)).unwrap();
        let v: u64 = a.get_or_compute(&count(1), || 2).unwrap();
        assert_eq!(
            v, 2,
            "{mode:?}: this process' write did not reach its local copy"
        );
    }
}

fn redis_unreachable_local_tiers_serve_only_what_they_may() {
    let server = RedisServer::start(&[]);
    let opts = |b: Builder| {
        b.degrade_on_failure(true)
            .io_timeout(Duration::from_millis(150))
            .connect_timeout(Duration::from_millis(150))
            .retry_after(Duration::from_millis(50))
    };
    let strict = opts(builder(&server, "down:").local(LocalMode::Strict))
        .build()
        .unwrap();
    let tracked = opts(builder(&server, "down:").local(LocalMode::Tracked))
        .build()
        .unwrap();
    wait_until("the push channel", Duration::from_secs(3), || {
        tracked.push_channel_up()
    });
    warm_local(&strict, &count(1), 1);
    warm_local(&tracked, &count(1), 1);
    server.pause(); // frozen: no confirmation, no pushes
                    // Strict cannot confirm: it degrades to the loader, never to its local copy.
    let v: u64 = strict.get_or_compute(&count(1), || 2).unwrap();
    assert_eq!(v, 2, "strict served an unconfirmed local copy");
    // Tracked notices the silent channel within two heartbeats, then stops serving locally.
    wait_until(
        "the push channel to be given up",
        Duration::from_secs(2),
        || !tracked.push_channel_up(),
    );
    let v: u64 = tracked.get_or_compute(&count(1), || 3).unwrap();
    assert_eq!(v, 3, "tracked served locally without its push channel");
    server.resume();
}

/// The child role: one invalidation, as another process would make it.
fn child_writer(url: String, prefix: String) {
    let cache = Cache::builder().redis(url).prefix(prefix).build().unwrap();
    cache.on_insert("blog.article", &Article::new(1)).unwrap();
}

fn main() {
    if let (Ok(url), Ok(prefix)) = (std::env::var(CHILD_URL), std::env::var(CHILD_PREFIX)) {
        child_writer(url, prefix);
        return;
    }
    let tests: &[(&str, fn())] = &[
        (
            "strict_hits_are_confirmed_and_see_other_processes_writes",
            strict_hits_are_confirmed_and_see_other_processes_writes,
        ),
        (
            "tracked_stops_serving_within_100ms_of_another_process_write",
            tracked_stops_serving_within_100ms_of_another_process_write,
        ),
        (
            "killed_push_connection_serves_nothing_locally_until_back",
            killed_push_connection_serves_nothing_locally_until_back,
        ),
        (
            "restarted_redis_leaves_no_tier_serving_old_values",
            restarted_redis_leaves_no_tier_serving_old_values,
        ),
        (
            "bounded_serves_unconfirmed_only_within_its_bound",
            bounded_serves_unconfirmed_only_within_its_bound,
        ),
        (
            "local_get_keeps_its_copy_but_reads_its_own_writes",
            local_get_keeps_its_copy_but_reads_its_own_writes,
        ),
        (
            "memory_shrinks_as_entries_leave",
            memory_shrinks_as_entries_leave,
        ),
        (
            "values_are_shared_not_cloned_or_decoded",
            values_are_shared_not_cloned_or_decoded,
        ),
        (
            "tracked_works_when_the_url_asks_for_resp3",
            tracked_works_when_the_url_asks_for_resp3,
        ),
        (
            "own_writes_reach_local_copies_after_redis_lost_everything",
            own_writes_reach_local_copies_after_redis_lost_everything,
        ),
        (
            "redis_unreachable_local_tiers_serve_only_what_they_may",
            redis_unreachable_local_tiers_serve_only_what_they_may,
        ),
    ];
    common::run_tests(tests, Duration::from_secs(60));
}
