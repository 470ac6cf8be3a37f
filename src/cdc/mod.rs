//! Automatic invalidation from PostgreSQL's logical replication stream (feature
//! `postgres-cdc`).
//!
//! A [`Consumer`] reads a logical replication slot with the `pgoutput` plugin for a
//! publication of chosen tables, and turns every committed write, from any client, into
//! the invalidations the API makes by hand: an insert invalidates with its new row, an
//! update with its old and new rows, a delete with its old row, a truncate invalidates the
//! whole table. A transaction's invalidations are applied after its Commit, and only then
//! is its position acknowledged to the server: delivery is at least once, and applying
//! twice is harmless. While the cache's store is unavailable the transaction is held and
//! retried; nothing after it is acknowledged.
//!
//! Requirements: `wal_level = logical`; for exact invalidation, `REPLICA IDENTITY FULL` on
//! the published tables (with `DEFAULT`, an update or delete sends only the old row's key,
//! so reads with conditions on other columns are invalidated table-wide: correct, coarser,
//! and warned about once per table through [`CdcEvent::ReplicaIdentity`]).
//!
//! Column values arrive as text and are converted by column type (see `types.rs`): integers
//! to integers, so `category = 1` matches; `numeric` to its decimal text (which matches
//! the number: an `f64`, an integer, a `rust_decimal` as text); enums to text; `timestamp`
//! and `timestamptz` to [`Value::timestamp`](crate::Value::timestamp)'s form; dates to
//! [`Value::date`](crate::Value::date)'s. A column whose type has no safe conversion
//! (`json`, composite types, `NaN`, …) is left out of row images, which makes the core
//! invalidate the whole table for reads conditioned on it. Nothing is ever guessed.
//!
//! Transactions that commit while an apply is in flight are applied together once it ends
//! (one pipeline), and the last one's position is acknowledged after: a lone transaction is
//! applied at once, a fast stream in batches, so the consumer keeps up with the server.
//!
//! Durability: a [`SlotKind::Persistent`] slot resumes after a restart from the last
//! acknowledged position; the server retains WAL for it meanwhile (bounded by
//! `max_slot_wal_keep_size`, past which the slot is lost and refused). A
//! [`SlotKind::Temporary`] slot retains nothing, so each (re)connect invalidates every
//! published table.
//!
//! Where it runs: [`ConsumerBuilder::spawn`] starts a thread for a blocking
//! [`Cache`](crate::Cache); [`ConsumerBuilder::spawn_async`] a task for an
//! [`AsyncCache`](crate::AsyncCache). Both return a [`ConsumerHandle`]: status, applied
//! position, lag, [`wait_applied`](ConsumerHandle::wait_applied) (read your writes), stop.
//!
//! Read your writes across processes: after each apply the consumer publishes its applied
//! position in Redis (a key per slot, under the cache's prefix and version), and any
//! process sharing that Redis waits for it with [`wait_published`] (or
//! [`wait_published_async`]), no handle needed. The key also records that the slot's
//! invalidation of every published table was done: a consumer that finds an existing slot
//! without it (a crash after creating the slot, or the key lost) does it again.
//!
//! One consumer per slot streams at a time (PostgreSQL lets one session hold a slot): a
//! second one on the same slot waits on [`Status::Standby`] and takes over, from the last
//! acknowledged position, once the first stops or dies. Lag is reported in bytes of WAL
//! ([`ConsumerHandle::lag_bytes`]) and as time from commit to applied
//! ([`ConsumerHandle::last_apply_lag`], [`CdcEvent::Applied`]).
//!
//! As a process of its own: the `stampcache-cdc` binary (`src/bin/stampcache-cdc.rs`,
//! `--help` for its options), one per database for any number of application processes
//! sharing one Redis. Its `--prefix` and `--version` must be the applications' own
//! (`Builder::prefix`, `Builder::version`: keys are `<prefix>sc<version>:…`), or it
//! invalidates keys nobody reads; a computed prefix (`prefix_fn`) cannot be shared this way.
//!
//! Modules: `pgoutput.rs` decodes messages, `types.rs` converts values, `relation.rs`
//! keeps relations and builds row images, `assemble.rs` buffers a transaction, `tx.rs`
//! holds it, `sink.rs` applies it to the cache (the one seam with the core), `setup.rs`
//! checks and creates the publication and slot, `consumer.rs` runs the stream,
//! `handle.rs` reports on it, `published.rs` keeps the applied position in Redis,
//! `clock.rs` turns commit timestamps into lag.

pub(crate) mod assemble;
mod clock;
pub(crate) mod conninfo;
mod consumer;
mod error;
mod event;
mod handle;
mod lsn;
mod names;
pub(crate) mod pgoutput;
mod published;
mod relation;
mod setup;
mod sink;
mod tx;
pub(crate) mod types;

pub use consumer::{Consumer, ConsumerBuilder, SlotKind};
pub use error::CdcError;
pub use event::{CdcEvent, CdcListener};
pub use handle::{ConsumerHandle, ConsumerStats, Status};
pub use lsn::{Lsn, ParseLsnError};
pub use names::TableNames;
pub use pgoutput::DecodeError;
pub use published::{published_lsn, wait_published};
#[cfg(feature = "tokio")]
pub use published::{published_lsn_async, wait_published_async};
