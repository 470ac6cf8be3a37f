//! `cached_as`: a function result cached with the invalidation of the reads it depends on.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use std::future::Future;
use std::sync::Arc;

use crate::block::block_on;
use crate::cache::{ready_loader, unwrap_arc, Cache, Deps};
use crate::codec::Codec;
use crate::error::{Error, LoadError};
use crate::event::Target;
use crate::front::{Async, Blocking, Front};
use crate::read::Dep;
use crate::store::Plan;

/// A function call cached under its dependencies, from [`Cache::cached_as`].
///
/// The entry dies when any dependency could change: a write matching a [`Dep::Read`]'s
/// condition, or any write to a [`Dep::Table`]. The key includes the dependencies, the
/// name, the arguments and `extra`.
///
/// ```
/// use stampcache::{Cache, Cond, Dep, Read};
/// let cache = Cache::embedded();
/// let total: i64 = cache
///     .cached_as([Dep::from(Read::count("blog.article").filter(Cond::eq("category", 1))),
///                 Dep::table("blog.author")])
///     .name("report")
///     .args(&(2026, "nov"))
///     .get_or_load(|| 42)
///     .unwrap();
/// assert_eq!(total, 42);
/// ```
pub struct CachedAs<'c, C: Codec, M: Front = Blocking> {
    cache: &'c Cache<C, M>,
    deps: Vec<Dep>,
    name: String,
    args: Result<Vec<u8>, Error>,
    extra: String,
    timeout: Option<Duration>,
}

impl<'c, C: Codec, M: Front> CachedAs<'c, C, M> {
    pub(crate) fn new(cache: &'c Cache<C, M>, deps: Vec<Dep>) -> Self {
        CachedAs {
            cache,
            deps,
            name: String::new(),
            args: Ok(Vec::new()),
            extra: String::new(),
            timeout: None,
        }
    }
    /// The function's name (in the key and in events).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
    /// The function's arguments (in the key, in a canonical form: `3_i32` and `3_i64` are
    /// the same argument).
    pub fn args<A: Serialize + ?Sized>(mut self, args: &A) -> Self {
        self.args = crate::argkey::arg_key(args).map(String::into_bytes);
        self
    }
    /// Anything else that distinguishes results (in the key).
    pub fn extra(mut self, extra: impl Into<String>) -> Self {
        self.extra = extra.into();
        self
    }
    /// Entry lifetime (default: the shortest timeout of the dependencies' profiles).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The entry's plan (`None`: the cache is off, the function just runs).
    fn plan(&mut self) -> Result<Option<Arc<Plan>>, Error> {
        let args = std::mem::replace(&mut self.args, Ok(Vec::new()))?;
        let cache = self.cache;
        if !cache.inner.enabled {
            return Ok(None);
        }
        let profiles = &cache.inner.profiles;
        let mut deps = Deps::default();
        let mut timeout = self.timeout;
        for dep in &self.deps {
            let (table, db) = match dep {
                Dep::Read(r) => (r.table(), r.db.as_str()),
                Dep::Table(t) => (t.as_str(), "default"),
            };
            let profile = profiles.get_or_default(table);
            if self.timeout.is_none() {
                timeout = Some(timeout.map_or(profile.timeout, |t| t.min(profile.timeout)));
            }
            match dep {
                Dep::Read(r) => cache.add_read(r, profile, &mut deps),
                Dep::Table(t) => cache.add_table(t, db, &mut deps),
            }
        }
        Cache::<C, M>::describe(&mut deps, self.name.as_bytes());
        Cache::<C, M>::describe(&mut deps, &args);
        Cache::<C, M>::describe(&mut deps, self.extra.as_bytes());
        let ttl = timeout.unwrap_or_else(|| profiles.get_or_default("").timeout);
        let ttl = ttl.min(Duration::from_secs(10 * 365 * 24 * 3600));
        let plan = deps.into_plan(&cache.inner.keys, ttl, cache.default_local());
        Ok(Some(Arc::new(plan)))
    }

    /// The shared core of both front ends.
    async fn run<T, E, F, Fut>(mut self, f: F) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let plan = self.plan().map_err(LoadError::Cache)?;
        let target = Target::Func { name: &self.name };
        self.cache
            .load_through(target, plan, None, f)
            .await
            .map(unwrap_arc)
    }
}

impl<C: Codec> CachedAs<'_, C, Blocking> {
    /// Returns the cached result or runs `f` and caches it.
    pub fn get_or_load<T, F>(self, f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        self.try_get_or_load(crate::error::infallible(f))
            .map_err(LoadError::into_cache_error)
    }

    /// Like [`get_or_load`](CachedAs::get_or_load) with a function that can fail.
    pub fn try_get_or_load<T, E, F>(self, f: F) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Result<T, E>,
    {
        block_on(self.run(ready_loader(f)))
    }
}

impl<C: Codec> CachedAs<'_, C, Async> {
    /// Async [`CachedAs::get_or_load`], with an async function.
    pub async fn get_or_load<T, F, Fut>(self, f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.run(crate::error::infallible_async!(f))
            .await
            .map_err(LoadError::into_cache_error)
    }

    /// Async [`CachedAs::try_get_or_load`], with an async function.
    pub async fn try_get_or_load<T, E, F, Fut>(self, f: F) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.run(f).await
    }
}
