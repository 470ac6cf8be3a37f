//! The seam between the change stream and the cache: apply one committed transaction.
//!
//! [`Sink::apply`] (and [`AsyncSink::apply`] for the async front end) is the only place the
//! consumer touches the cache: a transaction becomes one invalidation batch (the row
//! images of all its tables in one pipeline), sent by the core's `send_now`, which answers
//! `Ok` only once the store took it (never queued, whatever the failure policy).

use std::sync::Arc;
#[cfg(feature = "tokio")]
use std::{future::Future, pin::Pin};

use super::tx::TxChanges;
use crate::codec::Codec;
use crate::core::batch::Batch;
use crate::core::Core;
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

/// A transaction as one invalidation batch: the row images of every table go to the store
/// in one pipeline, whole tables in one more call.
fn batch_of<C: Codec>(core: &Core<C>, tx: &TxChanges) -> Batch {
    let mut batch = Batch::default();
    for (table, rows) in tx.rows() {
        batch.absorb(core.rows_batch(table, rows));
    }
    for table in tx.tables() {
        batch.absorb(core.table_batch(table));
    }
    batch
}

impl<C: Codec> Sink for Cache<C> {
    fn apply(&self, tx: &TxChanges) -> Result<(), Error> {
        let core = self.core();
        crate::block::block_on(core.send_now(batch_of(core, tx)))
    }
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
        let core = self.core();
        let batch = batch_of(core, tx);
        Box::pin(core.send_now(batch))
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
