//! Mistakes and outages that must fail loudly and say what happened: a server that never
//! answers (timeouts), credentials in URLs (never printed), malformed URLs.

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::front::BuildFor;
use common::{Backend, Kind, Loads};
use stampcache::{Cache, Cond, Dep, Error, LoadError, Read};

crate::backend_suite!(
    [embedded => Embedded, redis => Redis, redis_local_strict => RedisStrict, redis_local_tracked => RedisTracked,
     async_embedded => AsyncEmbedded, async_redis => AsyncRedis, async_redis_local_strict => AsyncRedisStrict,
     async_redis_local_tracked => AsyncRedisTracked];
    empty_field_names_are_refused_everywhere,
    empty_table_names_are_refused_in_reads_and_writes,
    extra_parts_add_up_and_stay_apart,
    stats_count_the_stores_hits_and_misses,
    prepared_reads_take_fallible_loaders,
);

fn invalid_name(e: Error, says: &str) {
    assert!(
        matches!(e, Error::InvalidName(_)),
        "an InvalidName error: {e:?}"
    );
    let text = e.to_string();
    assert!(text.contains(says), "{text:?} should say {says:?}");
}

/// `Cond::eq("", ..)` used to be cached under the whole-table scheme and never invalidated
/// by a row whose `""` field matched. It is refused, in every kind of read.
fn empty_field_names_are_refused_everywhere(b: Backend) {
    let cache = b.builder("empty-field").build_for(b).unwrap();
    let loads = Loads::default();
    let read = Read::fetch("blog.article").filter(Cond::eq("", 1));
    let e = cache.get_or_compute(&read, loads.of(5_u64)).unwrap_err();
    invalid_name(e, "empty field name");
    assert_eq!(loads.count(), 0, "refused before the loader runs");
    // Nested, on a joined table, in IN and IS NULL.
    for cond in [
        Cond::eq("category", 1).and(Cond::eq("", 1).or(Cond::eq("id", 2))),
        Cond::eq(("blog.author", ""), 1),
        Cond::is_in("", [1, 2]),
        Cond::is_null("").not(),
    ] {
        let read = Read::fetch("blog.article").filter(cond);
        let e = cache.get_or_compute(&read, loads.of(5_u64)).unwrap_err();
        invalid_name(e, "empty field name");
    }
    // A joined table with an empty name.
    let read = Read::fetch("blog.article").filter(Cond::eq(("", "name"), 1));
    invalid_name(
        cache.get_or_compute(&read, loads.of(5_u64)).unwrap_err(),
        "empty table",
    );
    // Through a scope, a prepared read and cached_as.
    let scope = cache.atomic();
    invalid_name(
        scope.get_or_compute(&read, loads.of(5_u64)).unwrap_err(),
        "empty table",
    );
    scope.rollback();
    let prepared = cache.prepare(&Read::get("blog.article").filter(Cond::eq("", 1)));
    for _ in 0..2 {
        invalid_name(
            prepared.get_or_compute(loads.of(5_u64)).unwrap_err(),
            "empty field name",
        );
    }
    let e = cache
        .cached_as([Dep::from(
            Read::count("blog.article").filter(Cond::eq("", 1)),
        )])
        .name("report")
        .get_or_compute(loads.of(5_u64))
        .unwrap_err();
    invalid_name(e, "empty field name");
    assert_eq!(loads.count(), 0);

    // What used to happen: a row whose "" field is 1 must kill such a read. Now the read is
    // refused instead; a proper field name works as usual.
    let good = Read::fetch("blog.article").filter(Cond::eq("flag", 1));
    let n: u64 = cache.get_or_compute(&good, loads.of(5)).unwrap();
    assert_eq!(n, 5);
    cache
        .on_insert("blog.article", &serde_json::json!({"flag": 1, "": 1}))
        .unwrap();
    let n: u64 = cache.get_or_compute(&good, loads.of(6)).unwrap();
    assert_eq!((n, loads.count()), (6, 2));
}

/// An empty table name in a read or a write is refused; no read could name it.
fn empty_table_names_are_refused_in_reads_and_writes(b: Backend) {
    let cache = b.builder("empty-table").build_for(b).unwrap();
    let loads = Loads::default();
    let row = serde_json::json!({"id": 1, "category": 1});
    invalid_name(
        cache
            .get_or_compute(&Read::fetch(""), loads.of(5_u64))
            .unwrap_err(),
        "empty table",
    );
    invalid_name(
        cache
            .get_or_compute(
                &Read::count("").filter(Cond::eq("category", 1)),
                loads.of(5_u64),
            )
            .unwrap_err(),
        "empty table",
    );
    invalid_name(
        cache
            .cached_as([Dep::table("")])
            .get_or_compute(loads.of(5_u64))
            .unwrap_err(),
        "empty table",
    );
    invalid_name(
        cache
            .get_or_compute(
                &Read::fetch("blog.article").filter(Cond::other_on("", "x > 1")),
                loads.of(5_u64),
            )
            .unwrap_err(),
        "empty table",
    );
    assert_eq!(loads.count(), 0);
    invalid_name(cache.on_insert("", &row).unwrap_err(), "on_insert");
    invalid_name(cache.on_update("", &row, &row).unwrap_err(), "on_update");
    invalid_name(cache.on_delete("", &row).unwrap_err(), "on_delete");
    invalid_name(
        cache.invalidate_obj("", &row).unwrap_err(),
        "invalidate_obj",
    );
    invalid_name(cache.invalidate_model("").unwrap_err(), "invalidate_model");
    invalid_name(
        cache.invalidated_update("", [(&row, &row)]).unwrap_err(),
        "invalidated_update",
    );
    invalid_name(
        cache.invalidate_rows("", Vec::new()).unwrap_err(),
        "invalidate_rows",
    );
    let scope = cache.atomic();
    invalid_name(scope.on_insert("", &row).unwrap_err(), "on_insert");
    invalid_name(scope.invalidate_model("").unwrap_err(), "invalidate_model");
    invalid_name(
        scope
            .get_or_compute(&Read::get(""), loads.of(5_u64))
            .unwrap_err(),
        "empty table",
    );
    scope.commit().unwrap();
    assert_eq!(cache.pending_invalidations(), 0);
}

/// A loopback server that accepts connections and never answers (nor closes them).
struct Silent {
    port: u16,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = held.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                keep.lock().unwrap().push(conn);
            }
        });
        Silent { port, _held: held }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

fn read() -> Read {
    Read::fetch("blog.article").filter(Cond::eq("category", 1))
}

/// The documented defaults (1 s to connect, 1 s for an answer) bound a call to a server
/// that never answers, and the error says it timed out, where.
fn check_timeout(e: &Error, elapsed: Duration, port: u16) {
    eprintln!("{elapsed:?} {e:?} / {e}");
    assert!(
        elapsed < Duration::from_millis(1500),
        "a silent server must fail within the 1 s timeout, took {elapsed:?}"
    );
    assert!(e.is_unavailable(), "a timeout means unavailable: {e:?}");
    assert!(matches!(e, Error::Timeout { .. }), "a timeout error: {e:?}");
    let text = e.to_string();
    assert!(
        text.contains("timed out after 1s") && text.contains(&format!("127.0.0.1:{port}")),
        "the message says what timed out and where: {text}"
    );
}

#[test]
fn a_silent_server_times_out_within_the_documented_second_blocking() {
    let silent = Silent::start();
    let cache = Cache::from_url(&silent.url()).unwrap();
    let started = Instant::now();
    let e = cache.get_or_compute(&read(), || 5_u64).unwrap_err();
    check_timeout(&e, started.elapsed(), silent.port);
    let started = Instant::now();
    let e = cache
        .on_insert("blog.article", &serde_json::json!({"id": 1, "category": 1}))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert!(e.is_unavailable(), "{e:?}");
}

#[test]
fn a_silent_server_times_out_within_the_documented_second_async() {
    let silent = Silent::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let cache = {
        let _in = rt.enter();
        Cache::builder().redis(silent.url()).build_async().unwrap()
    };
    let started = Instant::now();
    let e = rt
        .block_on(cache.get_or_compute(&read(), || async { 5_u64 }))
        .unwrap_err();
    check_timeout(&e, started.elapsed(), silent.port);
}

/// A server that answered, then stops answering (SIGSTOP): the next request fails within
/// the response timeout, as a timeout while waiting.
#[test]
fn a_server_that_stops_answering_times_out_waiting_on_both_front_ends() {
    let server = common::RedisServer::start(&[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let blocking = Cache::from_url(&server.url()).unwrap();
    let asynch = {
        let _in = rt.enter();
        Cache::builder().redis(server.url()).build_async().unwrap()
    };
    let n: u64 = blocking.get_or_compute(&read(), || 5).unwrap();
    assert_eq!(n, 5);
    let n: u64 = rt
        .block_on(asynch.get_or_compute(&read(), || async { 5 }))
        .unwrap();
    assert_eq!(n, 5);
    // A third cache whose commit sends one pipeline of three scripts: the redis crate
    // alone waited the timeout once per reply (3 s).
    let piped = Cache::from_url(&server.url()).unwrap();
    let n: u64 = piped.get_or_compute(&read(), || 5).unwrap();
    assert_eq!(n, 5);
    let scope = piped.atomic();
    for table in ["blog.article", "blog.author", "blog.tag"] {
        scope
            .on_insert(table, &serde_json::json!({"id": 1, "category": 1}))
            .unwrap();
    }
    server.pause();
    let started = Instant::now();
    let e = scope.commit().unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
    let Error::InvalidationQueued(inner) = &e else {
        panic!("queued: {e:?}");
    };
    assert!(
        matches!(
            **inner,
            Error::Timeout {
                connecting: false,
                ..
            }
        ),
        "{inner:?}"
    );
    let other = Read::fetch("blog.article").filter(Cond::eq("category", 2));
    for e in [
        {
            let started = Instant::now();
            let e = blocking.get_or_compute(&other, || 6_u64).unwrap_err();
            (e, started.elapsed())
        },
        {
            let started = Instant::now();
            let e = rt
                .block_on(asynch.get_or_compute(&other, || async { 6_u64 }))
                .unwrap_err();
            (e, started.elapsed())
        },
    ] {
        let (e, elapsed) = e;
        assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
        assert!(
            matches!(
                e,
                Error::Timeout {
                    connecting: false,
                    ..
                }
            ),
            "a timeout waiting: {e:?}"
        );
        assert!(e
            .to_string()
            .contains("timed out after 1s waiting for Redis at 127.0.0.1:"));
    }
    server.resume();
}

/// Neither `Display` nor `Debug` of an error about a URL shows its password, on both front
/// ends, and the builder's `Debug` does not either.
#[test]
fn bad_urls_never_show_their_password() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for url in [
        "redis://:s3cret@127.0.0.1:notaport/5",
        "redis://alice:s3cret@127.0.0.1:notaport/5",
        "redis://s3cret@[::1/",
        "http://:s3cret@127.0.0.1:6379/",
        ":s3cret@127.0.0.1:6379",
        "unix://?pass=s3cret&db=x",
    ] {
        let builder = Cache::builder().redis(url);
        let shown = format!("{builder:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        let blocking = builder.build().unwrap_err();
        let asynch = {
            let _in = rt.enter();
            Cache::builder().redis(url).build_async().unwrap_err()
        };
        for e in [blocking, asynch] {
            assert!(matches!(e, Error::Config(_)), "{url}: {e:?}");
            let (text, debug) = (e.to_string(), format!("{e:?}"));
            assert!(!text.contains("s3cret"), "{text}");
            assert!(!debug.contains("s3cret"), "{debug}");
            assert!(text.contains("bad Redis URL"), "{text}");
        }
    }
    // The redacted form keeps what helps: scheme, user, host, port, database.
    let e = Cache::from_url("redis://alice:s3cret@127.0.0.1:notaport/5").unwrap_err();
    assert!(
        e.to_string()
            .contains("\"redis://alice:***@127.0.0.1:notaport/5\""),
        "{e}"
    );
}

/// A URL with a scheme Redis is not reached by says so, and lists the accepted ones.
#[test]
fn a_wrong_scheme_is_named_with_the_accepted_ones() {
    for (url, says) in [
        (
            "http://127.0.0.1:6379/",
            "the scheme \"http\" is not one of Redis'",
        ),
        (
            "postgres://127.0.0.1/",
            "the scheme \"postgres\" is not one of Redis'",
        ),
        ("127.0.0.1:6379", "no scheme"),
    ] {
        let e = Cache::from_url(url).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(says), "{text}");
        assert!(
            text.contains("redis://") && text.contains("rediss://") && text.contains("unix://"),
            "the accepted schemes are listed: {text}"
        );
    }
}

/// Wrong credentials at run time: the errors and events say what failed, never the
/// password.
#[test]
fn wrong_credentials_never_show_the_password_in_errors_or_events() {
    let server = common::RedisServer::start(&["--requirepass right-one"]);
    let url = format!("redis://:s3cret-wrong@127.0.0.1:{}/", server.port);
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    let cache = Cache::builder()
        .redis(url)
        .on_event(move |e| log.lock().unwrap().push(format!("{e:?}")))
        .build()
        .unwrap();
    let e = cache.get_or_compute(&read(), || 5_u64).unwrap_err();
    let (text, debug) = (e.to_string(), format!("{e:?}"));
    assert!(
        !text.contains("s3cret") && !debug.contains("s3cret"),
        "{debug}"
    );
    let events = seen.lock().unwrap().join("\n");
    assert!(events.contains("StoreFailed"), "{events}");
    assert!(!events.contains("s3cret"), "{events}");
}

/// `extra` adds a part; it used to replace the earlier text (two reads differing in their
/// first part shared an entry).
fn extra_parts_add_up_and_stay_apart(b: Backend) {
    let cache = b.builder("extra").build_for(b).unwrap();
    let loads = Loads::default();
    let base = || Read::fetch("blog.article").filter(Cond::eq("category", 1));
    let both = || base().extra("ORDER BY id").extra("LIMIT 20");
    let n: u64 = cache.get_or_compute(&both(), loads.of(1)).unwrap();
    assert_eq!(n, 1);
    let n: u64 = cache
        .get_or_compute(
            &base().extra("ORDER BY title").extra("LIMIT 20"),
            loads.of(2),
        )
        .unwrap();
    assert_eq!(n, 2, "the first part is kept: another read");
    let n: u64 = cache
        .get_or_compute(&base().extra("LIMIT 20"), loads.of(3))
        .unwrap();
    assert_eq!(n, 3);
    let n: u64 = cache
        .get_or_compute(&base().extra("ORDER BY idLIMIT 20"), loads.of(4))
        .unwrap();
    assert_eq!(n, 4, "parts never run together");
    let n: u64 = cache.get_or_compute(&both(), loads.of(5)).unwrap();
    assert_eq!((n, loads.count()), (1, 4), "the same parts: the same read");
    // An empty part adds nothing; one part keys as before.
    let n: u64 = cache
        .get_or_compute(&base().extra("").extra("LIMIT 20").extra(""), loads.of(6))
        .unwrap();
    assert_eq!((n, loads.count()), (3, 4));

    let call = |parts: &[&str], v: u64| -> u64 {
        let mut c = cache.cached_as([Dep::table("blog.article")]).name("f");
        for p in parts {
            c = c.extra(p);
        }
        c.get_or_compute(loads.of(v)).unwrap()
    };
    assert_eq!(call(&["a", "b"], 10), 10);
    assert_eq!(call(&["b"], 11), 11, "cached_as keeps earlier parts too");
    assert_eq!(call(&["ab"], 12), 12);
    assert_eq!(call(&["a", "b"], 13), 10);
}

/// A write whose invalidation could not be sent says it was queued for replay (not lost),
/// on both front ends; the queue is sent once Redis answers.
#[test]
fn a_failed_invalidation_says_it_was_queued_for_replay() {
    let server = common::RedisServer::start(&[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let builder = || {
        Cache::builder()
            .redis(server.url())
            .io_timeout(Duration::from_millis(200))
            .connect_timeout(Duration::from_millis(200))
            .retry_after(Duration::from_millis(100))
    };
    let blocking = builder().build().unwrap();
    let asynch = {
        let _in = rt.enter();
        builder().build_async().unwrap()
    };
    let row = serde_json::json!({"id": 1, "category": 1});
    let n: u64 = blocking.get_or_compute(&read(), || 5).unwrap();
    assert_eq!(n, 5);
    server.pause();
    let errors = [
        (
            blocking.on_insert("blog.article", &row).unwrap_err(),
            blocking.pending_invalidations(),
        ),
        (
            rt.block_on(asynch.invalidate_model("blog.article"))
                .unwrap_err(),
            asynch.pending_invalidations(),
        ),
    ];
    for (e, pending) in errors {
        assert!(pending > 0, "queued");
        assert!(e.is_unavailable(), "{e:?}");
        let Error::InvalidationQueued(inner) = &e else {
            panic!("an InvalidationQueued error: {e:?}");
        };
        assert!(inner.is_unavailable(), "{inner:?}");
        assert!(
            e.to_string().starts_with("invalidation queued for replay"),
            "{e}"
        );
    }
    server.resume();
    std::thread::sleep(Duration::from_millis(150)); // past retry_after
    blocking.flush_pending().unwrap();
    assert_eq!(blocking.pending_invalidations(), 0);
    let loads = Loads::default();
    let n: u64 = blocking.get_or_compute(&read(), loads.of(6)).unwrap();
    assert_eq!(
        (n, loads.count()),
        (6, 1),
        "the queued invalidation was sent"
    );
}

/// The embedded store never keeps an entry heavier than its whole capacity (it used to,
/// at the cost of everything else), and an older value of that key goes too.
#[test]
fn the_embedded_store_keeps_no_entry_larger_than_its_capacity() {
    let cache = Cache::builder().embedded(4096).build().unwrap();
    let loads = Loads::default();
    // Bytes the codec cannot pack smaller.
    let noise = |n: usize| -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let small = Read::get("blog.article").filter(Cond::eq("id", 1));
    let big = Read::get("blog.article").filter(Cond::eq("id", 2));
    let v: Vec<u8> = cache
        .get_or_compute(&small, loads.of(vec![1; 100]))
        .unwrap();
    assert_eq!(v.len(), 100);
    for round in 1..=2 {
        let v: Vec<u8> = cache.get_or_compute(&big, loads.of(noise(10_000))).unwrap();
        assert_eq!(v.len(), 10_000);
        assert_eq!(loads.count(), 1 + round, "the big value is never kept");
    }
    let v: Vec<u8> = cache.get_or_compute(&small, loads.of(vec![9])).unwrap();
    assert_eq!((v.len(), loads.count()), (100, 3), "the small one stays");

    let simple = cache.simple();
    simple
        .set("k", &vec![1_u8; 10], Duration::from_secs(60))
        .unwrap();
    simple
        .set("k", &noise(10_000), Duration::from_secs(60))
        .unwrap();
    assert!(
        matches!(simple.get::<Vec<u8>>("k"), Err(Error::CacheMiss)),
        "neither the big value nor the one it replaced: {:?}",
        simple.get::<Vec<u8>>("k").map(|v| v.len())
    );
}

/// `stats()` counts the store's hits and misses, not only the local tier's: with Redis
/// alone it used to say nothing at all.
fn stats_count_the_stores_hits_and_misses(b: Backend) {
    let cache = b.builder("stats").build_for(b).unwrap();
    let loads = Loads::default();
    let read = || Read::fetch("blog.article").filter(Cond::eq("category", 1));
    let n: u64 = cache.get_or_compute(&read(), loads.of(5)).unwrap();
    assert_eq!(n, 5);
    let s = cache.stats();
    assert_eq!((s.shared.misses, s.shared.hits), (1, 0), "{s:?}");
    for _ in 0..3 {
        let n: u64 = cache.get_or_compute(&read(), loads.of(6)).unwrap();
        assert_eq!(n, 5);
    }
    let s = cache.stats();
    assert_eq!(s.shared.misses, 1, "{s:?}");
    assert_eq!(
        s.shared.hits + s.local.hits,
        3,
        "each hit counted once: {s:?}"
    );
    if matches!(b.kind(), Kind::Embedded | Kind::Redis) {
        assert_eq!(s.shared.hits, 3, "no local tier: the store's hits: {s:?}");
    }
    // The simple cache counts too.
    let simple = cache.simple();
    assert!(simple.get::<u8>("nothing").is_err());
    simple.set("k", &1_u8, Duration::from_secs(60)).unwrap();
    assert_eq!(simple.get::<u8>("k").unwrap(), 1);
    let t = cache.stats();
    assert_eq!(
        (t.shared.misses, t.shared.hits),
        (s.shared.misses + 1, s.shared.hits + 1),
        "{t:?}"
    );
}

/// A prepared read has the fallible `get_or_load`: a loader's error is returned, never
/// cached; its value is.
fn prepared_reads_take_fallible_loaders(b: Backend) {
    let cache = b.builder("prepared-load").build_for(b).unwrap();
    let hot = cache.prepare(&Read::get("blog.article").filter(Cond::eq("id", 1)));
    let r: Result<String, LoadError<String>> = hot.get_or_load(|| Err("db timeout".into()));
    assert!(
        matches!(r, Err(LoadError::Loader(ref e)) if e == "db timeout"),
        "{r:?}"
    );
    let r: Result<String, LoadError<String>> = hot.get_or_load(|| Ok("title".into()));
    assert_eq!(r.unwrap(), "title", "the error was not cached");
    let r: Result<String, LoadError<String>> = hot.get_or_load(|| Err("never".into()));
    assert_eq!(r.unwrap(), "title", "the value was");
}
