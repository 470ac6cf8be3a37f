//! The shared workload (../shared/README.md) on PostgreSQL and Redis, for the comparison
//! with django-cacheops (`scripts/compare.sh`). Prints one JSON object: the peer script's
//! field names (microseconds per call, median of rounds) for the shared tier, the same with
//! `strict_` and `tracked_` prefixes for the local tier's modes, the reads straight from
//! PostgreSQL (`*_nocache_us`), and a bare redis-rs `GET` / moka `get` of the same bytes.
//!
//! ```sh
//! cargo run --release --example workload -- --redis redis://127.0.0.1:6379/4 \
//!     --pg "host=127.0.0.1 user=postgres dbname=test" --rounds 5
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, Statement};
use serde::{Deserialize, Serialize};
use stampcache::{Cache, Codec, Cond, DefaultCodec, LocalMode, Read};

const TABLE: &str = "stampcache_bench_article";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Article {
    id: i32,
    category: i32,
    author: i32,
    title: String,
    body: String,
    published: bool,
}

struct Db {
    client: Client,
    get: Statement,
    fetch: Statement,
    count: Statement,
    update: Statement,
}

impl Db {
    fn connect(dsn: &str) -> Db {
        let mut client = Client::connect(dsn, NoTls).expect("PostgreSQL");
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {TABLE};
                 CREATE TABLE {TABLE} (id SERIAL PRIMARY KEY, category INT NOT NULL,
                   author INT NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,
                   published BOOL NOT NULL);
                 CREATE INDEX ON {TABLE} (category);
                 INSERT INTO {TABLE} (category, author, title, body, published)
                   SELECT i % 100, i % 37, 'title ' || i, repeat('x', 200), i % 3 <> 0
                   FROM generate_series(0, 9999) AS i;
                 ANALYZE {TABLE};"
            ))
            .unwrap();
        let cols = "id, category, author, title, body, published";
        let get = client
            .prepare(&format!("SELECT {cols} FROM {TABLE} WHERE id = $1"))
            .unwrap();
        let fetch = client
            .prepare(&format!("SELECT {cols} FROM {TABLE} WHERE category = $1"))
            .unwrap();
        let count = client
            .prepare(&format!(
                "SELECT count(*) FROM {TABLE} WHERE category = $1 AND published"
            ))
            .unwrap();
        let update = client
            .prepare(&format!("UPDATE {TABLE} SET title = $2 WHERE id = $1"))
            .unwrap();
        Db {
            client,
            get,
            fetch,
            count,
            update,
        }
    }

    fn row(r: &postgres::Row) -> Article {
        Article {
            id: r.get(0),
            category: r.get(1),
            author: r.get(2),
            title: r.get(3),
            body: r.get(4),
            published: r.get(5),
        }
    }

    fn get(&mut self, id: i32) -> Article {
        Self::row(&self.client.query_one(&self.get, &[&id]).unwrap())
    }
    fn fetch(&mut self, category: i32) -> Vec<Article> {
        let rows = self.client.query(&self.fetch, &[&category]).unwrap();
        rows.iter().map(Self::row).collect()
    }
    fn count(&mut self, category: i32) -> i64 {
        self.client
            .query_one(&self.count, &[&category])
            .unwrap()
            .get(0)
    }
    fn update(&mut self, id: i32, title: &str) {
        self.client.execute(&self.update, &[&id, &title]).unwrap();
    }
}

fn get_read(id: i32) -> Read {
    Read::get(TABLE).filter(Cond::eq("id", id))
}
fn fetch_read(c: i32) -> Read {
    Read::fetch(TABLE).filter(Cond::eq("category", c))
}
fn count_read(c: i32) -> Read {
    Read::count(TABLE)
        .filter(Cond::eq("category", c))
        .filter(Cond::eq("published", true))
}

/// Median over rounds of the mean time per call, in microseconds (the peer's method).
fn per_call(rounds: usize, n: usize, mut f: impl FnMut(usize)) -> f64 {
    f(0);
    let mut r: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for i in 0..n {
                f(i);
            }
            t.elapsed().as_secs_f64() / n as f64
        })
        .collect();
    r.sort_by(|a, b| a.total_cmp(b));
    (r[r.len() / 2] * 1e6 * 100.0).round() / 100.0
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn main() {
    let redis_url = arg("--redis", "redis://127.0.0.1:6379/4");
    let dsn = arg("--pg", "host=127.0.0.1 user=postgres dbname=test");
    let rounds: usize = arg("--rounds", "5").parse().expect("--rounds N");
    let mut db = Db::connect(&dsn);
    let mut out: Vec<(String, f64)> = Vec::new();

    out.push((
        "get_nocache_us".into(),
        per_call(rounds, 5000, |i| {
            std::hint::black_box(db.get(1 + (i % 1000) as i32));
        }),
    ));
    out.push((
        "fetch_nocache_us".into(),
        per_call(rounds, 500, |i| {
            std::hint::black_box(db.fetch((i % 100) as i32));
        }),
    ));
    out.push((
        "count_nocache_us".into(),
        per_call(rounds, 5000, |i| {
            std::hint::black_box(db.count((i % 100) as i32));
        }),
    ));

    for (mode, local) in [
        ("", None),
        ("strict_", Some(LocalMode::Strict)),
        ("tracked_", Some(LocalMode::Tracked)),
    ] {
        let mut b = Cache::builder()
            .redis(&redis_url)
            .prefix(format!("wl{mode}:"));
        if let Some(m) = local {
            b = b.local(m);
        }
        let cache = b.build().expect("Redis");
        cache.invalidate_all().expect("Redis reachable");
        if local == Some(LocalMode::Tracked) {
            let t = Instant::now();
            while !cache.push_channel_up() && t.elapsed() < Duration::from_secs(5) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let warm = |cache: &Cache, db: &mut Db| {
            for id in 1..=1000 {
                let _ = cache
                    .get_or_compute_arc(&get_read(id), || db.get(id))
                    .unwrap();
            }
            for c in 0..100 {
                let _ = cache
                    .get_or_compute_arc(&fetch_read(c), || db.fetch(c))
                    .unwrap();
                let _ = cache
                    .get_or_compute_arc(&count_read(c), || db.count(c))
                    .unwrap();
            }
        };
        warm(&cache, &mut db);
        warm(&cache, &mut db); // tracked: a new stamp's first fill may be refused once
        let key = |k: &str| format!("{mode}{k}");
        out.push((
            key("get_hit_us"),
            per_call(rounds, 5000, |i| {
                let id = 1 + (i % 1000) as i32;
                std::hint::black_box(
                    cache
                        .get_or_compute_arc(&get_read(id), || -> Article { unreachable!() })
                        .unwrap(),
                );
            }),
        ));
        out.push((
            key("fetch_hit_us"),
            per_call(rounds, 500, |i| {
                let c = (i % 100) as i32;
                std::hint::black_box(
                    cache
                        .get_or_compute_arc(&fetch_read(c), || -> Vec<Article> { unreachable!() })
                        .unwrap(),
                );
            }),
        ));
        out.push((
            key("count_hit_us"),
            per_call(rounds, 5000, |i| {
                let c = (i % 100) as i32;
                std::hint::black_box(
                    cache
                        .get_or_compute_arc(&count_read(c), || -> i64 { unreachable!() })
                        .unwrap(),
                );
            }),
        ));
        // Misses: gets of pks not read since the cache was emptied.
        cache.invalidate_all().unwrap();
        let mut k = 1000usize;
        out.push((
            key("get_miss_us"),
            per_call(rounds, 1000, |_| {
                k += 1;
                let id = 1 + (k % 10_000) as i32;
                std::hint::black_box(
                    cache
                        .get_or_compute_arc(&get_read(id), || db.get(id))
                        .unwrap(),
                );
            }),
        ));
        // Saves while 1,000 gets and 100 lists are cached: UPDATE, then the invalidation.
        warm(&cache, &mut db);
        let mut objs: Vec<Article> = (1..=500).map(|id| db.get(id)).collect();
        let mut n = 0u64;
        out.push((
            key("save_inval_us"),
            per_call(rounds, 500, |i| {
                n += 1;
                let old = objs[i % 500].clone();
                let new = Article {
                    title: format!("t{n}"),
                    ..old.clone()
                };
                db.update(new.id, &new.title);
                cache.on_update(TABLE, &old, &new).unwrap();
                objs[i % 500] = new;
            }),
        ));
        out.push((
            key("save_noinval_us"),
            per_call(rounds, 500, |i| {
                n += 1;
                let o = &mut objs[i % 500];
                o.title = format!("t{n}");
                db.update(o.id, &o.title);
            }),
        ));
    }

    // The physical limits: a bare GET and a bare moka get of the same bytes and value.
    let article = db.get(7);
    let bytes = DefaultCodec::encode(&article).unwrap();
    let mut conn = redis::Client::open(redis_url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("wl:bare")
        .arg(&bytes)
        .query(&mut conn)
        .unwrap();
    out.push((
        "bare_redis_get_us".into(),
        per_call(rounds, 5000, |_| {
            let v: Vec<u8> = redis::cmd("GET").arg("wl:bare").query(&mut conn).unwrap();
            std::hint::black_box(v);
        }),
    ));
    let moka: moka::sync::Cache<String, Arc<Article>> = moka::sync::Cache::new(100);
    moka.insert("bare".into(), Arc::new(article));
    out.push((
        "bare_moka_get_us".into(),
        per_call(rounds, 5000, |_| {
            std::hint::black_box(moka.get("bare").unwrap());
        }),
    ));
    db.client
        .batch_execute(&format!("DROP TABLE {TABLE}"))
        .unwrap();

    let fields: Vec<String> = out.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
    println!(
        "{{\"impl\": \"stampcache\", \"db\": \"postgres\", {}}}",
        fields.join(", ")
    );
}
