//! Descriptions of cached reads: [`Read`] for a table query, [`Dep`] for `cached_as`.

use crate::cond::{Cond, FieldRef};
use crate::error::Error;
use crate::profile::Op;

/// Whether a call forces caching on or off, whatever its profile says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Force {
    /// Cache it even if the profile does not cache this operation or table.
    Cache,
    /// Never cache it: run the loader.
    NoCache,
}

/// One read of a table: everything that shapes its result.
///
/// ```
/// use stampcache::{Cond, Read};
/// let read = Read::fetch("blog.article")
///     .filter(Cond::eq("category", 3))
///     .extra("ORDER BY id LIMIT 20");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub(crate) table: String,
    pub(crate) op: Op,
    pub(crate) cond: Cond,
    /// The parts given to [`extra`](Read::extra), in order (none empty).
    pub(crate) extra: Vec<String>,
    pub(crate) db: String,
    pub(crate) force: Option<Force>,
    /// The read's plan keys, once computed (see [`KeyMemo`]).
    pub(crate) memo: KeyMemo,
}

/// A read's plan keys once computed, so a `Read` used again is not described and hashed
/// again: one slot per value of the profile's `db_agnostic` (the only part of a profile the
/// key depends on). The second field is the plan the first cache to plan this read made,
/// with that cache's id (`core::Planned`, a pure function of the read and the cache's
/// configuration), so a shared-tier read used again skips the cache's plan memo. Every
/// builder method starts a new memo; a memo never takes part in equality.
#[derive(Clone, Default)]
pub(crate) struct KeyMemo(
    /// The keys as two halves (8-byte aligned: a `Read` stays small).
    pub(crate) [std::sync::OnceLock<[u64; 2]>; 2],
    pub(crate) PlanSlot,
);

/// See [`KeyMemo`]: a cache's id and its plan of the read (boxed: a `Read` stays small).
pub(crate) type PlanSlot =
    std::sync::OnceLock<Box<(u64, std::sync::Arc<dyn std::any::Any + Send + Sync>)>>;

impl PartialEq for KeyMemo {
    fn eq(&self, _: &KeyMemo) -> bool {
        true
    }
}

impl std::fmt::Debug for KeyMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

impl Read {
    /// A read of `table` by operation `op`, of every row until filtered.
    pub fn new(op: Op, table: impl Into<String>) -> Read {
        Read {
            table: table.into(),
            op,
            cond: Cond::all(),
            extra: Vec::new(),
            db: "default".to_owned(),
            force: None,
            memo: KeyMemo::default(),
        }
    }
    /// One row ([`Op::Get`]).
    pub fn get(table: impl Into<String>) -> Read {
        Read::new(Op::Get, table)
    }
    /// A list of rows ([`Op::Fetch`]).
    pub fn fetch(table: impl Into<String>) -> Read {
        Read::new(Op::Fetch, table)
    }
    /// A count ([`Op::Count`]).
    pub fn count(table: impl Into<String>) -> Read {
        Read::new(Op::Count, table)
    }
    /// An aggregate ([`Op::Aggregate`]); describe it in [`extra`](Read::extra).
    pub fn aggregate(table: impl Into<String>) -> Read {
        Read::new(Op::Aggregate, table)
    }
    /// An existence test ([`Op::Exists`]).
    pub fn exists(table: impl Into<String>) -> Read {
        Read::new(Op::Exists, table)
    }
    /// Adds a condition (ANDed with the ones already there).
    pub fn filter(mut self, cond: Cond) -> Read {
        self.memo = KeyMemo::default();
        self.cond = match self.cond {
            Cond::And(v) if v.is_empty() => cond,
            c => c.and(cond),
        };
        self
    }
    /// Anything else that shapes the result (columns, order, limit, the SQL itself).
    /// It goes into the key; it does not affect invalidation.
    ///
    /// Each call **adds** a part (it never replaces earlier ones): `.extra("ORDER BY id")
    /// .extra("LIMIT 20")` keys on both. Parts stay distinct: `.extra("a").extra("b")` and
    /// `.extra("ab")` are different reads. An empty part adds nothing.
    pub fn extra(mut self, extra: impl Into<String>) -> Read {
        self.memo = KeyMemo::default();
        let extra = extra.into();
        if !extra.is_empty() {
            self.extra.push(extra);
        }
        self
    }
    /// The database alias (default `"default"`). Part of the key unless the profile is
    /// `db_agnostic`.
    pub fn db(mut self, alias: impl Into<String>) -> Read {
        self.memo = KeyMemo::default();
        self.db = alias.into();
        self
    }
    /// Forces caching for this call.
    pub fn cache(mut self) -> Read {
        self.memo = KeyMemo::default();
        self.force = Some(Force::Cache);
        self
    }
    /// Forbids caching for this call.
    pub fn nocache(mut self) -> Read {
        self.memo = KeyMemo::default();
        self.force = Some(Force::NoCache);
        self
    }
    /// The read's own table.
    pub fn table(&self) -> &str {
        &self.table
    }
    /// The operation.
    pub fn op(&self) -> Op {
        self.op
    }
    /// The condition.
    pub fn condition(&self) -> &Cond {
        &self.cond
    }

    /// Refuses empty table and field names ([`Error::InvalidName`]), before the read is
    /// planned: a field `""` would share the whole-table scheme and never be invalidated.
    pub(crate) fn check_names(&self) -> Result<(), Error> {
        if self.table.is_empty() {
            return Err(Error::InvalidName(format!(
                "a read (`{}`) names the empty table \"\"; name the table its rows come \
                 from (the name writes report, e.g. \"blog.article\")",
                self.op.name(),
            )));
        }
        check_cond(&self.table, &self.cond)
    }
}

/// Refuses empty field and table names anywhere in a condition of a read of `table`.
fn check_cond(table: &str, cond: &Cond) -> Result<(), Error> {
    let field = |f: &FieldRef| -> Result<(), Error> {
        if f.table.as_deref() == Some("") {
            return Err(Error::InvalidName(format!(
                "a condition of a read of {table:?} names field {:?} of the empty table \"\"; \
                 name the joined table (`(\"blog.author\", \"name\")`), or leave it out for \
                 the read's own table",
                f.name
            )));
        }
        if f.name.is_empty() {
            let of = f.table.as_deref().unwrap_or(table);
            return Err(Error::InvalidName(format!(
                "a condition of a read of {table:?} has an empty field name (of table {of:?}, \
                 e.g. `Cond::eq(\"\", ..)`); name the column: written rows are matched \
                 by field name, and an empty one would never be invalidated"
            )));
        }
        Ok(())
    };
    match cond {
        Cond::Eq(f, _) | Cond::In(f, _) | Cond::IsNull(f) => field(f),
        Cond::And(cs) | Cond::Or(cs) => cs.iter().try_for_each(|c| check_cond(table, c)),
        Cond::Not(c) => check_cond(table, c),
        Cond::Other {
            table: Some(other), ..
        } if other.is_empty() => Err(Error::InvalidName(format!(
            "a condition of a read of {table:?} (`Cond::other_on`) names the empty table \"\"; \
             name the table the condition reads"
        ))),
        Cond::Other { .. } => Ok(()),
    }
}

/// Refuses an empty table name in a write (`on_insert`, `invalidate_model`, …): no read can
/// name it, so the write would invalidate nothing.
pub(crate) fn check_written_table(table: &str, call: &str) -> Result<(), Error> {
    if table.is_empty() {
        return Err(Error::InvalidName(format!(
            "`{call}` of the empty table \"\"; name the table the row was written to (the \
             name its reads use, e.g. \"blog.article\")"
        )));
    }
    Ok(())
}

/// A dependency of a [`cached_as`](crate::Cache::cached_as) call.
#[derive(Debug, Clone, PartialEq)]
pub enum Dep {
    /// The call's result changes when this read's result can change.
    Read(Read),
    /// The call's result changes on any write to this table.
    Table(String),
}

impl Dep {
    /// A whole-table dependency.
    pub fn table(table: impl Into<String>) -> Dep {
        Dep::Table(table.into())
    }

    /// Refuses empty table and field names ([`Error::InvalidName`]).
    pub(crate) fn check_names(&self) -> Result<(), Error> {
        match self {
            Dep::Read(r) => r.check_names(),
            Dep::Table(t) if t.is_empty() => Err(Error::InvalidName(
                "a `cached_as` dependency `Dep::table(\"\")` names the empty table; name the \
                 table whose writes end the cached result"
                    .into(),
            )),
            Dep::Table(_) => Ok(()),
        }
    }
}

impl From<Read> for Dep {
    fn from(r: Read) -> Dep {
        Dep::Read(r)
    }
}
