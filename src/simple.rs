//! The simple cache: time-only entries, with no invalidation but their lifetime and
//! explicit deletes.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::block::block_on;
use crate::cache::Cache;
use crate::codec::Codec;
use crate::error::Error;
use crate::event::{Event, Outcome, Target};
use crate::front::{Async, Blocking, Front};
use crate::pending::Backlog;

/// Time-only caching, from [`Cache::simple`] (blocking) or [`AsyncCache::simple`](crate::AsyncCache) (async).
///
/// ```
/// use std::time::Duration;
/// use stampcache::{Cache, Error};
/// let cache = Cache::embedded();
/// let simple = cache.simple();
/// assert!(matches!(simple.get::<u32>("answer"), Err(Error::CacheMiss)));
/// simple.set("answer", &42u32, Duration::from_secs(60)).unwrap();
/// assert_eq!(simple.get::<u32>("answer").unwrap(), 42);
/// let n: u32 = simple.cached("square", &7u32, Duration::from_secs(60), || 49).unwrap();
/// assert_eq!(n, 49);
/// ```
pub struct Simple<'c, C: Codec, M: Front = Blocking> {
    cache: &'c Cache<C, M>,
}

impl<'c, C: Codec, M: Front> Simple<'c, C, M> {
    pub(crate) fn new(cache: &'c Cache<C, M>) -> Self {
        Simple { cache }
    }

    /// The Redis key of one call of a cached function.
    pub fn key<A: Serialize + ?Sized>(&self, name: &str, args: &A) -> Result<String, Error> {
        Ok(self
            .cache
            .inner
            .keys
            .call(name, crate::argkey::arg_key(args)?.as_bytes()))
    }

    fn simple_key(&self, key: &str) -> String {
        self.cache.inner.keys.simple(key)
    }

    /// The encoded value, unless the cache is off (then nothing is stored).
    fn encoded<T: Serialize + ?Sized>(&self, value: &T) -> Result<Option<Vec<u8>>, Error> {
        if !self.cache.inner.enabled {
            return Ok(None);
        }
        C::encode(value).map(Some)
    }

    async fn get_raw<T: DeserializeOwned>(
        &self,
        target: Target<'_>,
        redis_key: &str,
    ) -> Result<T, Error> {
        let cache = self.cache;
        if !cache.inner.enabled {
            cache.read_event(target, Outcome::Bypass);
            return Err(Error::CacheMiss);
        }
        let fetched = match cache.replay().await {
            Ok(()) => cache.inner.store.get(redis_key).await,
            Err(e) => Err(e),
        };
        let bytes = match fetched {
            Ok(b) => b,
            Err(e) => {
                cache.store_failed("get", e)?;
                cache.read_event(target, Outcome::Degraded);
                return Err(Error::CacheMiss);
            }
        };
        let Some(bytes) = bytes else {
            cache.read_event(target, Outcome::Miss);
            return Err(Error::CacheMiss);
        };
        match C::decode(&bytes) {
            Ok(v) => {
                cache.read_event(target, Outcome::Hit);
                Ok(v)
            }
            Err(e) => {
                cache.emit(&Event::DecodeFailed {
                    key: redis_key,
                    error: &e,
                });
                cache.read_event(target, Outcome::Miss);
                Err(Error::CacheMiss)
            }
        }
    }

    async fn set_raw(
        &self,
        redis_key: &str,
        bytes: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(), Error> {
        let Some(bytes) = bytes else {
            return Ok(());
        };
        let cache = self.cache;
        let stored = match cache.replay().await {
            Ok(()) => cache.inner.store.set(redis_key, &bytes, timeout).await,
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => Ok(()),
            Err(e) => cache.store_failed("set", e),
        }
    }

    async fn delete_raw(&self, redis_key: String) -> Result<bool, Error> {
        let cache = self.cache;
        if !cache.inner.enabled {
            return Ok(false);
        }
        let deleted = match cache.replay().await {
            Ok(()) => {
                cache
                    .inner
                    .store
                    .delete(std::slice::from_ref(&redis_key))
                    .await
            }
            Err(e) => Err(e),
        };
        match deleted {
            Ok(deleted) => Ok(deleted),
            Err(_) => {
                // Never lost: queue the delete like any invalidation.
                let mut b = Backlog::default();
                b.keys.insert(redis_key);
                cache.apply(b).await.map(|()| false)
            }
        }
    }

    /// The cached call under `key`, or `None` on a miss.
    async fn cached_hit<T: DeserializeOwned>(
        &self,
        name: &str,
        key: &str,
    ) -> Result<Option<T>, Error> {
        match self.get_raw::<T>(Target::Func { name }, key).await {
            Ok(v) => Ok(Some(v)),
            Err(Error::CacheMiss) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl<C: Codec> Simple<'_, C, Blocking> {
    /// The value under `key`, or [`Error::CacheMiss`] (also for bytes that do not decode, and,
    /// when degrading, for an unavailable store).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, Error> {
        block_on(self.get_raw(Target::Simple { key }, &self.simple_key(key)))
    }

    /// Stores `value` under `key` for `timeout`.
    pub fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        timeout: Duration,
    ) -> Result<(), Error> {
        block_on(self.set_raw(&self.simple_key(key), self.encoded(value)?, timeout))
    }

    /// Deletes `key`; true if there was an entry.
    pub fn delete(&self, key: &str) -> Result<bool, Error> {
        block_on(self.delete_raw(self.simple_key(key)))
    }

    /// The result of `f` for these arguments, cached for `timeout` under `name` and `args`.
    pub fn cached<A, T, F>(&self, name: &str, args: &A, timeout: Duration, f: F) -> Result<T, Error>
    where
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        let key = self.key(name, args)?;
        if let Some(v) = block_on(self.cached_hit(name, &key))? {
            return Ok(v);
        }
        let value = f();
        block_on(self.set_raw(&key, self.encoded(&value)?, timeout))?;
        Ok(value)
    }

    /// Forgets one call of a cached function; true if it was cached.
    pub fn invalidate<A: Serialize + ?Sized>(&self, name: &str, args: &A) -> Result<bool, Error> {
        block_on(self.delete_raw(self.key(name, args)?))
    }
}

impl<C: Codec> Simple<'_, C, Async> {
    /// Async [`Simple::get`].
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, Error> {
        self.get_raw(Target::Simple { key }, &self.simple_key(key))
            .await
    }

    /// Async [`Simple::set`].
    pub async fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        timeout: Duration,
    ) -> Result<(), Error> {
        let bytes = self.encoded(value)?;
        self.set_raw(&self.simple_key(key), bytes, timeout).await
    }

    /// Async [`Simple::delete`].
    pub async fn delete(&self, key: &str) -> Result<bool, Error> {
        self.delete_raw(self.simple_key(key)).await
    }

    /// Async [`Simple::cached`], with an async function.
    pub async fn cached<A, T, F, Fut>(
        &self,
        name: &str,
        args: &A,
        timeout: Duration,
        f: F,
    ) -> Result<T, Error>
    where
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let key = self.key(name, args)?;
        if let Some(v) = self.cached_hit(name, &key).await? {
            return Ok(v);
        }
        let value = f().await;
        let bytes = self.encoded(&value)?;
        self.set_raw(&key, bytes, timeout).await?;
        Ok(value)
    }

    /// Async [`Simple::invalidate`].
    pub async fn invalidate<A: Serialize + ?Sized>(
        &self,
        name: &str,
        args: &A,
    ) -> Result<bool, Error> {
        let key = self.key(name, args)?;
        self.delete_raw(key).await
    }
}
