//! `atomic()` scopes: the cache seen from inside a database transaction.
//!
//! ```
//! use stampcache::{Cache, Cond, Read};
//! # #[derive(serde::Serialize)] struct Article { id: i64, category: i64 }
//! let cache = Cache::embedded();
//! let scope = cache.atomic();                      // BEGIN
//! scope.on_insert("blog.article", &Article { id: 9, category: 1 })?;
//! let read = Read::count("blog.article").filter(Cond::eq("category", 1));
//! let n: u64 = scope.get_or_load(&read, || 5)?;    // sees its own write; cached in the scope
//! // ... COMMIT the database transaction, then:
//! scope.commit()?;                                  // the invalidation runs now
//! # Ok::<(), stampcache::Error>(())
//! ```
//!
//! **Order: commit the database first, then the scope.** The scope's invalidations run at
//! its commit. Run before the database commit, another process could refill the cache from
//! the not-yet-committed (old) data after the invalidation, and that entry would live on.
//! Run after, any entry filled from old data in between had its stamps read before the
//! invalidation deletes them, so it dies.
//!
//! Until a scope writes a table, its reads of that table use the shared tiers as usual.
//! After, they are served from and stored in the scope's overlay only (other scopes keep
//! seeing the committed, cached value). Savepoints nest (`savepoint`), `release` merges one
//! into its parent, `rollback` (or dropping it, also in a panic) discards it with its queued
//! invalidations. At the outermost commit the queued invalidations run in as few round trips
//! as possible, and overlay entries are promoted to the shared tier where the stamps they were
//! computed under are still current (checked by the store, atomically).
//!
//! **Isolation.** At `REPEATABLE READ` or `SERIALIZABLE` ([`Isolation`]) a transaction's
//! snapshot may predate invalidations that already ran, so none of its reads fill the shared
//! tiers (they fill its overlay) and nothing is promoted. Its reads may still be answered by
//! the shared tiers, with values that can be newer than its snapshot.

mod chain;

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use std::future::Future;

use crate::block::block_on;
use crate::cache::{ready_loader, unwrap_arc, Cache, Served};
use crate::codec::{Codec, DefaultCodec};
use crate::error::{Error, LoadError};
use crate::event::{Outcome, Target};
use crate::front::{Async, Blocking, Front};
use crate::pending::Backlog;
use crate::read::Read;
use crate::row::Row;
use crate::store::{Fetch, Plan, Token};
use chain::{Found, Kill, Layer};

/// The isolation level of the transaction a scope mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// `READ COMMITTED` (the default of PostgreSQL): reads may fill the shared tiers.
    #[default]
    ReadCommitted,
    /// `REPEATABLE READ`: reads never fill the shared tiers.
    RepeatableRead,
    /// `SERIALIZABLE`: reads never fill the shared tiers.
    Serializable,
}

/// A value held in a scope's overlay.
struct OverlayEntry {
    value: Arc<dyn Any + Send + Sync>,
    plan: Arc<Plan>,
    /// Stamps read before the loader, and the encoded value: what promotion needs.
    promotable: Option<(Token, Vec<u8>)>,
}

/// A write recorded in a scope.
enum Written {
    Rows { table: String, rows: Vec<Row> },
    Table(String),
}

impl Kill<Arc<OverlayEntry>> for Arc<Written> {
    fn kills(&self, e: &Arc<OverlayEntry>) -> bool {
        match &**self {
            Written::Table(t) => e.plan.deps.iter().any(|(table, _)| table == t),
            Written::Rows { table, rows } => e
                .plan
                .deps
                .iter()
                .filter(|(t, _)| t == table)
                .flat_map(|(_, conjs)| conjs)
                .any(|conj| {
                    rows.iter().any(|row| {
                        // A field the image lacks may have any value: it matches.
                        conj.iter()
                            .all(|(f, v)| row.get(f).is_none_or(|rv| rv == v))
                    })
                }),
        }
    }
}

type Chain = Layer<String, Arc<OverlayEntry>, Arc<Written>, Backlog>;

/// A scope mirroring a database transaction (or a savepoint of one), from
/// [`Cache::atomic`]. Dropping it without [`commit`](Scope::commit) rolls it back.
pub struct Scope<C: Codec = DefaultCodec, M: Front = Blocking> {
    cache: Cache<C, M>,
    layer: Arc<Chain>,
    isolation: Isolation,
    /// False on a `no_invalidation` view.
    invalidates: bool,
    /// True for the handle that ends the layer (commit, rollback, drop).
    owner: bool,
    /// Row images recorded through this scope's chain (to collapse them past a limit).
    rows_recorded: Arc<AtomicUsize>,
}

impl<C: Codec, M: Front> Cache<C, M> {
    /// Opens a scope for a `READ COMMITTED` transaction.
    pub fn atomic(&self) -> Scope<C, M> {
        self.atomic_with(Isolation::ReadCommitted)
    }

    /// Opens a scope for a transaction at `isolation`.
    pub fn atomic_with(&self, isolation: Isolation) -> Scope<C, M> {
        Scope {
            cache: self.clone(),
            layer: Chain::root(),
            isolation,
            invalidates: true,
            owner: true,
            rows_recorded: Arc::default(),
        }
    }
}

impl<C: Codec, M: Front> Scope<C, M> {
    /// Opens a savepoint: a nested scope whose writes its parent sees once released.
    pub fn savepoint(&self) -> Result<Scope<C, M>, Error> {
        let layer = Chain::child(&self.layer).ok_or_else(finished)?;
        Ok(Scope {
            cache: self.cache.clone(),
            layer,
            isolation: self.isolation,
            invalidates: true,
            owner: true,
            rows_recorded: self.rows_recorded.clone(),
        })
    }

    /// A view of this scope whose invalidations do nothing (its reads work as usual).
    pub fn no_invalidation(&self) -> Scope<C, M> {
        Scope {
            cache: self.cache.clone(),
            layer: self.layer.clone(),
            isolation: self.isolation,
            invalidates: false,
            owner: false,
            rows_recorded: self.rows_recorded.clone(),
        }
    }

    /// The isolation level.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    // ------------------------------------------------------------------ reads

    /// A read inside the transaction: the overlay first, then (for tables the transaction
    /// has not written) the shared tiers. The core of both front ends.
    async fn read<T, E, F, Fut>(&self, read: &Read, loader: F) -> Result<Arc<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let target = Target::Table {
            table: read.table(),
            op: read.op(),
        };
        let cache = &self.cache;
        let Some(plan) = cache.plan_read(read) else {
            return cache.load_through(target, None, None, loader).await;
        };
        match self.layer.lookup(&plan.entry) {
            Found::Finished => return Err(LoadError::Cache(finished())),
            Found::Entry(e) => {
                if let Ok(v) = e.value.clone().downcast::<T>() {
                    cache.read_event(target, Outcome::Overlay);
                    return Ok(v);
                }
            }
            Found::Absent => {}
        }
        let tables: Vec<&str> = plan.deps.iter().map(|(t, _)| t.as_str()).collect();
        let read_committed = self.isolation == Isolation::ReadCommitted;
        if self.layer.written(&tables) {
            // Written in this transaction: the shared tiers may not see it, nor it them.
            // Stamps are read first, as for any fill, so the entry can be promoted at commit.
            let token = if read_committed {
                match cache.inner.store.fetch(&plan, false).await {
                    Ok(Fetch::Miss(t)) => Some(t),
                    _ => None,
                }
            } else {
                None
            };
            let value = Arc::new(loader().await.map_err(LoadError::Loader)?);
            cache.read_event(target, Outcome::Miss);
            let promotable = match token {
                Some(t) => Some((t, C::encode(&*value)?)),
                None => None,
            };
            self.keep(&plan, value.clone(), promotable);
            return Ok(value);
        }
        let (value, served) = cache
            .load_through_filling(target, Some(plan.clone()), None, read_committed, loader)
            .await?;
        if served == Served::Loaded && !read_committed {
            // Not in the shared tiers: keep it for the rest of the transaction.
            self.keep(&plan, value.clone(), None);
        }
        Ok(value)
    }

    fn keep<T: Send + Sync + 'static>(
        &self,
        plan: &Arc<Plan>,
        value: Arc<T>,
        promotable: Option<(Token, Vec<u8>)>,
    ) {
        let entry = OverlayEntry {
            value,
            plan: plan.clone(),
            promotable,
        };
        self.layer.insert(plan.entry.clone(), Arc::new(entry));
    }

    // ------------------------------------------------------------------ writes

    /// Records written rows in the scope; returns a backlog to apply now only when the
    /// scope is over (nothing defers it any more).
    fn rows_written(&self, table: &str, rows: Vec<Row>) -> Option<Backlog> {
        if rows.is_empty() || !self.invalidates {
            return None;
        }
        // A transaction writing very many rows keeps whole tables instead of row images
        // (as the pending queue does): bounded memory, and lookups stay cheap.
        let seen = self.rows_recorded.fetch_add(rows.len(), Ordering::Relaxed) + rows.len();
        if seen > self.cache.inner.pending_limit {
            return self.table_written(table);
        }
        let backlog = self.cache.rows_backlog(table, &rows);
        let written = Written::Rows {
            table: table.to_owned(),
            rows,
        };
        self.record(table, written, backlog)
    }

    /// Records a whole-table write (see [`rows_written`](Scope::rows_written)).
    fn table_written(&self, table: &str) -> Option<Backlog> {
        if !self.invalidates {
            return None;
        }
        let backlog = self.cache.table_backlog(table);
        self.record(table, Written::Table(table.to_owned()), backlog)
    }

    fn record(&self, table: &str, written: Written, backlog: Backlog) -> Option<Backlog> {
        if !self.cache.inner.enabled {
            return None;
        }
        self.layer
            .record(Some(table), Arc::new(written), backlog)
            .err()
    }

    /// Applies what a write could not defer.
    async fn apply_late(&self, late: Option<Backlog>) -> Result<(), Error> {
        match late {
            Some(b) => self.cache.apply(b).await,
            None => Ok(()),
        }
    }

    // ------------------------------------------------------------------ ending

    /// Discards the scope and its queued invalidations. Nothing is invalidated (unless its
    /// transaction committed already: a savepoint still open at the root's commit was
    /// committed with it, so its invalidations run now).
    pub fn rollback(mut self) {
        self.owner = false;
        let late = self.layer.rollback();
        self.apply_detached(late);
    }

    /// Applies items from a destructor or `rollback`, where nothing can be awaited: at once
    /// (blocking), or queued and replayed on a spawned task (async; also before this
    /// cache's next operation, so nothing is lost if the task cannot run).
    fn apply_detached(&self, queue: Vec<Backlog>) {
        let Some(all) = merged(queue) else {
            return;
        };
        #[cfg(feature = "tokio")]
        if M::ASYNC {
            let inner = &self.cache.inner;
            inner.pending.push(all, inner.pending_limit);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                let cache = self.cache.clone();
                rt.spawn(async move { cache.replay().await });
            }
            return;
        }
        let _ = block_on(self.cache.apply(all));
    }

    /// Ends the scope with a commit (the core of both front ends' `commit`).
    async fn end_with_commit(&mut self) -> Result<(), Error> {
        if !self.owner {
            return Err(Error::Scope(
                "only the scope itself can end it, not a view of it".into(),
            ));
        }
        self.owner = false;
        if self.layer_is_savepoint() {
            let late = self.layer.release().map_err(|_| finished())?;
            return self.apply(late).await;
        }
        let (queue, overlay) = self.layer.commit().map_err(|_| finished())?;
        let applied = self.apply(queue).await;
        if self.isolation == Isolation::ReadCommitted && applied.is_ok() {
            for entry in overlay.values() {
                if let Some((token, bytes)) = &entry.promotable {
                    // Stored only if the stamps read before its loader are still current.
                    let _ = self
                        .cache
                        .inner
                        .store
                        .store(&entry.plan, token, bytes)
                        .await;
                }
            }
        }
        applied
    }

    fn layer_is_savepoint(&self) -> bool {
        self.layer.has_parent()
    }

    /// Applies queued items as one backlog (as few round trips as the store allows).
    async fn apply(&self, queue: Vec<Backlog>) -> Result<(), Error> {
        match merged(queue) {
            Some(all) => self.cache.apply(all).await,
            None => Ok(()),
        }
    }
}

/// Queued items as one backlog, or `None` when there is nothing.
fn merged(queue: Vec<Backlog>) -> Option<Backlog> {
    let mut all = Backlog::default();
    for b in queue {
        all.absorb(b);
    }
    (!all.is_empty()).then_some(all)
}

impl<C: Codec> Scope<C, Blocking> {
    /// [`Cache::get_or_load`] inside the transaction.
    pub fn get_or_load<T, F>(&self, read: &Read, loader: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        self.get_or_load_arc(read, loader).map(unwrap_arc)
    }

    /// [`Cache::get_or_load_arc`] inside the transaction.
    pub fn get_or_load_arc<T, F>(&self, read: &Read, loader: F) -> Result<Arc<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        self.try_get_or_load_arc(read, crate::error::infallible(loader))
            .map_err(LoadError::into_cache_error)
    }

    /// [`Cache::try_get_or_load`] inside the transaction.
    pub fn try_get_or_load<T, E, F>(&self, read: &Read, loader: F) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Result<T, E>,
    {
        self.try_get_or_load_arc(read, loader).map(unwrap_arc)
    }

    /// [`Cache::try_get_or_load_arc`] inside the transaction: the overlay first, then (for
    /// tables the transaction has not written) the shared tiers.
    pub fn try_get_or_load_arc<T, E, F>(
        &self,
        read: &Read,
        loader: F,
    ) -> Result<Arc<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Result<T, E>,
    {
        block_on(self.read(read, ready_loader(loader)))
    }

    /// [`Cache::invalidate_obj`], deferred to the outermost commit.
    pub fn invalidate_obj<R: Serialize + ?Sized>(&self, table: &str, row: &R) -> Result<(), Error> {
        self.invalidate_rows(table, [Row::from_serialize(row)?])
    }

    /// [`Cache::invalidate_rows`], deferred to the outermost commit.
    pub fn invalidate_rows(
        &self,
        table: &str,
        rows: impl IntoIterator<Item = Row>,
    ) -> Result<(), Error> {
        let late = self.rows_written(table, rows.into_iter().collect());
        block_on(self.apply_late(late))
    }

    /// A row was inserted (see [`Cache::on_insert`]).
    pub fn on_insert<R: Serialize + ?Sized>(&self, table: &str, new: &R) -> Result<(), Error> {
        self.invalidate_obj(table, new)
    }

    /// A row was updated: reads matching the old or the new version die.
    pub fn on_update<R: Serialize + ?Sized>(
        &self,
        table: &str,
        old: &R,
        new: &R,
    ) -> Result<(), Error> {
        self.invalidate_rows(table, Row::images_of_update(old, new)?)
    }

    /// A row was deleted.
    pub fn on_delete<R: Serialize + ?Sized>(&self, table: &str, old: &R) -> Result<(), Error> {
        self.invalidate_obj(table, old)
    }

    /// Many rows were updated (old and new images).
    pub fn invalidated_update<'r, R: Serialize + 'r>(
        &self,
        table: &str,
        changes: impl IntoIterator<Item = (&'r R, &'r R)>,
    ) -> Result<(), Error> {
        self.invalidate_rows(table, Row::images_of_changes(changes)?)
    }

    /// Every read of a table, deferred to the outermost commit.
    pub fn invalidate_model(&self, table: &str) -> Result<(), Error> {
        block_on(self.apply_late(self.table_written(table)))
    }

    /// Commits: a savepoint merges into its parent; the outermost scope runs the queued
    /// invalidations and promotes what it can. Call it after the database commit.
    pub fn commit(mut self) -> Result<(), Error> {
        block_on(self.end_with_commit())
    }

    /// The same as [`commit`](Scope::commit) (the word savepoints use).
    pub fn release(self) -> Result<(), Error> {
        self.commit()
    }
}

/// The async front end of a scope, from [`AsyncCache::atomic`](crate::AsyncCache): the
/// same overlays and deferral as [`Scope`], with `async` reads, writes and commit.
pub type AsyncScope<C = DefaultCodec> = Scope<C, Async>;

impl<C: Codec> Scope<C, Async> {
    /// Async [`Scope::get_or_load`], with an async loader.
    pub async fn get_or_load<T, F, Fut>(&self, read: &Read, loader: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.get_or_load_arc(read, loader).await.map(unwrap_arc)
    }

    /// Async [`Scope::get_or_load_arc`], with an async loader.
    pub async fn get_or_load_arc<T, F, Fut>(&self, read: &Read, loader: F) -> Result<Arc<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.read(read, crate::error::infallible_async!(loader))
            .await
            .map_err(LoadError::into_cache_error)
    }

    /// Async [`Scope::try_get_or_load`], with an async loader.
    pub async fn try_get_or_load<T, E, F, Fut>(
        &self,
        read: &Read,
        loader: F,
    ) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.read(read, loader).await.map(unwrap_arc)
    }

    /// Async [`Scope::invalidate_obj`].
    pub async fn invalidate_obj<R: Serialize + ?Sized>(
        &self,
        table: &str,
        row: &R,
    ) -> Result<(), Error> {
        let late = self.rows_written(table, vec![Row::from_serialize(row)?]);
        self.apply_late(late).await
    }

    /// Async [`Scope::invalidate_rows`].
    pub async fn invalidate_rows(
        &self,
        table: &str,
        rows: impl IntoIterator<Item = Row>,
    ) -> Result<(), Error> {
        let late = self.rows_written(table, rows.into_iter().collect());
        self.apply_late(late).await
    }

    /// Async [`Scope::on_insert`].
    pub async fn on_insert<R: Serialize + ?Sized>(
        &self,
        table: &str,
        new: &R,
    ) -> Result<(), Error> {
        self.invalidate_obj(table, new).await
    }

    /// Async [`Scope::on_update`].
    pub async fn on_update<R: Serialize + ?Sized>(
        &self,
        table: &str,
        old: &R,
        new: &R,
    ) -> Result<(), Error> {
        let late = self.rows_written(table, Row::images_of_update(old, new)?.into());
        self.apply_late(late).await
    }

    /// Async [`Scope::on_delete`].
    pub async fn on_delete<R: Serialize + ?Sized>(
        &self,
        table: &str,
        old: &R,
    ) -> Result<(), Error> {
        self.invalidate_obj(table, old).await
    }

    /// Async [`Scope::invalidated_update`].
    pub async fn invalidated_update<'r, R: Serialize + 'r>(
        &self,
        table: &str,
        changes: impl IntoIterator<Item = (&'r R, &'r R)>,
    ) -> Result<(), Error> {
        let late = self.rows_written(table, Row::images_of_changes(changes)?);
        self.apply_late(late).await
    }

    /// Async [`Scope::invalidate_model`].
    pub async fn invalidate_model(&self, table: &str) -> Result<(), Error> {
        self.apply_late(self.table_written(table)).await
    }

    /// Async [`Scope::commit`].
    pub async fn commit(mut self) -> Result<(), Error> {
        self.end_with_commit().await
    }

    /// Async [`Scope::release`].
    pub async fn release(self) -> Result<(), Error> {
        self.commit().await
    }
}

impl<C: Codec, M: Front> Drop for Scope<C, M> {
    fn drop(&mut self) {
        if self.owner {
            let late = self.layer.rollback();
            self.apply_detached(late);
        }
    }
}

impl<C: Codec, M: Front> std::fmt::Debug for Scope<C, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("isolation", &self.isolation)
            .field("savepoint", &self.layer_is_savepoint())
            .field("finished", &self.layer.is_done())
            .finish()
    }
}

fn finished() -> Error {
    Error::Scope("the scope was already committed or rolled back".into())
}
