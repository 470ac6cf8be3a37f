//! [`Simple`] and [`AsyncSimple`]: time-only entries, with no invalidation but their
//! lifetime and explicit deletes.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::drive;
use crate::codec::Codec;
use crate::core::Core;
use crate::error::Error;
use crate::event::Target;

/// Time-only caching, from [`Cache::simple`](crate::Cache::simple).
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
    core: &'c Core<C>,
}

/// The async twin of [`Simple`], from [`AsyncCache::simple`](crate::AsyncCache::simple).
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub struct AsyncSimple<'c, C: Codec> {
    core: &'c Core<C>,
}

/// The methods of both handles but `cached` (whose function is sync or async).
macro_rules! simple_methods {
    ($Simple:ident, $mode:tt $(, $async:tt)?) => {
        impl<'c, C: Codec> $Simple<'c, C> {
            pub(crate) fn new(core: &'c Core<C>) -> Self {
                $Simple { core }
            }

            /// The Redis key of one call of a cached function.
            pub fn key<A: Serialize + ?Sized>(&self, name: &str, args: &A) -> Result<String, Error> {
                Ok(self.core.call_key(name, crate::argkey::arg_key(args)?.as_bytes()))
            }

            /// The value under `key`, or [`Error::CacheMiss`] (also for bytes that do not
            /// decode, and, when degrading, for an unavailable store).
            /// An entry written by another type is a miss too (see [`Event::TypeMismatch`](crate::Event::TypeMismatch)).
            pub $($async)? fn get<T: DeserializeOwned + 'static>(&self, key: &str) -> Result<T, Error> {
                let redis_key = self.core.simple_key(key);
                let found = drive!($mode, self.core.simple_get(Target::Simple { key }, &redis_key));
                found?.ok_or(Error::CacheMiss)
            }

            /// Stores `value` under `key` for `timeout`.
            /// (`T` is the type `get` will ask for: an owned type such as `String`, not `str`.)
            pub $($async)? fn set<T: Serialize + DeserializeOwned + 'static>(&self, key: &str, value: &T, timeout: Duration) -> Result<(), Error> {
                drive!($mode, self.core.simple_set(&self.core.simple_key(key), value, timeout))
            }

            /// Deletes `key`; true if there was an entry.
            pub $($async)? fn delete(&self, key: &str) -> Result<bool, Error> {
                drive!($mode, self.core.simple_delete(self.core.simple_key(key)))
            }

            /// Forgets one call of a cached function; true if it was cached.
            pub $($async)? fn invalidate<A: Serialize + ?Sized>(&self, name: &str, args: &A) -> Result<bool, Error> {
                let key = self.key(name, args)?;
                drive!($mode, self.core.simple_delete(key))
            }
        }
    };
}

simple_methods!(Simple, blocking);

impl<C: Codec> Simple<'_, C> {
    /// The result of `f` for these arguments, cached for `timeout` under `name` and `args`.
    /// A `Result` is refused ([`Error::ResultValue`]): its error would be cached.
    pub fn cached<A, T, F>(&self, name: &str, args: &A, timeout: Duration, f: F) -> Result<T, Error>
    where
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned + 'static,
        F: FnOnce() -> T,
    {
        let key = self.key(name, args)?;
        let target = Target::Func { name };
        if let Some(v) = crate::block::block_on(self.core.simple_get(target, &key))? {
            return Ok(v);
        }
        let value = f();
        crate::block::block_on(self.core.simple_set(&key, &value, timeout))?;
        Ok(value)
    }
}

#[cfg(feature = "tokio")]
simple_methods!(AsyncSimple, async, async);

#[cfg(feature = "tokio")]
impl<C: Codec> AsyncSimple<'_, C> {
    /// The result of `f` for these arguments, cached for `timeout` under `name` and `args`.
    /// A `Result` is refused ([`Error::ResultValue`]): its error would be cached.
    pub async fn cached<A, T, F, Fut>(
        &self,
        name: &str,
        args: &A,
        timeout: Duration,
        f: F,
    ) -> Result<T, Error>
    where
        A: Serialize + ?Sized,
        T: Serialize + DeserializeOwned + 'static,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let key = self.key(name, args)?;
        let target = Target::Func { name };
        if let Some(v) = self.core.simple_get(target, &key).await? {
            return Ok(v);
        }
        let value = f().await;
        self.core.simple_set(&key, &value, timeout).await?;
        Ok(value)
    }
}
