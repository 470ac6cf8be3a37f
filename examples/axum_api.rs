//! A JSON API on axum and PostgreSQL (sqlx) whose reads and writes go through the sqlx
//! front of an [`AsyncCache`] on Redis: every statement is plain SQL with bound values, and
//! the cache derives from it what a read depends on and what a write changed. Writing an
//! article invalidates the lists of its category (old and new, on update) and its own
//! detail, and nothing else.
//!
//! - `GET /articles?category=N`: the articles of a category (cached);
//! - `GET /articles/{id}`: one article, 404 when there is none (cached, misses too);
//! - `POST /articles` with `{"category": N, "title": "..."}`: creates one (201);
//! - `PUT /articles/{id}` with the same body: replaces one; `DELETE /articles/{id}` (204).
//!
//! ```sh
//! cargo run --example axum_api --features sqlx    # then, in another shell:
//! curl 'http://127.0.0.1:3000/articles?category=1'
//! curl -H 'Content-Type: application/json' -d '{"category": 1, "title": "Hi"}' \
//!      http://127.0.0.1:3000/articles
//! ```
//!
//! Environment: `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! `REDIS_URL` (default `redis://127.0.0.1:6379/5`), `BIND` (default `127.0.0.1:3000`). The
//! table `axum_article` is created if missing.
//! `tests/axum_api.rs` drives [`app`] against PostgreSQL and a private Redis.
//!
//! **With the change stream.** Here the writes' own `RETURNING` rows say what changed. A
//! change-stream consumer (feature `postgres-cdc`: `stampcache::cdc::Consumer`, or the
//! `stampcache-cdc` binary beside this process, on the same Redis, prefix and version)
//! invalidates every committed write exactly, from any client, with no call at all: with one
//! running, the writes below may as well be plain `sqlx::query_as` (through the front they
//! are invalidated twice, which is harmless, and this process sees its own write at once).
//! `STAMPCACHE_CDC="host=127.0.0.1 user=postgres dbname=test" cargo run --example axum_api
//! --features sqlx,postgres-cdc` starts one in this process (see `main`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use stampcache::{AsyncCache, Cache, LoadError};

/// A row. The cache matches written rows against cached reads by column name (`id`,
/// `category`), taken from the SQL and the rows `RETURNING` gives back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Article {
    /// The primary key.
    pub id: i64,
    /// What lists are read by.
    pub category: i64,
    /// The title.
    pub title: String,
}

/// The body of `POST` and `PUT`.
#[derive(Deserialize)]
struct ArticleInput {
    category: i64,
    title: String,
}

#[derive(Deserialize)]
struct ListQuery {
    category: i64,
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub db: PgPool,
    /// The cache in front of it.
    pub cache: AsyncCache,
}

/// The API's routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/articles", get(list_articles).post(create_article))
        .route(
            "/articles/{id}",
            get(get_article).put(update_article).delete(delete_article),
        )
        .with_state(state)
}

async fn list_articles(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Article>>> {
    // Depends on the rows of this category only (`category = $1`); `ORDER BY` and the
    // column list are part of the key.
    let sql = "SELECT id, category, title FROM axum_article WHERE category = $1 ORDER BY id";
    let articles = s
        .cache
        .query_as(sql)
        .bind(q.category)
        .fetch_all(&s.db)
        .await?;
    Ok(Json(articles))
}

async fn get_article(State(s): State<AppState>, Path(id): Path<i64>) -> ApiResult<Json<Article>> {
    // `fetch_optional` caches "no article 42" too: inserting article 42 invalidates it.
    let sql = "SELECT id, category, title FROM axum_article WHERE id = $1";
    let article: Option<Article> = s.cache.query_as(sql).bind(id).fetch_optional(&s.db).await?;
    article.map(Json).ok_or_else(not_found)
}

async fn create_article(
    State(s): State<AppState>,
    Json(input): Json<ArticleInput>,
) -> ApiResult<(StatusCode, Json<Article>)> {
    // One statement on the pool: committed on its own, then the returned row (the new
    // one) is invalidated. A write whose invalidation fails is committed all the same:
    // the invalidation is queued and replayed before the cache's next call, and the
    // client gets an error (503 while Redis is unreachable).
    let sql = "INSERT INTO axum_article (category, title) VALUES ($1, $2) \
               RETURNING id, category, title";
    let article: Article = s
        .cache
        .query_as(sql)
        .bind(input.category)
        .bind(input.title)
        .fetch_one(&s.db)
        .await?;
    Ok((StatusCode::CREATED, Json(article)))
}

async fn update_article(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    Json(input): Json<ArticleInput>,
) -> ApiResult<Json<Article>> {
    // Moving an article changes the lists of both categories: the `UPDATE` returns the new
    // row, and its `WHERE` pins the old category (read and locked first), which tells the
    // front the old row. In a transaction, writes go through a scope, whose invalidations
    // wait for `scope.commit()`, called after the database's commit (invalidated before
    // it, a concurrent reader could cache the old row under fresh stamps).
    let mut tx = s.db.begin().await?;
    let scope = s.cache.atomic();
    let sql = "SELECT category FROM axum_article WHERE id = $1 FOR UPDATE";
    // A locking read is never cached: it runs straight against the database.
    let old: Option<i64> = scope
        .query_scalar(sql)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let old = old.ok_or_else(not_found)?; // dropping `tx` and `scope` rolls both back
    let sql = "UPDATE axum_article SET category = $2, title = $3 \
               WHERE id = $1 AND category = $4 RETURNING id, category, title";
    let new: Article = scope
        .query_as(sql)
        .bind(id)
        .bind(input.category)
        .bind(input.title)
        .bind(old)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    scope.commit().await.map_err(LoadError::Cache)?;
    Ok(Json(new))
}

async fn delete_article(State(s): State<AppState>, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    // The returned row is the old one: the reads it matched are invalidated.
    let sql = "DELETE FROM axum_article WHERE id = $1 RETURNING id, category, title";
    let old: Option<Article> = s.cache.query_as(sql).bind(id).fetch_optional(&s.db).await?;
    old.ok_or_else(not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

/// An error answer: a status and a message.
struct ApiError(StatusCode, String);

type ApiResult<T> = Result<T, ApiError>;

fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "not found".into())
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("database: {e}"))
    }
}

impl From<LoadError<sqlx::Error>> for ApiError {
    fn from(e: LoadError<sqlx::Error>) -> Self {
        match e {
            LoadError::Loader(e) => e.into(),
            // While Redis is down reads fail, unless the cache is built with
            // `degrade_on_failure(true)`: then loaders run, uncached.
            LoadError::Cache(e) if e.is_unavailable() => {
                ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("cache: {e}"))
            }
            LoadError::Cache(e) => {
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("cache: {e}"))
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// Creates the table if missing.
pub async fn create_table(db: &PgPool) -> Result<(), sqlx::Error> {
    let sql = "CREATE TABLE IF NOT EXISTS axum_article \
               (id BIGSERIAL PRIMARY KEY, category BIGINT NOT NULL, title TEXT NOT NULL)";
    sqlx::query(sql).execute(db).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let database_url = env("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/test");
    let db = PgPool::connect(&database_url).await?;
    // Built inside the tokio runtime; Redis is connected on first use.
    let cache = Cache::builder()
        .redis(env("REDIS_URL", "redis://127.0.0.1:6379/5"))
        .prefix("axum-example:")
        .build_async()?;
    create_table(&db).await?;
    // Built with `--features sqlx,postgres-cdc` and `STAMPCACHE_CDC` set to a libpq
    // connection string (a server with `wal_level = logical`), a change-stream consumer
    // invalidates every committed write to the table too, from any client (`psql`, another
    // service), as long as this process runs.
    #[cfg(feature = "postgres-cdc")]
    let _consumer = match std::env::var("STAMPCACHE_CDC") {
        Ok(conninfo) => Some(
            stampcache::cdc::Consumer::builder(&conninfo)
                .publication("axum_example")
                .create_publication(["axum_article"])
                .slot("axum_example")
                .create_slot(true)
                .spawn_async(cache.clone())
                .await?,
        ),
        Err(_) => None,
    };
    let state = AppState { db, cache };
    let listener = tokio::net::TcpListener::bind(env("BIND", "127.0.0.1:3000")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(state)).await?;
    Ok(())
}
