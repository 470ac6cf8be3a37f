//! Invalidations that could not reach the store, kept in process until it answers again.
//!
//! Nothing is dropped: past `limit` row images, queued rows collapse into whole-table
//! invalidations of their tables, and past `limit` simple keys, into one "invalidate all".

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::keys::TableKeys;
use crate::store::EncodedRow;

/// What is queued.
#[derive(Debug, Default, Clone)]
pub(crate) struct Backlog {
    /// Row images per table (by generation key, which identifies table and prefix).
    pub rows: BTreeMap<String, (TableKeys, Vec<EncodedRow>)>,
    /// Tables to invalidate whole: generation key -> table name.
    pub tables: BTreeMap<String, String>,
    /// Simple-cache keys to delete.
    pub keys: BTreeSet<String>,
    /// Everything.
    pub all: bool,
}

impl Backlog {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.tables.is_empty() && self.keys.is_empty() && !self.all
    }

    /// Number of queued items, for events.
    pub fn len(&self) -> usize {
        self.rows.values().map(|(_, r)| r.len()).sum::<usize>()
            + self.tables.len()
            + self.keys.len()
            + usize::from(self.all)
    }

    fn row_count(&self) -> usize {
        self.rows.values().map(|(_, r)| r.len()).sum()
    }

    /// Adds `other` (no limit: for batching, not queueing).
    pub fn absorb(&mut self, other: Backlog) {
        self.merge(other, usize::MAX);
    }

    /// Adds `other`, keeping the backlog within `limit`.
    fn merge(&mut self, other: Backlog, limit: usize) {
        self.all |= other.all;
        self.tables.extend(other.tables);
        self.keys.extend(other.keys);
        for (gen, (t, rows)) in other.rows {
            self.rows
                .entry(gen)
                .or_insert_with(|| (t, Vec::new()))
                .1
                .extend(rows);
        }
        if self.row_count() > limit {
            // Too many rows to keep: their tables die whole instead.
            let rows = std::mem::take(&mut self.rows);
            self.tables
                .extend(rows.into_iter().map(|(gen, (t, _))| (gen, t.table)));
        }
        if self.keys.len() > limit {
            // Simple keys cannot be widened per table: everything dies instead.
            self.keys.clear();
            self.all = true;
        }
        // Once everything is to die, the rest is implied.
        if self.all {
            self.rows.clear();
            self.tables.clear();
            self.keys.clear();
        }
    }
}

/// The queue, with a flag so the hot path checks it without locking.
///
/// The flag stays set until a replay has *finished*, and replays are serialised: a read that
/// finds the flag set waits for the replay in progress instead of reading entries the
/// replay is about to kill.
#[derive(Default)]
pub(crate) struct Pending {
    queued: AtomicBool,
    backlog: Mutex<Backlog>,
    /// Held for a whole replay (across I/O, so an async-aware lock).
    replaying: tokio::sync::Mutex<()>,
}

/// A replay in progress: its backlog, returned to the queue unless it was sent.
pub(crate) struct Replay<'a> {
    pending: &'a Pending,
    backlog: Backlog,
    sent: bool,
    limit: usize,
    _one_at_a_time: tokio::sync::MutexGuard<'a, ()>,
}

impl Replay<'_> {
    /// What to send.
    pub fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    /// It was sent: returns how many items.
    pub fn sent(mut self) -> usize {
        self.sent = true;
        let n = self.backlog.len();
        let q = self.pending.backlog.lock();
        self.pending.queued.store(!q.is_empty(), Ordering::Release);
        n
    }
}

impl Drop for Replay<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.pending
                .push(std::mem::take(&mut self.backlog), self.limit);
        }
    }
}

impl Pending {
    /// True when something is queued.
    pub fn any(&self) -> bool {
        self.queued.load(Ordering::Acquire)
    }

    /// Queues a backlog.
    pub fn push(&self, b: Backlog, limit: usize) {
        let mut q = self.backlog.lock();
        q.merge(b, limit);
        self.queued.store(!q.is_empty(), Ordering::Release);
    }

    /// Takes everything queued for sending, waiting for a replay in progress first (the
    /// caller must not read before it ends). `None` when nothing is queued. The backlog goes
    /// back to the queue unless [`Replay::sent`] is called, also if the caller is dropped
    /// (a cancelled future): nothing is lost.
    pub async fn begin_replay(&self, limit: usize) -> Option<Replay<'_>> {
        if !self.any() {
            return None;
        }
        let one_at_a_time = self.replaying.lock().await;
        let backlog = std::mem::take(&mut *self.backlog.lock());
        if backlog.is_empty() {
            return None;
        }
        Some(Replay {
            pending: self,
            backlog,
            sent: false,
            limit,
            _one_at_a_time: one_at_a_time,
        })
    }

    /// Number of queued items.
    pub fn len(&self) -> usize {
        self.backlog.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(t: &str) -> TableKeys {
        TableKeys {
            table: t.into(),
            schemes: format!("{t}:s"),
            gen: format!("{t}:g"),
            conj_prefix: format!("{t}:c:"),
            stale_ms: 0,
        }
    }

    fn rows(t: &str, n: usize) -> Backlog {
        let mut b = Backlog::default();
        b.rows.insert(
            keys(t).gen,
            (
                keys(t),
                (0..n)
                    .map(|i| vec![("id".into(), format!("i{i}"))])
                    .collect(),
            ),
        );
        b
    }

    #[test]
    fn rows_collapse_to_tables_past_the_limit() {
        let p = Pending::default();
        p.push(rows("a", 3), 5);
        assert!(p.any());
        p.push(rows("b", 3), 5);
        let b = take(&p);
        assert!(!p.any());
        assert!(b.rows.is_empty());
        let gens: Vec<&String> = b.tables.keys().collect();
        assert_eq!(gens, ["a:g", "b:g"]);
        assert_eq!(b.tables["a:g"], "a");
    }

    #[test]
    fn keys_collapse_to_all_past_the_limit() {
        let p = Pending::default();
        let b = Backlog {
            keys: (0..3).map(|i| i.to_string()).collect(),
            ..Backlog::default()
        };
        p.push(b, 2);
        let b = take(&p);
        assert!(b.all && b.keys.is_empty());
    }

    #[test]
    fn nothing_is_lost_under_the_limit() {
        let p = Pending::default();
        p.push(rows("a", 2), 10);
        p.push(rows("a", 2), 10);
        assert_eq!(p.len(), 4);
        assert_eq!(take(&p).rows["a:g"].1.len(), 4);
    }

    fn take(p: &Pending) -> Backlog {
        let Some(r) = crate::block::block_on(p.begin_replay(10)) else {
            return Backlog::default();
        };
        let out = r.backlog().clone();
        r.sent();
        out
    }

    #[test]
    fn failed_replays_keep_everything_queued() {
        let p = Pending::default();
        p.push(rows("a", 2), 10);
        // Not sent (failed, or its future dropped): back in the queue.
        drop(crate::block::block_on(p.begin_replay(10)));
        assert!(p.any());
        assert_eq!(p.len(), 2);
        assert_eq!(take(&p).rows["a:g"].1.len(), 2);
        assert!(!p.any());
    }
}
