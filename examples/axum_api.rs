//! A JSON API on axum and PostgreSQL (sqlx) whose reads go through an [`AsyncCache`] on
//! Redis, with granular invalidation: writing an article invalidates the lists of its
//! category (old and new, on update) and its own detail, and nothing else.
//!
//! - `GET /articles?category=N`: the articles of a category (cached);
//! - `GET /articles/{id}`: one article, 404 when there is none (cached, misses too);
//! - `POST /articles` with `{"category": N, "title": "..."}`: creates one (201);
//! - `PUT /articles/{id}` with the same body: replaces one; `DELETE /articles/{id}` (204).
//!
//! ```sh
//! cargo run --example axum_api    # then, in another shell:
//! curl 'http://127.0.0.1:3000/articles?category=1'
//! curl -H 'Content-Type: application/json' -d '{"category": 1, "title": "Hi"}' \
//!      http://127.0.0.1:3000/articles
//! ```
//!
//! Environment: `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! `REDIS_URL` (default `redis://127.0.0.1:6379/5`), `BIND` (default `127.0.0.1:3000`). The
//! table `axum_article` is created if missing.
//! `tests/axum_api.rs` drives [`app`] against PostgreSQL and a private Redis.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use stampcache::{AsyncCache, Cache, Cond, LoadError, Read};

/// The table's name for the cache: reads and writes must use the same one.
pub const TABLE: &str = "blog.axum_article";

/// A row. Its field names are the ones the conditions use (`id`, `category`): the cache
/// matches written rows against cached reads by them.
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
    /// The cache in front of its reads.
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
    // Granular: only a written row of this category invalidates the list. `extra` is what
    // else shapes the result; it is part of the key only.
    let read = Read::fetch(TABLE)
        .filter(Cond::eq("category", q.category))
        .extra("ORDER BY id");
    let sql = "SELECT id, category, title FROM axum_article WHERE category = $1 ORDER BY id";
    let load = || sqlx::query_as(sql).bind(q.category).fetch_all(&s.db);
    Ok(Json(s.cache.get_or_load(&read, load).await?))
}

async fn get_article(State(s): State<AppState>, Path(id): Path<i64>) -> ApiResult<Json<Article>> {
    // The value is an `Option`, so "no article 42" is cached too: inserting article 42
    // reports a row with `id = 42`, which invalidates this read.
    let read = Read::get(TABLE).filter(Cond::eq("id", id));
    let sql = "SELECT id, category, title FROM axum_article WHERE id = $1";
    let load = || sqlx::query_as(sql).bind(id).fetch_optional(&s.db);
    let article: Option<Article> = s.cache.get_or_load(&read, load).await?;
    article.map(Json).ok_or_else(not_found)
}

async fn create_article(
    State(s): State<AppState>,
    Json(input): Json<ArticleInput>,
) -> ApiResult<(StatusCode, Json<Article>)> {
    let sql = "INSERT INTO axum_article (category, title) VALUES ($1, $2) \
               RETURNING id, category, title";
    let article: Article = sqlx::query_as(sql)
        .bind(input.category)
        .bind(&input.title)
        .fetch_one(&s.db) // one statement: committed on its own
        .await?;
    // After the commit: invalidated before it, a concurrent reader could cache old data
    // under the fresh stamps.
    report(s.cache.on_insert(TABLE, &article).await);
    Ok((StatusCode::CREATED, Json(article)))
}

async fn update_article(
    State(s): State<AppState>,
    Path(id): Path<i64>,
    Json(input): Json<ArticleInput>,
) -> ApiResult<Json<Article>> {
    // The old row matters too: moving an article changes the lists of both categories.
    // `FOR UPDATE` keeps it from changing between our read and our write.
    let mut tx = s.db.begin().await?;
    let sql = "SELECT id, category, title FROM axum_article WHERE id = $1 FOR UPDATE";
    let old: Option<Article> = sqlx::query_as(sql)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let old = old.ok_or_else(not_found)?; // dropping `tx` rolls it back
    let sql = "UPDATE axum_article SET category = $2, title = $3 WHERE id = $1 \
               RETURNING id, category, title";
    let new: Article = sqlx::query_as(sql)
        .bind(id)
        .bind(input.category)
        .bind(&input.title)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    report(s.cache.on_update(TABLE, &old, &new).await);
    Ok(Json(new))
}

async fn delete_article(State(s): State<AppState>, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    let sql = "DELETE FROM axum_article WHERE id = $1 RETURNING id, category, title";
    let old: Option<Article> = sqlx::query_as(sql).bind(id).fetch_optional(&s.db).await?;
    report(s.cache.on_delete(TABLE, &old.ok_or_else(not_found)?).await);
    Ok(StatusCode::NO_CONTENT)
}

/// The write is committed when its invalidation fails, so it is not an error for the
/// client. If Redis was the problem, the cache has queued the invalidation and sends it
/// before its next read: nothing stale is served.
fn report(invalidated: Result<(), stampcache::Error>) {
    if let Err(e) = invalidated {
        eprintln!("invalidation failed (queued for replay): {e}");
    }
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
    let state = AppState { db, cache };
    let listener = tokio::net::TcpListener::bind(env("BIND", "127.0.0.1:3000")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(state)).await?;
    Ok(())
}
