//! The seam between the change stream and the cache: apply one committed transaction.
//!
//! [`Sink::apply`] is the only place the consumer touches the cache. Today it uses the
//! public per-table calls ([`Cache::invalidate_rows`], [`Cache::invalidate_model`]); a
//! batch call of the core (one pipeline for the whole transaction) replaces the body of
//! `impl Sink for Cache` and nothing else.

use super::tx::TxChanges;
use crate::codec::Codec;
use crate::front::Blocking;
use crate::{Cache, Error};

/// Applies a committed transaction's invalidations.
///
/// `Ok` means every invalidation reached the store: only then is the transaction's
/// position acknowledged. Applying the same transaction twice must be harmless (delivery is
/// at least once): invalidations are idempotent.
pub(crate) trait Sink: Send + Sync + 'static {
    /// Applies `tx`; an error keeps the transaction for a retry.
    fn apply(&self, tx: &TxChanges) -> Result<(), Error>;
}

impl<C: Codec> Sink for Cache<C, Blocking> {
    fn apply(&self, tx: &TxChanges) -> Result<(), Error> {
        // A failed invalidation is queued by the cache and replayed before its next call.
        // Replay what an earlier attempt left first, so a long outage does not queue the
        // same transaction once per retry.
        if self.pending_invalidations() > 0 {
            self.flush_pending()?;
        }
        for (table, rows) in tx.rows() {
            self.invalidate_rows(table, rows.iter().cloned())?;
        }
        for table in tx.tables() {
            self.invalidate_model(table)?;
        }
        // With `degrade_on_failure` a failed send returns `Ok` and stays queued: not applied.
        if self.pending_invalidations() > 0 {
            self.flush_pending()?;
            if self.pending_invalidations() > 0 {
                return Err(Error::Unavailable(
                    "invalidations are still queued for replay".into(),
                ));
            }
        }
        Ok(())
    }
}
