//! Per-stamp epochs: how the local tier learns that a stamp changed without asking Redis.
//!
//! Every stamp key that a local entry (or a fill in progress) depends on has a slot. A
//! snapshot (one per fill, kept by its entry) has one `dead` flag, registered in the slot of
//! each of its stamps. An invalidation of a key, pushed by Redis or made by this process,
//! *bumps* the slot: it sets the flag of every snapshot registered there. A fill takes its
//! snapshot *before* it reads the stamps from Redis, and the entry is valid only while its
//! flag is clear and the table's generation unchanged: a bump that lands between the stamp
//! read and the insert kills the entry (the "invalidation before the reply" race), and a hit
//! checks two atomics however many stamps the entry has. Slots are counted, removed when
//! the last snapshot using them goes, so the table never outgrows the local tier.

use std::collections::HashMap;

use crate::sync::{Arc, AtomicBool, AtomicU64, Mutex, Ordering};

/// A snapshot's flag: set when a stamp it depends on changed (or when it is dropped).
type Flag = Arc<AtomicBool>;

/// A stamp key, held once by its slot and referenced by every snapshot using it (std's
/// `Arc`: its count is no part of the models).
pub(crate) type Key = std::sync::Arc<str>;

/// One stamp key's slot.
#[derive(Debug)]
struct Slot {
    /// The key (the map's, shared with the snapshots).
    key: Key,
    /// Snapshots holding this key.
    users: usize,
    /// The flags to set when the key changes. A bump takes them all (they are dead for
    /// good); flags of dropped snapshots are pruned when the list would grow.
    watchers: Vec<Flag>,
}

impl Slot {
    fn watch(&mut self, flag: &Flag) {
        if self.watchers.len() == self.watchers.capacity() {
            // Amortised: at most as many flags kept as were live at the last growth, twice.
            self.watchers.retain(|w| !w.load(Ordering::SeqCst));
        }
        self.watchers.push(flag.clone());
    }
}

#[derive(Debug)]
struct Table {
    slots: Mutex<HashMap<Key, Slot>>,
    generation: AtomicU64,
    /// Pushes reach this process (always, without a push channel).
    up: AtomicBool,
}

impl Default for Table {
    fn default() -> Self {
        Table {
            slots: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            up: AtomicBool::new(true),
        }
    }
}

/// The epoch table (a cheap handle).
#[derive(Debug, Clone, Default)]
pub(crate) struct Epochs(Arc<Table>);

/// What a fill recorded: its flag, registered in the slot of each stamp, and the table's
/// generation. Dropping it releases the slots.
#[derive(Debug)]
pub(crate) struct Snapshot {
    table: Arc<Table>,
    keys: Box<[Key]>,
    dead: Flag,
    generation: u64,
}

impl Epochs {
    /// Registers a new snapshot with the slots of `keys`, creating slots where needed. Call
    /// it before the stamps are read.
    pub fn snapshot(&self, keys: &[String]) -> Snapshot {
        let t = &self.0;
        let generation = t.generation.load(Ordering::SeqCst);
        let dead: Flag = Arc::new(AtomicBool::new(false));
        let mut held = Vec::with_capacity(keys.len());
        let mut map = t.slots.lock();
        for k in keys {
            let slot = match map.get_mut(k.as_str()) {
                Some(slot) => slot,
                None => {
                    let key: Key = k.as_str().into();
                    map.entry(key.clone()).or_insert(Slot {
                        key,
                        users: 0,
                        // Most slots are one entry's (a conjunction of a unique field).
                        watchers: Vec::with_capacity(1),
                    })
                }
            };
            slot.users += 1;
            slot.watch(&dead);
            held.push(slot.key.clone());
        }
        drop(map);
        Snapshot {
            table: t.clone(),
            keys: held.into_boxed_slice(),
            dead,
            generation,
        }
    }

    /// A stamp changed: every entry (and fill) depending on it is dead.
    pub fn bump(&self, key: &str) {
        let mut map = self.0.slots.lock();
        if let Some(slot) = map.get_mut(key) {
            for flag in slot.watchers.drain(..) {
                flag.store(true, Ordering::SeqCst);
            }
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

    /// Flags registered in the slot of `key` (for tests).
    #[cfg(all(test, not(loom)))]
    fn watchers(&self, key: &str) -> usize {
        self.0.slots.lock().get(key).map_or(0, |s| s.watchers.len())
    }
}

impl Snapshot {
    /// The stamp keys, in the order given to [`Epochs::snapshot`].
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// True while no stamp of the snapshot changed and the generation is unchanged: two
    /// loads, whatever the number of stamps.
    #[inline]
    pub fn still_valid(&self) -> bool {
        self.table.generation.load(Ordering::SeqCst) == self.generation
            && !self.dead.load(Ordering::SeqCst)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // Marks the flag for pruning: nothing reads it any more.
        self.dead.store(true, Ordering::SeqCst);
        let mut map = self.table.slots.lock();
        for key in self.keys.iter() {
            if let Some(slot) = map.get_mut(&**key) {
                slot.users -= 1;
                if slot.users == 0 {
                    map.remove(&**key);
                }
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

    #[test]
    fn a_snapshot_of_many_stamps_dies_with_any_one() {
        let e = Epochs::default();
        let many: Vec<String> = (0..64).map(|i| format!("k{i}")).collect();
        for victim in ["k0", "k31", "k63"] {
            let s = e.snapshot(&many);
            let other = e.snapshot(&keys(&["z"]));
            assert!(s.still_valid());
            e.bump(victim);
            assert!(!s.still_valid(), "{victim}");
            assert!(other.still_valid());
        }
    }

    #[test]
    fn flags_of_dropped_snapshots_do_not_pile_up() {
        let e = Epochs::default();
        let held = e.snapshot(&keys(&["g"]));
        for _ in 0..10_000 {
            drop(e.snapshot(&keys(&["g"])));
        }
        assert!(e.watchers("g") <= 4, "{} flags kept", e.watchers("g"));
        assert!(held.still_valid());
        e.bump("g");
        assert!(!held.still_valid());
        assert_eq!(e.watchers("g"), 0);
    }
}
