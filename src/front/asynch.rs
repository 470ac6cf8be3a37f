//! The async front end: [`AsyncCache`]'s operations, each a thin `.await` on the shared
//! core (`src/cache.rs`). Loaders are async; every future is `Send` when the loader's is,
//! and dropping one at any await point is safe (see DESIGN.md, "Cancellation").

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cache::{unwrap_arc, Answer, AsyncCache};
use crate::codec::Codec;
use crate::error::{infallible_async, Error, LoadError};
use crate::read::Read;
use crate::row::Row;

impl<C: Codec> AsyncCache<C> {
    // ---------------------------------------------------------------- reads

    /// Async [`Cache::get_or_load`](crate::Cache::get_or_load): the cached result of
    /// `read`, or the awaited `loader`'s result, stored.
    ///
    /// ```no_run
    /// # async fn demo(cache: stampcache::AsyncCache) -> Result<(), stampcache::Error> {
    /// use stampcache::{Cond, Read};
    /// let read = Read::get("blog.article").filter(Cond::eq("id", 1));
    /// let title: String = cache.get_or_load(&read, || async { "from the database".to_string() }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_or_load<T, F, Fut>(&self, read: &Read, loader: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.get_or_load_arc(read, loader).await.map(unwrap_arc)
    }

    /// Async [`Cache::get_or_load_arc`](crate::Cache::get_or_load_arc).
    pub async fn get_or_load_arc<T, F, Fut>(&self, read: &Read, loader: F) -> Result<Arc<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.try_get_or_load_arc(read, infallible_async!(loader))
            .await
            .map_err(LoadError::into_cache_error)
    }

    /// Async [`Cache::get_or_load_answer`](crate::Cache::get_or_load_answer).
    pub async fn get_or_load_answer<T, F, Fut>(
        &self,
        read: &Read,
        loader: F,
    ) -> Result<Answer<T>, Error>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.read_answer(read, infallible_async!(loader))
            .await
            .map_err(LoadError::into_cache_error)
    }

    /// Async [`Cache::try_get_or_load_answer`](crate::Cache::try_get_or_load_answer).
    pub async fn try_get_or_load_answer<T, E, F, Fut>(
        &self,
        read: &Read,
        loader: F,
    ) -> Result<Answer<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.read_answer(read, loader).await
    }

    /// Async [`Cache::try_get_or_load`](crate::Cache::try_get_or_load).
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
        self.try_get_or_load_arc(read, loader).await.map(unwrap_arc)
    }

    /// Async [`Cache::try_get_or_load_arc`](crate::Cache::try_get_or_load_arc).
    pub async fn try_get_or_load_arc<T, E, F, Fut>(
        &self,
        read: &Read,
        loader: F,
    ) -> Result<Arc<T>, LoadError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.read_served(read, loader).await.map(|(v, _)| v)
    }

    // ---------------------------------------------------------------- writes

    /// Async [`Cache::invalidate_obj`](crate::Cache::invalidate_obj).
    pub async fn invalidate_obj<R: Serialize + ?Sized>(
        &self,
        table: &str,
        row: &R,
    ) -> Result<(), Error> {
        let rows = vec![Row::from_serialize(row)?];
        self.written(table, rows, None).await
    }

    /// Async [`Cache::invalidate_rows`](crate::Cache::invalidate_rows).
    pub async fn invalidate_rows(
        &self,
        table: &str,
        rows: impl IntoIterator<Item = Row>,
    ) -> Result<(), Error> {
        let rows = rows.into_iter().collect();
        self.written(table, rows, None).await
    }

    /// Async [`Cache::on_insert`](crate::Cache::on_insert).
    pub async fn on_insert<R: Serialize + ?Sized>(
        &self,
        table: &str,
        new: &R,
    ) -> Result<(), Error> {
        let rows = vec![Row::from_serialize(new)?];
        let saved = self.saved(table, new)?;
        self.written(table, rows, saved).await
    }

    /// Async [`Cache::on_update`](crate::Cache::on_update).
    pub async fn on_update<R: Serialize + ?Sized>(
        &self,
        table: &str,
        old: &R,
        new: &R,
    ) -> Result<(), Error> {
        let rows = Row::images_of_update(old, new)?.into();
        let saved = self.saved(table, new)?;
        self.written(table, rows, saved).await
    }

    /// Async [`Cache::on_delete`](crate::Cache::on_delete).
    pub async fn on_delete<R: Serialize + ?Sized>(
        &self,
        table: &str,
        old: &R,
    ) -> Result<(), Error> {
        self.invalidate_obj(table, old).await
    }

    /// Async [`Cache::invalidated_update`](crate::Cache::invalidated_update).
    pub async fn invalidated_update<'r, R: Serialize + 'r>(
        &self,
        table: &str,
        changes: impl IntoIterator<Item = (&'r R, &'r R)>,
    ) -> Result<(), Error> {
        let rows = Row::images_of_changes(changes)?;
        self.written(table, rows, None).await
    }

    /// Async [`Cache::invalidate_model`](crate::Cache::invalidate_model).
    pub async fn invalidate_model(&self, table: &str) -> Result<(), Error> {
        self.model(table).await
    }

    /// Async [`Cache::invalidate_all`](crate::Cache::invalidate_all).
    pub async fn invalidate_all(&self) -> Result<(), Error> {
        self.everything().await
    }

    /// Async [`Cache::flush_pending`](crate::Cache::flush_pending).
    pub async fn flush_pending(&self) -> Result<(), Error> {
        self.replay().await
    }
}
