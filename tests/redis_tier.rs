//! Behaviour only Redis has: key layout and TTLs, bad bytes, failures, URLs, eviction.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Article, Loads, RedisServer};
use stampcache::{Cache, Codec, Cond, Error, Event, Outcome, Profile, Read, Target};

fn keys(conn: &mut redis::Connection, pattern: &str) -> Vec<String> {
    let mut ks: Vec<String> = redis::cmd("KEYS").arg(pattern).query(conn).unwrap();
    ks.sort();
    ks
}

fn pttl(conn: &mut redis::Connection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(conn).unwrap()
}

fn count(c: i64) -> Read {
    Read::count("blog.article").filter(Cond::eq("category", c))
}

#[test]
fn entry_ttl_is_the_timeout_and_stamps_outlive_it() {
    let server = RedisServer::start(&[]);
    let cache = Cache::builder()
        .redis(server.url())
        .prefix("p:")
        .profile(
            "blog.article",
            Profile::new().timeout(Duration::from_secs(100)),
        )
        .build()
        .unwrap();
    let _: u64 = cache.get_or_compute(&count(1), || 5).unwrap();
    let mut conn = server.conn();
    let entries = keys(&mut conn, "p:sc1.2:e:{blog.article}:*");
    assert_eq!(entries.len(), 1);
    let ttl = pttl(&mut conn, &entries[0]);
    assert!(ttl > 90_000 && ttl <= 100_000, "entry ttl {ttl}");
    let stamps = keys(&mut conn, "p:sc1.2:s:*");
    assert_eq!(
        stamps,
        vec![
            "p:sc1.2:s:{blog.article}:c:category=i1",
            "p:sc1.2:s:{blog.article}:g"
        ]
    );
    for s in &stamps {
        let t = pttl(&mut conn, s);
        assert!(t > 200_000 && t <= 210_000, "stamp {s} ttl {t}");
    }
    // The scheme set is a sorted set: each scheme until the time some entry may depend
    // on it (the stamps' lifetime after the last miss), and the set as long as its members.
    let schemes: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg("p:sc1.2:m:{blog.article}")
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(&mut conn)
        .unwrap();
    let (now_s, now_us): (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
    let now = (now_s * 1000 + now_us / 1000) as f64;
    // Beside the scheme, the kind its condition compares `category` with (a number).
    let (kinds, schemes): (Vec<_>, Vec<_>) =
        schemes.into_iter().partition(|(m, _)| m.starts_with('='));
    assert_eq!(kinds.len(), 1);
    assert_eq!(
        (kinds[0].0.as_str(), kinds[0].1),
        ("=category=n", schemes[0].1)
    );
    assert_eq!(schemes.len(), 1);
    assert_eq!(schemes[0].0, "category");
    let left = schemes[0].1 - now;
    assert!(
        left > 200_000.0 && left <= 210_000.0,
        "scheme kept {left} ms"
    );
    let t = pttl(&mut conn, "p:sc1.2:m:{blog.article}");
    assert!(t > 200_000 && t <= 210_000, "scheme set ttl {t}");
    // invalidate_all clears scheme sets too (a set lost while a read registers a scheme
    // costs misses, never staleness: PREPARE kills the generation when it finds it missing).
    cache.invalidate_all().unwrap();
    assert!(keys(&mut conn, "p:*").is_empty());
}

#[test]
fn a_computed_prefix_still_serves_local_hits() {
    let server = RedisServer::start(&[]);
    let cache = Cache::builder()
        .redis(server.url())
        .prefix_fn(|s| format!("{}:", s.dbs.join(",")))
        .local(stampcache::LocalMode::TtlOnly)
        .build()
        .unwrap();
    for _ in 0..5 {
        let _: u64 = cache.get_or_compute(&count(1), || 1).unwrap();
    }
    assert_eq!(cache.stats().local.hits, 4);
}

#[test]
fn one_row_invalidation_is_one_round_trip_whatever_is_cached() {
    let server = RedisServer::start(&[]);
    let cache = Cache::from_url(&server.url()).unwrap();
    for c in 0..100 {
        let _: u64 = cache.get_or_compute(&count(c), || 1).unwrap();
    }
    for id in 0..500 {
        let _: u64 = cache
            .get_or_compute(&Read::get("blog.article").filter(Cond::eq("id", id)), || 1)
            .unwrap();
    }
    // The first invalidation loads the script (EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA).
    cache.on_insert("blog.article", &Article::new(8)).unwrap();
    // Watch every command the server runs; script-internal ones are marked `lua`.
    let mut monitor = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    monitor.write_all(b"MONITOR\r\n").unwrap();
    let mut lines = BufReader::new(monitor.try_clone().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "+OK");
    cache.on_insert("blog.article", &Article::new(7)).unwrap();
    let mut conn = server.conn();
    let _: String = redis::cmd("ECHO")
        .arg("end-marker")
        .query(&mut conn)
        .unwrap();
    let mut from_clients = Vec::new();
    for line in lines {
        let line = line.unwrap();
        if line.contains("end-marker") {
            break;
        }
        if !line.contains(" lua]") {
            from_clients.push(line);
        }
    }
    assert_eq!(from_clients.len(), 1, "one round trip: {from_clients:?}");
    assert!(from_clients[0].contains("\"EVALSHA\""), "{from_clients:?}");
}

#[test]
fn corrupt_bytes_are_a_miss_and_an_event() {
    let server = RedisServer::start(&[]);
    let failures = Arc::new(Mutex::new(0));
    let seen = failures.clone();
    let cache = Cache::builder()
        .redis(server.url())
        .prefix("p:")
        .on_event(move |e| {
            if let Event::DecodeFailed { .. } = e {
                *seen.lock().unwrap() += 1;
            }
        })
        .build()
        .unwrap();
    let read = Read::fetch("blog.article").filter(Cond::eq("category", 1));
    let loads = Loads::default();
    let _: Vec<String> = cache
        .get_or_compute(&read, loads.of(vec!["a".into()]))
        .unwrap();
    let mut conn = server.conn();
    let entry = keys(&mut conn, "p:sc1.2:e:{blog.article}:*").remove(0);
    let stored: Vec<u8> = redis::cmd("GET").arg(&entry).query(&mut conn).unwrap();
    // Keep the valid checksum and type tag, break the codec's payload: a length that runs
    // past the end.
    let payload = stampcache::Bitcode::encode(&vec![String::from("a")]).unwrap();
    let mut bad = stored[..stored.len() - payload.len()].to_vec();
    bad.extend_from_slice(&[0xff, 0xff, 0xff, 0x0f, 1]);
    let _: () = redis::cmd("SET")
        .arg(&entry)
        .arg(&bad)
        .query(&mut conn)
        .unwrap();
    let v: Vec<String> = cache
        .get_or_compute(&read, loads.of(vec!["b".into()]))
        .unwrap();
    assert_eq!(v, vec!["b"]);
    assert_eq!(*failures.lock().unwrap(), 1);
    // The fresh value replaced the bad one.
    let v: Vec<String> = cache
        .get_or_compute(&read, loads.of(vec!["c".into()]))
        .unwrap();
    assert_eq!(v, vec!["b"]);
    // Garbage without a valid checksum, and a short value: plain misses.
    for junk in [&b"short"[..], &[0u8; 100][..]] {
        let _: () = redis::cmd("SET")
            .arg(&entry)
            .arg(junk)
            .query(&mut conn)
            .unwrap();
        let v: Vec<String> = cache
            .get_or_compute(&read, loads.of(vec!["d".into()]))
            .unwrap();
        assert_eq!(v, vec!["d"]);
    }
    assert_eq!(loads.count(), 4);
}

fn outcome_log(builder: stampcache::Builder) -> (stampcache::Builder, Arc<Mutex<Vec<Outcome>>>) {
    let log: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let sink = log.clone();
    let b = builder.on_event(move |e| {
        if let Event::Read {
            target: Target::Table { .. },
            outcome,
        } = e
        {
            sink.lock().unwrap().push(*outcome);
        }
    });
    (b, log)
}

#[test]
fn redis_stopped_with_degrade_runs_the_loader_and_replays_invalidations() {
    let server = RedisServer::start(&[]);
    let (b, log) = outcome_log(
        Cache::builder()
            .redis(server.url())
            .degrade_on_failure(true)
            .io_timeout(Duration::from_millis(200))
            .connect_timeout(Duration::from_millis(200))
            .retry_after(Duration::from_millis(300)),
    );
    let cache = b.build().unwrap();
    let get1 = Read::get("blog.article").filter(Cond::eq("id", 1));
    let get2 = Read::get("blog.article").filter(Cond::eq("id", 2));
    let _: String = cache.get_or_compute(&get1, || "v1".to_string()).unwrap();
    let _: String = cache.get_or_compute(&get2, || "w1".to_string()).unwrap();

    server.pause(); // Redis keeps its data but answers nothing.
    let old = Article::new(1);
    let new = Article {
        title: "v2".into(),
        ..old.clone()
    };
    queued(cache.on_update("blog.article", &old, &new));
    assert!(cache.pending_invalidations() > 0);
    let started = std::time::Instant::now();
    let v: String = cache.get_or_compute(&get1, || "v2".to_string()).unwrap();
    assert_eq!(v, "v2", "degraded: the loader answers");
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "while Redis is marked down, calls do not wait for it: {:?}",
        started.elapsed()
    );

    server.resume();
    std::thread::sleep(Duration::from_millis(350)); // past retry_after
                                                    // The queued invalidation is replayed before anything is read: v1 is never served.
    let v: String = cache.get_or_compute(&get1, || "v2".to_string()).unwrap();
    assert_eq!(v, "v2");
    assert_eq!(cache.pending_invalidations(), 0);
    let w: String = cache
        .get_or_compute(&get2, || panic!("row 2 was not written"))
        .unwrap();
    assert_eq!(w, "w1");
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            Outcome::Miss,
            Outcome::Miss,
            Outcome::Degraded,
            Outcome::Miss,
            Outcome::Hit
        ]
    );
}

#[test]
fn redis_stopped_without_degrade_fails_and_still_keeps_invalidations() {
    let server = RedisServer::start(&[]);
    let cache = Cache::builder()
        .redis(server.url())
        .io_timeout(Duration::from_millis(200))
        .connect_timeout(Duration::from_millis(200))
        .retry_after(Duration::ZERO)
        .build()
        .unwrap();
    let get1 = Read::get("blog.article").filter(Cond::eq("id", 1));
    let _: String = cache.get_or_compute(&get1, || "v1".to_string()).unwrap();
    server.pause();
    let err = cache
        .on_insert("blog.article", &Article::new(1))
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    let err = cache
        .get_or_compute(&get1, || "never".to_string())
        .unwrap_err();
    // A frozen server is a timeout, named as such (it is also `is_unavailable`).
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    server.resume();
    let v: String = cache.get_or_compute(&get1, || "v2".to_string()).unwrap();
    assert_eq!(v, "v2", "the failed invalidation was replayed");
}

#[test]
fn redis_restarted_serves_nothing_old() {
    let mut server = RedisServer::start(&[]);
    let cache = Cache::builder()
        .redis(server.url())
        .degrade_on_failure(true)
        .io_timeout(Duration::from_millis(300))
        .retry_after(Duration::ZERO)
        .build()
        .unwrap();
    let loads = Loads::default();
    let _: u64 = cache.get_or_compute(&count(1), loads.of(1)).unwrap();
    server.stop();
    let v: u64 = cache.get_or_compute(&count(1), loads.of(2)).unwrap();
    assert_eq!(v, 2, "down: the loader answers");
    server.restart();
    let v: u64 = cache.get_or_compute(&count(1), loads.of(3)).unwrap();
    assert_eq!(v, 3, "pooled connections to the old server are replaced");
    let v: u64 = cache.get_or_compute(&count(1), loads.of(4)).unwrap();
    assert_eq!(v, 3);
}

#[test]
fn urls_with_db_password_and_unix_socket() {
    let dir = std::env::temp_dir().join(format!("stampcache-sock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("redis.sock");
    let server = RedisServer::start(&[
        "--requirepass",
        "s3cret",
        "--unixsocket",
        sock.to_str().unwrap(),
        "--unixsocketperm",
        "700",
    ]);
    let tcp = format!("redis://:s3cret@127.0.0.1:{}/3", server.port);
    let unix = format!("unix://{}?db=3&pass=s3cret", sock.display());
    let a = Cache::from_url(&tcp).unwrap();
    let b = Cache::from_url(&unix).unwrap();
    let loads = Loads::default();
    let _: u64 = a.get_or_compute(&count(1), loads.of(1)).unwrap();
    let _: u64 = b.get_or_compute(&count(1), loads.of(1)).unwrap();
    assert_eq!(loads.count(), 1, "both URLs reach database 3 of one server");
    let wrong = Cache::from_url(&format!("redis://:nope@127.0.0.1:{}/3", server.port)).unwrap();
    assert!(matches!(
        wrong.get_or_compute(&count(1), || 1u64),
        Err(Error::Redis(_))
    ));
    assert!(matches!(Cache::from_url("http://x"), Err(Error::Config(_))));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn eviction_under_volatile_lru_costs_misses_never_staleness() {
    let server = RedisServer::start(&["--maxmemory", "4mb", "--maxmemory-policy", "volatile-lru"]);
    let cache = Cache::from_url(&server.url()).unwrap();
    // The "database": a version per category, bumped on each write.
    let mut versions = [0u64; 50];
    let body = "x".repeat(4000);
    for round in 0..3 {
        for (c, version) in versions.iter_mut().enumerate() {
            if (c + round) % 4 == 0 {
                *version += 1;
                let a = Article {
                    category: c as i64,
                    ..Article::new(c as i64)
                };
                cache.on_insert("blog.article", &a).unwrap();
            }
        }
        for id in 0..1500 {
            let c = id % 50;
            let read = Read::fetch("blog.article")
                .filter(Cond::eq("category", c as i64))
                .extra(format!("page {id}"));
            let want = (versions[c], body.clone());
            let got: (u64, String) = cache.get_or_compute(&read, || want.clone()).unwrap();
            assert_eq!(got.0, versions[c], "stale read in round {round}");
        }
    }
    let mut conn = server.conn();
    let info: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap();
    let evicted: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("evicted_keys:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(evicted > 0, "the test must actually evict");
}

/// A row of the eviction tests' model table.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct Item {
    id: i64,
    category: i64,
    flag: bool,
}

/// Reads of three shapes (three schemes: `category`, `category&flag`, `id`) against a
/// model table the test holds, with writes that move rows between categories and flip
/// flags. Single-threaded: every read must equal the model, or it is stale.
fn mixed_schemes_never_stale(cache: &Cache, rounds: usize, mut evict: impl FnMut(usize)) -> usize {
    let mut rows: Vec<Item> = (0..200)
        .map(|i| Item {
            id: i,
            category: i % 20,
            flag: i % 3 == 0,
        })
        .collect();
    let pad = "p".repeat(12_000);
    let mut rng = 0x2545f4914f6cdd1d_u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut reads = 0;
    for round in 0..rounds {
        for _ in 0..40 {
            let c = next(20) as i64;
            let truth: u64 = rows.iter().filter(|r| r.category == c && r.flag).count() as u64;
            let read = Read::count("evict.item")
                .filter(Cond::eq("category", c).and(Cond::eq("flag", true)));
            let got: (u64, String) = cache
                .get_or_compute(&read, || (truth, pad.clone()))
                .unwrap();
            assert_eq!(got.0, truth, "stale count of category {c} in round {round}");

            let truth: Vec<i64> = rows
                .iter()
                .filter(|r| r.category == c)
                .map(|r| r.id)
                .collect();
            let read = Read::fetch("evict.item").filter(Cond::eq("category", c));
            let got: (Vec<i64>, String) = cache
                .get_or_compute(&read, || (truth.clone(), pad.clone()))
                .unwrap();
            assert_eq!(got.0, truth, "stale list of category {c} in round {round}");

            let i = next(200) as usize;
            let truth = (rows[i].category, rows[i].flag);
            let read = Read::get("evict.item").filter(Cond::eq("id", i as i64));
            let got: ((i64, bool), String) = cache
                .get_or_compute(&read, || (truth, pad.clone()))
                .unwrap();
            assert_eq!(got.0, truth, "stale row {i} in round {round}");
            reads += 3;
        }
        // Metadata lost now, then one read of one shape recreates the scheme set with its
        // scheme alone: the writes below must still reach the other shapes' entries.
        evict(round);
        let read = Read::get("evict.item").filter(Cond::eq("id", 0));
        let truth = (rows[0].category, rows[0].flag);
        let got: ((i64, bool), String) = cache
            .get_or_compute(&read, || (truth, pad.clone()))
            .unwrap();
        assert_eq!(got.0, truth, "stale row 0 in round {round}");
        for _ in 0..5 {
            let i = next(200) as usize;
            let old = rows[i];
            let mut new = old;
            if next(2) == 0 {
                new.category = next(20) as i64;
            } else {
                new.flag = !new.flag;
            }
            rows[i] = new;
            cache.on_update("evict.item", &old, &new).unwrap();
        }
    }
    reads
}

#[test]
fn a_lost_scheme_set_costs_misses_never_staleness() {
    // The keys eviction, FLUSHDB or a restart can take, taken by hand at every round: the
    // table's scheme set (it has no TTL), and at times its generation too.
    let server = RedisServer::start(&[]);
    let cache = Cache::builder()
        .redis(server.url())
        .prefix("lost:")
        .build()
        .unwrap();
    let mut conn = server.conn();
    let reads = mixed_schemes_never_stale(&cache, 60, |round| {
        let _: () = redis::cmd("DEL")
            .arg("lost:sc1.2:m:{evict.item}")
            .query(&mut conn)
            .unwrap();
        if round % 3 == 0 {
            let _: () = redis::cmd("DEL")
                .arg("lost:sc1.2:s:{evict.item}:g")
                .query(&mut conn)
                .unwrap();
        }
    });
    assert!(reads > 0);
}

#[test]
fn eviction_under_every_policy_costs_misses_never_staleness() {
    for policy in [
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    ] {
        let server = RedisServer::start(&["--maxmemory", "2mb", "--maxmemory-policy", policy]);
        let cache = Cache::from_url(&server.url()).unwrap();
        mixed_schemes_never_stale(&cache, 40, |_| {});
        let mut conn = server.conn();
        let info: String = redis::cmd("INFO").arg("stats").query(&mut conn).unwrap();
        let evicted: u64 = info
            .lines()
            .find_map(|l| l.strip_prefix("evicted_keys:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(evicted > 0, "{policy}: the test must actually evict");
    }
}

/// An idle writer's queue: Redis frozen while it writes, then back; the writer makes no
/// further call. Another process's read one second after Redis returns is fresh (the
/// background replayer sent the queued invalidation), on both front ends.
fn an_idle_writers_queue_is_replayed_in_the_background(asynch: bool) {
    let server = RedisServer::start(&[]);
    let prefix = format!("idle{asynch}:");
    let builder = || {
        Cache::builder()
            .redis(server.url())
            .prefix(prefix.clone())
            .degrade_on_failure(true)
            .io_timeout(Duration::from_millis(200))
            .connect_timeout(Duration::from_millis(200))
            .retry_after(Duration::from_millis(200))
            .replay_backoff(Duration::from_millis(200))
    };
    let reader = builder().build().unwrap();
    let read = count(1);
    let n: u64 = reader.get_or_compute(&read, || 5).unwrap();
    assert_eq!(n, 5);

    let article = Article {
        category: 1,
        ..Article::new(7)
    };
    // The writer: queues its invalidation while Redis answers nothing, then stays idle.
    let _writer: Box<dyn std::any::Any> = if asynch {
        #[cfg(feature = "tokio")]
        {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let writer = {
                let _in = rt.enter();
                builder().build_async().unwrap()
            };
            server.pause();
            queued(rt.block_on(writer.on_insert("blog.article", &article)));
            assert!(writer.pending_invalidations() > 0, "queued");
            Box::new((writer, rt))
        }
        #[cfg(not(feature = "tokio"))]
        unreachable!("the async front end needs the tokio feature")
    } else {
        let writer = builder().build().unwrap();
        server.pause();
        queued(writer.on_insert("blog.article", &article));
        assert!(writer.pending_invalidations() > 0, "queued");
        Box::new(writer)
    };
    server.resume();
    std::thread::sleep(Duration::from_secs(1));
    let loads = Loads::default();
    let n: u64 = reader.get_or_compute(&read, loads.of(6)).unwrap();
    assert_eq!(n, 6, "a read 1 s after Redis returned is fresh");
    assert_eq!(loads.count(), 1);
}

#[test]
fn an_idle_blocking_writers_queue_is_replayed_in_the_background() {
    an_idle_writers_queue_is_replayed_in_the_background(false);
}

#[cfg(feature = "tokio")]
#[test]
fn an_idle_async_writers_queue_is_replayed_in_the_background() {
    an_idle_writers_queue_is_replayed_in_the_background(true);
}

#[test]
fn dropping_the_last_handle_sends_what_is_queued() {
    let server = RedisServer::start(&[]);
    let builder = || {
        Cache::builder()
            .redis(server.url())
            .prefix("drop:")
            .degrade_on_failure(true)
            .io_timeout(Duration::from_millis(200))
            .retry_after(Duration::from_millis(50))
            .replay_backoff(Duration::from_secs(30)) // the replayer alone would be too late
            .flush_on_drop(Duration::from_secs(2))
    };
    let reader = builder().build().unwrap();
    let n: u64 = reader.get_or_compute(&count(1), || 5).unwrap();
    assert_eq!(n, 5);
    let writer = builder().build().unwrap();
    let handle_too = writer.clone();
    server.pause();
    queued(writer.on_insert(
        "blog.article",
        &Article {
            category: 1,
            ..Article::new(7)
        },
    ));
    drop(writer); // another handle is left: nothing happens
                  // Long enough for the background replayer's pauses to grow past a second.
    std::thread::sleep(Duration::from_secs(3));
    server.resume();
    drop(handle_too); // the last one: sends the queue before it returns
    let loads = Loads::default();
    let n: u64 = reader.get_or_compute(&count(1), loads.of(6)).unwrap();
    assert_eq!(
        (n, loads.count()),
        (6, 1),
        "the queued invalidation was sent"
    );
}

/// A write whose invalidation could only be queued says so (in every mode, degrading too).
fn queued(r: Result<(), Error>) {
    assert!(matches!(r, Err(Error::InvalidationQueued(_))), "{r:?}");
}

/// The scheme scores against the lifetimes of what depends on them: every conjunction stamp
/// expires no later than its scheme's score (a `PREPARE` times both), and every entry's
/// scheme outlives the entry by at least another timeout (its local copies), whatever the
/// order of reads with different timeouts. A typo'd scheme goes once its time passed, and
/// the set (a key with a TTL) with its last member.
#[test]
fn scheme_scores_cover_every_stamp_and_entry_that_depends_on_them() {
    let server = RedisServer::start(&[]);
    let cache = Cache::builder()
        .redis(server.url())
        .prefix("cover:")
        .profile(
            "blog.article",
            Profile::new().timeout(Duration::from_millis(400)),
        )
        .build()
        .unwrap();
    let mut conn = server.conn();
    let set = "cover:sc1.2:m:{blog.article}";
    let check = |conn: &mut redis::Connection| {
        let (s, us): (u64, u64) = redis::cmd("TIME").query(conn).unwrap();
        let now = (s * 1000 + us / 1000) as i64;
        let scores: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(set)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(conn)
            .unwrap();
        // Kind members (`=field=kind`) ride with their schemes; the schemes are checked.
        let scores: Vec<(String, f64)> = scores
            .into_iter()
            .filter(|(m, _)| !m.starts_with('='))
            .collect();
        let score = |scheme: &str| {
            scores
                .iter()
                .find(|(m, _)| m == scheme)
                .map(|(_, s)| *s as i64)
                .unwrap_or_else(|| panic!("scheme {scheme} missing from {scores:?}"))
        };
        for stamp in keys(conn, "cover:sc1.2:s:{blog.article}:c:*") {
            let conj = stamp.rsplit(":c:").next().unwrap();
            let scheme: Vec<&str> = conj
                .split('&')
                .map(|kv| kv.split('=').next().unwrap())
                .collect();
            let left = pttl(conn, &stamp);
            assert!(
                now + left <= score(&scheme.join("&")) + 1,
                "stamp {stamp} outlives its scheme"
            );
        }
        for entry in keys(conn, "cover:sc1.2:e:*") {
            let left = pttl(conn, &entry);
            assert!(left > 0);
            // The 400 ms reads depend on one scheme each, and every scheme here outlives
            // them; the 30 s dependent depends on `category`. Each scheme covers its
            // entries' lives and a local copy's after them (one more timeout).
            let (timeout, schemes): (i64, Vec<&str>) = if left <= 400 {
                (400, scores.iter().map(|(m, _)| m.as_str()).collect())
            } else {
                (30_000, vec!["category"])
            };
            for scheme in schemes {
                assert!(
                    now + left + timeout <= score(scheme) + 1,
                    "scheme {scheme} does not cover entry {entry}"
                );
            }
        }
        let set_left = pttl(conn, set);
        // The time just after the PTTL bounds when it was read (a loaded machine may take
        // milliseconds between two calls).
        let (s2, us2): (u64, u64) = redis::cmd("TIME").query(conn).unwrap();
        let after = (s2 * 1000 + us2 / 1000) as i64;
        let latest = scores.iter().map(|(_, s)| *s as i64).max().unwrap();
        assert!(
            after + set_left + 1 >= latest,
            "the set outlives its members"
        );
        scores
    };
    let by = |f: &str, v: i64| Read::count("blog.article").filter(Cond::eq(f, v));
    let _: u64 = cache.get_or_compute(&by("category", 1), || 1).unwrap();
    check(&mut conn);
    // A longer-lived dependent of the same conjunction (cached_as with its own timeout).
    let _: u64 = cache
        .cached_as([stampcache::Dep::from(by("category", 1))])
        .name("long")
        .timeout(Duration::from_secs(30))
        .get_or_compute(|| 2)
        .unwrap();
    check(&mut conn);
    // A typo, and a slow loader (stored 300 ms after its PREPARE).
    let _: u64 = cache.get_or_compute(&by("categroy", 1), || 3).unwrap();
    let _: u64 = cache
        .get_or_compute(&by("author", 1), || {
            std::thread::sleep(Duration::from_millis(300));
            4
        })
        .unwrap();
    let scores = check(&mut conn);
    assert_eq!(scores.len(), 3, "{scores:?}");
    let (s, _): (u64, u64) = redis::cmd("TIME").query(&mut conn).unwrap();
    let typo = scores.iter().find(|(m, _)| m == "categroy").unwrap().1 as i64;
    let left = typo - (s * 1000) as i64;
    assert!(left > 10_000 && left <= 11_800, "typo kept {left} ms");
    // Once its time passed, the next write drops it: the row names every field left.
    std::thread::sleep(Duration::from_millis(11_000));
    cache.on_insert("blog.article", &Article::new(5)).unwrap();
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(set)
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        members,
        vec!["=category=n", "category"],
        "only the 30 s dependent's scheme (and its kind) is left"
    );
}

/// A scheme set lost while a loader runs (eviction, `invalidate_all`): `STORE` refuses the
/// entry and does not make the set again (a set listing only this read's scheme would hide
/// the lost set's other entries from later writes); the next `PREPARE` finds it missing.
#[test]
fn a_scheme_set_lost_during_a_load_is_not_made_again_by_store() {
    let server = RedisServer::start(&[]);
    let cache = Cache::builder()
        .redis(server.url())
        .prefix("gone:")
        .build()
        .unwrap();
    let mut conn = server.conn();
    let mut during = server.conn();
    let n: u64 = cache
        .get_or_compute(&count(1), move || {
            let _: () = redis::cmd("DEL")
                .arg("gone:sc1.2:m:{blog.article}")
                .query(&mut during)
                .unwrap();
            5
        })
        .unwrap();
    assert_eq!(n, 5, "the loader's value is returned");
    assert!(
        keys(&mut conn, "gone:sc1.2:m:*").is_empty(),
        "not made again"
    );
    assert!(
        keys(&mut conn, "gone:sc1.2:e:*").is_empty(),
        "nothing stored"
    );
    let loads = Loads::default();
    let n: u64 = cache.get_or_compute(&count(1), loads.of(6)).unwrap();
    assert_eq!((n, loads.count()), (6, 1));
    assert_eq!(keys(&mut conn, "gone:sc1.2:m:*").len(), 1);
    let n: u64 = cache.get_or_compute(&count(1), loads.of(7)).unwrap();
    assert_eq!((n, loads.count()), (6, 1), "stored this time");
}

/// A read in one process and a write in another, whose values of one field can never match
/// (text against a number): the writer learns the read's kind from the scheme set and
/// reports the clash, though it never saw that read itself.
#[test]
fn a_kind_clash_between_processes_is_reported_by_the_writer() {
    let server = RedisServer::start(&[]);
    let build = |events: Option<Arc<Mutex<Vec<String>>>>| {
        let b = Cache::builder().redis(server.url()).prefix("kinds:");
        match events {
            None => b.build().unwrap(),
            Some(sink) => b
                .on_event(move |e| {
                    if let Event::KindMismatch {
                        table,
                        field,
                        condition,
                        row,
                        read,
                    } = e
                    {
                        sink.lock()
                            .unwrap()
                            .push(format!("{table}.{field}: {condition} / {row} / {read}"));
                    }
                })
                .build()
                .unwrap(),
        }
    };
    let reader = build(None);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let writer = build(Some(seen.clone()));
    // The reader's condition is text; the rows are numbers.
    let read = Read::fetch("blog.article").filter(Cond::eq("category", "news"));
    let _: Vec<i64> = reader.get_or_compute(&read, || vec![1]).unwrap();
    // A coercible pair is no clash: "7" is the number 7.
    let read7 = Read::fetch("blog.article").filter(Cond::eq("author", "7"));
    let _: Vec<i64> = reader.get_or_compute(&read7, || vec![1]).unwrap();
    writer.on_insert("blog.article", &Article::new(1)).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["blog.article.category: text / a number / (a read of another process)"]
    );
    // Once per field and process.
    writer.on_insert("blog.article", &Article::new(2)).unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
}
