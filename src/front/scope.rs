//! [`Scope`] and [`AsyncScope`]: the cache seen from inside a database transaction.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{blocking_reads, writes, Answer};
use crate::block::block_on;
use crate::codec::{Codec, DefaultCodec};
use crate::core::scope::ScopeCore;
use crate::core::{Core, Saved, Served};
use crate::error::{Error, LoadError};
use crate::read::Read;
use crate::row::Row;
use crate::Isolation;

/// A scope mirroring a database transaction (or a savepoint of one), from
/// [`Cache::atomic`](crate::Cache::atomic). Dropping it without [`commit`](Scope::commit)
/// rolls it back.
///
/// ```
/// use stampcache::{Cache, Cond, Read};
/// # #[derive(serde::Serialize)] struct Article { id: i64, category: i64 }
/// let cache = Cache::embedded();
/// let scope = cache.atomic();                      // BEGIN
/// scope.on_insert("blog.article", &Article { id: 9, category: 1 })?;
/// let read = Read::count("blog.article").filter(Cond::eq("category", 1));
/// let n: u64 = scope.get_or_compute(&read, || 5)?;    // sees its own write; cached in the scope
/// // ... COMMIT the database transaction, then:
/// scope.commit()?;                                  // the invalidation runs now
/// # Ok::<(), stampcache::Error>(())
/// ```
///
/// **Order: commit the database first, then the scope.** The scope's invalidations run at
/// its commit. Run before the database commit, another process could refill the cache from
/// the not-yet-committed (old) data after the invalidation, and that entry would live on.
/// Run after, any entry filled from old data in between had its stamps read before the
/// invalidation deletes them, so it dies.
///
/// Until a scope writes a table, its reads of that table use the shared tiers as usual.
/// After, they are served from and stored in the scope's overlay only (other scopes keep
/// seeing the committed, cached value). Savepoints nest ([`savepoint`](Scope::savepoint)),
/// `release` merges one into its parent, `rollback` (or dropping it, also in a panic)
/// discards it with its queued invalidations. At the outermost commit the queued
/// invalidations run in as few round trips as possible, and overlay entries are promoted to
/// the shared tier where the stamps they were computed under are still current (checked by
/// the store, atomically).
///
/// **Isolation.** At `REPEATABLE READ` or `SERIALIZABLE` ([`Isolation`]) a transaction's
/// snapshot may predate invalidations that already ran, so none of its reads fill the shared
/// tiers (they fill its overlay) and nothing is promoted. Its reads may still be answered by
/// the shared tiers, with values that can be newer than its snapshot.
#[derive(Debug)]
pub struct Scope<C: Codec = DefaultCodec> {
    inner: ScopeCore<C>,
}

/// The async front end of a scope, from [`AsyncCache::atomic`](crate::AsyncCache::atomic):
/// the same overlays and deferral as [`Scope`], with `async` reads, writes and commit.
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
#[derive(Debug)]
pub struct AsyncScope<C: Codec = DefaultCodec> {
    inner: ScopeCore<C>,
}

/// What both scope handles share: opening, views, and the write plumbing `writes!` uses.
macro_rules! scope_handle {
    ($Scope:ident) => {
        impl<C: Codec> $Scope<C> {
            pub(crate) fn begin(core: Core<C>, isolation: Isolation) -> Self {
                $Scope {
                    inner: ScopeCore::begin(core, isolation),
                }
            }

            /// Opens a savepoint: a nested scope whose writes its parent sees once released.
            pub fn savepoint(&self) -> Result<Self, Error> {
                Ok($Scope {
                    inner: self.inner.savepoint()?,
                })
            }

            /// A view of this scope whose invalidations do nothing (its reads work as usual).
            /// It cannot end the scope.
            pub fn no_invalidation(&self) -> Self {
                $Scope {
                    inner: self.inner.view_without_invalidation(),
                }
            }

            /// The core (for the crate's facades over the public handles).
            #[allow(dead_code)]
            pub(crate) fn core(&self) -> &Core<C> {
                self.inner.core()
            }

            /// The isolation level.
            pub fn isolation(&self) -> Isolation {
                self.inner.isolation()
            }

            /// Discards the scope and its queued invalidations. Nothing is invalidated
            /// (unless its transaction committed already: a savepoint still open at the
            /// root's commit was committed with it, so its invalidations run now).
            pub fn rollback(self) {
                self.inner.rollback()
            }

            /// Records written rows, deferred to the outermost commit.
            async fn written(
                &self,
                table: &str,
                rows: Vec<Row>,
                _: Option<Saved>,
            ) -> Result<(), Error> {
                self.inner.rows_written(table, rows).await
            }

            async fn whole_table(&self, table: &str) -> Result<(), Error> {
                self.inner.table_written(table).await
            }

            /// A scope does not `cache_on_save`: its rows are not committed yet.
            fn saved<R: Serialize + ?Sized>(&self, _: &str, _: &R) -> Result<Option<Saved>, Error> {
                Ok(None)
            }
        }
    };
}

scope_handle!(Scope);

impl<C: Codec> Scope<C> {
    blocking_reads!(read: &Read);

    /// A read inside the transaction: the overlay first, then (for tables the transaction
    /// has not written) the shared tiers.
    fn serve<T, E, F>(&self, read: &Read, loader: F) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Result<T, E>,
    {
        read.check_names()?;
        block_on(self.inner.read(read, super::ready_loader(loader)))
    }

    writes!(blocking);

    /// Commits: a savepoint merges into its parent; the outermost scope runs the queued
    /// invalidations and promotes what it can. Call it after the database commit.
    pub fn commit(self) -> Result<(), Error> {
        block_on(self.inner.commit())
    }

    /// The same as [`commit`](Scope::commit) (the word savepoints use).
    pub fn release(self) -> Result<(), Error> {
        self.commit()
    }
}

#[cfg(feature = "tokio")]
mod asynch {
    use super::*;
    use crate::front::async_reads;
    use std::future::Future;

    scope_handle!(AsyncScope);

    impl<C: Codec> AsyncScope<C> {
        async_reads!(read: &Read);

        /// A read inside the transaction: the overlay first, then (for tables the
        /// transaction has not written) the shared tiers.
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
            self.inner.read(read, loader).await
        }

        writes!(async, async);

        /// Commits: a savepoint merges into its parent; the outermost scope runs the
        /// queued invalidations and promotes what it can. Call it after the database
        /// commit.
        pub async fn commit(self) -> Result<(), Error> {
            self.inner.commit().await
        }

        /// The same as [`commit`](AsyncScope::commit) (the word savepoints use).
        pub async fn release(self) -> Result<(), Error> {
            self.commit().await
        }
    }
}
