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
//! Writes through the front invalidate what they change, never less, after the statement
//! returned (through a scope: at the scope's commit):
//! - [`execute`](AsyncCache::execute): what the SQL says: the inserted rows of an
//!   `INSERT … VALUES`, the whole written table otherwise, everything for SQL it cannot read
//!   ([`WriteShape`]);
//! - `query_as` / `query_scalar` of a write with `RETURNING` (`INSERT`, `UPDATE`, `DELETE`
//!   of one table): the returned rows are the changed rows' images
//!   ([`Returning`]), so a `DELETE … WHERE id = $1 RETURNING *` kills the reads its old row
//!   matched and no others; an `UPDATE`'s old row is its returned row without the columns
//!   it assigns, but for those its `WHERE` pins (`… WHERE id = $1 AND category = $4`: the
//!   old row had category `$4`); a column assigned and not pinned is unknown, and reads
//!   filtering on it are invalidated whole-table. Without usable `RETURNING`, as `execute`.
//!
//! ```no_run
//! # async fn demo(cache: stampcache::AsyncCache, pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! # #[derive(Clone, serde::Serialize, serde::Deserialize, sqlx::FromRow)]
//! # struct Article { id: i64, title: String }
//! let gone: Option<Article> = cache
//!     .query_as("DELETE FROM article WHERE id = $1 RETURNING id, category, title")
//!     .bind(42_i64)
//!     .fetch_optional(&pool)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Triggers and cascades write tables the SQL does not name; the change stream
//! (`postgres-cdc`) sees those too, with exact rows and no call at all. With the change
//! stream running, writes need no invalidation from the front; through it they are
//! invalidated twice, which is harmless (and reads a process wrote see its write at once).

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
use crate::row::Row;
use crate::sql::{NotCached, Param, Returning, Shape, SqlError, WriteShape, Writes};
use crate::value::Value;

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
    /// database (`load` is handed the SQL, the arguments and the executor either way). A
    /// write statement (`INSERT … RETURNING`, say) runs, invalidates what it changed, and
    /// its rows are made into `T` by `from_rows`.
    async fn run<'e, E, T, F, Fut, R>(
        self,
        op: Op,
        executor: E,
        load: F,
        from_rows: R,
    ) -> Result<T, LoadError<sqlx::Error>>
    where
        E: 'e + Executor<'e, Database = Postgres>,
        'q: 'e,
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce(&'q str, PgArguments, E) -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
        R: FnOnce(Vec<PgRow>) -> Result<T, sqlx::Error>,
    {
        if let Some(e) = self.bind_error {
            return Err(LoadError::Loader(sqlx::Error::Encode(e)));
        }
        let (sql, args) = (self.sql, self.args);
        let shape = Shape::cached(sql);
        let read = match shape.read(op, &self.params) {
            Ok(read) => read,
            Err(SqlError::NotCached(NotCached::NotARead | NotCached::Write)) => {
                let rows = write(&self.via, sql, args, &self.params, executor).await?;
                return from_rows(rows).map_err(LoadError::Loader);
            }
            Err(why) => {
                let reason = why.to_string();
                via_core(&self.via).emit(&Event::NotCached {
                    sql,
                    reason: &reason,
                });
                return load(sql, args, executor).await.map_err(LoadError::Loader);
            }
        };
        let loader = move || load(sql, args, executor);
        match self.via {
            Via::Cache(c) => c.get_or_load(&read, loader).await,
            Via::Scope(s) => s.get_or_load(&read, loader).await,
        }
    }
}

/// The handle's core (for events).
fn via_core<'a, C: Codec>(via: &'a Via<'_, C>) -> &'a crate::core::Core<C> {
    match via {
        Via::Cache(c) => c.core(),
        Via::Scope(s) => s.core(),
    }
}

/// Runs a write statement and invalidates what it changed: the rows it returned when they
/// are images of every row it wrote ([`WriteShape::returning`]), else what its SQL says
/// ([`WriteShape::writes`]). Through a scope, a statement whose effects cannot be told from
/// its SQL is refused before it runs.
async fn write<'e, 'q: 'e, C: Codec, E>(
    via: &Via<'_, C>,
    sql: &'q str,
    args: PgArguments,
    params: &[Param],
    executor: E,
) -> Result<Vec<PgRow>, LoadError<sqlx::Error>>
where
    E: 'e + Executor<'e, Database = Postgres>,
{
    let shape = WriteShape::cached(sql);
    let returning = shape.returning();
    let writes = match returning {
        Some(_) => None,
        None => Some(shape.writes(params)),
    };
    if let (Via::Scope(_), Some(w)) = (via, &writes) {
        if w.everything {
            return Err(refused(sql));
        }
    }
    let rows = sqlx::query_with(sql, args)
        .fetch_all(executor)
        .await
        .map_err(LoadError::Loader)?;
    let writes = match (writes, returning) {
        (Some(w), _) => w,
        (None, Some(r)) => images(r, &rows, params),
        (None, None) => unreachable!("a statement has RETURNING images or writes"),
    };
    apply(via, writes).await.map_err(LoadError::Cache)?;
    Ok(rows)
}

/// The error of a scope asked to run a statement whose effects cannot be told.
fn refused(sql: &str) -> LoadError<sqlx::Error> {
    LoadError::Cache(crate::Error::Scope(format!(
        "what {sql:?} writes cannot be told from its SQL: run it outside the scope \
         and invalidate by hand, or let the change stream invalidate"
    )))
}

/// Invalidates `writes` through a cache (at once) or a scope (at its commit).
async fn apply<C: Codec>(via: &Via<'_, C>, writes: Writes) -> Result<(), crate::Error> {
    match via {
        Via::Cache(c) => {
            if writes.everything {
                c.invalidate_all().await
            } else {
                apply_writes!(c, writes).await
            }
        }
        Via::Scope(s) => apply_writes!(s, writes).await,
    }
}

/// The row images a write's returned rows give: a column that is a table column, in a
/// type whose value the cache can compare (integers, booleans, text, floats, bytes), goes
/// in; anything else stays out (a scheme needing it widens to the whole table).
fn images(r: &Returning, rows: &[PgRow], params: &[Param]) -> Writes {
    use sqlx::{Column as _, Row as _};
    let mut images = Vec::with_capacity(rows.len());
    for row in rows {
        let mut image = Row::new();
        match r.columns() {
            None => {
                for (i, column) in row.columns().iter().enumerate() {
                    if let Some(v) = column_value(row, i) {
                        image.insert(column.name(), v);
                    }
                }
            }
            Some(columns) => {
                for (i, column) in columns.iter().enumerate() {
                    if let (Some(c), Some(v)) = (column, column_value(row, i)) {
                        image.insert(c.as_str(), v);
                    }
                }
            }
        }
        r.images_of(image, params, &mut images);
    }
    Writes {
        rows: if images.is_empty() {
            Vec::new()
        } else {
            vec![(r.table().to_owned(), images)]
        },
        ..Writes::default()
    }
}

/// Column `i` of `row` as a `Value`, when its type has one the cache compares safely.
fn column_value(row: &PgRow, i: usize) -> Option<Value> {
    use sqlx::{Row as _, TypeInfo as _, ValueRef as _};
    let raw = row.try_get_raw(i).ok()?;
    if raw.is_null() {
        return Some(Value::Null);
    }
    let ty = raw.type_info();
    match ty.name() {
        "INT2" => row.try_get::<i16, _>(i).ok().map(Value::from),
        "INT4" => row.try_get::<i32, _>(i).ok().map(Value::from),
        "INT8" => row.try_get::<i64, _>(i).ok().map(Value::from),
        "BOOL" => row.try_get::<bool, _>(i).ok().map(Value::from),
        "TEXT" | "VARCHAR" | "NAME" => row.try_get::<String, _>(i).ok().map(Value::from),
        "FLOAT4" => row.try_get::<f32, _>(i).ok().map(Value::from),
        "FLOAT8" => row.try_get::<f64, _>(i).ok().map(Value::from),
        "BYTEA" => row.try_get::<Vec<u8>, _>(i).ok().map(Value::from),
        _ => None,
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

/// The first column of a row, as sqlx's `query_scalar` reads it.
fn scalar<O>(row: &PgRow) -> Result<O, sqlx::Error>
where
    (O,): for<'r> FromRow<'r, PgRow>,
{
    <(O,)>::from_row(row).map(|(o,)| o)
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
            .run(
                Op::Fetch,
                executor,
                |sql, args, ex| sqlx::query_as_with::<Postgres, O, _>(sql, args).fetch_all(ex),
                |rows| rows.iter().map(O::from_row).collect(),
            )
            .await
    }

    /// Exactly one row (`sqlx::Error::RowNotFound` otherwise; not cached then).
    pub async fn fetch_one<'e, E>(self, executor: E) -> Result<O, LoadError<sqlx::Error>>
    where
        E: 'e + Executor<'e, Database = Postgres>,
        'q: 'e,
    {
        self.bound
            .run(
                Op::Get,
                executor,
                |sql, args, ex| sqlx::query_as_with::<Postgres, O, _>(sql, args).fetch_one(ex),
                |rows| O::from_row(rows.first().ok_or(sqlx::Error::RowNotFound)?),
            )
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
            .run(
                Op::Get,
                executor,
                |sql, args, ex| sqlx::query_as_with::<Postgres, O, _>(sql, args).fetch_optional(ex),
                |rows| rows.first().map(O::from_row).transpose(),
            )
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
            .run(
                Op::Aggregate,
                executor,
                |sql, args, ex| sqlx::query_scalar_with::<Postgres, O, _>(sql, args).fetch_one(ex),
                |rows| scalar(rows.first().ok_or(sqlx::Error::RowNotFound)?),
            )
            .await
    }

    /// The first column of at most one row (a missing row is cached too).
    pub async fn fetch_optional<'e, E>(
        self,
        executor: E,
    ) -> Result<Option<O>, LoadError<sqlx::Error>>
    where
        E: 'e + Executor<'e, Database = Postgres>,
        'q: 'e,
    {
        self.bound
            .run(
                Op::Get,
                executor,
                |sql, args, ex| {
                    sqlx::query_scalar_with::<Postgres, O, _>(sql, args).fetch_optional(ex)
                },
                |rows| rows.first().map(scalar).transpose(),
            )
            .await
    }

    /// The first column of every row.
    pub async fn fetch_all<'e, E>(self, executor: E) -> Result<Vec<O>, LoadError<sqlx::Error>>
    where
        E: 'e + Executor<'e, Database = Postgres>,
        'q: 'e,
    {
        self.bound
            .run(
                Op::Fetch,
                executor,
                |sql, args, ex| sqlx::query_scalar_with::<Postgres, O, _>(sql, args).fetch_all(ex),
                |rows| rows.iter().map(scalar).collect(),
            )
            .await
    }
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
        let writes = WriteShape::cached(sql).writes(&params);
        if writes.everything && matches!(via, Via::Scope(_)) {
            return Err(refused(sql));
        }
        let done = sqlx::query_with(sql, args)
            .execute(executor)
            .await
            .map_err(LoadError::Loader)?;
        let invalidated = apply(&via, writes).await;
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
