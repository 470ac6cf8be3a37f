//! The sqlx front against the hand-described `Read` and against sqlx straight to
//! PostgreSQL, in one run: a get by id, a list of ~100 rows by category and a count, on the
//! shared tier (Redis) and on a tracked local tier. Medians of interleaved rounds; prints one
//! JSON object. Needs the local PostgreSQL (as `tests/common/pgpool.rs` finds it) and Redis
//! (`REDIS_URL`, or a `redis-server` of its own).
//!
//! `cargo bench --bench sql_front --features sqlx`
//!
//! `SQL_FRONT_ONLY=front_get:100000` (or `hand_get`, `front_list`, `hand_list`,
//! `front_count`, `hand_count`) runs only that call, that many times, as tracked local hits,
//! then exits: for instruction counts, `valgrind --tool=callgrind` one run per variant and
//! take the difference from a run of `:0` divided by the count. `SQL_FRONT_TIER=shared`
//! runs them as shared-tier hits (Redis) instead.

#![recursion_limit = "256"]

mod common;
#[path = "../tests/common/pgpool.rs"]
mod pgpool;

use std::time::Instant;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use stampcache::{AsyncCache, Cache, Cond, LocalMode, Read};

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
struct Article {
    id: i64,
    category: i64,
    title: String,
}

const TABLE: &str = "bench_sql_article";

/// Median over rounds of the mean time of one call, in microseconds, for each of `fs`
/// (interleaved, so all see the same machine).
async fn medians<const N: usize>(rounds: usize, per: usize, fs: [&dyn Fn() -> Fut; N]) -> [f64; N] {
    let mut samples = vec![Vec::with_capacity(rounds); N];
    for _ in 0..rounds {
        for (i, f) in fs.iter().enumerate() {
            let t = Instant::now();
            for _ in 0..per {
                f().await;
            }
            samples[i].push(t.elapsed().as_secs_f64() * 1e6 / per as f64);
        }
    }
    let mut out = [0.0; N];
    for (i, s) in samples.iter_mut().enumerate() {
        s.sort_by(|a, b| a.total_cmp(b));
        out[i] = s[s.len() / 2];
    }
    out
}

type Fut = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'static>>;

async fn setup(pool: &PgPool) {
    for stmt in [
        format!("DROP TABLE IF EXISTS {TABLE}"),
        format!("CREATE TABLE {TABLE} (id BIGINT PRIMARY KEY, category BIGINT NOT NULL, title TEXT NOT NULL)"),
        format!("INSERT INTO {TABLE} SELECT i, i % 10, 'title ' || i FROM generate_series(0, 999) i"),
        format!("ANALYZE {TABLE}"),
    ] {
        sqlx::query(&stmt).execute(pool).await.unwrap();
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let (_server, url) = common::bench_redis();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let pool = pgpool::postgres().await;
        setup(&pool).await;
        let mut report = vec![String::from("\"bench\": \"sql_front\"")];
        let only = std::env::var("SQL_FRONT_ONLY").ok();
        let shared_only = std::env::var("SQL_FRONT_TIER").is_ok_and(|t| t == "shared");
        let tiers: &[(&str, LocalMode)] = if only.is_some() && shared_only {
            &[("shared", LocalMode::Off)]
        } else if only.is_some() {
            &[("tracked", LocalMode::Tracked)]
        } else {
            &[("shared", LocalMode::Off), ("tracked", LocalMode::Tracked)]
        };
        for &(tier, local) in tiers {
            let cache: AsyncCache = Cache::builder()
                .redis(url.clone())
                .prefix(format!("benchsql{}:", std::process::id()))
                .local(local)
                .build_async()
                .unwrap();
            let get_sql = format!("SELECT id, category, title FROM {TABLE} WHERE id = $1");
            let list_sql = format!("SELECT id, category, title FROM {TABLE} WHERE category = $1 ORDER BY id");
            let count_sql = format!("SELECT count(*) FROM {TABLE} WHERE category = $1");
            let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
            let (get_sql, list_sql, count_sql) = (leak(get_sql), leak(list_sql), leak(count_sql));
            let c: &'static AsyncCache = Box::leak(Box::new(cache));
            let p: &'static PgPool = Box::leak(Box::new(pool.clone()));
            let straight_get = || -> Fut { Box::pin(async move {
                let _: Article = sqlx::query_as(get_sql).bind(7_i64).fetch_one(p).await.unwrap();
            }) };
            let front_get = || -> Fut { Box::pin(async move {
                let _: Article = c.query_as(get_sql).bind(7_i64).fetch_one(p).await.unwrap();
            }) };
            let hand_get = || -> Fut { Box::pin(async move {
                let read = Read::get(TABLE).filter(Cond::eq("id", 7)).extra(get_sql);
                let _: Article = c
                    .get_or_load(&read, || sqlx::query_as(get_sql).bind(7_i64).fetch_one(p))
                    .await
                    .unwrap();
            }) };
            let straight_list = || -> Fut { Box::pin(async move {
                let _: Vec<Article> = sqlx::query_as(list_sql).bind(3_i64).fetch_all(p).await.unwrap();
            }) };
            let front_list = || -> Fut { Box::pin(async move {
                let _: Vec<Article> = c.query_as(list_sql).bind(3_i64).fetch_all(p).await.unwrap();
            }) };
            let hand_list = || -> Fut { Box::pin(async move {
                let read = Read::fetch(TABLE).filter(Cond::eq("category", 3)).extra(list_sql);
                let _: Vec<Article> = c
                    .get_or_load(&read, || sqlx::query_as(list_sql).bind(3_i64).fetch_all(p))
                    .await
                    .unwrap();
            }) };
            let straight_count = || -> Fut { Box::pin(async move {
                let _: i64 = sqlx::query_scalar(count_sql).bind(3_i64).fetch_one(p).await.unwrap();
            }) };
            let front_count = || -> Fut { Box::pin(async move {
                let _: i64 = c.query_scalar(count_sql).bind(3_i64).fetch_one(p).await.unwrap();
            }) };
            let hand_count = || -> Fut { Box::pin(async move {
                let read = Read::count(TABLE).filter(Cond::eq("category", 3)).extra(count_sql);
                let _: i64 = c
                    .get_or_load(&read, || sqlx::query_scalar(count_sql).bind(3_i64).fetch_one(p))
                    .await
                    .unwrap();
            }) };
            // Warm: every entry cached.
            let warm: [&dyn Fn() -> Fut; 6] = [
                &front_get,
                &hand_get,
                &front_list,
                &hand_list,
                &front_count,
                &hand_count,
            ];
            for f in warm {
                f().await;
            }
            if let Some(only) = &only {
                let (name, n) = only.split_once(':').expect("SQL_FRONT_ONLY=variant:count");
                let n: usize = n.parse().expect("a count");
                let names = ["front_get", "hand_get", "front_list", "hand_list", "front_count", "hand_count"];
                let i = names.iter().position(|v| *v == name).expect("a variant");
                // Once more each, so a tracked fill refused at first is in the local tier.
                for f in warm {
                    f().await;
                }
                for _ in 0..n {
                    warm[i]().await;
                }
                println!("{{\"ran\": \"{name}\", \"count\": {n}}}");
                return;
            }
            let per = if local == LocalMode::Off { 200 } else { 2000 };
            for (op, fs) in [
                ("get", [&straight_get as &dyn Fn() -> Fut, &front_get, &hand_get]),
                ("fetch", [&straight_list as &dyn Fn() -> Fut, &front_list, &hand_list]),
                ("count", [&straight_count as &dyn Fn() -> Fut, &front_count, &hand_count]),
            ] {
                let per_op = if tier == "shared" || op == "get" { per } else { per / 4 };
                let [straight, front, hand] = medians(15, per_op, fs).await;
                report.push(format!(
                    "\"{tier}_{op}\": {{\"sqlx_us\": {straight:.2}, \"front_us\": {front:.2}, \"hand_us\": {hand:.2}, \"front_vs_hand\": {:.3}, \"front_vs_sqlx\": {:.3}}}",
                    front / hand,
                    front / straight
                ));
            }
        }
        sqlx::query(&format!("DROP TABLE {TABLE}")).execute(&pool).await.unwrap();
        println!("{{{}}}", report.join(", "));
    });
}
