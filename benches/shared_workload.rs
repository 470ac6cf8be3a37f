//! The shared workload (see ../shared/README.md) against our cache, beside a bare redis-rs
//! `GET` of the same bytes, in one run. Prints criterion's figures, then one JSON line with
//! the peer script's field names (microseconds per call) and our ratios.
//!
//! Redis: `REDIS_URL` if set (a database that may be flushed), else a `redis-server` started
//! on a free port. The "database" is the 10,000 rows in memory, so the figures are the
//! cache's own costs.

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::Article;
use criterion::{BatchSize, Criterion};
use stampcache::{Cache, Codec, Cond, DefaultCodec, Read};

const ROWS: i64 = 10_000;

fn get(id: i64) -> Read {
    Read::get("blog.article").filter(Cond::eq("id", id))
}
fn fetch(c: i64) -> Read {
    Read::fetch("blog.article").filter(Cond::eq("category", c))
}
fn count(c: i64) -> Read {
    Read::count("blog.article")
        .filter(Cond::eq("category", c))
        .filter(Cond::eq("published", true))
}

fn main() {
    let table: Vec<Article> = (0..ROWS).map(Article::new).collect();
    let (_server, url) = common::bench_redis();
    let cache = Cache::builder()
        .redis(&url)
        .prefix("bench:")
        .build()
        .expect("cache");
    cache.invalidate_all().expect("redis reachable");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut bare = client.get_connection().unwrap();

    let category =
        |c: i64| -> Vec<Article> { table.iter().filter(|a| a.category == c).cloned().collect() };
    // Warm: 1,000 gets and all 100 category lists and counts. Again before the interleaved
    // phase: `get_miss` and `save_inval` invalidate rows, and every row is in some list.
    let warm = || {
        for id in 0..1000 {
            let _: Article = cache
                .get_or_compute(&get(id), || table[id as usize].clone())
                .unwrap();
        }
        for c in 0..100 {
            let _: Vec<Article> = cache.get_or_compute(&fetch(c), || category(c)).unwrap();
            let _: u64 = cache
                .get_or_compute(&count(c), || {
                    category(c).iter().filter(|a| a.published).count() as u64
                })
                .unwrap();
        }
    };
    warm();
    // The same bytes under plain keys, for the bare GETs.
    let row_bytes = DefaultCodec::encode(&table[7]).unwrap();
    let list_bytes = DefaultCodec::encode(&category(7)).unwrap();
    let _: () = redis::cmd("SET")
        .arg("bench:bare:row")
        .arg(&row_bytes)
        .query(&mut bare)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("bench:bare:list")
        .arg(&list_bytes)
        .query(&mut bare)
        .unwrap();

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
        .configure_from_args();
    let mut g = c.benchmark_group("shared_workload");
    let mut i = 0i64;
    g.bench_function("bare_get_row", |b| {
        b.iter(|| {
            let v: Vec<u8> = redis::cmd("GET")
                .arg("bench:bare:row")
                .query(&mut bare)
                .unwrap();
            black_box(v)
        })
    });
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            let a: Article = cache.get_or_compute(&get(i), || unreachable!()).unwrap();
            black_box(a)
        })
    });
    g.bench_function("bare_get_list", |b| {
        b.iter(|| {
            let v: Vec<u8> = redis::cmd("GET")
                .arg("bench:bare:list")
                .query(&mut bare)
                .unwrap();
            black_box(v)
        })
    });
    g.bench_function("fetch_hit", |b| {
        b.iter(|| {
            i = (i + 1) % 100;
            let v: Vec<Article> = cache.get_or_compute(&fetch(i), || unreachable!()).unwrap();
            black_box(v)
        })
    });
    g.bench_function("count_hit", |b| {
        b.iter(|| {
            i = (i + 1) % 100;
            let v: u64 = cache.get_or_compute(&count(i), || unreachable!()).unwrap();
            black_box(v)
        })
    });
    g.bench_function("get_miss", |b| {
        b.iter_batched(
            || {
                // Empty this row's entry first (not measured).
                i = 1000 + (i + 1) % 9000;
                cache
                    .invalidate_obj("blog.article", &table[i as usize])
                    .unwrap();
                i
            },
            |id| {
                let a: Article = cache
                    .get_or_compute(&get(id), || table[id as usize].clone())
                    .unwrap();
                black_box(a)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("save_inval", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            let old = &table[i as usize];
            let new = Article {
                title: format!("new {i}"),
                ..old.clone()
            };
            cache.on_update("blog.article", old, &new).unwrap();
        })
    });
    let embedded = Cache::embedded();
    for id in 0..1000 {
        let _: Article = embedded
            .get_or_compute(&get(id), || table[id as usize].clone())
            .unwrap();
    }
    g.bench_function("embedded_get_hit", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            let a: Article = embedded.get_or_compute(&get(i), || unreachable!()).unwrap();
            black_box(a)
        })
    });
    g.bench_function("decode_list", |b| {
        b.iter(|| black_box(DefaultCodec::decode::<Vec<Article>>(&list_bytes).unwrap()))
    });
    let quiet = cache.no_invalidation();
    g.bench_function("save_noinval", |b| {
        b.iter(|| {
            i = (i + 1) % 1000;
            let old = &table[i as usize];
            quiet.on_update("blog.article", old, old).unwrap();
        })
    });
    g.finish();
    c.final_summary();
    report();

    warm();
    // Ratios from interleaved rounds: each round times ours and the bare call back to back,
    // so machine noise hits both alike. Median of the per-round ratios.
    let mut j = 0i64;
    let ratios = [
        (
            "get_hit_vs_bare_get",
            interleaved(
                &mut || {
                    j = (j + 1) % 1000;
                    let a: Article = cache.get_or_compute(&get(j), || unreachable!()).unwrap();
                    black_box(a);
                },
                &mut || {
                    let v: Vec<u8> = redis::cmd("GET")
                        .arg("bench:bare:row")
                        .query(&mut bare)
                        .unwrap();
                    black_box(v);
                },
            ),
        ),
        (
            "fetch_hit_vs_bare_get",
            interleaved(
                &mut || {
                    j = (j + 1) % 100;
                    let v: Vec<Article> =
                        cache.get_or_compute(&fetch(j), || unreachable!()).unwrap();
                    black_box(v);
                },
                &mut || {
                    let v: Vec<u8> = redis::cmd("GET")
                        .arg("bench:bare:list")
                        .query(&mut bare)
                        .unwrap();
                    black_box(v);
                },
            ),
        ),
        (
            "fetch_hit_vs_bare_get_and_decode",
            interleaved(
                &mut || {
                    j = (j + 1) % 100;
                    let v: Vec<Article> =
                        cache.get_or_compute(&fetch(j), || unreachable!()).unwrap();
                    black_box(v);
                },
                &mut || {
                    let v: Vec<u8> = redis::cmd("GET")
                        .arg("bench:bare:list")
                        .query(&mut bare)
                        .unwrap();
                    black_box(DefaultCodec::decode::<Vec<Article>>(&v).unwrap());
                },
            ),
        ),
        // Last: it invalidates the hot entries.
        (
            "save_inval_vs_bare_get",
            interleaved(
                &mut || {
                    j = (j + 1) % 1000;
                    let old = &table[j as usize];
                    cache.on_update("blog.article", old, old).unwrap();
                },
                &mut || {
                    let v: Vec<u8> = redis::cmd("GET")
                        .arg("bench:bare:row")
                        .query(&mut bare)
                        .unwrap();
                    black_box(v);
                },
            ),
        ),
    ];
    let fields: Vec<String> = ratios
        .iter()
        .map(|(n, r)| format!("\"{n}\": {r:.2}"))
        .collect();
    println!("{{\"interleaved_ratios\": {{{}}}}}", fields.join(", "));
}

/// Median over rounds of (time of 200 calls of `ours`) / (time of 200 calls of `bare`).
fn interleaved(ours: &mut dyn FnMut(), bare: &mut dyn FnMut()) -> f64 {
    let time = |f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        for _ in 0..200 {
            f();
        }
        t.elapsed().as_secs_f64()
    };
    let mut ratios: Vec<f64> = (0..31)
        .map(|_| {
            let b = time(bare);
            let o = time(ours);
            o / b
        })
        .collect();
    ratios.sort_by(|a, b| a.total_cmp(b));
    ratios[ratios.len() / 2]
}

/// Reads criterion's estimates of this run and prints the peer's fields and our ratios.
fn report() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("criterion/shared_workload");
    let median_us = |name: &str| -> Option<f64> {
        let text = std::fs::read_to_string(dir.join(name).join("new/estimates.json")).ok()?;
        let at = text.find("\"median\"")?;
        let rest = &text[at..];
        let p = rest.find("\"point_estimate\":")? + "\"point_estimate\":".len();
        let num: String = rest[p..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == '-')
            .collect();
        num.parse::<f64>().ok().map(|ns| ns / 1000.0)
    };
    let names = [
        "get_hit",
        "fetch_hit",
        "count_hit",
        "get_miss",
        "save_inval",
        "save_noinval",
        "bare_get_row",
        "bare_get_list",
        "embedded_get_hit",
        "decode_list",
    ];
    let mut fields = Vec::new();
    for n in names {
        if let Some(v) = median_us(n) {
            fields.push(format!("\"{n}\": {v:.2}"));
        }
    }
    let ratio = |a: &str, b: &str| match (median_us(a), median_us(b)) {
        (Some(a), Some(b)) => format!("{:.2}", a / b),
        _ => "null".into(),
    };
    fields.push(format!(
        "\"ratio_get_hit_vs_bare_get\": {}",
        ratio("get_hit", "bare_get_row")
    ));
    fields.push(format!(
        "\"ratio_fetch_hit_vs_bare_get\": {}",
        ratio("fetch_hit", "bare_get_list")
    ));
    fields.push(format!(
        "\"ratio_save_inval_vs_bare_get\": {}",
        ratio("save_inval", "bare_get_row")
    ));
    println!("{{\"impl\": \"stampcache\", {}}}", fields.join(", "));
}
