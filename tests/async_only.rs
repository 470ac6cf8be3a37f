//! What only the async front end can get wrong, against a real Redis (the rest runs in the
//! shared suites): cancellation (read futures dropped at random points of a miss, replays
//! dropped mid-flight, which must leave no lock held, no waiter stuck, no half-written
//! entry served and no invalidation lost), `Send` futures, and one loader across tasks.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::front::runtime;
use common::{shared_redis_url, unique_prefix, Article, RedisServer};
use stampcache::{AsyncCache, Cache, Cond, Error, Profile, Read};

fn get(id: i64) -> Read {
    Read::get("blog.article").filter(Cond::eq("id", id))
}

/// A small deterministic generator (xorshift), so a failing run can be repeated.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Keys of this prefix that are loader locks (or their waiter lists).
fn lock_keys(prefix: &str) -> Vec<String> {
    let client = redis::Client::open(shared_redis_url()).expect("a Redis URL");
    let mut conn = client.get_connection().expect("Redis is reachable");
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut conn)
        .expect("KEYS");
    keys.retain(|k| k.ends_with(":lock") || k.ends_with(":waiters"));
    keys
}

fn cache_with_lock(prefix: &str) -> AsyncCache {
    let _rt = runtime().enter();
    Cache::builder()
        .redis(shared_redis_url())
        .prefix(prefix)
        .profile("blog.*", Profile::new().lock(true))
        .lock_timeout(Duration::from_secs(30))
        .build_async()
        .expect("an async cache")
}

#[test]
fn dropped_misses_leave_no_lock_and_every_key_readable() {
    let prefix = unique_prefix("cancel");
    let cache = cache_with_lock(&prefix);
    // The database: one version number per row; a loader reads it after a delay.
    let db: Arc<Vec<AtomicU64>> = Arc::new((0..8).map(|_| AtomicU64::new(0)).collect());
    let loads = Arc::new(AtomicUsize::new(0));
    let load = |id: i64, delay_us: u64| {
        let (db, loads) = (db.clone(), loads.clone());
        move || async move {
            let version = db[id as usize].load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_micros(delay_us)).await;
            loads.fetch_add(1, Ordering::SeqCst);
            let mut a = Article::new(id);
            a.title = format!("v{version}");
            a
        }
    };
    runtime().block_on(async {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut cancelled = 0;
        for round in 0..200 {
            // A burst of concurrent reads of few keys, each with a tiny time limit: leaders
            // and followers are dropped at every await point of the miss path.
            let mut burst = Vec::new();
            for _ in 0..8 {
                let id = rng.below(4) as i64;
                let limit = Duration::from_micros(rng.below(3_000));
                let loader = load(id, rng.below(2_000));
                let c = cache.clone();
                burst.push(tokio::spawn(async move {
                    tokio::time::timeout(limit, c.get_or_compute(&get(id), loader)).await
                }));
            }
            for r in burst {
                match r.await.expect("no task panicked") {
                    Ok(v) => {
                        v.expect("no cache error");
                    }
                    Err(_) => cancelled += 1,
                }
            }
            if round % 4 == 0 {
                // A write now and then: later reads must see it (and miss, so the time
                // limits have misses to cancel on a fast machine too).
                let id = rng.below(4) as i64;
                db[id as usize].fetch_add(1, Ordering::SeqCst);
                cache
                    .on_update("blog.article", &Article::new(id), &Article::new(id))
                    .await
                    .expect("invalidation");
            }
        }
        assert!(
            cancelled > 100,
            "the time limits cancelled too few reads ({cancelled})"
        );
    });
    // Locks of dropped leaders are released by spawned tasks: give them a moment (far less
    // than the locks' 30 s lifetime, so none of them merely expired).
    let mut left = lock_keys(&prefix);
    for _ in 0..40 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        left = lock_keys(&prefix);
    }
    assert_eq!(left, Vec::<String>::new(), "a lock outlived its reader");
    assert_eq!(
        cache.flights_in_progress(),
        0,
        "a flight outlived its leader"
    );
    runtime().block_on(async {
        for id in 0..4 {
            let read = tokio::time::timeout(
                Duration::from_secs(5),
                cache.get_or_compute(&get(id), load(id, 0)),
            )
            .await
            .expect("no reader is stuck")
            .expect("the key is readable");
            let version = db[id as usize].load(Ordering::SeqCst);
            assert_eq!(
                read.title,
                format!("v{version}"),
                "a stale entry was served"
            );
        }
    });
}

#[test]
fn a_dropped_replay_keeps_its_invalidations() {
    let mut server = RedisServer::start(&[]);
    let prefix = unique_prefix("cancel_replay");
    let cache = {
        let _rt = runtime().enter();
        Cache::builder()
            .redis(server.url())
            .prefix(&*prefix)
            .io_timeout(Duration::from_millis(200))
            .retry_after(Duration::ZERO)
            .build_async()
            .expect("an async cache")
    };
    runtime().block_on(async {
        let v: u64 = cache.get_or_compute(&get(1), || async { 1 }).await.unwrap();
        assert_eq!(v, 1);
        server.pause();
        // The write's invalidation cannot reach Redis: it is queued.
        assert!(cache
            .on_update("blog.article", &Article::new(1), &Article::new(1))
            .await
            .is_err());
        let queued = cache.pending_invalidations();
        assert!(queued > 0);
        server.resume();
        // Replays cut short at random points: the queue never loses the item.
        for us in [0, 50, 100, 200, 400, 800] {
            let _ = tokio::time::timeout(Duration::from_micros(us), cache.flush_pending()).await;
            let left = cache.pending_invalidations();
            assert!(left == queued || left == 0, "{left} of {queued} left");
        }
        cache.flush_pending().await.expect("the replay completes");
        assert_eq!(cache.pending_invalidations(), 0);
        let v: u64 = cache.get_or_compute(&get(1), || async { 2 }).await.unwrap();
        assert_eq!(v, 2, "the queued invalidation was lost");
    });
    server.stop();
}

#[test]
fn futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let cache = {
        let _rt = runtime().enter();
        Cache::builder().build_async().unwrap()
    };
    let read = get(1);
    let f = cache.get_or_compute(&read, || async { 1u64 });
    send(&f);
    let scope = cache.atomic();
    let g = scope.get_or_compute(&read, || async { 1u64 });
    send(&g);
    let row = Article::new(1);
    let w = cache.on_insert("blog.article", &row);
    send(&w);
}

#[test]
fn one_loader_for_many_tasks_across_caches() {
    // Two async caches stand for two processes; with `lock`, 64 concurrent misses of one
    // entry run the loader once in all.
    let prefix = unique_prefix("async_dogpile");
    let caches = [cache_with_lock(&prefix), cache_with_lock(&prefix)];
    let loads = Arc::new(AtomicUsize::new(0));
    runtime().block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let cache = caches[i % 2].clone();
                let loads = loads.clone();
                tokio::spawn(async move {
                    cache
                        .get_or_compute(&get(9), || async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            Article::new(9)
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), Article::new(9));
        }
    });
    assert_eq!(loads.load(Ordering::SeqCst), 1, "more than one loader ran");
    assert_eq!(lock_keys(&prefix), Vec::<String>::new());
}

#[test]
fn redis_down_degrades_never_stale_and_recovers() {
    let mut server = RedisServer::start(&[]);
    let cache = {
        let _rt = runtime().enter();
        Cache::builder()
            .redis(server.url())
            .prefix(&*unique_prefix("async_down"))
            .degrade_on_failure(true)
            .io_timeout(Duration::from_millis(200))
            .retry_after(Duration::ZERO)
            .build_async()
            .expect("an async cache")
    };
    runtime().block_on(async {
        let one = get(1);
        let read = |v: u64| cache.get_or_compute(&one, move || async move { v });
        assert_eq!(read(1).await.unwrap(), 1);
        assert_eq!(read(9).await.unwrap(), 1, "cached");
        server.pause();
        // Degrading: the write is queued and says so; the read runs its loader (never the
        // old value).
        let queued = cache
            .on_update("blog.article", &Article::new(1), &Article::new(1))
            .await;
        assert!(
            matches!(queued, Err(Error::InvalidationQueued(_))),
            "{queued:?}"
        );
        assert!(cache.pending_invalidations() > 0);
        assert_eq!(read(2).await.unwrap(), 2);
        server.resume();
        // The queue is replayed before the next read: the old entry is dead.
        assert_eq!(read(3).await.unwrap(), 3);
        assert_eq!(cache.pending_invalidations(), 0);
        assert_eq!(read(9).await.unwrap(), 3, "cached again");
    });
    // A restarted (empty) server: the connection is remade and caching resumes.
    server.restart();
    runtime().block_on(async {
        let one = get(1);
        let read = |v: u64| cache.get_or_compute(&one, move || async move { v });
        assert_eq!(
            read(4).await.unwrap(),
            4,
            "the old entry is gone with the server"
        );
        // The first calls may find the connection broken (and degrade); then a loaded
        // value is stored and served from the cache again.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut next = 5;
        loop {
            let v = read(next).await.unwrap();
            if v != next {
                assert!(v < next, "{v}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "caching did not resume after a restart"
            );
            next += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}
