//! `atomic()` scopes: the cache seen from inside a database transaction.
//!
//! ```
//! use stampcache::{Cache, Cond, Read};
//! # #[derive(serde::Serialize)] struct Article { id: i64, category: i64 }
//! let cache = Cache::embedded();
//! let scope = cache.atomic();                      // BEGIN
//! scope.on_insert("blog.article", &Article { id: 9, category: 1 })?;
//! let read = Read::count("blog.article").filter(Cond::eq("category", 1));
//! let n: u64 = scope.get_or_compute(&read, || 5)?;    // sees its own write; cached in the scope
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
use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::batch::Batch;
use super::{Core, Job, Served};
use crate::codec::Codec;
use crate::error::{Error, LoadError};
use crate::event::{Outcome, Target};
use crate::plan::Plan;
use crate::read::Read;
use crate::row::Row;
use crate::store::Token;
use crate::sync::{AtomicUsize, Ordering};
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
            Written::Table(t) => e.plan.depends.iter().any(|(table, _)| table == t),
            Written::Rows { table, rows } => e
                .plan
                .depends
                .iter()
                .filter(|(t, _)| t == table)
                .flat_map(|(_, conjs)| conjs)
                .any(|conj| {
                    rows.iter().any(|row| {
                        // A field the image lacks may have any value: it matches.
                        conj.iter()
                            .all(|(f, v)| row.get(f).is_none_or(|rv| rv.matches(v)))
                    })
                }),
        }
    }
}

type Chain = Layer<String, Arc<OverlayEntry>, Arc<Written>, Batch>;

/// The state of one scope handle (a transaction or one of its savepoints): what both front
/// ends' `Scope` types wrap.
pub(crate) struct ScopeCore<C: Codec> {
    core: Core<C>,
    layer: Arc<Chain>,
    isolation: Isolation,
    /// False on a `no_invalidation` view.
    invalidates: bool,
    /// True for the handle that ends the layer (commit, rollback, drop).
    owner: bool,
    /// Row images recorded through this scope's chain (to collapse them past a limit).
    rows_recorded: Arc<AtomicUsize>,
}

impl<C: Codec> ScopeCore<C> {
    /// A scope for a new transaction at `isolation`.
    pub fn begin(core: Core<C>, isolation: Isolation) -> ScopeCore<C> {
        ScopeCore {
            core,
            layer: Chain::root(),
            isolation,
            invalidates: true,
            owner: true,
            rows_recorded: Arc::default(),
        }
    }

    /// A savepoint: a nested scope whose writes its parent sees once released.
    pub fn savepoint(&self) -> Result<ScopeCore<C>, Error> {
        let layer = Chain::child(&self.layer).ok_or_else(finished)?;
        Ok(ScopeCore {
            core: self.core.clone(),
            layer,
            isolation: self.isolation,
            invalidates: true,
            owner: true,
            rows_recorded: self.rows_recorded.clone(),
        })
    }

    /// A view whose invalidations do nothing, and which cannot end the scope.
    pub fn view_without_invalidation(&self) -> ScopeCore<C> {
        ScopeCore {
            core: self.core.clone(),
            layer: self.layer.clone(),
            isolation: self.isolation,
            invalidates: false,
            owner: false,
            rows_recorded: self.rows_recorded.clone(),
        }
    }

    /// The cache this scope reads and writes through.
    pub fn core(&self) -> &Core<C> {
        &self.core
    }

    /// The isolation level.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    // ------------------------------------------------------------------ reads

    /// A read inside the transaction: the overlay first, then (for tables the transaction
    /// has not written) the shared tiers.
    pub async fn read<T, E, F, Fut>(
        &self,
        read: &Read,
        loader: F,
    ) -> Result<(Arc<T>, Served), LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let target = Target::Table {
            table: read.table(),
            op: read.op(),
            read,
        };
        let core = &self.core;
        let Some(planned) = core.plan(read) else {
            return core.finish(Job::planned(target, None), loader).await;
        };
        let plan = &planned.plan;
        match self.layer.lookup(&plan.entry) {
            Found::Finished => return Err(LoadError::Cache(finished())),
            Found::Entry(e) => {
                if let Ok(v) = e.value.clone().downcast::<T>() {
                    core.read_event(target, Outcome::Overlay);
                    return Ok((v, Served::Cached));
                }
            }
            Found::Absent => {}
        }
        let tables: Vec<&str> = plan.depends.iter().map(|(t, _)| t.as_str()).collect();
        let read_committed = self.isolation == Isolation::ReadCommitted;
        if self.layer.written(&tables) {
            // Written in this transaction: the shared tiers may not see it, nor it them.
            // Stamps are read first, as for any fill, so the entry can be promoted at commit.
            let token = match read_committed {
                true => core.call("prepare", |s| s.prepare(plan)).await?,
                false => None,
            };
            let value = Arc::new(loader().await.map_err(LoadError::Loader)?);
            core.read_event(target, Outcome::Miss);
            let promotable = match token {
                Some(t) => Some((t, crate::typed::encode::<C, T>(&value)?)),
                None => None,
            };
            self.keep(plan, value.clone(), promotable);
            return Ok((value, Served::Loaded));
        }
        let job = Job::planned(target, Some(planned.clone())).filling(read_committed);
        let (value, served) = core.finish(job, loader).await?;
        if served == Served::Loaded && !read_committed {
            // Not in the shared tiers: keep it for the rest of the transaction.
            self.keep(plan, value.clone(), None);
        }
        Ok((value, served))
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

    /// Records written rows; applies them at once only when the scope is over (nothing
    /// defers them any more).
    pub async fn rows_written(&self, table: &str, rows: Vec<Row>) -> Result<(), Error> {
        if rows.is_empty() || !self.invalidates {
            return Ok(());
        }
        // A transaction writing very many rows keeps whole tables instead of row images
        // (as the queue does): bounded memory, and lookups stay cheap.
        let seen = self.rows_recorded.fetch_add(rows.len(), Ordering::Relaxed) + rows.len();
        if seen > self.core.pending_limit() {
            return self.table_written(table).await;
        }
        let batch = self.core.rows_batch(table, &rows);
        let written = Written::Rows {
            table: table.to_owned(),
            rows,
        };
        self.record(table, written, batch).await
    }

    /// Records a whole-table write (see [`rows_written`](ScopeCore::rows_written)).
    pub async fn table_written(&self, table: &str) -> Result<(), Error> {
        if !self.invalidates {
            return Ok(());
        }
        let batch = self.core.table_batch(table);
        self.record(table, Written::Table(table.to_owned()), batch)
            .await
    }

    async fn record(&self, table: &str, written: Written, batch: Batch) -> Result<(), Error> {
        if !self.core.enabled() {
            return Ok(());
        }
        match self.layer.record(Some(table), Arc::new(written), batch) {
            Ok(()) => Ok(()),
            // The scope is over: nothing defers the write.
            Err(late) => self.core.apply(late).await,
        }
    }

    // ------------------------------------------------------------------ ending

    /// Discards the scope and its queued invalidations (see `Scope::rollback`).
    pub fn rollback(mut self) {
        self.owner = false;
        let late = self.layer.rollback();
        self.apply_detached(late);
    }

    /// Applies items from a destructor or `rollback`, where nothing can be awaited: at once
    /// (blocking), or queued and replayed on a spawned task (async; also before this
    /// cache's next operation, so nothing is lost if the task cannot run).
    fn apply_detached(&self, queue: Vec<Batch>) {
        let Some(all) = merged(queue) else {
            return;
        };
        #[cfg(feature = "tokio")]
        if self.core.is_async() {
            // Replayed by the background replayer, and before this cache's next store call.
            self.core.queue_batch(all);
            return;
        }
        // A failure is reported and the batch queued (`apply`), so nothing is lost.
        let _ = crate::block::block_on(self.core.apply(all));
    }

    /// Ends the scope with a commit: a savepoint merges into its parent; the outermost
    /// scope runs the queued invalidations and promotes what it can.
    pub async fn commit(mut self) -> Result<(), Error> {
        if !self.owner {
            return Err(Error::Scope(
                "only the scope itself can end it, not a view of it".into(),
            ));
        }
        self.owner = false;
        if self.layer.has_parent() {
            let late = self.layer.release().map_err(|_| finished())?;
            return self.apply(late).await;
        }
        let (queue, overlay) = self.layer.commit().map_err(|_| finished())?;
        self.apply(queue).await?;
        if self.isolation == Isolation::ReadCommitted {
            for entry in overlay.values() {
                if let Some((token, bytes)) = &entry.promotable {
                    // Stored only if the stamps read before its loader are still current. A
                    // promotion is only a head start for later reads: a failure is reported
                    // (an event) and does not fail a commit whose invalidations ran.
                    let plan = &entry.plan;
                    let _ = self
                        .core
                        .call("promote", |s| s.store(plan, token, bytes))
                        .await;
                }
            }
        }
        Ok(())
    }

    /// Applies queued items as one batch (as few round trips as the store allows).
    async fn apply(&self, queue: Vec<Batch>) -> Result<(), Error> {
        match merged(queue) {
            Some(all) => self.core.apply(all).await,
            None => Ok(()),
        }
    }
}

/// Queued items as one batch, or `None` when there is nothing.
fn merged(queue: Vec<Batch>) -> Option<Batch> {
    let mut all = Batch::default();
    for b in queue {
        all.absorb(b);
    }
    (!all.is_empty()).then_some(all)
}

impl<C: Codec> Drop for ScopeCore<C> {
    fn drop(&mut self) {
        if self.owner {
            let late = self.layer.rollback();
            self.apply_detached(late);
        }
    }
}

impl<C: Codec> std::fmt::Debug for ScopeCore<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("isolation", &self.isolation)
            .field("savepoint", &self.layer.has_parent())
            .field("finished", &self.layer.is_done())
            .finish()
    }
}

fn finished() -> Error {
    Error::Scope("the scope was already committed or rolled back".into())
}
