//! The blocking front end: [`Cache`]'s operations, each a thin call into the shared core
//! (`src/cache.rs`), driven to completion on the calling thread.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::block::block_on;
use crate::cache::{ready_loader, unwrap_arc, Answer, Cache};
use crate::codec::Codec;
use crate::error::{Error, LoadError};
use crate::front::Blocking;
use crate::read::Read;
use crate::row::Row;

impl<C: Codec> Cache<C, Blocking> {
    // ---------------------------------------------------------------- reads

    /// Returns the cached result of `read`, or runs `loader`, stores and returns its result.
    ///
    /// With the local tier on, a local hit clones the value out of its `Arc`; use
    /// [`get_or_load_arc`](Cache::get_or_load_arc) to share it instead.
    pub fn get_or_load<T, F>(&self, read: &Read, loader: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        self.get_or_load_arc(read, loader).map(unwrap_arc)
    }

    /// Like [`get_or_load`](Cache::get_or_load), sharing the value: a local hit clones an
    /// `Arc`, never the value, and never decodes.
    pub fn get_or_load_arc<T, F>(&self, read: &Read, loader: F) -> Result<Arc<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        self.try_get_or_load_arc(read, crate::error::infallible(loader))
            .map_err(LoadError::into_cache_error)
    }

    /// Like [`get_or_load_arc`](Cache::get_or_load_arc), saying whether the value is stale:
    /// with a profile's [`stale_while_revalidate`](crate::Profile::stale_while_revalidate), a read
    /// of an entry invalidated within the grace gets the previous value at once while one
    /// caller reloads. Without that option, answers are never stale.
    pub fn get_or_load_answer<T, F>(&self, read: &Read, loader: F) -> Result<Answer<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> T,
    {
        self.try_get_or_load_answer(read, crate::error::infallible(loader))
            .map_err(LoadError::into_cache_error)
    }

    /// [`get_or_load_answer`](Cache::get_or_load_answer) with a loader that can fail.
    pub fn try_get_or_load_answer<T, E, F>(
        &self,
        read: &Read,
        loader: F,
    ) -> Result<Answer<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Result<T, E>,
    {
        block_on(self.read_answer(read, ready_loader(loader)))
    }

    /// Like [`get_or_load`](Cache::get_or_load) with a loader that can fail. A loader error
    /// is returned as is and nothing is stored.
    pub fn try_get_or_load<T, E, F>(&self, read: &Read, loader: F) -> Result<T, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Result<T, E>,
    {
        self.try_get_or_load_arc(read, loader).map(unwrap_arc)
    }

    /// Like [`try_get_or_load`](Cache::try_get_or_load), sharing the value.
    pub fn try_get_or_load_arc<T, E, F>(
        &self,
        read: &Read,
        loader: F,
    ) -> Result<Arc<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Result<T, E>,
    {
        if let Some(v) = self.local_hit(read) {
            return Ok(v);
        }
        block_on(self.read_served(read, ready_loader(loader))).map(|(v, _)| v)
    }
}

impl<C: Codec> Cache<C, Blocking> {
    // ---------------------------------------------------------------- writes

    /// Invalidates every cached read that row `row` of `table` can affect.
    pub fn invalidate_obj<R: Serialize + ?Sized>(&self, table: &str, row: &R) -> Result<(), Error> {
        self.invalidate_rows(table, [Row::from_serialize(row)?])
    }

    /// Invalidates every cached read that any of `rows` can affect, in one call.
    pub fn invalidate_rows(
        &self,
        table: &str,
        rows: impl IntoIterator<Item = Row>,
    ) -> Result<(), Error> {
        block_on(self.written(table, rows.into_iter().collect(), None))
    }

    /// A row was inserted.
    pub fn on_insert<R: Serialize + ?Sized>(&self, table: &str, new: &R) -> Result<(), Error> {
        let rows = vec![Row::from_serialize(new)?];
        block_on(self.written(table, rows, self.saved(table, new)?))
    }

    /// A row was updated: reads matching the old or the new version die.
    pub fn on_update<R: Serialize + ?Sized>(
        &self,
        table: &str,
        old: &R,
        new: &R,
    ) -> Result<(), Error> {
        let rows = Row::images_of_update(old, new)?.into();
        block_on(self.written(table, rows, self.saved(table, new)?))
    }

    /// A row was deleted.
    pub fn on_delete<R: Serialize + ?Sized>(&self, table: &str, old: &R) -> Result<(), Error> {
        self.invalidate_obj(table, old)
    }

    /// Many rows were updated (old and new images), invalidated in one call.
    pub fn invalidated_update<'r, R: Serialize + 'r>(
        &self,
        table: &str,
        changes: impl IntoIterator<Item = (&'r R, &'r R)>,
    ) -> Result<(), Error> {
        self.invalidate_rows(table, Row::images_of_changes(changes)?)
    }

    /// Invalidates every cached read of a table.
    pub fn invalidate_model(&self, table: &str) -> Result<(), Error> {
        block_on(self.model(table))
    }

    /// Invalidates everything this cache (prefix and version) has stored.
    pub fn invalidate_all(&self) -> Result<(), Error> {
        block_on(self.everything())
    }

    /// Sends queued invalidations now. Reads and writes do this by themselves first.
    pub fn flush_pending(&self) -> Result<(), Error> {
        block_on(self.replay())
    }
}
