//! Events: one for every read and every invalidation, for metrics and logs.

use std::sync::Arc;

use crate::error::Error;
use crate::profile::Op;
use crate::read::Read;
use crate::value::Kind;

/// What a read was for.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Target<'a> {
    /// A read of a table.
    Table {
        /// The read's own table.
        table: &'a str,
        /// The operation.
        op: Op,
        /// The whole read (its `Debug` shows table, operation, condition, `extra` and
        /// database), so a listener can say which read it was.
        read: &'a Read,
    },
    /// A `cached_as` or `cached` function call, by name.
    Func {
        /// The name the call was cached under.
        name: &'a str,
    },
    /// A simple-cache key.
    Simple {
        /// The user's key.
        key: &'a str,
    },
}

/// How a read was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Served from the shared tier.
    Hit,
    /// Served from the local tier (process memory).
    LocalHit,
    /// Served from an `atomic()` scope's overlay.
    Overlay,
    /// Served by another caller's loader (single flight or cross-process lock).
    Joined,
    /// The previous value, within the profile's stale grace, while another caller reloads.
    Stale,
    /// Not cached (or dead); the loader ran and the result was stored.
    Miss,
    /// Not cached by configuration (disabled, `nocache`, profile); the loader ran.
    Bypass,
    /// The cache failed and was configured to degrade; the loader ran.
    Degraded,
}

/// What an invalidation covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation<'a> {
    /// Rows of one table.
    Rows {
        /// The table.
        table: &'a str,
        /// How many row images (old and new count separately).
        rows: usize,
    },
    /// A whole table.
    Table {
        /// The table.
        table: &'a str,
    },
    /// Everything.
    All,
    /// One simple-cache key.
    Key {
        /// The Redis key.
        key: &'a str,
    },
}

/// Something the cache did.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A read was answered.
    Read {
        /// What was read.
        target: Target<'a>,
        /// How.
        outcome: Outcome,
    },
    /// An invalidation was applied (or queued, see `InvalidationQueued`).
    Invalidated(Invalidation<'a>),
    /// A written row lacked fields that a cached read's condition names (a typo, a
    /// `serde(rename)`, a field the writer leaves out of its rows), so its invalidation fell
    /// back to the whole table: every cached read of `table` died, not only those the row
    /// matches. Sent every time (with the store's answer to the invalidation, a replay's
    /// included), once per scheme; `first` marks the first report in this process of
    /// these `missing` fields of this `table`: log that one loudly, count the others.
    ///
    /// A scheme stays registered while some cached entry may depend on it (about twice
    /// its reads' timeout after the last miss), so a fixed typo stops widening then.
    Widened {
        /// The written table.
        table: &'a str,
        /// The fields of the reads' conjunction that the row could not name (a scheme).
        fields: &'a [String],
        /// Those of `fields` the row lacked.
        missing: &'a [String],
        /// A read of this process that uses the scheme (its description: operation, table,
        /// condition, extra), if this process made one; else another process did.
        read: Option<&'a str>,
        /// That read's entry key.
        entry: Option<&'a str>,
        /// The first report of these missing fields of this table in this process.
        first: bool,
    },
    /// An invalidation could not reach the store and was queued in process for replay.
    InvalidationQueued(Invalidation<'a>),
    /// Queued invalidations were replayed.
    Replayed {
        /// How many queued items were sent.
        items: usize,
    },
    /// The store failed; the cache degraded (or returned the error, when not degrading).
    StoreFailed {
        /// What the cache was doing.
        during: &'static str,
        /// The error.
        error: &'a Error,
    },
    /// A statement of the SQL front is not cached (it ran against the database).
    NotCached {
        /// The SQL text.
        sql: &'a str,
        /// Why (a volatile function, a lock, a parse error, …).
        reason: &'a str,
    },
    /// An entry was written by another Rust type (or another shape of the same type, from
    /// an earlier deploy) than the one it is read as: a miss (the read loads and stores
    /// its own), or [`Error::TypeMismatch`] with [`Builder::type_mismatch_fails`](crate::Builder::type_mismatch_fails).
    /// Two call sites share one read: give one of them an `extra` to tell them apart.
    TypeMismatch {
        /// The key of the entry.
        key: &'a str,
        /// The type that wrote it (as `std::any::type_name` says; "another shape" when
        /// only its fields or variants differ).
        stored: &'a str,
        /// The type it was read as.
        requested: &'a str,
    },
    /// A condition and a row image of one field hold kinds of values that never match
    /// (text against a number, bytes against text): that read is never invalidated by
    /// writes of that field. Reported once per field and process, when the second of the
    /// two is seen. Fix the side with the wrong Rust type (parse the id, or cast in SQL).
    KindMismatch {
        /// The table.
        table: &'a str,
        /// The field.
        field: &'a str,
        /// The kind the read's condition used.
        condition: Kind,
        /// The kind the row image held.
        row: Kind,
        /// The entry key of the read whose condition it was.
        read: &'a str,
    },
    /// Stored bytes could not be decoded; treated as a miss.
    DecodeFailed {
        /// The key of the entry.
        key: &'a str,
        /// The codec's error.
        error: &'a Error,
    },
}

/// A subscriber to events. It runs inline on the calling thread: keep it cheap.
pub type Listener = Arc<dyn Fn(&Event<'_>) + Send + Sync>;
