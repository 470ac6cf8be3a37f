//! The seam between the change stream and the cache: apply committed transactions.
//!
//! [`Sink::apply`] (and [`AsyncSink::apply`] for the async front end) is the only place the
//! consumer touches the cache: one or more transactions (merged) become one invalidation
//! batch (the row images of all their tables in one pipeline), sent by the core's
//! `send_now`, which answers `Ok` only once the store took it (never queued, whatever the
//! failure policy); then the applied position is published (`published.rs`).

use std::sync::Arc;
#[cfg(feature = "tokio")]
use std::{future::Future, pin::Pin};

use super::published;
use super::tx::TxChanges;
use super::Lsn;
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
    /// Applies `tx` (when there is one), then publishes `lsn` as `slot`'s applied position;
    /// an error keeps the transactions for a retry.
    fn apply(&self, tx: Option<&TxChanges>, slot: &str, lsn: Lsn) -> Result<(), Error>;

    /// The applied position published for `slot`.
    fn published(&self, slot: &str) -> Result<Option<Lsn>, Error>;

    /// Deletes the position published for `slot`.
    fn forget(&self, slot: &str) -> Result<(), Error>;
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

/// Sends `tx`'s batch, then publishes `lsn`.
async fn apply_then_publish<C: Codec>(
    core: &Core<C>,
    batch: Option<Batch>,
    slot: &str,
    lsn: Lsn,
) -> Result<(), Error> {
    if let Some(batch) = batch {
        core.send_now(batch).await?;
    }
    published::write(core, slot, lsn).await
}

impl<C: Codec> Sink for Cache<C> {
    fn apply(&self, tx: Option<&TxChanges>, slot: &str, lsn: Lsn) -> Result<(), Error> {
        let core = self.core();
        let batch = tx.map(|tx| batch_of(core, tx));
        crate::block::block_on(apply_then_publish(core, batch, slot, lsn))
    }

    fn published(&self, slot: &str) -> Result<Option<Lsn>, Error> {
        crate::block::block_on(published::read(self.core(), slot))
    }

    fn forget(&self, slot: &str) -> Result<(), Error> {
        crate::block::block_on(published::forget(self.core(), slot))
    }
}

/// A boxed future (the async sink is used as a trait object).
#[cfg(feature = "tokio")]
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Sink`] for the async front end: the same contract, awaited.
#[cfg(feature = "tokio")]
pub(crate) trait AsyncSink: Send + Sync + 'static {
    /// [`Sink::apply`], awaited.
    fn apply<'a>(
        &'a self,
        tx: Option<&'a TxChanges>,
        slot: &'a str,
        lsn: Lsn,
    ) -> BoxFuture<'a, Result<(), Error>>;

    /// [`Sink::published`], awaited.
    fn published<'a>(&'a self, slot: &'a str) -> BoxFuture<'a, Result<Option<Lsn>, Error>>;

    /// [`Sink::forget`], awaited.
    fn forget<'a>(&'a self, slot: &'a str) -> BoxFuture<'a, Result<(), Error>>;
}

#[cfg(feature = "tokio")]
impl<C: Codec> AsyncSink for crate::AsyncCache<C> {
    fn apply<'a>(
        &'a self,
        tx: Option<&'a TxChanges>,
        slot: &'a str,
        lsn: Lsn,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let core = self.core();
        let batch = tx.map(|tx| batch_of(core, tx));
        Box::pin(apply_then_publish(core, batch, slot, lsn))
    }

    fn published<'a>(&'a self, slot: &'a str) -> BoxFuture<'a, Result<Option<Lsn>, Error>> {
        Box::pin(published::read(self.core(), slot))
    }

    fn forget<'a>(&'a self, slot: &'a str) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(published::forget(self.core(), slot))
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
    /// Applies `tx` (if any) once, then publishes `lsn` as applied for `slot`.
    pub async fn apply(
        &self,
        tx: Option<&Arc<TxChanges>>,
        slot: &str,
        lsn: Lsn,
    ) -> Result<(), Error> {
        match self {
            Target::Blocking(sink) => {
                let (sink, tx, slot) = (sink.clone(), tx.cloned(), slot.to_owned());
                blocking(move || sink.apply(tx.as_deref(), &slot, lsn)).await
            }
            #[cfg(feature = "tokio")]
            Target::Async(sink) => sink.apply(tx.map(|t| &**t), slot, lsn).await,
        }
    }

    /// The applied position published for `slot`.
    pub async fn published(&self, slot: &str) -> Result<Option<Lsn>, Error> {
        match self {
            Target::Blocking(sink) => {
                let (sink, slot) = (sink.clone(), slot.to_owned());
                blocking(move || sink.published(&slot)).await
            }
            #[cfg(feature = "tokio")]
            Target::Async(sink) => sink.published(slot).await,
        }
    }

    /// Deletes the position published for `slot` (before creating a new slot).
    pub async fn forget(&self, slot: &str) -> Result<(), Error> {
        match self {
            Target::Blocking(sink) => {
                let (sink, slot) = (sink.clone(), slot.to_owned());
                blocking(move || sink.forget(&slot)).await
            }
            #[cfg(feature = "tokio")]
            Target::Async(sink) => sink.forget(slot).await,
        }
    }
}

/// Runs `f` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Error::Unavailable(format!("the apply task failed: {e}"))))
}
