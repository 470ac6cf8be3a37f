//! Invalidation: written rows (or tables, or everything) become a [`Batch`], which is sent
//! after anything queued before it, or queued itself when the store fails. What a batch
//! deletes reaches this process's local tier before the call returns (read-your-writes).

use std::sync::Arc;

use serde::Serialize;

use super::batch::Batch;
use super::{Core, Planned, Shared};
use crate::codec::Codec;
use crate::cond::Cond;
use crate::error::Error;
use crate::event::{Event, Invalidation};
use crate::keys::TableKeys;
use crate::read::Read;
use crate::row::Row;
use crate::store::{millis, EncodedRow};
use crate::value::escape;

/// A saved row to store under a `get` by its profile's `cache_on_save` field.
pub(crate) struct Saved {
    planned: Arc<Planned>,
    bytes: Vec<u8>,
}

impl<C: Codec> Core<C> {
    /// Invalidates what `rows` of `table` can affect, then stores the saved row of a
    /// profile's `cache_on_save` (every write operation of every front end).
    pub async fn written(
        &self,
        table: &str,
        rows: Vec<Row>,
        saved: Option<Saved>,
    ) -> Result<(), Error> {
        if self.active() && !rows.is_empty() {
            self.apply(self.rows_batch(table, &rows)).await?;
        }
        match saved {
            Some(saved) => self.store_saved(saved).await,
            None => Ok(()),
        }
    }

    /// Invalidates every cached read of a table.
    pub async fn model(&self, table: &str) -> Result<(), Error> {
        if !self.active() {
            return Ok(());
        }
        self.apply(self.table_batch(table)).await
    }

    /// Invalidates everything this cache (prefix and version) has stored.
    pub async fn everything(&self) -> Result<(), Error> {
        if !self.active() {
            return Ok(());
        }
        self.apply(Batch {
            all: true,
            ..Batch::default()
        })
        .await
    }

    /// The invalidation of rows of `table`.
    pub fn rows_batch(&self, table: &str, rows: &[Row]) -> Batch {
        let mut tk = self.shared.planner.keys.table(table, &self.write_db);
        tk.stale_ms = self
            .shared
            .planner
            .profiles
            .get(table)
            .and_then(|p| p.stale_grace)
            .map_or(0, millis);
        let encoded: Vec<EncodedRow> = rows.iter().map(|r| self.encode_row(table, r)).collect();
        let mut b = Batch::default();
        b.rows.insert(tk.gen.clone(), (tk, encoded));
        b
    }

    /// The invalidation of a whole table.
    pub fn table_batch(&self, table: &str) -> Batch {
        let mut b = Batch::default();
        let tk = self.shared.planner.keys.table(table, &self.write_db);
        b.tables.insert(tk.gen, table.to_owned());
        b
    }

    /// True when this handle's writes invalidate.
    pub fn active(&self) -> bool {
        self.shared.enabled && self.invalidates
    }

    /// Row image to (escaped field, encoded value) pairs, without the profile's skipped fields.
    fn encode_row(&self, table: &str, row: &Row) -> EncodedRow {
        let skip: &[String] = self
            .shared
            .planner
            .profiles
            .get(table)
            .map_or(&[], |p| &p.skip_fields);
        row.iter()
            .filter(|(f, _)| !skip.iter().any(|s| s == f))
            .map(|(f, v)| {
                if let Some(m) = self.shared.kinds.row(table, f, v) {
                    self.shared.kind_mismatch(&m);
                }
                (escape(f), v.encode_match())
            })
            .collect()
    }

    /// What a profile's `cache_on_save` stores for a saved row: the plan of a `get` by its
    /// field, and the encoded row. `None` when the profile does not ask for it.
    pub fn saved<R: Serialize + ?Sized>(
        &self,
        table: &str,
        new: &R,
    ) -> Result<Option<Saved>, Error> {
        let Some(profile) = self.shared.planner.profiles.get(table) else {
            return Ok(None);
        };
        let Some(field) = &profile.cache_on_save else {
            return Ok(None);
        };
        if !self.shared.enabled {
            return Ok(None);
        }
        let row = Row::from_serialize(new)?;
        let Some(value) = row.get(field) else {
            return Err(Error::Row(format!(
                "cache_on_save field {field:?} is not a scalar field of the saved {table} row"
            )));
        };
        let read = Read::get(table)
            .filter(Cond::eq(field.as_str(), value.clone()))
            .db(&*self.write_db);
        let Some(planned) = self.plan(&read) else {
            return Ok(None);
        };
        Ok(Some(Saved {
            planned,
            bytes: crate::typed::encode_unsized::<C, R>(new)?,
        }))
    }

    /// Stores a saved row (see [`saved`](Core::saved)) under freshly read stamps.
    async fn store_saved(&self, saved: Saved) -> Result<(), Error> {
        let Saved { planned, bytes } = saved;
        let plan = &planned.plan;
        self.call("cache_on_save", |s| async move {
            let token = s.prepare(plan).await?;
            s.store(plan, &token, &bytes).await
        })
        .await
        .map(|_| ())
    }

    /// Sends a batch (after anything queued before it); queues it if the store fails. The
    /// gateway of every invalidation.
    ///
    /// `Ok` means delivered: no process serves what the batch kills. A batch that was only
    /// queued is [`Error::InvalidationQueued`] in every mode, `degrade_on_failure`
    /// included: until the replay reaches the store, other processes that can reach it
    /// may still serve the old value, and a caller told `Ok` could not know that.
    pub async fn apply(&self, b: Batch) -> Result<(), Error> {
        match self.deliver(&b).await {
            Ok(()) => {
                self.invalidation_events(&b, false);
                Ok(())
            }
            Err(e) => {
                self.invalidation_events(&b, true);
                self.queue_batch(b);
                self.emit(&Event::StoreFailed {
                    during: "invalidate",
                    error: &e,
                });
                Err(Error::InvalidationQueued(Box::new(e)))
            }
        }
    }

    /// Sends `b` now, after what is queued: `Ok` only once it reached the store. A failure
    /// is reported (an event) and returned, never queued and never degraded: the caller
    /// keeps the batch and retries (the change-stream consumer, which acknowledges a
    /// transaction only after this returns `Ok`). Sending a batch twice is harmless.
    #[cfg_attr(not(feature = "postgres-cdc"), allow(dead_code))]
    pub async fn send_now(&self, b: Batch) -> Result<(), Error> {
        if !self.active() || b.is_empty() {
            return Ok(());
        }
        let sent = self.deliver(&b).await;
        match &sent {
            Ok(()) => self.invalidation_events(&b, false),
            Err(error) => self.emit(&Event::StoreFailed {
                during: "invalidate",
                error,
            }),
        }
        sent
    }

    /// Replays the queue, then sends `b`.
    async fn deliver(&self, b: &Batch) -> Result<(), Error> {
        self.replay().await?;
        self.send(b).await
    }

    /// Queues a batch for the next replay.
    pub fn queue_batch(&self, b: Batch) {
        self.shared.queue.push(b, self.shared.pending_limit);
        super::replayer::start(&self.shared);
        // Which stamps the queued rows will delete is unknown until they are sent: drop
        // every local entry rather than risk serving one of them.
        if let Some(l) = &self.shared.local {
            l.flush();
        }
    }

    /// Replays queued invalidations; on failure they stay queued.
    pub async fn replay(&self) -> Result<(), Error> {
        self.shared.replay().await
    }

    async fn send(&self, b: &Batch) -> Result<(), Error> {
        self.shared.send(b).await
    }

    fn invalidation_events(&self, b: &Batch, queued: bool) {
        self.shared.invalidation_events(b, queued)
    }
}

/// What needs no handle: the background replayer and the last handle's flush use these.
impl Shared {
    /// Sends a batch to the store, and applies what it deleted to the local tier before
    /// returning (a process reads its own writes).
    async fn send(&self, b: &Batch) -> Result<(), Error> {
        let store = &self.store;
        let local = self.local.as_ref();
        if b.all {
            let keys = &self.planner.keys;
            store.invalidate_all(&keys.scan_pattern()).await?;
            if let Some(l) = local {
                l.flush();
            }
            return Ok(());
        }
        if !b.tables.is_empty() {
            let gens: Vec<String> = b.tables.keys().cloned().collect();
            store.invalidate_tables(&gens).await?;
            if let Some(l) = local {
                l.stamps_changed(gens.iter().map(String::as_str));
            }
        }
        if !b.rows.is_empty() {
            let batches: Vec<(TableKeys, Vec<EncodedRow>)> = b.rows.values().cloned().collect();
            let done = store.invalidate_rows(&batches).await?;
            if let Some(l) = local {
                l.stamps_changed(done.deleted.iter().map(String::as_str));
            }
            if !done.widened.is_empty() && !self.listeners.is_empty() {
                self.widened.report(&done.widened, |e| self.emit(e));
            }
            for c in &done.clashes {
                if let Some(m) = self.kinds.remote(c) {
                    self.kind_mismatch(&m);
                }
            }
        }
        if !b.keys.is_empty() {
            let keys: Vec<String> = b.keys.iter().cloned().collect();
            store.delete(&keys).await?;
        }
        Ok(())
    }

    /// Replays queued invalidations; on failure they stay queued.
    pub async fn replay(&self) -> Result<(), Error> {
        let shared = self;
        let Some(replay) = shared.queue.begin_replay(shared.pending_limit).await else {
            return Ok(());
        };
        // On failure (or if this future is dropped) the batch goes back to the queue.
        self.send(replay.batch()).await?;
        let items = replay.sent();
        self.emit(&Event::Replayed { items });
        Ok(())
    }

    fn invalidation_events(&self, b: &Batch, queued: bool) {
        if self.listeners.is_empty() {
            return;
        }
        let wrap = |i| {
            if queued {
                Event::InvalidationQueued(i)
            } else {
                Event::Invalidated(i)
            }
        };
        if b.all {
            self.emit(&wrap(Invalidation::All));
        }
        for table in b.tables.values() {
            self.emit(&wrap(Invalidation::Table { table }));
        }
        for (t, rows) in b.rows.values() {
            self.emit(&wrap(Invalidation::Rows {
                table: &t.table,
                rows: rows.len(),
            }));
        }
        for key in &b.keys {
            self.emit(&wrap(Invalidation::Key { key }));
        }
    }
}
