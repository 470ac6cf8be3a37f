//! Per-stamp epochs: how the local tier learns that a stamp changed without asking Redis.
//!
//! Every stamp key that a local entry (or a fill in progress) depends on has a slot holding
//! an epoch. An invalidation of the key, pushed by Redis or made by this process, bumps the
//! slot. A fill records the epochs of its stamps *before* it reads the stamps from Redis, and
//! the entry is valid only while the slots still hold those epochs: a bump that lands
//! between the stamp read and the insert kills the entry (the "invalidation before the
//! reply" race). Slots are counted references, removed when the last entry using them goes,
//! so the table never outgrows the local tier.

use std::collections::HashMap;

use crate::sync::{Arc, AtomicBool, AtomicU64, Mutex, Ordering};

/// One stamp key's epoch, shared by the table and every snapshot that depends on it.
type Slot = Arc<AtomicU64>;

#[derive(Debug)]
struct Table {
    slots: Mutex<HashMap<String, Slot>>,
    clock: AtomicU64,
    generation: AtomicU64,
    /// Pushes reach this process (always, without a push channel).
    up: AtomicBool,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            slots: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            up: AtomicBool::new(true),
        }
    }
}

/// The epoch table (a cheap handle).
#[derive(Debug, Clone, Default)]
pub(crate) struct Epochs(Arc<Table>);

/// What a fill recorded: each slot with the epoch it held. Dropping it releases the slots.
#[derive(Debug)]
pub(crate) struct Snapshot {
    table: Arc<Table>,
    slots: Vec<(String, Slot, u64)>,
    generation: u64,
}

impl Epochs {
    /// Records the current epochs of `keys`, creating slots where needed. Call it before the
    /// stamps are read.
    pub fn snapshot(&self, keys: &[String]) -> Snapshot {
        let t = &self.0;
        let generation = t.generation.load(Ordering::SeqCst);
        let mut map = t.slots.lock();
        let slots = keys
            .iter()
            .map(|k| {
                let slot = map
                    .entry(k.clone())
                    .or_insert_with(|| Arc::new(AtomicU64::new(0)))
                    .clone();
                let epoch = slot.load(Ordering::SeqCst);
                (k.clone(), slot, epoch)
            })
            .collect();
        Snapshot {
            table: t.clone(),
            slots,
            generation,
        }
    }

    /// A stamp changed: every entry (and fill) depending on it is dead.
    pub fn bump(&self, key: &str) {
        let t = &self.0;
        let map = t.slots.lock();
        if let Some(slot) = map.get(key) {
            slot.store(t.clock.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
        }
    }

    /// Everything is dead (pushes were lost, or everything was invalidated).
    pub fn bump_all(&self) {
        self.0.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Like [`snapshot`](Epochs::snapshot), for a fill that relies on pushes: `None` while
    /// they may be missed. The generation is read (in `snapshot`) before the flag, and
    /// [`lost`](Epochs::lost) clears the flag before bumping the generation: so a fill
    /// either sees the channel down or is killed by the bump.
    pub fn snapshot_tracked(&self, keys: &[String]) -> Option<Snapshot> {
        let snap = self.snapshot(keys);
        self.0.up.load(Ordering::SeqCst).then_some(snap)
    }

    /// True while pushes reach this process.
    pub fn is_up(&self) -> bool {
        self.0.up.load(Ordering::SeqCst)
    }

    /// Pushes may have been missed: nothing tracked may be trusted until [`up`](Epochs::up).
    pub fn lost(&self) {
        self.0.up.store(false, Ordering::SeqCst);
        self.bump_all();
    }

    /// Pushes reach this process again (tracking is on and subscribed).
    pub fn up(&self) {
        self.0.up.store(true, Ordering::SeqCst);
    }

    /// Number of slots (for tests and stats).
    pub fn len(&self) -> usize {
        self.0.slots.lock().len()
    }
}

impl Snapshot {
    /// True while no slot was bumped and the generation is unchanged.
    pub fn still_valid(&self) -> bool {
        self.table.generation.load(Ordering::SeqCst) == self.generation
            && self
                .slots
                .iter()
                .all(|(_, slot, epoch)| slot.load(Ordering::SeqCst) == *epoch)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut map = self.table.slots.lock();
        for (key, slot, _) in self.slots.drain(..) {
            // The table holds one reference and `slot` another: nobody else uses it.
            if Arc::strong_count(&slot) == 2 {
                map.remove(&key);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn keys(ks: &[&str]) -> Vec<String> {
        ks.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn a_bump_kills_snapshots_of_that_key_only() {
        let e = Epochs::default();
        let a = e.snapshot(&keys(&["x", "y"]));
        let b = e.snapshot(&keys(&["z"]));
        e.bump("y");
        assert!(!a.still_valid());
        assert!(b.still_valid());
        e.bump("unknown"); // nothing depends on it: no slot is made
        assert_eq!(e.len(), 3);
    }

    #[test]
    fn a_snapshot_after_the_bump_is_valid() {
        let e = Epochs::default();
        let held = e.snapshot(&keys(&["x"]));
        e.bump("x");
        let fresh = e.snapshot(&keys(&["x"]));
        assert!(!held.still_valid());
        assert!(fresh.still_valid());
    }

    #[test]
    fn bump_all_kills_everything() {
        let e = Epochs::default();
        let a = e.snapshot(&keys(&["x"]));
        e.bump_all();
        assert!(!a.still_valid());
        assert!(e.snapshot(&keys(&["x"])).still_valid());
    }

    #[test]
    fn slots_go_with_their_last_user() {
        let e = Epochs::default();
        let a = e.snapshot(&keys(&["x", "y"]));
        let b = e.snapshot(&keys(&["y"]));
        assert_eq!(e.len(), 2);
        drop(a);
        assert_eq!(e.len(), 1, "y is still used by b");
        drop(b);
        assert_eq!(e.len(), 0);
    }
}
