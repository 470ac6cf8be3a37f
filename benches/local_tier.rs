//! The local tier against its physical limits, in one run: a tracked or bounded hit against
//! a bare `moka::sync::Cache::get` of the same `Arc`; a strict hit (one stamp round trip)
//! against a bare redis-rs `GET` of a 16-byte key, for values of 100 B, 10 KB and 100 KB;
//! a shared-tier hit of a 100-row list against a strict local hit of it; and hits per second
//! on 1 and 2 threads; tracked hits (unprepared and prepared) of a read of 64 conjunctions
//! against the same bare `get`; and tracked hits over 1,000 rotating keys against moka over
//! as many. Ratios are medians of interleaved rounds. Prints one JSON object.
//!
//! `cargo bench --bench local_tier` (REDIS_URL to use a server that may be written to).

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Article;
use stampcache::{Cache, Cond, LocalMode, Read};

fn read(tag: &str, c: i64) -> Read {
    Read::fetch("blog.article")
        .filter(Cond::eq("category", c))
        .extra(tag.to_string())
}

/// Median over rounds of (time of `n` calls of `ours`) / (time of `n` calls of `bare`).
fn ratio(n: usize, ours: &mut dyn FnMut(), bare: &mut dyn FnMut()) -> f64 {
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_secs_f64()
    };
    let mut r: Vec<f64> = (0..31)
        .map(|_| {
            let b = time(bare);
            time(ours) / b
        })
        .collect();
    r.sort_by(|a, b| a.total_cmp(b));
    r[r.len() / 2]
}

/// Median time of one call, in microseconds.
fn micros(n: usize, f: &mut dyn FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..15)
        .map(|_| {
            let s = Instant::now();
            for _ in 0..n {
                f();
            }
            s.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .collect();
    t.sort_by(|a, b| a.total_cmp(b));
    t[t.len() / 2]
}

/// Hits per second with `threads` threads for one second.
fn throughput(threads: usize, cache: &Cache, read: &Read) -> f64 {
    let stop = Instant::now() + Duration::from_secs(1);
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while Instant::now() < stop {
                        let v = cache
                            .get_or_compute_arc(read, || -> Vec<Article> { unreachable!() })
                            .unwrap();
                        black_box(v);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64
}

/// Calls per second of `f(i)` (`i` counting up from a per-thread offset) on `threads`
/// threads for `secs`.
fn rotate(threads: usize, secs: f64, f: &(dyn Fn(usize) + Sync)) -> f64 {
    let start = Instant::now();
    let stop = start + Duration::from_secs_f64(secs);
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut n = 0u64;
                    let mut i = t * 500;
                    while Instant::now() < stop {
                        for _ in 0..64 {
                            f(i);
                            i += 1;
                        }
                        n += 64;
                    }
                    n
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list
    }
    let (_server, url) = common::bench_redis();
    let build = |mode: Option<LocalMode>| {
        let b = Cache::builder().redis(&url).prefix("lbench:");
        match mode {
            Some(m) => b.local(m).build().unwrap(),
            None => b.build().unwrap(),
        }
    };
    let shared = build(None);
    shared.invalidate_all().unwrap();
    let strict = build(Some(LocalMode::Strict));
    let tracked = build(Some(LocalMode::Tracked));
    let bounded = build(Some(LocalMode::Bounded(Duration::from_secs(3600))));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tracked.push_channel_up() {
        assert!(Instant::now() < deadline, "push channel did not come up");
        std::thread::sleep(Duration::from_millis(5));
    }
    let list: Vec<Article> = (0..100).map(|i| Article::new(i * 100 + 7)).collect();
    let list_read = read("list", 7);
    let warm = |c: &Cache, r: &Read, v: &Vec<Article>| {
        let before = c.stats().local.hits;
        for _ in 0..50 {
            let _ = c.get_or_compute_arc(r, || v.clone()).unwrap();
            if c.stats().local.hits > before + 2 {
                return;
            }
        }
        panic!("no local hits");
    };
    for c in [&strict, &tracked, &bounded] {
        warm(c, &list_read, &list);
    }
    let _ = shared
        .get_or_compute_arc(&list_read, || list.clone())
        .unwrap();

    let moka: moka::sync::Cache<String, Arc<Vec<Article>>> = moka::sync::Cache::new(1000);
    let key = "lbench:bare".to_string();
    moka.insert(key.clone(), Arc::new(list.clone()));
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut bare = client.get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg("lbench:16b")
        .arg("0123456789abcdef")
        .query(&mut bare)
        .unwrap();

    let mut out: Vec<String> = Vec::new();
    let mut field = |name: &str, v: f64| out.push(format!("\"{name}\": {v:.2}"));

    let hit = |c: &Cache, r: &Read| {
        black_box(
            c.get_or_compute_arc(r, || -> Vec<Article> { unreachable!() })
                .unwrap(),
        );
    };
    let mut moka_get = || {
        black_box(moka.get(&key).unwrap());
    };
    field(
        "tracked_hit_us",
        micros(10_000, &mut || hit(&tracked, &list_read)),
    );
    field(
        "bounded_hit_us",
        micros(10_000, &mut || hit(&bounded, &list_read)),
    );
    field("moka_get_us", micros(10_000, &mut moka_get));
    let prepared = tracked.prepare(&list_read);
    let mut prepared_hit = || {
        black_box(
            prepared
                .get_or_compute_arc(|| -> Vec<Article> { unreachable!() })
                .unwrap(),
        );
    };
    field("tracked_prepared_hit_us", micros(10_000, &mut prepared_hit));
    field(
        "ratio_tracked_prepared_vs_moka",
        ratio(2000, &mut prepared_hit, &mut moka_get),
    );
    field(
        "ratio_tracked_vs_moka",
        ratio(2000, &mut || hit(&tracked, &list_read), &mut moka_get),
    );
    field(
        "ratio_bounded_vs_moka",
        ratio(2000, &mut || hit(&bounded, &list_read), &mut moka_get),
    );
    // A read of 64 conjunctions (`category IN (0..64)`): 64 stamps and the generation.
    let read64 = Read::fetch("blog.article")
        .filter(Cond::is_in("category", 0..64_i64))
        .extra("c64".to_string());
    warm(&tracked, &read64, &list);
    let prepared64 = tracked.prepare(&read64);
    let mut prepared64_hit = || {
        black_box(
            prepared64
                .get_or_compute_arc(|| -> Vec<Article> { unreachable!() })
                .unwrap(),
        );
    };
    field(
        "ratio_tracked_64conj_vs_moka",
        ratio(2000, &mut || hit(&tracked, &read64), &mut moka_get),
    );
    field(
        "ratio_tracked_prepared_64conj_vs_moka",
        ratio(2000, &mut prepared64_hit, &mut moka_get),
    );

    let mut bare_get = || {
        let v: Vec<u8> = redis::cmd("GET")
            .arg("lbench:16b")
            .query(&mut bare)
            .unwrap();
        black_box(v);
    };
    field("bare_get_16b_us", micros(300, &mut bare_get));
    for (label, size) in [("100b", 100usize), ("10kb", 10_000), ("100kb", 100_000)] {
        let r = read(label, 1);
        let value = vec![7u8; size];
        let _ = strict.get_or_compute_arc(&r, || value.clone()).unwrap();
        let _ = strict.get_or_compute_arc(&r, || value.clone()).unwrap();
        let mut strict_hit = || {
            black_box(
                strict
                    .get_or_compute_arc(&r, || -> Vec<u8> { unreachable!() })
                    .unwrap(),
            );
        };
        field(
            &format!("strict_hit_{label}_us"),
            micros(300, &mut strict_hit),
        );
        field(
            &format!("ratio_strict_{label}_vs_bare_get_16b"),
            ratio(100, &mut strict_hit, &mut bare_get),
        );
    }
    field(
        "shared_hit_list_us",
        micros(300, &mut || hit(&shared, &list_read)),
    );
    field(
        "strict_hit_list_us",
        micros(300, &mut || hit(&strict, &list_read)),
    );
    field(
        "ratio_shared_list_vs_strict_list",
        ratio(100, &mut || hit(&shared, &list_read), &mut || {
            hit(&strict, &list_read)
        }),
    );
    for threads in [1, 2] {
        field(
            &format!("tracked_hits_per_s_{threads}t"),
            throughput(threads, &tracked, &list_read),
        );
        field(
            &format!("strict_hits_per_s_{threads}t"),
            throughput(threads, &strict, &list_read),
        );
        field(
            &format!("shared_hits_per_s_{threads}t"),
            throughput(threads, &shared, &list_read),
        );
    }
    // Throughput over 1,000 rotating keys, against moka over as many keys.
    let many: Vec<Read> = (0..1000).map(|c| read("rot", 1000 + c)).collect();
    let small: Vec<u64> = (0..25).collect();
    for _ in 0..5 {
        let before = tracked.stats().local.hits;
        for r in &many {
            let _ = tracked.get_or_compute_arc(r, || small.clone()).unwrap();
        }
        if tracked.stats().local.hits - before == many.len() as u64 {
            break;
        }
    }
    let moka_many: moka::sync::Cache<String, Arc<Vec<u64>>> = moka::sync::Cache::new(10_000);
    let moka_keys: Vec<String> = (0..1000).map(|c| format!("lbench:rot:{c}")).collect();
    for k in &moka_keys {
        moka_many.insert(k.clone(), Arc::new(small.clone()));
    }
    for threads in [1, 2] {
        let ours = |i: usize| {
            let v = tracked
                .get_or_compute_arc(&many[i % 1000], || small.clone())
                .unwrap();
            black_box(v);
        };
        let bare = |i: usize| {
            black_box(moka_many.get(&moka_keys[i % 1000]).unwrap());
        };
        // Interleaved rounds of 0.2 s each (the order flips every round); medians.
        let (mut o, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..7 {
            let (x, y) = if round % 2 == 0 {
                let y = rotate(threads, 0.2, &bare);
                (rotate(threads, 0.2, &ours), y)
            } else {
                let x = rotate(threads, 0.2, &ours);
                (x, rotate(threads, 0.2, &bare))
            };
            o.push(x);
            b.push(y);
            r.push(x / y);
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        field(
            &format!("tracked_1000_keys_hits_per_s_{threads}t"),
            median(o),
        );
        field(&format!("moka_1000_keys_gets_per_s_{threads}t"), median(b));
        field(
            &format!("ratio_tracked_1000_keys_vs_moka_{threads}t"),
            median(r),
        );
    }
    println!("{{\"bench\": \"local_tier\", {}}}", out.join(", "));
}
