//! The seam between the change stream and the cache: apply one committed transaction.
//!
//! [`Sink::apply`] (and [`AsyncSink::apply`] for the async front end) is the only place the
//! consumer touches the cache. Today it uses the public per-table calls
//! ([`Cache::invalidate_rows`], [`Cache::invalidate_model`]); a batch call of the core (one
//! pipeline for the whole transaction) replaces the body of these two `apply` functions and
//! nothing else.

use std::sync::Arc;
#[cfg(feature = "tokio")]
use std::{future::Future, pin::Pin};

use super::tx::TxChanges;
use crate::codec::Codec;
use crate::front::Blocking;
use crate::{Cache, Error};

/// Applies a committed transaction's invalidations, blocking the calling thread.
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
                return Err(still_queued());
            }
        }
        Ok(())
    }
}

fn still_queued() -> Error {
    Error::Unavailable("invalidations are still queued for replay".into())
}

/// A boxed future (the async sink is used as a trait object).
#[cfg(feature = "tokio")]
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Sink`] for the async front end: the same contract, awaited.
#[cfg(feature = "tokio")]
pub(crate) trait AsyncSink: Send + Sync + 'static {
    /// Applies `tx`; an error keeps the transaction for a retry.
    fn apply<'a>(&'a self, tx: &'a TxChanges) -> BoxFuture<'a, Result<(), Error>>;
}

#[cfg(feature = "tokio")]
impl<C: Codec> AsyncSink for crate::AsyncCache<C> {
    fn apply<'a>(&'a self, tx: &'a TxChanges) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            // The same steps as the blocking `Sink::apply`, awaited.
            if self.pending_invalidations() > 0 {
                self.flush_pending().await?;
            }
            for (table, rows) in tx.rows() {
                self.invalidate_rows(table, rows.iter().cloned()).await?;
            }
            for table in tx.tables() {
                self.invalidate_model(table).await?;
            }
            if self.pending_invalidations() > 0 {
                self.flush_pending().await?;
                if self.pending_invalidations() > 0 {
                    return Err(still_queued());
                }
            }
            Ok(())
        })
    }
}

/// The cache a consumer invalidates, by front end.
#[derive(Clone)]
pub(crate) enum Target {
    /// A blocking [`Cache`]: applied on tokio's blocking pool, so the stream's keepalives
    /// go on meanwhile.
    Blocking(Arc<dyn Sink>),
    /// An [`AsyncCache`](crate::AsyncCache): awaited.
    #[cfg(feature = "tokio")]
    Async(Arc<dyn AsyncSink>),
}

impl Target {
    /// Applies `tx` once.
    pub async fn apply(&self, tx: &Arc<TxChanges>) -> Result<(), Error> {
        match self {
            Target::Blocking(sink) => {
                let (sink, tx) = (sink.clone(), tx.clone());
                tokio::task::spawn_blocking(move || sink.apply(&tx))
                    .await
                    .unwrap_or_else(|e| {
                        Err(Error::Unavailable(format!("the apply task failed: {e}")))
                    })
            }
            #[cfg(feature = "tokio")]
            Target::Async(sink) => sink.apply(tx).await,
        }
    }
}
