//! [`CachedAs`] and [`AsyncCachedAs`]: a function result cached with the invalidation of
//! the reads it depends on.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{blocking_reads, Answer};
use crate::block::block_on;
use crate::codec::Codec;
use crate::core::{Begun, Core, Planned, Served};
use crate::error::{Error, LoadError};
use crate::event::Target;
use crate::read::Dep;

/// A function call cached under its dependencies, from
/// [`Cache::cached_as`](crate::Cache::cached_as).
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
///     .get_or_compute(|| 42)
///     .unwrap();
/// assert_eq!(total, 42);
/// ```
pub struct CachedAs<'c, C: Codec> {
    call: Call<'c, C>,
}

/// The async twin of [`CachedAs`], from
/// [`AsyncCache::cached_as`](crate::AsyncCache::cached_as).
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub struct AsyncCachedAs<'c, C: Codec> {
    call: Call<'c, C>,
}

/// A cached call being described.
struct Call<'c, C: Codec> {
    core: &'c Core<C>,
    deps: Vec<Dep>,
    name: String,
    /// The canonical arguments, or why they have none.
    args: Result<Vec<u8>, String>,
    /// The parts given to `extra`, in order (none empty).
    extra: Vec<String>,
    timeout: Option<Duration>,
}

impl<C: Codec> Call<'_, C> {
    /// The entry's plan (`None`: the cache is off, the function just runs).
    fn plan(&self) -> Result<Option<Arc<Planned>>, Error> {
        self.deps.iter().try_for_each(Dep::check_names)?;
        let args = match &self.args {
            Ok(a) => a,
            Err(why) => return Err(Error::Codec(why.clone())),
        };
        Ok(self
            .core
            .plan_call(&self.deps, &self.name, args, &self.extra, self.timeout))
    }

    fn target(&self) -> Target<'_> {
        Target::Func { name: &self.name }
    }
}

/// The builder methods of both handles.
macro_rules! describe_call {
    ($CachedAs:ident) => {
        impl<'c, C: Codec> $CachedAs<'c, C> {
            pub(crate) fn new(core: &'c Core<C>, deps: Vec<Dep>) -> Self {
                $CachedAs {
                    call: Call {
                        core,
                        deps,
                        name: String::new(),
                        args: Ok(Vec::new()),
                        extra: Vec::new(),
                        timeout: None,
                    },
                }
            }
            /// The function's name (in the key and in events).
            pub fn name(mut self, name: impl Into<String>) -> Self {
                self.call.name = name.into();
                self
            }
            /// The function's arguments (in the key, in a canonical form: `3_i32` and `3_i64`
            /// are the same argument).
            pub fn args<A: Serialize + ?Sized>(mut self, args: &A) -> Self {
                self.call.args = match crate::argkey::arg_key(args) {
                    Ok(key) => Ok(key.into_bytes()),
                    Err(Error::Codec(why)) => Err(why),
                    Err(e) => Err(e.to_string()),
                };
                self
            }
            /// Anything else that distinguishes results (in the key). Each call adds a
            /// part, as [`Read::extra`](crate::Read::extra) does: earlier parts stay.
            pub fn extra(mut self, extra: impl Into<String>) -> Self {
                let extra = extra.into();
                if !extra.is_empty() {
                    self.call.extra.push(extra);
                }
                self
            }
            /// Entry lifetime (default: the shortest timeout of the dependencies' profiles).
            pub fn timeout(mut self, timeout: Duration) -> Self {
                self.call.timeout = Some(timeout);
                self
            }
        }
    };
}

describe_call!(CachedAs);

impl<C: Codec> CachedAs<'_, C> {
    blocking_reads!();

    fn serve<T, E, F>(&self, f: F) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Result<T, E>,
    {
        let call = &self.call;
        match call
            .core
            .begin_planned(call.target(), call.plan()?.as_ref())
        {
            Begun::Served(v) => Ok((v, Served::Cached)),
            Begun::Go(job) => block_on(call.core.finish(job, super::ready_loader(f))),
        }
    }
}

#[cfg(feature = "tokio")]
describe_call!(AsyncCachedAs);

#[cfg(feature = "tokio")]
impl<C: Codec> AsyncCachedAs<'_, C> {
    super::async_reads!();

    async fn serve<T, E, F, Fut>(&self, f: F) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let call = &self.call;
        match call
            .core
            .begin_planned(call.target(), call.plan()?.as_ref())
        {
            Begun::Served(v) => Ok((v, Served::Cached)),
            Begun::Go(job) => call.core.finish(job, f).await,
        }
    }
}
