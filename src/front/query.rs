//! Queries through the cache, in sqlx's shape (feature `sqlx`): `cache.query_as::<Article>(sql).bind(7)
//! .fetch_all(&pool)` reads through the cache, its tables and conditions derived from the
//! SQL and the bound values ([`Shape`]); no `Read` or `Cond` is written by hand. A facade over
//! the power API: each call becomes a [`Read`](crate::Read) and one `get_or_compute` of the
//! async handle (or of an [`AsyncScope`], inside a transaction). The read and its plan are
//! memoised per statement, operation and bound values (bounded, hashed to 128 bits as plan
//! keys are), so a repeated call goes straight to the local tier.
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
//! **In a database transaction, write through a scope** (`let scope = cache.atomic()`,
//! then `scope.commit()` after the transaction's commit): written through the cache, the
//! rows are invalidated before the transaction commits, and a concurrent reader can cache
//! the old rows again until their TTL.
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
use crate::core::Begun;
use crate::error::LoadError;
use crate::event::{Event, Target};
use crate::plan::key_hash;
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

/// How a recorded value reaches sqlx: encoded again from its [`Param`] when the statement
/// runs, so a cache hit builds no sqlx arguments at all.
#[doc(hidden)]
pub type Encoder = fn(&Param, &mut PgArguments) -> Result<(), sqlx::error::BoxDynError>;

/// A value that can be bound to a query: sqlx encodes it, the cache records it.
pub trait SqlParam {
    /// The value as the cache sees it (in conditions and in the key).
    fn to_param(&self) -> Param;

    /// The value as the cache sees it, taking it (no copy where it can).
    #[doc(hidden)]
    fn into_param(self) -> Param
    where
        Self: Sized,
    {
        self.to_param()
    }

    /// How to encode the value for sqlx from its [`Param`] alone, when that holds all of it
    /// (the built-in scalars). `None`, the default: sqlx encodes it at `bind`.
    #[doc(hidden)]
    fn encoder() -> Option<Encoder>
    where
        Self: Sized,
    {
        None
    }
}

/// The recorded value's parts, for the encoders (a kind it cannot have is an error).
fn recorded<'p, V>(
    p: &'p Param,
    part: impl FnOnce(&'p Value) -> Option<V>,
) -> Result<V, sqlx::error::BoxDynError> {
    match p {
        Param::Scalar(v) => part(v),
        Param::Array(_) => None,
    }
    .ok_or_else(|| "a recorded parameter changed kind".into())
}

macro_rules! scalar_params {
    ($($t:ty => $enc:expr),* $(,)?) => {$(
        impl SqlParam for $t {
            fn to_param(&self) -> Param {
                Param::Scalar(Value::from(self.clone()))
            }
            fn into_param(self) -> Param {
                Param::Scalar(Value::from(self))
            }
            fn encoder() -> Option<Encoder> {
                let encoder: Encoder = $enc;
                Some(encoder)
            }
        }
        impl SqlParam for Vec<$t> {
            fn to_param(&self) -> Param {
                Param::Array(self.iter().cloned().map(Value::from).collect())
            }
        }
    )*};
}

fn int(v: &Value) -> Option<i128> {
    match v {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn float(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        _ => None,
    }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::Text(s) => Some(s),
        _ => None,
    }
}

scalar_params!(
    i16 => |p, a| a.add(i16::try_from(recorded(p, int)?)?),
    i32 => |p, a| a.add(i32::try_from(recorded(p, int)?)?),
    i64 => |p, a| a.add(i64::try_from(recorded(p, int)?)?),
    // f32 to f64 and back is exact.
    f32 => |p, a| a.add(recorded(p, float)? as f32),
    f64 => |p, a| a.add(recorded(p, float)?),
    bool => |p, a| a.add(recorded(p, |v| match v {
        Value::Bool(b) => Some(*b),
        _ => None,
    })?),
    String => |p, a| a.add(recorded(p, text)?),
);

impl SqlParam for &str {
    fn to_param(&self) -> Param {
        Param::Scalar(Value::from(*self))
    }
    fn encoder() -> Option<Encoder> {
        let encoder: Encoder = |p, a| a.add(recorded(p, text)?);
        Some(encoder)
    }
}

impl SqlParam for Vec<u8> {
    /// `bytea`, a scalar (as sqlx encodes it).
    fn to_param(&self) -> Param {
        Param::Scalar(Value::from(self.clone()))
    }
    fn into_param(self) -> Param {
        Param::Scalar(Value::from(self))
    }
    fn encoder() -> Option<Encoder> {
        let encoder: Encoder = |p, a| {
            a.add(recorded(p, |v| match v {
                Value::Bytes(b) => Some(b.as_slice()),
                _ => None,
            })?)
        };
        Some(encoder)
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

/// How many values are kept for encoding later (past it, every value is encoded at bind).
const LAZY: usize = 6;

/// A statement and its bound values.
struct Bound<'c, 'q, C: Codec> {
    via: Via<'c, C>,
    sql: &'q str,
    params: Vec<Param>,
    /// Each value's encoder while they are recorded only.
    encoders: [Option<Encoder>; LAZY],
    /// Every value bound so far, encoded, once one had to be encoded at bind (a type
    /// without an encoder, or more than `LAZY` values). Boxed: the query's future stays
    /// small (it is moved a few times per call).
    args: Option<Box<PgArguments>>,
    /// The first value sqlx could not encode (returned by the fetch).
    bind_error: Option<sqlx::error::BoxDynError>,
}

/// The sqlx arguments of recorded values (`args` when they were encoded at bind already).
fn arguments(
    params: &[Param],
    encoders: &[Option<Encoder>],
    args: Option<Box<PgArguments>>,
) -> Result<PgArguments, sqlx::Error> {
    if let Some(args) = args {
        return Ok(*args);
    }
    let mut args = PgArguments::default();
    for (p, e) in params.iter().zip(encoders) {
        let e =
            e.ok_or_else(|| sqlx::Error::Encode("a recorded parameter lost its encoder".into()))?;
        e(p, &mut args).map_err(sqlx::Error::Encode)?;
    }
    Ok(args)
}

impl<'c, 'q, C: Codec> Bound<'c, 'q, C> {
    fn new(via: Via<'c, C>, sql: &'q str) -> Self {
        Bound {
            via,
            sql,
            params: Vec::with_capacity(4),
            encoders: [None; LAZY],
            args: None,
            bind_error: None,
        }
    }

    /// Records the value; sqlx encodes it only when the statement runs, when its type can
    /// be encoded from the record (else now).
    fn bind<T>(&mut self, value: T)
    where
        T: SqlParam + 'q + Encode<'q, Postgres> + Type<Postgres>,
    {
        let i = self.params.len();
        if self.args.is_none() && i < LAZY {
            if let Some(encoder) = T::encoder() {
                self.params.push(value.into_param());
                self.encoders[i] = Some(encoder);
                return;
            }
        }
        self.params.push(value.to_param());
        let args = match self.args.take() {
            Some(args) => Ok(args),
            None => arguments(&self.params[..i], &self.encoders, None).map(Box::new),
        };
        match args {
            Ok(mut args) => {
                if let Err(e) = args.add(value) {
                    self.bind_error.get_or_insert(e);
                }
                self.args = Some(args);
            }
            Err(e) => {
                self.bind_error.get_or_insert(Box::new(e));
                self.args = Some(Box::default());
            }
        }
    }

    /// The sqlx arguments of every value bound.
    fn arguments(&mut self) -> Result<PgArguments, sqlx::Error> {
        arguments(&self.params, &self.encoders, self.args.take())
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
        let mut this = self;
        if let Some(e) = this.bind_error.take() {
            return Err(LoadError::Loader(sqlx::Error::Encode(e)));
        }
        let sql = this.sql;
        let shape = Shape::cached(sql);
        let core = via_core(&this.via);
        // A repeated (statement, operation, parameters) finds its read, and its plan,
        // described already.
        let params = &this.params;
        let key = || {
            DESCRIBED.with(|buf| {
                let mut buf = buf.borrow_mut();
                buf.clear();
                shape.describe_call(op, params, &mut buf);
                key_hash(buf.as_bytes())
            })
        };
        let read = match core.described(key, || shape.read(op, params)) {
            Ok(read) => read,
            Err(SqlError::NotCached(NotCached::NotARead | NotCached::Write)) => {
                let args = this.arguments().map_err(LoadError::Loader)?;
                let rows = write(&this.via, sql, args, &this.params, executor).await?;
                return from_rows(rows).map_err(LoadError::Loader);
            }
            Err(why) => {
                let reason = why.to_string();
                via_core(&this.via).emit(&Event::NotCached {
                    sql,
                    reason: &reason,
                });
                let args = this.arguments().map_err(LoadError::Loader)?;
                return load(sql, args, executor).await.map_err(LoadError::Loader);
            }
        };
        let Bound {
            via,
            params,
            encoders,
            args,
            ..
        } = this;
        // The arguments are built on a miss only.
        let loader = move || async move {
            let args = arguments(&params, &encoders, args)?;
            load(sql, args, executor).await
        };
        match (via, read) {
            (Via::Cache(c), Ok(d)) => {
                let core = c.core();
                let target = Target::Table {
                    table: d.read.table(),
                    op: d.read.op(),
                    read: &d.read,
                };
                let v = match core.begin_planned(target, d.planned.as_ref()) {
                    Begun::Served(v) => v,
                    Begun::Go(job) => core.finish(job, loader).await?.0,
                };
                Ok(super::unwrap_arc(v))
            }
            (Via::Cache(c), Err(read)) => c.get_or_load(&read, loader).await,
            (Via::Scope(s), Ok(d)) => s.get_or_load(&d.read, loader).await,
            (Via::Scope(s), Err(read)) => s.get_or_load(&read, loader).await,
        }
    }
}

thread_local! {
    /// The text a call's memo key is hashed from, kept between calls.
    static DESCRIBED: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
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
    /// cannot be told from its SQL. Its `RETURNING` rows are not read here (an `UPDATE` or
    /// `DELETE` invalidates its whole table): for row-granular invalidation, run it with
    /// `query_as` / `query_scalar` and `RETURNING` (see the module docs).
    pub async fn execute<'e, E>(
        self,
        executor: E,
    ) -> Result<sqlx::postgres::PgQueryResult, LoadError<sqlx::Error>>
    where
        E: 'e + Executor<'e, Database = Postgres>,
        'q: 'e,
    {
        let mut bound = self.bound;
        if let Some(e) = bound.bind_error.take() {
            return Err(LoadError::Loader(sqlx::Error::Encode(e)));
        }
        let args = bound.arguments().map_err(LoadError::Loader)?;
        let Bound {
            via, sql, params, ..
        } = bound;
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
