//! Reads described by their SQL (feature `sql`): the tables a query reads and, per table, the
//! `field = value` conditions it asks for, derived from the SQL text and its bound
//! parameters instead of being written by hand. A facade over the power API: a query
//! becomes a [`Read`] with a [`Cond`](crate::Cond) tree.
//!
//! ```
//! use stampcache::sql::{Param, Shape};
//! use stampcache::{Cache, Op};
//! let shape = Shape::parse("SELECT id, title FROM article WHERE category = $1 ORDER BY id");
//! let read = shape.read(Op::Fetch, &[Param::from(7)])?;     // a Read of `article`
//! let cache = Cache::embedded();
//! let titles: Vec<String> = cache.get_or_compute(&read, || vec!["from the database".into()])?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **Never narrower than the SQL.** Whatever the analysis does not understand widens to
//! every row of the tables involved: subqueries, CTEs, `UNION` branches, outer joins,
//! comparisons other than equality, functions, string literals that PostgreSQL could read as
//! another type (`'1'`, `'2024-01-01'`, `'true'`). Granular: `col = v`, `col IN (…)`,
//! `col = ANY($n)` (an array parameter), `col IS [NOT] NULL`, under `AND`, `OR` and `NOT`,
//! and inner joins (`a.author_id = b.id AND b.name = $1` depends on `b.name` and on `a`'s
//! rows). Volatile statements (`now()`, `random()`, `nextval`, `FOR UPDATE`, a write in a
//! CTE) are not cached ([`NotCached`]), nor are reads calling a function other than the
//! built-ins known to read only their arguments (a user function may read any table).
//!
//! **A hole: views.** A view is a table here: the analysis cannot see what a view reads,
//! and nothing ever writes to a view's name: the change stream (`postgres-cdc`) reports
//! writes to its base tables only, and a write through the front names the base table. A
//! read of a view is invalidated only by what is reported under the view's name. Do not
//! read views through this front, or report (`invalidate_model`) the view's name yourself
//! whenever its base tables change. Materialized views likewise change only on `REFRESH`.
//!
//! Table names are the cache's names: `table` for PostgreSQL's `public` schema (or an
//! unqualified name), `schema.table` otherwise, the names the change stream
//! (`postgres-cdc`) invalidates. Column names are the row images' field names; unquoted
//! identifiers are folded to lower case, as PostgreSQL does. The whole SQL text and every
//! parameter are part of the cache key; `ORDER BY`, `LIMIT` and the column list only shape
//! the key.

mod analyze;
mod template;
mod write;

use std::sync::Arc;

use crate::profile::Op;
use crate::read::Read;
use analyze::Analysis;
pub use template::Param;
pub use write::{Returning, WriteShape, Writes};

/// Why a statement is not cached (it runs against the database every time).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotCached {
    /// The SQL did not parse (PostgreSQL's dialect).
    #[error("the SQL does not parse: {0}")]
    Parse(String),
    /// Not one query (a write, several statements, a DDL statement).
    #[error("not a single read query")]
    NotARead,
    /// A query that names no table (`SELECT 1`).
    #[error("the query reads no table")]
    NoTable,
    /// A volatile function: its result changes from one call to the next.
    #[error("the query calls the volatile function {0}()")]
    Volatile(String),
    /// A function other than the built-ins known to read only their arguments: it may read
    /// tables the SQL does not name.
    #[error("the query calls {0}(), which may read tables its SQL does not name")]
    UnknownFunction(String),
    /// `FOR UPDATE` / `FOR SHARE`: the read takes row locks in its transaction.
    #[error("the query locks rows (FOR UPDATE / FOR SHARE)")]
    Locking,
    /// A write nested in the query (in a CTE).
    #[error("the query writes (a data-modifying CTE)")]
    Write,
}

/// The error of [`Shape::read`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SqlError {
    /// The statement is not cached; run it against the database.
    #[error("not cached: {0}")]
    NotCached(#[from] NotCached),
    /// Fewer parameters than the SQL uses.
    #[error(
        "the SQL uses ${expected} but {given} parameter(s) were bound; bind one per placeholder"
    )]
    MissingParams {
        /// The highest placeholder number in the SQL.
        expected: usize,
        /// The parameters given.
        given: usize,
    },
}

/// A SQL statement analysed once: the tables it reads and their conditions, with parameter
/// slots. Cheap to bind: [`read`](Shape::read) per call.
#[derive(Debug, Clone)]
pub struct Shape {
    /// This analysis's own number (never reused in the process): what identifies the
    /// statement in [`describe_call`](Shape::describe_call).
    #[cfg_attr(not(feature = "sqlx"), allow(dead_code))]
    id: u64,
    sql: String,
    analysis: Result<Analysis, NotCached>,
    /// The highest `$n` the SQL uses.
    params: usize,
}

impl Shape {
    /// Analyses `sql` (PostgreSQL's dialect). Never fails: a statement that cannot be cached
    /// says why in [`not_cached`](Shape::not_cached).
    pub fn parse(sql: &str) -> Shape {
        static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let (analysis, params) = analyze::analyze(sql);
        Shape {
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            sql: sql.to_owned(),
            analysis,
            params,
        }
    }

    /// The analysis of `sql`, memoised per SQL text (bounded: the 4,096 most recent).
    pub fn cached(sql: &str) -> Arc<Shape> {
        // The few statements this thread used last, compared by text: cheaper than hashing
        // it into the shared map (a hot call site asks for the same SQL again and again).
        thread_local! {
            static RECENT: std::cell::RefCell<Vec<Arc<Shape>>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        if let Some(hit) = RECENT.with(|r| r.borrow().iter().find(|s| s.sql == sql).cloned()) {
            return hit;
        }
        let shape = Self::shared(sql);
        RECENT.with(|r| {
            let mut r = r.borrow_mut();
            if r.len() == 8 {
                r.remove(0);
            }
            r.push(shape.clone());
        });
        shape
    }

    /// The process-wide memo behind [`cached`](Shape::cached).
    fn shared(sql: &str) -> Arc<Shape> {
        static SHAPES: std::sync::OnceLock<moka::sync::Cache<String, Arc<Shape>>> =
            std::sync::OnceLock::new();
        let shapes = SHAPES.get_or_init(|| moka::sync::Cache::new(4096));
        if let Some(s) = shapes.get(sql) {
            return s;
        }
        let shape = Arc::new(Shape::parse(sql));
        shapes.insert(sql.to_owned(), shape.clone());
        shape
    }

    /// Why the statement is not cached, if it is not.
    pub fn not_cached(&self) -> Option<&NotCached> {
        self.analysis.as_ref().err()
    }

    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Appends what identifies [`read`](Shape::read)`(op, params)` without building it: this
    /// analysis's number (so the SQL text, which it was made of, need not be hashed), the
    /// operation and each parameter's canonical text (as in the read's key). Equal texts
    /// give equal reads (a function of the same statement, operation and parameters); the
    /// parameters' texts are separated as in the key, so different parameters give
    /// different texts.
    #[cfg_attr(not(feature = "sqlx"), allow(dead_code))]
    pub(crate) fn describe_call(&self, op: Op, params: &[Param], out: &mut String) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for i in (0..16).rev() {
            out.push(char::from(HEX[((self.id >> (4 * i)) & 0xf) as usize]));
        }
        out.push_str(op.name());
        for p in params {
            out.push('\u{0}');
            p.describe_into(out);
        }
    }

    /// The read of this statement with `params` bound (`$1` is `params[0]`), as operation
    /// `op`: its table, its condition, and a key of the SQL text and every parameter.
    pub fn read(&self, op: Op, params: &[Param]) -> Result<Read, SqlError> {
        let analysis = self.analysis.as_ref().map_err(|e| e.clone())?;
        if params.len() < self.params {
            return Err(SqlError::MissingParams {
                expected: self.params,
                given: params.len(),
            });
        }
        let mut key = String::with_capacity(self.sql.len() + 16 * params.len());
        key.push_str(&self.sql);
        for p in params {
            key.push('\u{0}');
            p.describe_into(&mut key);
        }
        Ok(Read::new(op, analysis.root.clone())
            .filter(analysis.cond.bind(params))
            .extra(key))
    }
}

#[cfg(test)]
mod tests;
