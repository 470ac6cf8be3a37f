//! [`Cache`]: the blocking front end. Every operation runs the core on the calling thread.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{blocking_reads, cache_handle, writes, Answer, CachedAs, Prepared, Scope, Simple};
use crate::block::block_on;
use crate::builder::Builder;
use crate::codec::{Codec, DefaultCodec};
use crate::core::{Begun, Core, Saved, Served, Stats};
use crate::error::{Error, LoadError};
use crate::read::{Dep, Read};
use crate::row::Row;
use crate::Isolation;

/// A query cache with stamp-validated, granular invalidation; its operations block the
/// calling thread (see [`AsyncCache`](crate::AsyncCache) for async code).
///
/// Cheap to clone: clones share the store, profiles and queued invalidations.
///
/// ```
/// use stampcache::{Cache, Cond, Read};
/// let cache = Cache::embedded();
/// let read = Read::get("blog.article").filter(Cond::eq("id", 1));
/// let title: String = cache.get_or_compute(&read, || "from the database".to_string()).unwrap();
/// assert_eq!(title, "from the database");
/// ```
pub struct Cache<C: Codec = DefaultCodec> {
    core: Core<C>,
}

cache_handle!(Cache, Scope, Prepared, CachedAs, Simple);

impl Cache<DefaultCodec> {
    /// A builder with defaults: embedded, every table cached for 15 minutes.
    pub fn builder() -> Builder<DefaultCodec> {
        Builder::default()
    }
    /// An embedded cache with defaults.
    pub fn embedded() -> Cache<DefaultCodec> {
        match Builder::default().build() {
            Ok(c) => c,
            Err(e) => unreachable!("the default configuration is valid: {e}"),
        }
    }
    /// A Redis cache with defaults.
    pub fn from_url(url: &str) -> Result<Cache<DefaultCodec>, Error> {
        Builder::default().redis(url).build()
    }
}

impl<C: Codec> Cache<C> {
    blocking_reads!(read: &Read);

    /// Every read: a local hit that needs no store is answered without entering the async
    /// core; the rest is driven on this thread.
    fn serve<T, E, F>(&self, read: &Read, loader: F) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Result<T, E>,
    {
        read.check_names()?;
        match self.core.begin_read(read) {
            Begun::Served(v) => Ok((v, Served::Cached)),
            Begun::Go(job) => block_on(self.core.finish(job, super::ready_loader(loader))),
        }
    }

    writes!(blocking);

    /// Invalidates everything this cache (prefix and version) has stored.
    pub fn invalidate_all(&self) -> Result<(), Error> {
        block_on(self.core.everything())
    }

    /// Sends queued invalidations now. Reads and writes do this by themselves first.
    pub fn flush_pending(&self) -> Result<(), Error> {
        block_on(self.core.replay())
    }
}
