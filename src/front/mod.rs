//! Every public handle, for both front ends. Each is a thin shell over the private core
//! (`src/core/`): blocking handles drive it with [`block_on`](crate::block::block_on),
//! async ones `.await` it.
//!
//! | concept | blocking | async (feature `tokio`) |
//! | --- | --- | --- |
//! | the cache | [`Cache`] | [`AsyncCache`] |
//! | a transaction | [`Scope`] | [`AsyncScope`] |
//! | a read planned once | [`Prepared`] | [`AsyncPrepared`] |
//! | a cached function | [`CachedAs`] | [`AsyncCachedAs`] |
//! | the time-only cache | [`Simple`] | [`AsyncSimple`] |
//! | queries in sqlx's shape (feature `sqlx`) | | `query_as`, `query_scalar` |
//!
//! The read methods (`get_or_compute` and its variants) and the write methods are generated
//! from one description each (the macros below), so every handle offers the same set with
//! the same documentation.

use std::sync::Arc;

use crate::core::Served;

mod cache;
mod cached_as;
mod prepared;
mod scope;
mod simple;

pub use cache::Cache;
pub use cached_as::CachedAs;
pub use prepared::Prepared;
pub use scope::Scope;
pub use simple::Simple;

#[cfg(feature = "tokio")]
mod async_cache;
#[cfg(feature = "sqlx")]
mod query;
#[cfg(feature = "tokio")]
pub use async_cache::AsyncCache;
#[cfg(feature = "tokio")]
pub use cached_as::AsyncCachedAs;
#[cfg(feature = "tokio")]
pub use prepared::AsyncPrepared;
#[cfg(feature = "sqlx")]
pub use query::{Execute, QueryAs, QueryScalar, SqlParam};
#[cfg(feature = "tokio")]
pub use scope::AsyncScope;
#[cfg(feature = "tokio")]
pub use simple::AsyncSimple;

/// A value and whether it is stale (from the `get_or_compute_answer` methods).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    /// The value.
    pub value: Arc<T>,
    /// True when it is the previous value of an entry invalidated within its profile's
    /// stale grace (another caller is reloading it).
    pub stale: bool,
}

impl<T> Answer<T> {
    fn from_served((value, served): (Arc<T>, Served)) -> Answer<T> {
        Answer {
            value,
            stale: served == Served::Stale,
        }
    }
}

/// The value out of its `Arc`: moved when unshared, cloned when the local tier holds it too.
fn unwrap_arc<T: Clone>(v: Arc<T>) -> T {
    Arc::try_unwrap(v).unwrap_or_else(|shared| (*shared).clone())
}

/// A blocking loader as the core's async one (its future is ready when made).
fn ready_loader<T, E>(
    f: impl FnOnce() -> Result<T, E>,
) -> impl FnOnce() -> std::future::Ready<Result<T, E>> {
    move || std::future::ready(f())
}

/// Wraps a loader that cannot fail for the fallible core.
fn infallible<T>(f: impl FnOnce() -> T) -> impl FnOnce() -> Result<T, std::convert::Infallible> {
    move || Ok(f())
}

/// Wraps an async loader that cannot fail for the fallible core (a macro because the
/// closure's future type cannot be named).
#[cfg(feature = "tokio")]
macro_rules! infallible_async {
    ($loader:expr) => {
        move || async move { Ok::<_, std::convert::Infallible>($loader().await) }
    };
}
#[cfg(feature = "tokio")]
use infallible_async;

/// Runs a core future to its end: on this thread (`blocking`), or by awaiting it (`async`).
macro_rules! drive {
    (blocking, $e:expr) => {
        crate::block::block_on($e)
    };
    (async, $e:expr) => {
        $e.await
    };
}
use drive;

/// The six read methods of a blocking handle, over its
/// `fn serve(&self, <args>, loader) -> Result<(Arc<T>, Served), LoadError<E>>`.
macro_rules! blocking_reads {
    ($($arg:ident: $ty:ty),*) => {
        /// Like [`get_or_load`](Self::get_or_load) for a loader that cannot fail: returns
        /// the cached result, or runs `loader`, stores and returns its result.
        ///
        /// A `loader` returning a `Result` belongs in `get_or_load`: a value whose type
        /// is `Result` is refused with [`Error::ResultValue`], never cached.
        pub fn get_or_compute<T, F>(&self, $($arg: $ty,)* loader: F) -> Result<T, Error>
        where
            T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
            F: FnOnce() -> T,
        {
            self.get_or_compute_arc($($arg,)* loader).map($crate::front::unwrap_arc)
        }

        /// Like `get_or_compute`, sharing the value (see `get_or_load_arc`).
        pub fn get_or_compute_arc<T, F>(&self, $($arg: $ty,)* loader: F) -> Result<Arc<T>, Error>
        where
            T: Serialize + DeserializeOwned + Send + Sync + 'static,
            F: FnOnce() -> T,
        {
            self.serve($($arg,)* $crate::front::infallible(loader))
                .map(|(v, _)| v)
                .map_err(LoadError::into_cache_error)
        }

        /// Like `get_or_compute_arc`, saying whether the value is stale (see
        /// `get_or_load_answer`).
        pub fn get_or_compute_answer<T, F>(&self, $($arg: $ty,)* loader: F) -> Result<Answer<T>, Error>
        where
            T: Serialize + DeserializeOwned + Send + Sync + 'static,
            F: FnOnce() -> T,
        {
            self.serve($($arg,)* $crate::front::infallible(loader))
                .map(Answer::from_served)
                .map_err(LoadError::into_cache_error)
        }

        /// Returns the cached result, or runs the loader, stores and returns its value.
        ///
        /// The loader can fail: its error is returned as is ([`LoadError::Loader`]) and
        /// nothing is stored. A cache failure is [`LoadError::Cache`] (unless the cache
        /// degrades to the loader); [`LoadError::flatten`] turns both into your error type.
        /// With the local tier on, a local hit clones the value out of its `Arc`; the
        /// `_arc` variant shares it instead.
        pub fn get_or_load<T, E, F>(&self, $($arg: $ty,)* loader: F) -> Result<T, LoadError<E>>
        where
            T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
            F: FnOnce() -> Result<T, E>,
        {
            self.get_or_load_arc($($arg,)* loader).map($crate::front::unwrap_arc)
        }

        /// Like `get_or_load`, sharing the value: a local hit clones an `Arc`, never the
        /// value, and never decodes.
        pub fn get_or_load_arc<T, E, F>(&self, $($arg: $ty,)* loader: F) -> Result<Arc<T>, LoadError<E>>
        where
            T: Serialize + DeserializeOwned + Send + Sync + 'static,
            F: FnOnce() -> Result<T, E>,
        {
            self.serve($($arg,)* loader).map(|(v, _)| v)
        }

        /// Like `get_or_load_arc`, saying whether the value is stale: with a profile's
        /// [`stale_while_revalidate`](crate::Profile::stale_while_revalidate), a read of an
        /// entry invalidated within the grace gets the previous value at once while one
        /// caller reloads. Without that option, answers are never stale.
        pub fn get_or_load_answer<T, E, F>(&self, $($arg: $ty,)* loader: F) -> Result<Answer<T>, LoadError<E>>
        where
            T: Serialize + DeserializeOwned + Send + Sync + 'static,
            F: FnOnce() -> Result<T, E>,
        {
            self.serve($($arg,)* loader).map(Answer::from_served)
        }
    };
}
use blocking_reads;

/// The six read methods of an async handle, over its
/// `async fn serve(&self, <args>, loader) -> Result<(Arc<T>, Served), LoadError<E>>`.
/// Dropping their futures at any await point is safe (DESIGN.md, "Cancellation").
#[cfg(feature = "tokio")]
macro_rules! async_reads {
    ($($arg:ident: $ty:ty),*) => {
        /// Like [`get_or_load`](Self::get_or_load) for a loader that cannot fail: returns
        /// the cached result, or awaits `loader`, stores and returns its result.
        ///
        /// A `loader` returning a `Result` belongs in `get_or_load`: a value whose type
        /// is `Result` is refused with [`Error::ResultValue`], never cached.
        pub async fn get_or_compute<T, F, Fut>(&self, $($arg: $ty,)* loader: F) -> Result<T, Error>
        where
            T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
            F: FnOnce() -> Fut,
            Fut: ::std::future::Future<Output = T>,
        {
            self.get_or_compute_arc($($arg,)* loader).await.map($crate::front::unwrap_arc)
        }

        /// Like `get_or_compute`, sharing the value (see `get_or_load_arc`).
        pub async fn get_or_compute_arc<T, F, Fut>(&self, $($arg: $ty,)* loader: F) -> Result<Arc<T>, Error>
        where
            T: Serialize + DeserializeOwned + Send + Sync + 'static,
            F: FnOnce() -> Fut,
            Fut: ::std::future::Future<Output = T>,
        {
            self.serve($($arg,)* $crate::front::infallible_async!(loader))
                .await
                .map(|(v, _)| v)
                .map_err(LoadError::into_cache_error)
        }

        /// Like `get_or_compute_arc`, saying whether the value is stale (see
        /// `get_or_load_answer`).
        pub async fn get_or_compute_answer<T, F, Fut>(&self, $($arg: $ty,)* loader: F) -> Result<Answer<T>, Error>
        where
            T: Serialize + DeserializeOwned + Send + Sync + 'static,
            F: FnOnce() -> Fut,
            Fut: ::std::future::Future<Output = T>,
        {
            self.serve($($arg,)* $crate::front::infallible_async!(loader))
                .await
                .map(Answer::from_served)
                .map_err(LoadError::into_cache_error)
        }

        /// Returns the cached result, or runs the loader, stores and returns its value.
        ///
        /// The loader can fail: its error is returned as is ([`LoadError::Loader`]) and
        /// nothing is stored. A cache failure is [`LoadError::Cache`] (unless the cache
        /// degrades to the loader); [`LoadError::flatten`] turns both into your error type.
        /// With the local tier on, a local hit clones the value out of its `Arc`; the
        /// `_arc` variant shares it instead.
        pub async fn get_or_load<T, E, F, Fut>(&self, $($arg: $ty,)* loader: F) -> Result<T, LoadError<E>>
        where
            T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
            F: FnOnce() -> Fut,
            Fut: ::std::future::Future<Output = Result<T, E>>,
        {
            self.serve($($arg,)* loader).await.map(|(v, _)| $crate::front::unwrap_arc(v))
        }

        /// Like `get_or_load`, sharing the value: a local hit clones an `Arc`, never the
        /// value, and never decodes.
        pub async fn get_or_load_arc<T, E, F, Fut>(&self, $($arg: $ty,)* loader: F) -> Result<Arc<T>, LoadError<E>>
        where
            T: Serialize + DeserializeOwned + Send + Sync + 'static,
            F: FnOnce() -> Fut,
            Fut: ::std::future::Future<Output = Result<T, E>>,
        {
            self.serve($($arg,)* loader).await.map(|(v, _)| v)
        }

        /// Like `get_or_load_arc`, saying whether the value is stale: with a profile's
        /// [`stale_while_revalidate`](crate::Profile::stale_while_revalidate), a read of an
        /// entry invalidated within the grace gets the previous value at once while one
        /// caller reloads. Without that option, answers are never stale.
        pub async fn get_or_load_answer<T, E, F, Fut>(&self, $($arg: $ty,)* loader: F) -> Result<Answer<T>, LoadError<E>>
        where
            T: Serialize + DeserializeOwned + Send + Sync + 'static,
            F: FnOnce() -> Fut,
            Fut: ::std::future::Future<Output = Result<T, E>>,
        {
            self.serve($($arg,)* loader).await.map(Answer::from_served)
        }
    };
}
#[cfg(feature = "tokio")]
use async_reads;

/// The row-level write methods of a cache or scope handle, over its
/// `async fn written(&self, table, rows: Vec<Row>, saved: Option<Saved>)` (a scope defers
/// them to its commit) and `async fn whole_table(&self, table)`.
macro_rules! writes {
    ($mode:tt $(, $async:tt)?) => {
        /// Invalidates every cached read that row `row` of `table` can affect.
        pub $($async)? fn invalidate_obj<R: Serialize + ?Sized>(&self, table: &str, row: &R) -> Result<(), Error> {
            crate::read::check_written_table(table, "invalidate_obj")?;
            let rows = vec![Row::from_serialize(row)?];
            $crate::front::drive!($mode, self.written(table, rows, None))
        }

        /// Invalidates every cached read that any of `rows` can affect, in one call.
        pub $($async)? fn invalidate_rows(&self, table: &str, rows: impl IntoIterator<Item = Row>) -> Result<(), Error> {
            crate::read::check_written_table(table, "invalidate_rows")?;
            let rows = rows.into_iter().collect();
            $crate::front::drive!($mode, self.written(table, rows, None))
        }

        /// A row was inserted: reads its values match die (and a profile's
        /// `cache_on_save` stores it).
        pub $($async)? fn on_insert<R: Serialize + ?Sized>(&self, table: &str, new: &R) -> Result<(), Error> {
            crate::read::check_written_table(table, "on_insert")?;
            let rows = vec![Row::from_serialize(new)?];
            let saved = self.saved(table, new)?;
            $crate::front::drive!($mode, self.written(table, rows, saved))
        }

        /// A row was updated: reads matching the old or the new version die.
        pub $($async)? fn on_update<R: Serialize + ?Sized>(&self, table: &str, old: &R, new: &R) -> Result<(), Error> {
            crate::read::check_written_table(table, "on_update")?;
            let rows = Row::images_of_update(old, new)?.into();
            let saved = self.saved(table, new)?;
            $crate::front::drive!($mode, self.written(table, rows, saved))
        }

        /// A row was deleted: reads its values match die.
        pub $($async)? fn on_delete<R: Serialize + ?Sized>(&self, table: &str, old: &R) -> Result<(), Error> {
            crate::read::check_written_table(table, "on_delete")?;
            let rows = vec![Row::from_serialize(old)?];
            $crate::front::drive!($mode, self.written(table, rows, None))
        }

        /// Many rows were updated (old and new images), invalidated in one call.
        pub $($async)? fn invalidated_update<'r, R: Serialize + 'r>(
            &self,
            table: &str,
            changes: impl IntoIterator<Item = (&'r R, &'r R)>,
        ) -> Result<(), Error> {
            crate::read::check_written_table(table, "invalidated_update")?;
            let rows = Row::images_of_changes(changes)?;
            $crate::front::drive!($mode, self.written(table, rows, None))
        }

        /// Invalidates every cached read of a table.
        pub $($async)? fn invalidate_model(&self, table: &str) -> Result<(), Error> {
            crate::read::check_written_table(table, "invalidate_model")?;
            $crate::front::drive!($mode, self.whole_table(table))
        }
    };
}
use writes;

/// What the blocking and async cache handles share: settings views and the handles they
/// open, none of which does I/O.
macro_rules! cache_handle {
    ($Cache:ident, $Scope:ident, $Prepared:ident, $CachedAs:ident, $Simple:ident) => {
        impl<C: Codec> Clone for $Cache<C> {
            fn clone(&self) -> Self {
                $Cache {
                    core: self.core.clone(),
                }
            }
        }

        impl<C: Codec> std::fmt::Debug for $Cache<C> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.core.fmt(f)
            }
        }

        impl<C: Codec> $Cache<C> {
            pub(crate) fn from_core(core: Core<C>) -> Self {
                $Cache { core }
            }

            /// The core, for the crate's own consumers of the public handles (the
            /// change-stream consumer).
            #[allow(dead_code)]
            pub(crate) fn core(&self) -> &Core<C> {
                &self.core
            }

            /// A handle whose invalidations do nothing (reads work as usual). For bulk loads
            /// and writes whose effects you invalidate yourself.
            pub fn no_invalidation(&self) -> Self {
                $Cache {
                    core: self.core.without_invalidation(),
                }
            }

            /// A handle whose invalidations are for writes on database `alias` (it matters
            /// only with a computed prefix).
            pub fn using(&self, alias: &str) -> Self {
                $Cache {
                    core: self.core.using(alias),
                }
            }

            /// Opens a scope for a `READ COMMITTED` transaction (see [`Scope`](crate::Scope)).
            pub fn atomic(&self) -> $Scope<C> {
                self.atomic_with(Isolation::ReadCommitted)
            }

            /// Opens a scope for a transaction at `isolation`.
            pub fn atomic_with(&self, isolation: Isolation) -> $Scope<C> {
                $Scope::begin(self.core.clone(), isolation)
            }

            /// Plans `read` once for repeated use (see [`Prepared`](crate::Prepared)).
            pub fn prepare(&self, read: &Read) -> $Prepared<C> {
                $Prepared::new(self.core.clone(), read)
            }

            /// Caches a function result that depends on reads and tables (see
            /// [`CachedAs`](crate::CachedAs)).
            pub fn cached_as(&self, deps: impl IntoIterator<Item = Dep>) -> $CachedAs<'_, C> {
                $CachedAs::new(&self.core, deps.into_iter().collect())
            }

            /// The time-only cache (see [`Simple`](crate::Simple)).
            pub fn simple(&self) -> $Simple<'_, C> {
                $Simple::new(&self.core)
            }

            /// Counters of the tiers: how the store (Redis, or the embedded store)
            /// answered reads (`shared`: hits, misses, …) and the local tier's (`local`).
            pub fn stats(&self) -> Stats {
                self.core.stats()
            }

            /// Number of invalidations queued because the store was unavailable.
            pub fn pending_invalidations(&self) -> usize {
                self.core.queued_invalidations()
            }

            /// True while the tracked tier's push channel is up.
            pub fn push_channel_up(&self) -> bool {
                self.core.push_channel_up()
            }

            /// Entries and epoch slots of the local tier, for tests of its memory bounds.
            #[doc(hidden)]
            pub fn local_sizes(&self) -> (u64, usize) {
                self.core.local_sizes()
            }

            /// The local tier's weight in bytes as its weigher counts it, for checks of the
            /// weigher against measured heap.
            #[doc(hidden)]
            pub fn local_weight(&self) -> u64 {
                self.core.local_weight()
            }

            /// The Redis client id of the tracked tier's push connection (0 when none), so
            /// tests can kill it.
            #[doc(hidden)]
            pub fn push_client_id(&self) -> u64 {
                self.core.push_client_id()
            }

            /// Loaders in progress in this process (tests check none is left behind).
            #[doc(hidden)]
            pub fn flights_in_progress(&self) -> usize {
                self.core.flights_in_progress()
            }

            async fn written(
                &self,
                table: &str,
                rows: Vec<Row>,
                saved: Option<Saved>,
            ) -> Result<(), Error> {
                self.core.written(table, rows, saved).await
            }

            async fn whole_table(&self, table: &str) -> Result<(), Error> {
                self.core.model(table).await
            }

            fn saved<R: Serialize + ?Sized>(
                &self,
                table: &str,
                new: &R,
            ) -> Result<Option<Saved>, Error> {
                self.core.saved(table, new)
            }
        }
    };
}
use cache_handle;
