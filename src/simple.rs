//! The simple cache: time-only entries, with no invalidation but their lifetime and
//! explicit deletes.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cache::Cache;
use crate::codec::Codec;
use crate::error::Error;
use crate::event::{Event, Outcome, Target};
use crate::pending::Backlog;

/// Time-only caching, from [`Cache::simple`].
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
pub struct Simple<'c, C: Codec> {
    cache: &'c Cache<C>,
}

impl<'c, C: Codec> Simple<'c, C> {
    pub(crate) fn new(cache: &'c Cache<C>) -> Self {
        Simple { cache }
    }

    /// The value under `key`, or [`Error::CacheMiss`] (also for bytes that do not decode, and,
    /// when degrading, for an unavailable store).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<T, Error> {
        self.get_raw(Target::Simple { key }, &self.cache.inner.keys.simple(key))
    }

    /// Stores `value` under `key` for `timeout`.
    pub fn set<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        timeout: Duration,
    ) -> Result<(), Error> {
        self.set_raw(&self.cache.inner.keys.simple(key), value, timeout)
    }

    /// Deletes `key`; true if there was an entry.
    pub fn delete(&self, key: &str) -> Result<bool, Error> {
        self.delete_raw(self.cache.inner.keys.simple(key))
    }

    /// The result of `f` for these arguments, cached for `timeout` under `name` and `args`.
    pub fn cached<A, T, F>(&self, name: &str, args: &A, timeout: Duration, f: F) -> Result<T, Error>
    where
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        let key = self.key(name, args)?;
        match self.get_raw::<T>(Target::Func { name }, &key) {
            Ok(v) => return Ok(v),
            Err(Error::CacheMiss) => {}
            Err(e) => return Err(e),
        }
        let value = f();
        if self.cache.inner.enabled {
            self.set_raw(&key, &value, timeout)?;
        }
        Ok(value)
    }

    /// The Redis key of one call of a cached function.
    pub fn key<A: Serialize + ?Sized>(&self, name: &str, args: &A) -> Result<String, Error> {
        Ok(self
            .cache
            .inner
            .keys
            .call(name, crate::argkey::arg_key(args)?.as_bytes()))
    }

    /// Forgets one call of a cached function; true if it was cached.
    pub fn invalidate<A: Serialize + ?Sized>(&self, name: &str, args: &A) -> Result<bool, Error> {
        self.delete_raw(self.key(name, args)?)
    }

    fn get_raw<T: DeserializeOwned>(
        &self,
        target: Target<'_>,
        redis_key: &str,
    ) -> Result<T, Error> {
        let cache = self.cache;
        if !cache.inner.enabled {
            cache.read_event(target, Outcome::Bypass);
            return Err(Error::CacheMiss);
        }
        let bytes = match cache
            .replay_first()
            .and_then(|()| cache.inner.store.get(redis_key))
        {
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

    fn set_raw<T: Serialize + ?Sized>(
        &self,
        redis_key: &str,
        value: &T,
        timeout: Duration,
    ) -> Result<(), Error> {
        let cache = self.cache;
        if !cache.inner.enabled {
            return Ok(());
        }
        let bytes = C::encode(value)?;
        match cache
            .replay_first()
            .and_then(|()| cache.inner.store.set(redis_key, &bytes, timeout))
        {
            Ok(()) => Ok(()),
            Err(e) => cache.store_failed("set", e),
        }
    }

    fn delete_raw(&self, redis_key: String) -> Result<bool, Error> {
        let cache = self.cache;
        if !cache.inner.enabled {
            return Ok(false);
        }
        match cache
            .replay_first()
            .and_then(|()| cache.inner.store.delete(std::slice::from_ref(&redis_key)))
        {
            Ok(deleted) => Ok(deleted),
            Err(_) => {
                // Never lost: queue the delete like any invalidation.
                let mut b = Backlog::default();
                b.keys.insert(redis_key);
                cache.apply(b).map(|()| false)
            }
        }
    }
}
