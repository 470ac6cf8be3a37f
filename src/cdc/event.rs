//! [`CdcEvent`]: what the consumer did, for logs and metrics.

use std::sync::Arc;
use std::time::Duration;

use super::{CdcError, Lsn};
use crate::Error;

/// Something the consumer did or noticed. Listeners run inline on the consumer's thread.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum CdcEvent<'a> {
    /// The replication stream started (after a connect or a reconnect).
    Connected {
        /// The slot streamed from.
        slot: &'a str,
    },
    /// Another session holds the slot: the consumer waits and takes over once it is free
    /// (emitted when the standby begins, not on every retry).
    Standby {
        /// The slot waited for.
        slot: &'a str,
        /// The server process holding it, when the server said.
        pid: Option<u32>,
    },
    /// The connection broke or setup failed; the consumer reconnects after a delay.
    Disconnected {
        /// Why.
        error: &'a CdcError,
    },
    /// A table's replica identity does not send whole old rows: updates and deletes
    /// invalidate coarser (whole table for reads on non-key fields). Emitted once per table.
    ReplicaIdentity {
        /// The cache's name of the table.
        table: &'a str,
        /// `default`, `index` or `nothing`.
        identity: &'a str,
        /// The statement that makes invalidation exact.
        fix: &'a str,
    },
    /// A column's type has no safe conversion: it is left out of row images, so reads with
    /// conditions on it are invalidated by any write to the table. Emitted once per column.
    UnknownColumnType {
        /// The cache's name of the table.
        table: &'a str,
        /// The column.
        column: &'a str,
        /// Its type's OID.
        type_oid: u32,
    },
    /// Every published table was invalidated, because changes before this point may have
    /// been missed (a new slot, or a temporary slot on every connect).
    InvalidatedPublished {
        /// How many tables.
        tables: usize,
    },
    /// Committed transactions' invalidations were applied (together, in one pipeline, when
    /// they queued behind each other) and their position acknowledged.
    Applied {
        /// The end of the last one's commit record.
        lsn: Lsn,
        /// How many transactions (that invalidate something) were applied together.
        transactions: usize,
        /// Row images sent (old and new count separately).
        rows: usize,
        /// Tables invalidated whole (truncates, very large transactions).
        tables: usize,
        /// From the first one's commit (the server's clock) to the invalidations applied
        /// (this machine's clock); zero when the clocks disagree that way.
        lag: Duration,
    },
    /// Applying a transaction failed; it is kept, retried after a delay and not acknowledged.
    ApplyFailed {
        /// The cache's error.
        error: &'a Error,
        /// How many attempts failed so far.
        attempt: u32,
    },
}

/// A subscriber to [`CdcEvent`]s.
pub type CdcListener = Arc<dyn Fn(&CdcEvent<'_>) + Send + Sync>;
