//! Dog-pile prevention against a real Redis: one loader per entry across threads and
//! processes (this binary re-executed as the other processes), a lock holder killed
//! mid-load, failing loaders. Own harness: every test has a time limit, and the child roles
//! need no test of their own. Prints `N passed, N failed`.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::{Child, Command};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::RedisServer;
use stampcache::{Builder, Cache, Cond, Error, LoadError, Profile, Read};

const ROLE: &str = "STAMPCACHE_DOGPILE_ROLE";
const URL: &str = "STAMPCACHE_DOGPILE_URL";
const START: &str = "STAMPCACHE_DOGPILE_START_MS";

fn read() -> Read {
    Read::fetch("blog.article").filter(Cond::eq("category", 1))
}

fn builder(url: &str) -> Builder {
    Cache::builder()
        .redis(url)
        .prefix("dogpile:")
        .profile("blog.*", Profile::new().lock(true))
        .lock_timeout(Duration::from_millis(800))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The "database": counts its calls in Redis (so every process counts in one place), sleeps.
fn slow_load(url: &str, sleep: Duration) -> Vec<u64> {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    let n: u64 = redis::cmd("INCR").arg("calls").query(&mut c).unwrap();
    std::thread::sleep(sleep);
    vec![n]
}

fn calls(url: &str) -> u64 {
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    redis::cmd("GET")
        .arg("calls")
        .query::<Option<u64>>(&mut c)
        .unwrap()
        .unwrap_or(0)
}

fn child(role: &str, url: &str, start_ms: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .env(ROLE, role)
        .env(URL, url)
        .env(START, start_ms.to_string())
        .spawn()
        .unwrap()
}

/// The child roles.
fn run_child(role: &str) {
    let url = std::env::var(URL).unwrap();
    let start: u64 = std::env::var(START).unwrap().parse().unwrap();
    let cache = builder(&url).build().unwrap();
    std::thread::sleep(Duration::from_millis(start.saturating_sub(now_ms())));
    match role {
        // Four threads miss the entry at the start time.
        "miss" => {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let (cache, url) = (cache.clone(), url.clone());
                    std::thread::spawn(move || {
                        let v: Vec<u64> = cache
                            .get_or_compute(&read(), || slow_load(&url, Duration::from_millis(200)))
                            .unwrap();
                        assert_eq!(v, vec![1]);
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        }
        // Takes the lock and loads for far longer than the test waits: it will be killed.
        "hold" => {
            let _: Vec<u64> = cache
                .get_or_compute(&read(), || slow_load(&url, Duration::from_secs(60)))
                .unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

fn sixteen_threads_and_four_processes_load_once() {
    let server = RedisServer::start(&[]);
    let url = server.url();
    let start = now_ms() + 700;
    let children: Vec<Child> = (0..4).map(|_| child("miss", &url, start)).collect();
    let cache = builder(&url).build().unwrap();
    let hs: Vec<_> = (0..16)
        .map(|_| {
            let (cache, url) = (cache.clone(), url.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(start.saturating_sub(now_ms())));
                let v: Vec<u64> = cache
                    .get_or_compute(&read(), || slow_load(&url, Duration::from_millis(200)))
                    .unwrap();
                v
            })
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), vec![1]);
    }
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a child process failed");
    }
    assert_eq!(calls(&url), 1, "the database was called more than once");
    assert_eq!(cache.flights_in_progress(), 0);
}

fn a_killed_lock_holder_is_taken_over_after_the_lock_time() {
    let server = RedisServer::start(&[]);
    let url = server.url();
    let mut holder = child("hold", &url, now_ms());
    let deadline = Instant::now() + Duration::from_secs(10);
    while calls(&url) == 0 {
        assert!(
            Instant::now() < deadline,
            "the holder never started loading"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let cache = builder(&url).build().unwrap();
    let barrier = Arc::new(Barrier::new(4));
    let started = Instant::now();
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let (cache, url, barrier) = (cache.clone(), url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let v: Vec<u64> = cache
                    .get_or_compute(&read(), || slow_load(&url, Duration::from_millis(100)))
                    .unwrap();
                v
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    holder.kill().unwrap(); // SIGKILL mid-load: its lock stays until it expires
    holder.wait().unwrap();
    let results: Vec<Vec<u64>> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(results.iter().all(|r| *r == vec![2]), "{results:?}");
    assert_eq!(
        calls(&url),
        2,
        "one waiter took over, the others got its result"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "took over before the lock could have expired ({:?})",
        started.elapsed()
    );
}

fn failing_loaders_wake_every_waiter_and_one_retries() {
    let server = RedisServer::start(&[]);
    let cache = builder(&server.url()).build().unwrap();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(8));
    let hs: Vec<_> = (0..8)
        .map(|i| {
            let (cache, calls, barrier) = (cache.clone(), calls.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let r = catch_unwind(AssertUnwindSafe(|| {
                    cache.get_or_load(&read(), || {
                        let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(100));
                        match n {
                            0 => Err("database error"),
                            1 => panic!("loader panicked (thread {i})"),
                            _ => Ok(vec![7u64]),
                        }
                    })
                }));
                r.map_err(|_| "panicked")
            })
        })
        .collect();
    let results: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = results
        .iter()
        .filter(|r| matches!(r, Ok(Ok(v)) if *v == vec![7]))
        .count();
    let errs = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(LoadError::Loader(_)))))
        .count();
    let panics = results.iter().filter(|r| r.is_err()).count();
    assert_eq!((ok, errs, panics), (6, 1, 1), "{results:?}");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
    assert_eq!(cache.flights_in_progress(), 0, "no flight left behind");
}

fn without_retries_waiters_get_an_error_at_once() {
    let server = RedisServer::start(&[]);
    let cache = builder(&server.url())
        .retry_failed_loads(false)
        .build()
        .unwrap();
    let barrier = Arc::new(Barrier::new(4));
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let (cache, barrier) = (cache.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                cache.get_or_load(&read(), || {
                    std::thread::sleep(Duration::from_millis(150));
                    Err::<Vec<u64>, _>("database error")
                })
            })
        })
        .collect();
    let results: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    let leaders = results
        .iter()
        .filter(|r| matches!(r, Err(LoadError::Loader(_))))
        .count();
    let followers = results
        .iter()
        .filter(|r| matches!(r, Err(LoadError::Cache(Error::LoaderFailed))))
        .count();
    assert!(leaders >= 1 && leaders + followers == 4, "{results:?}");
}

fn a_hit_costs_no_lock() {
    let server = RedisServer::start(&[]);
    let cache = builder(&server.url()).build().unwrap();
    let _: Vec<u64> = cache.get_or_compute(&read(), || vec![1]).unwrap();
    let mut monitor = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    use std::io::{BufRead, BufReader, Write};
    monitor.write_all(b"MONITOR\r\n").unwrap();
    let mut lines = BufReader::new(monitor.try_clone().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "+OK");
    let _: Vec<u64> = cache.get_or_compute(&read(), || unreachable!()).unwrap();
    let mut conn = server.conn();
    let _: String = redis::cmd("ECHO")
        .arg("end-marker")
        .query(&mut conn)
        .unwrap();
    let mut seen = Vec::new();
    for line in lines {
        let line = line.unwrap();
        if line.contains("end-marker") {
            break;
        }
        seen.push(line);
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains("\"MGET\""), "{seen:?}");
}

fn stale_while_revalidate_serves_the_old_value_during_one_reload() {
    let server = RedisServer::start(&[]);
    let url = server.url();
    let grace = Duration::from_secs(2);
    let cache = Cache::builder()
        .redis(&url)
        .prefix("swr:")
        .profile("blog.article", Profile::new().stale_while_revalidate(grace))
        .build()
        .unwrap();
    let first = cache.get_or_compute_answer(&read(), || vec![1u64]).unwrap();
    assert_eq!(((*first.value).clone(), first.stale), (vec![1], false));
    cache
        .on_insert("blog.article", &common::Article::new(1))
        .unwrap();

    let (c, u) = (cache.clone(), url.clone());
    let reloader = std::thread::spawn(move || {
        c.get_or_compute_answer(&read(), || {
            let _ = slow_load(&u, Duration::from_millis(500));
            vec![2u64]
        })
        .unwrap()
    });
    while calls(&url) == 0 {
        std::thread::sleep(Duration::from_millis(2)); // until the reload is under way
    }
    let started = Instant::now();
    for _ in 0..100 {
        let a = cache
            .get_or_compute_answer(&read(), || -> Vec<u64> { panic!("a second loader ran") })
            .unwrap();
        assert_eq!(((*a.value).clone(), a.stale), (vec![1], true));
    }
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "stale reads waited: {:?}",
        started.elapsed()
    );
    let fresh = reloader.join().unwrap();
    assert_eq!(((*fresh.value).clone(), fresh.stale), (vec![2], false));
    assert_eq!(calls(&url), 1, "the loader ran once");
    let after = cache.get_or_compute_answer(&read(), || vec![0u64]).unwrap();
    assert_eq!(((*after.value).clone(), after.stale), (vec![2], false));

    // Past the grace, an invalidated entry is never served.
    cache
        .on_insert("blog.article", &common::Article::new(1))
        .unwrap();
    std::thread::sleep(grace + Duration::from_millis(200));
    let late = cache.get_or_compute_answer(&read(), || vec![3u64]).unwrap();
    assert_eq!(((*late.value).clone(), late.stale), (vec![3], false));

    // A profile that did not ask for it never gets a stale value.
    let plain = Cache::builder().redis(&url).prefix("swr:").build().unwrap();
    plain
        .on_insert("blog.article", &common::Article::new(1))
        .unwrap();
    let v = plain.get_or_compute_answer(&read(), || vec![4u64]).unwrap();
    assert_eq!(((*v.value).clone(), v.stale), (vec![4], false));
}

fn a_scope_that_wrote_never_waits_on_the_lock() {
    let server = RedisServer::start(&[]);
    let url = server.url();
    let cache = builder(&url).build().unwrap();
    // Another caller holds the loader lock of the read for a long load.
    let (c, u) = (cache.clone(), url.clone());
    let holder = std::thread::spawn(move || {
        let _: Vec<u64> = c
            .get_or_compute(&read(), || slow_load(&u, Duration::from_millis(700)))
            .unwrap();
    });
    while calls(&url) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let scope = cache.atomic();
    scope
        .on_insert("blog.article", &common::Article::new(1))
        .unwrap();
    let started = Instant::now();
    let v: Vec<u64> = scope.get_or_compute(&read(), || vec![42]).unwrap();
    assert_eq!(v, vec![42], "the scope read its own transaction");
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "the scope waited on the lock: {:?}",
        started.elapsed()
    );
    scope.commit().unwrap();
    holder.join().unwrap();
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        run_child(&role);
        return;
    }
    let tests: &[(&str, fn())] = &[
        (
            "sixteen_threads_and_four_processes_load_once",
            sixteen_threads_and_four_processes_load_once,
        ),
        (
            "a_killed_lock_holder_is_taken_over_after_the_lock_time",
            a_killed_lock_holder_is_taken_over_after_the_lock_time,
        ),
        (
            "failing_loaders_wake_every_waiter_and_one_retries",
            failing_loaders_wake_every_waiter_and_one_retries,
        ),
        (
            "without_retries_waiters_get_an_error_at_once",
            without_retries_waiters_get_an_error_at_once,
        ),
        ("a_hit_costs_no_lock", a_hit_costs_no_lock),
        (
            "stale_while_revalidate_serves_the_old_value_during_one_reload",
            stale_while_revalidate_serves_the_old_value_during_one_reload,
        ),
        (
            "a_scope_that_wrote_never_waits_on_the_lock",
            a_scope_that_wrote_never_waits_on_the_lock,
        ),
    ];
    common::run_tests(tests, Duration::from_secs(60));
}
