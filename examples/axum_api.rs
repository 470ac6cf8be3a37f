//! A JSON API on axum and PostgreSQL (sqlx) whose reads go through an [`AsyncCache`] on
//! Redis, with granular invalidation: writing an article invalidates the lists of its
//! category (old and new, on update) and its own detail, and nothing else.
//!
//! Routes:
//!
//! - `GET /articles?category=N`: the articles of a category (cached);
//! - `GET /articles/{id}`: one article (cached, misses too), 404 when there is none;
//! - `POST /articles` with `{"category": N, "title": "..."}`: creates one (201);
//! - `PUT /articles/{id}` with the same body: replaces one;
//! - `DELETE /articles/{id}`: deletes one (204);
//! - `GET /stats`: database reads made by cache loaders, and cache hits.
//!
//! The table `axum_article` is created if missing and seeded with 20 rows if empty.
//!
//! ```sh
//! cargo run --example axum_api               # serves until Ctrl-C
//! cargo run --example axum_api -- --smoke    # serves on a free port, checks itself, exits
//! ```
//!
//! Environment:
//!
//! - `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! - `REDIS_URL` (default `redis://127.0.0.1:6379/5`);
//! - `BIND`, where to listen (default `127.0.0.1:3000`; the smoke test takes a free port).
//!
//! The smoke test uses a cache prefix of its own (process id and time), so it neither sees
//! nor disturbs the entries of a running server or of another run; it deletes the rows it
//! created and this run's Redis keys when it ends. It exits with code 1 when a check
//! fails.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgPool, PgPoolOptions};
use stampcache::{AsyncCache, Cache, Cond, Event, LoadError, Outcome, Read};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The table's name for the cache: reads and writes must use the same one. It need not be
/// the SQL name; `app.model` names keep profile patterns (`blog.*`) useful.
const TABLE: &str = "blog.axum_article";

/// A row. Its field names are the ones the conditions use (`id`, `category`): the cache
/// matches written rows against cached reads by them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
struct Article {
    id: i64,
    category: i64,
    title: String,
}

/// The body of `POST` and `PUT`.
#[derive(Debug, Deserialize)]
struct ArticleInput {
    category: i64,
    title: String,
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    category: i64,
}

#[derive(Clone)]
struct AppState {
    db: PgPool,
    cache: AsyncCache,
    /// Database reads made by cache loaders, i.e. cache misses that reached PostgreSQL.
    db_reads: Arc<AtomicUsize>,
    /// Reads answered by the cache (counted by an event listener).
    hits: Arc<AtomicUsize>,
}

impl AppState {
    fn db_reads(&self) -> usize {
        self.db_reads.load(Ordering::Relaxed)
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }
    /// Called first thing in every loader.
    fn count_db_read(&self) {
        self.db_reads.fetch_add(1, Ordering::Relaxed);
    }
}

// ------------------------------------------------------------------------ handlers

async fn list_articles(
    State(app): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<Article>>, ApiError> {
    // `Cond::eq` is granular: only a written row of this category invalidates the list.
    // `extra` holds what else shapes the result (the order); it is part of the key only.
    let read = Read::fetch(TABLE)
        .filter(Cond::eq("category", q.category))
        .extra("ORDER BY id");
    let articles = app
        .cache
        .try_get_or_load(&read, || async {
            app.count_db_read();
            sqlx::query_as::<_, Article>(
                "SELECT id, category, title FROM axum_article WHERE category = $1 ORDER BY id",
            )
            .bind(q.category)
            .fetch_all(&app.db)
            .await
        })
        .await?;
    Ok(Json(articles))
}

async fn get_article(
    State(app): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Article>, ApiError> {
    // The cached value is an `Option`, so a miss ("no article 42") is cached too. That is
    // safe: inserting article 42 reports a row with `id = 42`, which invalidates this read.
    // (The price: probes of many absent ids fill the cache until their entries expire.)
    let read = Read::get(TABLE).filter(Cond::eq("id", id));
    let article: Option<Article> = app
        .cache
        .try_get_or_load(&read, || async {
            app.count_db_read();
            sqlx::query_as::<_, Article>(
                "SELECT id, category, title FROM axum_article WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&app.db)
            .await
        })
        .await?;
    article.map(Json).ok_or(ApiError::NotFound)
}

async fn create_article(
    State(app): State<AppState>,
    Json(input): Json<ArticleInput>,
) -> Result<(StatusCode, Json<Article>), ApiError> {
    // A single statement commits on its own.
    let article = sqlx::query_as::<_, Article>(
        "INSERT INTO axum_article (category, title) VALUES ($1, $2) \
         RETURNING id, category, title",
    )
    .bind(input.category)
    .bind(&input.title)
    .fetch_one(&app.db)
    .await?;
    // Invalidate after the database commit: done before it, a concurrent reader could
    // reload the old data and cache it under the fresh stamps.
    report(app.cache.on_insert(TABLE, &article).await);
    Ok((StatusCode::CREATED, Json(article)))
}

async fn update_article(
    State(app): State<AppState>,
    Path(id): Path<i64>,
    Json(input): Json<ArticleInput>,
) -> Result<Json<Article>, ApiError> {
    // The old row is needed as well as the new one: if the category changes, the lists of
    // both categories are affected. `FOR UPDATE` keeps a concurrent update from changing
    // it between our read and our write, so the old image reported is the true one.
    let mut tx = app.db.begin().await?;
    let old = sqlx::query_as::<_, Article>(
        "SELECT id, category, title FROM axum_article WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(old) = old else {
        return Err(ApiError::NotFound); // dropping `tx` rolls it back
    };
    let new = sqlx::query_as::<_, Article>(
        "UPDATE axum_article SET category = $2, title = $3 WHERE id = $1 \
         RETURNING id, category, title",
    )
    .bind(id)
    .bind(input.category)
    .bind(&input.title)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    // Invalidate after the database commit (see `create_article`).
    report(app.cache.on_update(TABLE, &old, &new).await);
    Ok(Json(new))
}

async fn delete_article(
    State(app): State<AppState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    // `RETURNING` gives the deleted row (its old image) from the same, self-committing
    // statement.
    let old = sqlx::query_as::<_, Article>(
        "DELETE FROM axum_article WHERE id = $1 RETURNING id, category, title",
    )
    .bind(id)
    .fetch_optional(&app.db)
    .await?;
    let Some(old) = old else {
        return Err(ApiError::NotFound);
    };
    // Invalidate after the database commit (see `create_article`).
    report(app.cache.on_delete(TABLE, &old).await);
    Ok(StatusCode::NO_CONTENT)
}

async fn stats(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "database_reads": app.db_reads(), "cache_hits": app.hits() }))
}

/// What to do when reporting a write fails. The write is committed by then, so answering
/// with an error would invite the client to repeat it. When Redis is the problem the cache
/// has queued the invalidation and sends it before its next read, so nothing stale is
/// served; log it and answer as usual.
fn report(invalidated: Result<(), stampcache::Error>) {
    if let Err(e) = invalidated {
        eprintln!("invalidation failed (queued for replay): {e}");
    }
}

fn router(app: AppState) -> Router {
    Router::new()
        .route("/articles", get(list_articles).post(create_article))
        .route(
            "/articles/{id}",
            get(get_article).put(update_article).delete(delete_article),
        )
        .route("/stats", get(stats))
        .with_state(app)
}

// ------------------------------------------------------------------------ errors

#[derive(Debug)]
enum ApiError {
    NotFound,
    Db(sqlx::Error),
    Cache(stampcache::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Db(e)
    }
}

impl From<LoadError<sqlx::Error>> for ApiError {
    fn from(e: LoadError<sqlx::Error>) -> Self {
        match e {
            LoadError::Cache(e) => ApiError::Cache(e),
            LoadError::Loader(e) => ApiError::Db(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not found".to_owned()),
            ApiError::Db(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("database: {e}")),
            // Reads fail while Redis is down. `Cache::builder().degrade_on_failure(true)`
            // would run the loaders instead (serving from the database, uncached).
            ApiError::Cache(e) if e.is_unavailable() => {
                (StatusCode::SERVICE_UNAVAILABLE, format!("cache: {e}"))
            }
            ApiError::Cache(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cache: {e}")),
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}

// ------------------------------------------------------------------------ setup

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Creates the table if missing and seeds it if empty.
async fn prepare_table(app: &AppState) -> Result<(), BoxError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS axum_article (
            id BIGSERIAL PRIMARY KEY,
            category BIGINT NOT NULL,
            title TEXT NOT NULL
        )",
    )
    .execute(&app.db)
    .await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM axum_article")
        .fetch_one(&app.db)
        .await?;
    if rows == 0 {
        sqlx::query(
            "INSERT INTO axum_article (category, title) \
             SELECT 1 + n % 4, 'Article ' || n FROM generate_series(1, 20) AS n",
        )
        .execute(&app.db)
        .await?;
        // A bulk write whose rows we do not report one by one: invalidate the whole table
        // (entries cached before the table was emptied must not survive the seed).
        app.cache.invalidate_model(TABLE).await?;
        println!("seeded axum_article with 20 rows");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<ExitCode, BoxError> {
    let smoke = std::env::args().skip(1).any(|a| a == "--smoke");
    let database_url = env_or("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test");
    let redis_url = env_or("REDIS_URL", "redis://127.0.0.1:6379/5");

    let db = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&database_url)
        .await
        .map_err(|e| format!("PostgreSQL at {database_url}: {e}"))?;

    let prefix = if smoke {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("axum-example:smoke-{}-{nanos}:", std::process::id())
    } else {
        "axum-example:".to_owned()
    };
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    // Must be built inside the tokio runtime. Redis is connected on first use.
    let cache = Cache::builder()
        .redis(redis_url.as_str())
        .prefix(prefix.as_str())
        .on_event(move |event| {
            if let Event::Read {
                outcome: Outcome::Hit | Outcome::LocalHit,
                ..
            } = event
            {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build_async()?;
    let app = AppState {
        db,
        cache,
        db_reads: Arc::new(AtomicUsize::new(0)),
        hits,
    };
    prepare_table(&app)
        .await
        .map_err(|e| format!("preparing the table: {e}"))?;

    if smoke {
        println!("smoke test: PostgreSQL {database_url}, Redis {redis_url}, prefix {prefix}");
        smoke_test(app, &redis_url, &prefix).await
    } else {
        serve(app).await?;
        Ok(ExitCode::SUCCESS)
    }
}

async fn serve(app: AppState) -> Result<(), BoxError> {
    let listener = TcpListener::bind(env_or("BIND", "127.0.0.1:3000")).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr} (Ctrl-C to stop); try:");
    println!("  curl 'http://{addr}/articles?category=1'");
    println!("  curl http://{addr}/articles/1");
    println!(
        "  curl -X POST -H 'Content-Type: application/json' \
         -d '{{\"category\": 1, \"title\": \"Hello\"}}' http://{addr}/articles"
    );
    println!("  curl http://{addr}/stats");
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

// ------------------------------------------------------------------------ smoke test

/// Fails the smoke test with a message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}

/// Serves on a free port, runs the checks, then cleans up whatever they left.
async fn smoke_test(app: AppState, redis_url: &str, prefix: &str) -> Result<ExitCode, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, router(app.clone()))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    println!("serving on http://{addr}");

    let mut created = Vec::new();
    let outcome = smoke_steps(&app, addr, &mut created).await;

    let _ = stop.send(());
    let served = match server.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("the server stopped with an error: {e}")),
        Err(e) => Err(format!("the server task failed: {e}")),
    };
    let mut passed = true;
    for failure in [outcome.map_err(|e| e.to_string()), served]
        .into_iter()
        .filter_map(Result::err)
    {
        eprintln!("smoke test FAILED: {failure}");
        passed = false;
    }

    // Cleanup, also after a failure; its own failures fail the run but hide nothing above.
    if let Err(e) = delete_rows(&app.db, &created).await {
        eprintln!("cleanup: could not delete the rows {created:?}: {e}");
        passed = false;
    }
    if let Err(e) = delete_keys(redis_url, prefix).await {
        eprintln!("cleanup: could not delete the Redis keys {prefix}*: {e}");
        passed = false;
    }

    if passed {
        println!(
            "smoke test passed ({} database reads, {} cache hits)",
            app.db_reads(),
            app.hits()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

async fn delete_rows(db: &PgPool, ids: &[i64]) -> Result<(), sqlx::Error> {
    if !ids.is_empty() {
        sqlx::query("DELETE FROM axum_article WHERE id = ANY($1)")
            .bind(ids)
            .execute(db)
            .await?;
    }
    Ok(())
}

/// Deletes every key of this run's prefix, through the `redis` crate (a dependency of
/// stampcache). `cache.invalidate_all()` is not enough here: it deletes entries and stamps
/// (which would expire anyway) but keeps the per-table scheme sets, which have no expiry
/// (dropping them while a read registers a scheme would lose invalidations), so a prefix
/// used once would leave them in Redis forever.
async fn delete_keys(redis_url: &str, prefix: &str) -> Result<(), BoxError> {
    let client = redis::Client::open(redis_url)?;
    let mut con = client.get_multiplexed_async_connection().await?;
    // The prefix is made of letters, digits, '-' and ':': no glob character to escape.
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
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<()>(&mut con)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// One request, with the database reads (loader runs) and cache hits it caused.
struct Step {
    status: u16,
    body: String,
    db_reads: usize,
    hits: usize,
}

impl Step {
    fn articles(&self) -> Result<Vec<Article>, BoxError> {
        serde_json::from_str(&self.body)
            .map_err(|e| format!("not a list of articles ({e}): {}", self.body).into())
    }
    fn article(&self) -> Result<Article, BoxError> {
        serde_json::from_str(&self.body)
            .map_err(|e| format!("not an article ({e}): {}", self.body).into())
    }
}

async fn step(
    app: &AppState,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Step, BoxError> {
    let (reads, hits) = (app.db_reads(), app.hits());
    let reply = http(addr, method, path, body).await?;
    Ok(Step {
        status: reply.status,
        body: reply.body,
        db_reads: app.db_reads() - reads,
        hits: app.hits() - hits,
    })
}

async fn smoke_steps(
    app: &AppState,
    addr: SocketAddr,
    created: &mut Vec<i64>,
) -> Result<(), BoxError> {
    const CAT: i64 = 1;
    const OTHER: i64 = 2;
    let list = format!("/articles?category={CAT}");
    let other = format!("/articles?category={OTHER}");
    let title = format!("smoke test {}", std::process::id());

    let s = step(app, addr, "GET", &list, None).await?;
    ensure!(
        s.status == 200,
        "GET {list}: status {}: {}",
        s.status,
        s.body
    );
    let first = s.articles()?;
    ensure!(
        s.db_reads == 1,
        "GET {list}: {} database reads, expected 1",
        s.db_reads
    );
    println!(
        "1. GET {list}: {} articles, loaded from the database",
        first.len()
    );

    let s = step(app, addr, "GET", &list, None).await?;
    ensure!(s.status == 200, "GET {list} again: status {}", s.status);
    ensure!(s.articles()? == first, "GET {list} again: a different list");
    ensure!(
        s.db_reads == 0,
        "GET {list} again: {} database reads, expected 0",
        s.db_reads
    );
    println!(
        "2. GET {list} again: the same list from the cache ({} hit)",
        s.hits
    );

    let s = step(app, addr, "GET", &other, None).await?;
    ensure!(
        s.status == 200,
        "GET {other}: status {}: {}",
        s.status,
        s.body
    );
    let other_list = s.articles()?;
    ensure!(
        s.db_reads == 1,
        "GET {other}: {} database reads, expected 1",
        s.db_reads
    );
    println!(
        "3. GET {other}: {} articles, loaded from the database",
        other_list.len()
    );

    let input = serde_json::json!({ "category": CAT, "title": title }).to_string();
    let s = step(app, addr, "POST", "/articles", Some(&input)).await?;
    ensure!(
        s.status == 201,
        "POST /articles: status {}: {}",
        s.status,
        s.body
    );
    let new = s.article()?;
    created.push(new.id);
    ensure!(
        new.category == CAT && new.title == title,
        "POST /articles: returned {new:?}"
    );
    let detail = format!("/articles/{}", new.id);
    println!(
        "4. POST /articles: created article {} in category {CAT}",
        new.id
    );

    let s = step(app, addr, "GET", &list, None).await?;
    ensure!(
        s.status == 200,
        "GET {list} after the insert: status {}",
        s.status
    );
    ensure!(
        s.db_reads == 1,
        "GET {list} after the insert: {} database reads, expected 1 (not invalidated?)",
        s.db_reads
    );
    ensure!(
        s.articles()?.iter().any(|a| a.title == title),
        "GET {list} after the insert: {title:?} missing: {}",
        s.body
    );
    println!("5. GET {list}: invalidated by the insert, reloaded, has {title:?}");

    let s = step(app, addr, "GET", &other, None).await?;
    ensure!(
        s.status == 200,
        "GET {other} after the insert: status {}",
        s.status
    );
    ensure!(
        s.db_reads == 0,
        "GET {other} after the insert: {} database reads, expected 0 (category {OTHER} \
         should not be invalidated by a row of category {CAT})",
        s.db_reads
    );
    ensure!(s.articles()? == other_list, "GET {other}: a different list");
    println!("6. GET {other}: still served from the cache (another category)");

    let s = step(app, addr, "GET", &detail, None).await?;
    ensure!(
        s.status == 200,
        "GET {detail}: status {}: {}",
        s.status,
        s.body
    );
    ensure!(s.article()? == new, "GET {detail}: {}", s.body);
    let s = step(app, addr, "GET", &detail, None).await?;
    ensure!(s.status == 200, "GET {detail} again: status {}", s.status);
    ensure!(
        s.db_reads == 0,
        "GET {detail} again: {} database reads, expected 0",
        s.db_reads
    );
    println!("7. GET {detail}: loaded once, then from the cache");

    let edited = format!("{title} (edited)");
    let input = serde_json::json!({ "category": CAT, "title": edited }).to_string();
    let s = step(app, addr, "PUT", &detail, Some(&input)).await?;
    ensure!(
        s.status == 200,
        "PUT {detail}: status {}: {}",
        s.status,
        s.body
    );
    ensure!(
        s.article()?.title == edited,
        "PUT {detail}: returned {}",
        s.body
    );
    println!("8. PUT {detail}: title changed to {edited:?}");

    let s = step(app, addr, "GET", &detail, None).await?;
    ensure!(
        s.status == 200,
        "GET {detail} after the update: status {}",
        s.status
    );
    ensure!(
        s.article()?.title == edited,
        "GET {detail} after the update: stale title: {}",
        s.body
    );
    ensure!(
        s.db_reads == 1,
        "GET {detail} after the update: {} database reads, expected 1",
        s.db_reads
    );
    println!("9. GET {detail}: invalidated by the update, shows the new title");

    let s = step(app, addr, "DELETE", &detail, None).await?;
    ensure!(
        s.status == 204,
        "DELETE {detail}: status {}: {}",
        s.status,
        s.body
    );
    println!("10. DELETE {detail}: deleted");

    let s = step(app, addr, "GET", &detail, None).await?;
    ensure!(
        s.status == 404,
        "GET {detail} after the delete: status {}, expected 404: {}",
        s.status,
        s.body
    );
    ensure!(
        s.db_reads == 1,
        "GET {detail} after the delete: {} database reads, expected 1",
        s.db_reads
    );
    let s = step(app, addr, "GET", &detail, None).await?;
    ensure!(s.status == 404, "GET {detail} again: status {}", s.status);
    ensure!(
        s.db_reads == 0,
        "GET {detail} again: {} database reads, expected 0 (the miss is cached)",
        s.db_reads
    );
    println!("11. GET {detail}: 404, and the miss is served from the cache");

    let s = step(app, addr, "GET", &list, None).await?;
    ensure!(
        s.status == 200,
        "GET {list} after the delete: status {}",
        s.status
    );
    ensure!(
        s.db_reads == 1 && !s.articles()?.iter().any(|a| a.id == new.id),
        "GET {list} after the delete: {} database reads, list {}",
        s.db_reads,
        s.body
    );
    println!(
        "12. GET {list}: invalidated by the delete, article {} gone",
        new.id
    );
    Ok(())
}

// ------------------------------------------------------------------------ raw HTTP

struct Reply {
    status: u16,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`: the reply ends at EOF).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Reply, BoxError> {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let body = body.unwrap_or("");
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));

    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(raw)
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| format!("{method} {path}: no reply within 10 s"))??;
    parse_reply(&raw).map_err(|e| format!("{method} {path}: {e}").into())
}

fn parse_reply(raw: &[u8]) -> Result<Reply, BoxError> {
    let text = std::str::from_utf8(raw)?;
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or("the reply has no end of headers")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or("the reply has no status line")?;
    let chunked = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_owned()
    };
    Ok(Reply { status, body })
}

/// The body of a `Transfer-Encoding: chunked` reply (axum sends a `Content-Length` for
/// JSON, but a streamed body would come this way).
fn dechunk(mut rest: &str) -> Result<String, BoxError> {
    let mut body = String::new();
    loop {
        let (size, tail) = rest.split_once("\r\n").ok_or("truncated chunked body")?;
        let size = size.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)?;
        if size == 0 {
            return Ok(body);
        }
        body.push_str(tail.get(..size).ok_or("truncated chunked body")?);
        rest = tail.get(size + 2..).ok_or("truncated chunked body")?;
    }
}
