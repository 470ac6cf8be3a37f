//! Invalidations that could not reach the store, kept in process until it answers again.
//!
//! Nothing is dropped: past `limit` row images, queued rows collapse into whole-table
//! invalidations of their tables, and past `limit` simple keys, into one "invalidate all".

use super::batch::Batch;
use crate::sync::{AsyncMutex, AsyncMutexGuard, AtomicBool, Mutex, Ordering};

/// The queue, with a flag so the hot path checks it without locking.
///
/// The flag stays set until a replay has *finished*, and replays are serialised: a read that
/// finds the flag set waits for the replay in progress instead of reading entries the
/// replay is about to kill.
#[derive(Default)]
pub(crate) struct Queue {
    queued: AtomicBool,
    batch: Mutex<Batch>,
    /// Held for a whole replay (across I/O, so an async-aware lock).
    replaying: AsyncMutex<()>,
}

/// A replay in progress: its batch, returned to the queue unless it was sent.
pub(crate) struct Replay<'a> {
    pending: &'a Queue,
    batch: Batch,
    sent: bool,
    limit: usize,
    _one_at_a_time: AsyncMutexGuard<'a, ()>,
}

impl Replay<'_> {
    /// What to send.
    pub fn batch(&self) -> &Batch {
        &self.batch
    }

    /// It was sent: returns how many items.
    pub fn sent(mut self) -> usize {
        self.sent = true;
        let n = self.batch.len();
        let q = self.pending.batch.lock();
        self.pending.queued.store(!q.is_empty(), Ordering::Release);
        n
    }
}

impl Drop for Replay<'_> {
    fn drop(&mut self) {
        if !self.sent {
            self.pending
                .push(std::mem::take(&mut self.batch), self.limit);
        }
    }
}

impl Queue {
    /// True when something is queued.
    pub fn any(&self) -> bool {
        self.queued.load(Ordering::Acquire)
    }

    /// Queues a batch.
    pub fn push(&self, b: Batch, limit: usize) {
        let mut q = self.batch.lock();
        q.merge(b, limit);
        self.queued.store(!q.is_empty(), Ordering::Release);
    }

    /// Takes everything queued for sending, waiting for a replay in progress first (the
    /// caller must not read before it ends). `None` when nothing is queued. The batch goes
    /// back to the queue unless [`Replay::sent`] is called, also if the caller is dropped
    /// (a cancelled future): nothing is lost.
    pub async fn begin_replay(&self, limit: usize) -> Option<Replay<'_>> {
        if !self.any() {
            return None;
        }
        let one_at_a_time = self.replaying.lock().await;
        let batch = std::mem::take(&mut *self.batch.lock());
        if batch.is_empty() {
            return None;
        }
        Some(Replay {
            pending: self,
            batch,
            sent: false,
            limit,
            _one_at_a_time: one_at_a_time,
        })
    }

    /// Number of queued items.
    pub fn len(&self) -> usize {
        self.batch.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::TableKeys;

    fn keys(t: &str) -> TableKeys {
        TableKeys {
            table: t.into(),
            schemes: format!("{t}:s"),
            gen: format!("{t}:g"),
            conj_prefix: format!("{t}:c:"),
            stale_ms: 0,
        }
    }

    fn rows(t: &str, n: usize) -> Batch {
        let mut b = Batch::default();
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
        let p = Queue::default();
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
        let p = Queue::default();
        let b = Batch {
            keys: (0..3).map(|i| i.to_string()).collect(),
            ..Batch::default()
        };
        p.push(b, 2);
        let b = take(&p);
        assert!(b.all && b.keys.is_empty());
    }

    #[test]
    fn nothing_is_lost_under_the_limit() {
        let p = Queue::default();
        p.push(rows("a", 2), 10);
        p.push(rows("a", 2), 10);
        assert_eq!(p.len(), 4);
        assert_eq!(take(&p).rows["a:g"].1.len(), 4);
    }

    fn take(p: &Queue) -> Batch {
        let Some(r) = crate::block::block_on(p.begin_replay(10)) else {
            return Batch::default();
        };
        let out = r.batch().clone();
        r.sent();
        out
    }

    #[test]
    fn failed_replays_keep_everything_queued() {
        let p = Queue::default();
        p.push(rows("a", 2), 10);
        // Not sent (failed, or its future dropped): back in the queue.
        drop(crate::block::block_on(p.begin_replay(10)));
        assert!(p.any());
        assert_eq!(p.len(), 2);
        assert_eq!(take(&p).rows["a:g"].1.len(), 2);
        assert!(!p.any());
    }
}
