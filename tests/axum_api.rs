//! The axum example (`examples/axum_api.rs`, reads and writes through the sqlx front, no
//! hand-described read or hand-reported write) end to end: its router, driven in process with
//! `tower::ServiceExt::oneshot` (no server, no HTTP client), over the local PostgreSQL and a
//! `redis-server` of this test binary's own (`tests/common`).
//!
//! PostgreSQL: `STAMPCACHE_TEST_PG` (a libpq connection string or URL, as for
//! `tests/postgres.rs`), else `DATABASE_URL`, else `host=127.0.0.1 user=postgres
//! dbname=test`. Without it the test fails.
//!
//! Database reads are counted by the cache's events: a read answered `Miss` ran its loader
//! (one query); `Hit` was served from Redis. The test works in two categories of its own,
//! and deletes their rows and its Redis keys when it ends, also after a failure.

#[path = "../examples/axum_api.rs"]
#[allow(dead_code)]
mod example;

mod common;
#[path = "common/pgpool.rs"]
mod pgpool;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use example::{AppState, Article};
use serde::de::DeserializeOwned;
use serde_json::json;
use sqlx::PgPool;
use stampcache::{Cache, Event, Outcome};
use tower::ServiceExt;

/// Loader runs (reads answered `Miss`: one database query each) and cache hits.
#[derive(Clone, Default)]
struct Counts {
    loads: Arc<AtomicUsize>,
    hits: Arc<AtomicUsize>,
}

impl Counts {
    fn now(&self) -> (usize, usize) {
        (
            self.loads.load(Ordering::SeqCst),
            self.hits.load(Ordering::SeqCst),
        )
    }
}

/// The example's router and what its cache did.
struct Api {
    router: Router,
    counts: Counts,
}

/// One answer, with the loader runs and cache hits the request caused.
struct Reply {
    status: StatusCode,
    body: String,
    loads: usize,
    hits: usize,
}

impl Reply {
    fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("unexpected body ({e}): {}", self.body))
    }
}

impl Api {
    async fn call(&self, method: Method, uri: &str, body: Option<serde_json::Value>) -> Reply {
        let (loads, hits) = self.counts.now();
        let request = Request::builder().method(method).uri(uri);
        let request = match body {
            Some(v) => request
                .header("content-type", "application/json")
                .body(Body::from(v.to_string())),
            None => request.body(Body::empty()),
        };
        let response = self.router.clone().oneshot(request.unwrap()).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let (loads_after, hits_after) = self.counts.now();
        Reply {
            status,
            body: String::from_utf8(body.to_vec()).unwrap(),
            loads: loads_after - loads,
            hits: hits_after - hits,
        }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call(Method::GET, uri, None).await
    }

    /// `GET uri`: 200, with the expected loader runs, and its JSON.
    async fn get_ok<T: DeserializeOwned>(&self, uri: &str, loads: usize) -> T {
        let r = self.get(uri).await;
        assert_eq!(r.status, StatusCode::OK, "GET {uri}: {}", r.body);
        assert_eq!(r.loads, loads, "GET {uri}: database reads");
        assert_eq!(r.hits, usize::from(loads == 0), "GET {uri}: cache hits");
        r.json()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_api_serves_reads_from_the_cache_and_sees_every_write() {
    let db = pgpool::postgres().await;
    example::create_table(&db).await.unwrap();
    // Two categories no one else uses; rows a crashed run left behind go first.
    let cat = 1_000_000_000 + 2 * i64::from(std::process::id());
    let other = cat + 1;
    delete_rows(&db, cat, other).await;

    let redis_url = common::shared_redis_url();
    let prefix = common::unique_prefix("axum");
    let counts = Counts::default();
    let counted = counts.clone();
    let cache = Cache::builder()
        .redis(redis_url.as_str())
        .prefix(prefix.as_str())
        .on_event(move |event| match event {
            Event::Read {
                outcome: Outcome::Miss | Outcome::Bypass | Outcome::Degraded,
                ..
            } => {
                counted.loads.fetch_add(1, Ordering::SeqCst);
            }
            Event::Read {
                outcome: Outcome::Hit | Outcome::LocalHit,
                ..
            } => {
                counted.hits.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        })
        .build_async()
        .unwrap();
    let api = Api {
        router: example::app(AppState {
            db: db.clone(),
            cache,
        }),
        counts,
    };

    // A panic in the steps is caught by the task, so the cleanup below always runs.
    let steps = tokio::spawn(steps(api, db.clone(), cat, other)).await;
    delete_rows(&db, cat, other).await;
    delete_keys(&redis_url, &prefix).await;
    if let Err(e) = steps {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn steps(api: Api, db: PgPool, cat: i64, other: i64) {
    // One article in each category, written directly (nothing is cached yet).
    let mut seeded = Vec::new();
    for c in [cat, other] {
        let a: Article = sqlx::query_as(
            "INSERT INTO axum_article (category, title) VALUES ($1, 'seed') \
             RETURNING id, category, title",
        )
        .bind(c)
        .fetch_one(&db)
        .await
        .unwrap();
        seeded.push(a);
    }
    let (seed, other_seed) = (seeded[0].clone(), seeded[1].clone());
    let list = format!("/articles?category={cat}");
    let other_list = format!("/articles?category={other}");

    // A list is loaded once, then served from the cache.
    let first: Vec<Article> = api.get_ok(&list, 1).await;
    assert_eq!(first, vec![seed.clone()]);
    let again: Vec<Article> = api.get_ok(&list, 0).await;
    assert_eq!(again, first);
    let others: Vec<Article> = api.get_ok(&other_list, 1).await;
    assert_eq!(others, vec![other_seed.clone()]);

    // An insert invalidates the lists of its category, and only those.
    let r = api
        .call(
            Method::POST,
            "/articles",
            Some(json!({ "category": cat, "title": "new" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "POST: {}", r.body);
    let new: Article = r.json();
    assert_eq!((new.category, new.title.as_str()), (cat, "new"));
    let detail = format!("/articles/{}", new.id);
    let reloaded: Vec<Article> = api.get_ok(&list, 1).await;
    assert_eq!(reloaded, vec![seed.clone(), new.clone()]);
    let still: Vec<Article> = api.get_ok(&other_list, 0).await;
    assert_eq!(still, others, "category {other} was not written");

    // A detail is loaded once, then served from the cache.
    let got: Article = api.get_ok(&detail, 1).await;
    assert_eq!(got, new);
    let got: Article = api.get_ok(&detail, 0).await;
    assert_eq!(got, new);

    // An update is seen by the detail and its category's list; the other list stays.
    let edited = json!({ "category": cat, "title": "edited" });
    let r = api.call(Method::PUT, &detail, Some(edited)).await;
    assert_eq!(r.status, StatusCode::OK, "PUT: {}", r.body);
    assert_eq!(r.json::<Article>().title, "edited");
    let got: Article = api.get_ok(&detail, 1).await;
    assert_eq!(got.title, "edited");
    let reloaded: Vec<Article> = api.get_ok(&list, 1).await;
    assert_eq!(reloaded, vec![seed.clone(), got.clone()]);
    let still: Vec<Article> = api.get_ok(&other_list, 0).await;
    assert_eq!(still, others);

    // Moving the article to the other category invalidates both lists (old and new row).
    let moved = json!({ "category": other, "title": "moved" });
    let r = api.call(Method::PUT, &detail, Some(moved)).await;
    assert_eq!(r.status, StatusCode::OK, "PUT: {}", r.body);
    let moved: Article = r.json();
    let reloaded: Vec<Article> = api.get_ok(&list, 1).await;
    assert_eq!(reloaded, vec![seed.clone()]);
    let reloaded: Vec<Article> = api.get_ok(&other_list, 1).await;
    assert_eq!(reloaded, vec![other_seed.clone(), moved.clone()]);

    // A delete: the detail is a 404 (and the miss is cached), the list loses the article,
    // and the list of the category the row was not in stays cached.
    let r = api.call(Method::DELETE, &detail, None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "DELETE: {}", r.body);
    let r = api.get(&detail).await;
    assert_eq!(
        (r.status, r.loads),
        (StatusCode::NOT_FOUND, 1),
        "{}",
        r.body
    );
    let r = api.get(&detail).await;
    assert_eq!((r.status, r.loads, r.hits), (StatusCode::NOT_FOUND, 0, 1));
    let reloaded: Vec<Article> = api.get_ok(&other_list, 1).await;
    assert_eq!(reloaded, vec![other_seed]);
    let still: Vec<Article> = api.get_ok(&list, 0).await;
    assert_eq!(still, vec![seed]);

    // Writes to an article that is not there are 404s too.
    let r = api
        .call(
            Method::PUT,
            &detail,
            Some(json!({ "category": cat, "title": "x" })),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "PUT: {}", r.body);
    let r = api.call(Method::DELETE, &detail, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "DELETE: {}", r.body);
}

/// Deletes every row of the test's categories.
async fn delete_rows(db: &PgPool, cat: i64, other: i64) {
    sqlx::query("DELETE FROM axum_article WHERE category IN ($1, $2)")
        .bind(cat)
        .bind(other)
        .execute(db)
        .await
        .unwrap();
}

/// Deletes every key of this test's prefix. `invalidate_all` would keep the scheme sets,
/// which never expire (dropping one while a read registers a scheme would lose
/// invalidations), and the Redis may be a shared one (`STAMPCACHE_TEST_REDIS`).
async fn delete_keys(redis_url: &str, prefix: &str) {
    let client = redis::Client::open(redis_url).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    // The prefix is letters, digits, '-' and ':': no glob character to escape.
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await
            .unwrap();
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<()>(&mut con)
                .await
                .unwrap();
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}
