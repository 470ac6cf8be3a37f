//! [`Prepared`] and [`AsyncPrepared`]: a [`Read`] planned once (profile, keys, local key),
//! for hot paths where describing the read on every call would cost more than a local hit.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{blocking_reads, Answer};
use crate::block::block_on;
use crate::codec::{Codec, DefaultCodec};
use crate::core::{Begun, Core, Planned, Served};
use crate::error::{Error, LoadError};
use crate::event::Target;
use crate::read::Read;

/// A read planned once, from [`Cache::prepare`](crate::Cache::prepare). Reading through it
/// behaves exactly like [`Cache::get_or_compute`](crate::Cache::get_or_compute) with the same
/// read; it only skips the planning.
///
/// ```
/// use stampcache::{Cache, Cond, Read};
/// let cache = Cache::embedded();
/// let hot = cache.prepare(&Read::get("blog.article").filter(Cond::eq("id", 1)));
/// let title: String = hot.get_or_compute(|| "from the database".to_string())?;
/// # Ok::<(), stampcache::Error>(())
/// ```
pub struct Prepared<C: Codec = DefaultCodec> {
    inner: Planning<C>,
}

/// The async twin of [`Prepared`], from [`AsyncCache::prepare`](crate::AsyncCache::prepare).
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub struct AsyncPrepared<C: Codec = DefaultCodec> {
    inner: Planning<C>,
}

/// What a prepared read keeps.
struct Planning<C: Codec> {
    core: Core<C>,
    /// The read, for events.
    read: Read,
    /// `None`: the read bypasses the cache.
    planned: Option<Arc<Planned>>,
    /// Why the read is refused (an empty name), reported by every call.
    refused: Option<String>,
}

impl<C: Codec> Planning<C> {
    fn new(core: Core<C>, read: &Read) -> Planning<C> {
        if let Err(e) = read.check_names() {
            let refused = Some(match e {
                Error::InvalidName(why) => why,
                e => e.to_string(),
            });
            return Planning {
                planned: None,
                refused,
                core,
                read: read.clone(),
            };
        }
        Planning {
            refused: None,
            planned: core.plan(read),
            core,
            read: read.clone(),
        }
    }

    fn target(&self) -> Target<'_> {
        Target::Table {
            table: self.read.table(),
            op: self.read.op(),
            read: &self.read,
        }
    }

    fn begin<T: Send + Sync + 'static>(&self) -> Result<Begun<'_, T>, Error> {
        if let Some(why) = &self.refused {
            return Err(Error::InvalidName(why.clone()));
        }
        Ok(self
            .core
            .begin_planned(self.target(), self.planned.as_ref()))
    }
}

impl<C: Codec> Prepared<C> {
    pub(crate) fn new(core: Core<C>, read: &Read) -> Self {
        Prepared {
            inner: Planning::new(core, read),
        }
    }

    blocking_reads!();

    /// A local hit that needs no store is answered without entering the async core.
    fn serve<T, E, F>(&self, loader: F) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Result<T, E>,
    {
        let p = &self.inner;
        match p.begin()? {
            Begun::Served(v) => Ok((v, Served::Cached)),
            Begun::Go(job) => block_on(p.core.finish(job, super::ready_loader(loader))),
        }
    }
}

#[cfg(feature = "tokio")]
impl<C: Codec> AsyncPrepared<C> {
    pub(crate) fn new(core: Core<C>, read: &Read) -> Self {
        AsyncPrepared {
            inner: Planning::new(core, read),
        }
    }

    super::async_reads!();

    async fn serve<T, E, F, Fut>(&self, loader: F) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let p = &self.inner;
        match p.begin()? {
            Begun::Served(v) => Ok((v, Served::Cached)),
            Begun::Go(job) => p.core.finish(job, loader).await,
        }
    }
}
