//! [`AsyncCache`]: the async front end (tokio). Every operation `.await`s the core.

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{async_reads, cache_handle, writes, Answer};
use super::{AsyncCachedAs, AsyncPrepared, AsyncScope, AsyncSimple};
use crate::codec::{Codec, DefaultCodec};
use crate::core::{Core, Saved, Served, Stats};
use crate::error::{Error, LoadError};
use crate::read::{Dep, Read};
use crate::row::Row;
use crate::Isolation;

/// The async front end of a cache: every operation of [`Cache`](crate::Cache) as an
/// `async fn`, over one multiplexed Redis connection. Build it with
/// [`Builder::build_async`](crate::Builder::build_async) inside a tokio runtime. Same core,
/// same keys: a blocking and an async cache with the same prefix share entries.
///
/// Every future is `Send` when the loader's is, and dropping one at any await point is
/// safe (DESIGN.md, "Cancellation").
///
/// ```no_run
/// # async fn demo(cache: stampcache::AsyncCache) -> Result<(), stampcache::Error> {
/// use stampcache::{Cond, Read};
/// let read = Read::get("blog.article").filter(Cond::eq("id", 1));
/// let title: String = cache.get_or_compute(&read, || async { "from the database".to_string() }).await?;
/// # Ok(()) }
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub struct AsyncCache<C: Codec = DefaultCodec> {
    core: Core<C>,
}

cache_handle!(
    AsyncCache,
    AsyncScope,
    AsyncPrepared,
    AsyncCachedAs,
    AsyncSimple
);

impl<C: Codec> AsyncCache<C> {
    async_reads!(read: &Read);

    /// Every read, from start to end.
    async fn serve<T, E, F, Fut>(
        &self,
        read: &Read,
        loader: F,
    ) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        read.check_names()?;
        self.core.read(read, loader).await
    }

    writes!(async, async);

    /// Invalidates everything this cache (prefix and version) has stored.
    pub async fn invalidate_all(&self) -> Result<(), Error> {
        self.core.everything().await
    }

    /// Sends queued invalidations now. Reads and writes do this by themselves first.
    pub async fn flush_pending(&self) -> Result<(), Error> {
        self.core.replay().await
    }
}
