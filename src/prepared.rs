//! Prepared reads: a [`Read`] planned once (profile, key, Redis keys), for hot paths where
//! describing the read on every call would cost more than a local hit.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use std::future::Future;

use crate::block::block_on;
use crate::cache::{ready_loader, unwrap_arc, Cache};
use crate::codec::Codec;
use crate::error::{infallible, Error, LoadError};
use crate::event::Target;
use crate::front::{Async, Blocking, Front};
use crate::local::LocalMode;
use crate::profile::Op;
use crate::read::Read;
use crate::store::Plan;

/// A read planned once, from [`Cache::prepare`]. Reading through it behaves exactly like
/// [`Cache::get_or_load`] with the same read; it only skips the planning.
///
/// ```
/// use stampcache::{Cache, Cond, Read};
/// let cache = Cache::embedded();
/// let hot = cache.prepare(&Read::get("blog.article").filter(Cond::eq("id", 1)));
/// let title: String = hot.get_or_load(|| "from the database".to_string())?;
/// # Ok::<(), stampcache::Error>(())
/// ```
pub struct Prepared<C: Codec, M: Front = Blocking> {
    cache: Cache<C, M>,
    table: String,
    op: Op,
    /// `None`: the read bypasses the cache.
    plan: Option<Arc<Plan>>,
    /// The local tier's key (a plan key, or the entry key's hash).
    key: u128,
    mode: LocalMode,
}

impl<C: Codec, M: Front> Cache<C, M> {
    /// Plans `read` once for repeated use.
    pub fn prepare(&self, read: &Read) -> Prepared<C, M> {
        let plan = self.plan_read(read);
        let key = match &plan {
            Some(p) => self
                .local_key_of(read)
                .unwrap_or_else(|| xxhash_rust::xxh3::xxh3_128(p.entry.as_bytes())),
            None => 0,
        };
        let mode = plan.as_ref().map_or(LocalMode::Off, |p| p.local);
        Prepared {
            cache: self.clone(),
            table: read.table().to_owned(),
            op: read.op(),
            plan,
            key,
            mode,
        }
    }
}

impl<C: Codec, M: Front> Prepared<C, M> {
    /// The shared core of both front ends.
    async fn read<T, E, F, Fut>(&self, loader: F) -> Result<Arc<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let target = Target::Table {
            table: &self.table,
            op: self.op,
        };
        self.cache
            .read_planned(target, self.plan.clone(), self.key, self.mode, loader)
            .await
    }
}

impl<C: Codec> Prepared<C, Blocking> {
    /// [`Cache::get_or_load`] of the prepared read.
    pub fn get_or_load<T, F>(&self, loader: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        self.get_or_load_arc(loader).map(unwrap_arc)
    }

    /// [`Cache::get_or_load_arc`] of the prepared read.
    pub fn get_or_load_arc<T, F>(&self, loader: F) -> Result<Arc<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        self.try_get_or_load_arc(infallible(loader))
            .map_err(LoadError::into_cache_error)
    }

    /// [`Cache::try_get_or_load_arc`] of the prepared read.
    pub fn try_get_or_load_arc<T, E, F>(&self, loader: F) -> Result<Arc<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Result<T, E>,
    {
        if self.plan.is_some() && self.cache.inner.enabled {
            let target = Target::Table {
                table: &self.table,
                op: self.op,
            };
            if let Some(v) = self.cache.local_hit_keyed(target, self.key, self.mode) {
                return Ok(v); // No I/O: the core is not entered.
            }
        }
        block_on(self.read(ready_loader(loader)))
    }
}

impl<C: Codec> Prepared<C, Async> {
    /// Async [`Prepared::get_or_load`].
    pub async fn get_or_load<T, F, Fut>(&self, loader: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.get_or_load_arc(loader).await.map(unwrap_arc)
    }

    /// Async [`Prepared::get_or_load_arc`].
    pub async fn get_or_load_arc<T, F, Fut>(&self, loader: F) -> Result<Arc<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.read(crate::error::infallible_async!(loader))
            .await
            .map_err(LoadError::into_cache_error)
    }

    /// Async [`Prepared::try_get_or_load_arc`].
    pub async fn try_get_or_load_arc<T, E, F, Fut>(&self, loader: F) -> Result<Arc<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.read(loader).await
    }
}
