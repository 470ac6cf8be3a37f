//! Queries through the cache, in sqlx's shape (feature `sqlx`): `cache.query_as::<Article>(sql).bind(7)
//! .fetch_all(&pool)` reads through the cache, its tables and conditions derived from the
//! SQL and the bound values ([`Shape`]); no `Read` or `Cond` is written by hand. A facade over
//! the power API: each call becomes a [`Read`](crate::Read) and one `get_or_compute` of the
//! async handle (or of an [`AsyncScope`], inside a transaction).
//!
//! ```no_run
//! # async fn demo(cache: stampcache::AsyncCache, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! #[derive(Clone, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
//! struct Article { id: i64, title: String }
//! let articles: Vec<Article> = cache
//!     .query_as("SELECT id, title FROM article WHERE category = $1 ORDER BY id")
//!     .bind(7_i64)
//!     .fetch_all(&pool)
//!     .await?;
//! let n: i64 = cache
//!     .query_scalar("SELECT count(*) FROM article WHERE category = $1")
//!     .bind(7_i64)
//!     .fetch_one(&pool)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! A statement that cannot be cached ([`NotCached`](crate::sql::NotCached)) runs straight
//! against the database, and [`Event::NotCached`](crate::Event::NotCached) says why.
//! Writes through [`execute`](AsyncCache::execute) invalidate what their SQL says they
//! change, never less: the inserted rows of an `INSERT … VALUES`, the whole written table
//! otherwise, everything for SQL it cannot read ([`WriteShape`]). Through a scope, the
//! invalidation waits for the scope's commit. Triggers and cascades write tables the SQL
//! does not name; the change stream (`postgres-cdc`) sees those too, with exact rows and no
//! call at all.

use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Arguments, Encode, Executor, FromRow, Postgres, Type};

use super::{AsyncCache, AsyncScope};
use crate::codec::Codec;
use crate::error::LoadError;
use crate::event::Event;
use crate::profile::Op;
use crate::sql::{Param, Shape, WriteShape};
use crate::value::Value;

/// A value that can be bound to a query: sqlx encodes it, the cache records it.
pub trait SqlParam {
    /// The value as the cache sees it (in conditions and in the key).
    fn to_param(&self) -> Param;
}

macro_rules! scalar_params {
    ($($t:ty),*) => {$(
        impl SqlParam for $t {
            fn to_param(&self) -> Param {
                Param::Scalar(Value::from(self.clone()))
            }
        }
        impl SqlParam for Vec<$t> {
            fn to_param(&self) -> Param {
                Param::Array(self.iter().cloned().map(Value::from).collect())
            }
        }
    )*};
}
scalar_params!(i16, i32, i64, f32, f64, bool, String);

impl SqlParam for &str {
    fn to_param(&self) -> Param {
        Param::Scalar(Value::from(*self))
    }
}

impl SqlParam for Vec<u8> {
    /// `bytea`, a scalar (as sqlx encodes it).
    fn to_param(&self) -> Param {
        Param::Scalar(Value::from(self.clone()))
    }
}

impl<T: SqlParam> SqlParam for Option<T> {
    fn to_param(&self) -> Param {
        match self {
            Some(v) => v.to_param(),
            None => Param::Scalar(Value::Null),
        }
    }
}

/// Where a query reads through.
enum Via<'c, C: Codec> {
    Cache(&'c AsyncCache<C>),
    Scope(&'c AsyncScope<C>),
}

/// A statement and its bound values.
struct Bound<'c, 'q, C: Codec> {
    via: Via<'c, C>,
    sql: &'q str,
    args: PgArguments,
    params: Vec<Param>,
    /// The first value sqlx could not encode (returned by the fetch).
    bind_error: Option<sqlx::error::BoxDynError>,
}

impl<'c, 'q, C: Codec> Bound<'c, 'q, C> {
    fn new(via: Via<'c, C>, sql: &'q str) -> Self {
        Bound {
            via,
            sql,
            args: PgArguments::default(),
            params: Vec::new(),
            bind_error: None,
        }
    }

    fn bind<T>(&mut self, value: T)
    where
        T: SqlParam + 'q + Encode<'q, Postgres> + Type<Postgres>,
    {
        self.params.push(value.to_param());
        if let Err(e) = self.args.add(value) {
            self.bind_error.get_or_insert(e);
        }
    }

    /// Reads through the cache when the statement can be cached, else straight from the
    /// database (`load` is handed the SQL and the arguments either way).
    async fn run<T, F, Fut>(self, op: Op, load: F) -> Result<T, LoadError<sqlx::Error>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce(&'q str, PgArguments) -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        if let Some(e) = self.bind_error {
            return Err(LoadError::Loader(sqlx::Error::Encode(e)));
        }
        let (sql, args) = (self.sql, self.args);
        let shape = Shape::cached(sql);
        let read = match shape.read(op, &self.params) {
            Ok(read) => read,
            Err(why) => {
                let reason = why.to_string();
                let core = match &self.via {
                    Via::Cache(c) => c.core(),
                    Via::Scope(s) => s.core(),
                };
                core.emit(&Event::NotCached {
                    sql,
                    reason: &reason,
                });
                return load(sql, args).await.map_err(LoadError::Loader);
            }
        };
        let loader = move || load(sql, args);
        match self.via {
            Via::Cache(c) => c.get_or_load(&read, loader).await,
            Via::Scope(s) => s.get_or_load(&read, loader).await,
        }
    }
}

/// A query whose rows become `O`s, from [`AsyncCache::query_as`] or
/// [`AsyncScope::query_as`]: `bind` its values, then `fetch_all`, `fetch_one` or
/// `fetch_optional`.
#[must_use = "a query does nothing until it is fetched"]
pub struct QueryAs<'c, 'q, C: Codec, O> {
    bound: Bound<'c, 'q, C>,
    row: PhantomData<fn() -> O>,
}

/// A query of one value per row (a count, an id), from [`AsyncCache::query_scalar`] or
/// [`AsyncScope::query_scalar`].
#[must_use = "a query does nothing until it is fetched"]
pub struct QueryScalar<'c, 'q, C: Codec, O> {
    bound: Bound<'c, 'q, C>,
    value: PhantomData<fn() -> O>,
}

impl<'c, 'q, C: Codec, O> QueryAs<'c, 'q, C, O>
where
    O: for<'r> FromRow<'r, PgRow>
        + Serialize
        + DeserializeOwned
        + Clone
        + Send
        + Sync
        + Unpin
        + 'static,
{
    /// Binds the next placeholder's value (`$1`, then `$2`, …).
    pub fn bind<T>(mut self, value: T) -> Self
    where
        T: SqlParam + 'q + Encode<'q, Postgres> + Type<Postgres>,
    {
        self.bound.bind(value);
        self
    }

    /// Every row.
    pub async fn fetch_all<'e, E>(self, executor: E) -> Result<Vec<O>, LoadError<sqlx::Error>>
    where
        E: 'e + Executor<'e, Database = Postgres>,
        'q: 'e,
    {
        self.bound
            .run(Op::Fetch, |sql, args| {
                sqlx::query_as_with::<Postgres, O, _>(sql, args).fetch_all(executor)
            })
            .await
    }

    /// Exactly one row (`sqlx::Error::RowNotFound` otherwise; not cached then).
    pub async fn fetch_one<'e, E>(self, executor: E) -> Result<O, LoadError<sqlx::Error>>
    where
        E: 'e + Executor<'e, Database = Postgres>,
        'q: 'e,
    {
        self.bound
            .run(Op::Get, |sql, args| {
                sqlx::query_as_with::<Postgres, O, _>(sql, args).fetch_one(executor)
            })
            .await
    }

    /// At most one row (a missing row is cached too).
    pub async fn fetch_optional<'e, E>(
        self,
        executor: E,
    ) -> Result<Option<O>, LoadError<sqlx::Error>>
    where
        E: 'e + Executor<'e, Database = Postgres>,
        'q: 'e,
    {
        self.bound
            .run(Op::Get, |sql, args| {
                sqlx::query_as_with::<Postgres, O, _>(sql, args).fetch_optional(executor)
            })
            .await
    }
}

impl<'c, 'q, C: Codec, O> QueryScalar<'c, 'q, C, O>
where
    (O,): for<'r> FromRow<'r, PgRow>,
    O: Serialize + DeserializeOwned + Clone + Send + Sync + Unpin + 'static,
{
    /// Binds the next placeholder's value (`$1`, then `$2`, …).
    pub fn bind<T>(mut self, value: T) -> Self
    where
        T: SqlParam + 'q + Encode<'q, Postgres> + Type<Postgres>,
    {
        self.bound.bind(value);
        self
    }

    /// The first column of exactly one row (a count, say).
    pub async fn fetch_one<'e, E>(self, executor: E) -> Result<O, LoadError<sqlx::Error>>
    where
        E: 'e + Executor<'e, Database = Postgres>,
        'q: 'e,
    {
        self.bound
            .run(Op::Aggregate, |sql, args| {
                sqlx::query_scalar_with::<Postgres, O, _>(sql, args).fetch_one(executor)
            })
            .await
    }

    /// The first column of every row.
    pub async fn fetch_all<'e, E>(self, executor: E) -> Result<Vec<O>, LoadError<sqlx::Error>>
    where
        E: 'e + Executor<'e, Database = Postgres>,
        'q: 'e,
    {
        self.bound
            .run(Op::Fetch, |sql, args| {
                sqlx::query_scalar_with::<Postgres, O, _>(sql, args).fetch_all(executor)
            })
            .await
    }
}

/// Invalidates what a statement wrote, through a cache or a scope (the same two calls).
macro_rules! apply_writes {
    ($handle:expr, $writes:expr) => {
        async {
            let writes: crate::sql::Writes = $writes;
            for (table, rows) in writes.rows {
                $handle.invalidate_rows(&table, rows).await?;
            }
            for table in writes.tables {
                $handle.invalidate_model(&table).await?;
            }
            Ok::<(), crate::Error>(())
        }
    };
}

/// A write statement, from [`AsyncCache::execute`] or [`AsyncScope::execute`]: `bind` its
/// values, then `execute`.
#[must_use = "a statement does nothing until it is executed"]
pub struct Execute<'c, 'q, C: Codec> {
    bound: Bound<'c, 'q, C>,
}

impl<'c, 'q, C: Codec> Execute<'c, 'q, C> {
    /// Binds the next placeholder's value (`$1`, then `$2`, …).
    pub fn bind<T>(mut self, value: T) -> Self
    where
        T: SqlParam + 'q + Encode<'q, Postgres> + Type<Postgres>,
    {
        self.bound.bind(value);
        self
    }

    /// Runs the statement, then invalidates what it may have changed (through a scope: at
    /// the scope's commit). A scope refuses, before running it, a statement whose effects
    /// cannot be told from its SQL.
    pub async fn execute<'e, E>(
        self,
        executor: E,
    ) -> Result<sqlx::postgres::PgQueryResult, LoadError<sqlx::Error>>
    where
        E: 'e + Executor<'e, Database = Postgres>,
        'q: 'e,
    {
        let Bound {
            via,
            sql,
            args,
            params,
            bind_error,
        } = self.bound;
        if let Some(e) = bind_error {
            return Err(LoadError::Loader(sqlx::Error::Encode(e)));
        }
        let writes = WriteShape::parse(sql).writes(&params);
        if writes.everything && matches!(via, Via::Scope(_)) {
            return Err(LoadError::Cache(crate::Error::Scope(format!(
                "what {sql:?} writes cannot be told from its SQL: run it outside the scope \
                 and invalidate by hand, or let the change stream invalidate"
            ))));
        }
        let done = sqlx::query_with(sql, args)
            .execute(executor)
            .await
            .map_err(LoadError::Loader)?;
        let invalidated = match via {
            Via::Cache(c) => {
                if writes.everything {
                    c.invalidate_all().await
                } else {
                    apply_writes!(c, writes).await
                }
            }
            Via::Scope(s) => apply_writes!(s, writes).await,
        };
        invalidated.map_err(LoadError::Cache)?;
        Ok(done)
    }
}

/// The entry points, on both async handles.
macro_rules! entry_points {
    ($Handle:ident, $via:ident) => {
        impl<C: Codec> $Handle<C> {
            /// A query whose rows become `O`s, read through the cache (see
            /// [`QueryAs`](crate::QueryAs)).
            pub fn query_as<'c, 'q, O>(&'c self, sql: &'q str) -> QueryAs<'c, 'q, C, O> {
                QueryAs {
                    bound: Bound::new(Via::$via(self), sql),
                    row: PhantomData,
                }
            }

            /// A write statement that invalidates what it changes (see
            /// [`Execute`](crate::Execute)).
            pub fn execute<'c, 'q>(&'c self, sql: &'q str) -> Execute<'c, 'q, C> {
                Execute {
                    bound: Bound::new(Via::$via(self), sql),
                }
            }

            /// A query of one value per row, read through the cache (see
            /// [`QueryScalar`](crate::QueryScalar)).
            pub fn query_scalar<'c, 'q, O>(&'c self, sql: &'q str) -> QueryScalar<'c, 'q, C, O> {
                QueryScalar {
                    bound: Bound::new(Via::$via(self), sql),
                    value: PhantomData,
                }
            }
        }
    };
}

entry_points!(AsyncCache, Cache);
entry_points!(AsyncScope, Scope);
