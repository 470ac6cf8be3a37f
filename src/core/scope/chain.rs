//! The layers of an `atomic()` scope: a ChainMap of overlays, one layer per savepoint.
//!
//! Generic over keys, entries, "kills" (an invalidation recorded in a layer, which decides
//! which entries it kills) and queued items, so loom can model it (`loom-tests/`). Locks:
//! one layer at a time, never two at once, so no order can deadlock.
//!
//! A layer's lookup walks towards the root; an entry found in an ancestor is dead if a kill
//! recorded in a layer between it and the asker matches it (the asker's own writes mask its
//! ancestors' entries). Recording a kill also removes the matching entries of its own layer.
//! Releasing a savepoint merges it into its parent under the parent's lock: the child's kills
//! apply to the parent's entries, then the child's entries and queued items move up.
//! Rolling back discards the child. Once a layer is done, nothing more is queued in it: a
//! `record` is refused, and a savepoint released into a finished parent gets its items
//! back; either way the caller applies them at once (nothing lost, nothing doubled). So a
//! root may commit while a savepoint is still open: what the savepoint queues later is
//! applied when it is released.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use crate::sync::{Arc, AtomicU64, Mutex, Ordering};

/// An invalidation recorded in a layer: which entries it kills.
pub(crate) trait Kill<E> {
    /// True if `entry` may have been affected.
    fn kills(&self, entry: &E) -> bool;
}

/// How a layer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The root committed: what its savepoints still hold is committed too.
    Committed,
    /// Merged into its parent: its children now belong to the parent.
    Released,
    /// Discarded, with everything under it.
    RolledBack,
}

struct State<K, E, X, Q> {
    /// Entries, each with the sequence number of its insertion.
    overlay: HashMap<K, (E, u64)>,
    /// Kills, each with the sequence number of its recording.
    kills: Vec<(X, u64)>,
    written: BTreeSet<String>,
    queue: Vec<Q>,
    ended: Option<End>,
}

impl<K, E, X, Q> State<K, E, X, Q> {
    fn new(ended: Option<End>) -> Self {
        State {
            overlay: HashMap::new(),
            kills: Vec::new(),
            written: BTreeSet::new(),
            queue: Vec::new(),
            ended,
        }
    }
}

/// One layer: the root scope or a savepoint.
pub(crate) struct Layer<K, E, X, Q> {
    parent: Option<Arc<Layer<K, E, X, Q>>>,
    state: Mutex<State<K, E, X, Q>>,
    /// Orders insertions and kills across the chain (shared from the root).
    clock: Arc<AtomicU64>,
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found<E> {
    /// A live entry.
    Entry(E),
    /// No live entry in the chain.
    Absent,
    /// This layer is committed, released or rolled back.
    Finished,
}

/// A layer was already committed, released or rolled back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Finished;

/// What a committed root hands over: its queued items and its entries.
pub(crate) type Committed<K, E, Q> = (Vec<Q>, HashMap<K, E>);

impl<K: Hash + Eq + Clone, E: Clone, X: Kill<E> + Clone, Q> Layer<K, E, X, Q> {
    /// A root layer.
    pub fn root() -> Arc<Self> {
        Arc::new(Layer {
            parent: None,
            state: Mutex::new(State::new(None)),
            clock: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A savepoint under `parent`, or `None` when the parent is finished.
    pub fn child(parent: &Arc<Self>) -> Option<Arc<Self>> {
        if parent.state.lock().ended.is_some() {
            return None;
        }
        Some(Arc::new(Layer {
            parent: Some(parent.clone()),
            state: Mutex::new(State::new(None)),
            clock: parent.clock.clone(),
        }))
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// True if this layer or an ancestor wrote any of `tables`.
    pub fn written(&self, tables: &[&str]) -> bool {
        let mut layer = Some(self);
        while let Some(l) = layer {
            let st = l.state.lock();
            if tables.iter().any(|t| st.written.contains(*t)) {
                return true;
            }
            drop(st);
            layer = l.parent.as_deref();
        }
        false
    }

    /// Looks `key` up from this layer towards the root.
    pub fn lookup(&self, key: &K) -> Found<E> {
        let mut masks: Vec<X> = Vec::new();
        let mut layer = Some(self);
        let mut first = true;
        while let Some(l) = layer {
            let st = l.state.lock();
            if first && st.ended.is_some() {
                return Found::Finished;
            }
            first = false;
            if let Some((e, at)) = st.overlay.get(key) {
                // Writes of the layers between the asker and this one hide it...
                if masks.iter().any(|m| m.kills(e)) {
                    return Found::Absent;
                }
                let (e, at) = (e.clone(), *at);
                drop(st);
                // ...and so do writes its ancestors recorded after it was stored.
                if l.killed_above_since(&e, at) {
                    return Found::Absent;
                }
                return Found::Entry(e);
            }
            masks.extend(st.kills.iter().map(|(k, _)| k.clone()));
            drop(st);
            layer = l.parent.as_deref();
        }
        Found::Absent
    }

    /// True if an ancestor of this layer recorded, after `since`, a kill of `entry`.
    fn killed_above_since(&self, entry: &E, since: u64) -> bool {
        let mut layer = self.parent.as_deref();
        while let Some(l) = layer {
            let st = l.state.lock();
            if st.kills.iter().any(|(k, at)| *at > since && k.kills(entry)) {
                return true;
            }
            drop(st);
            layer = l.parent.as_deref();
        }
        false
    }

    /// Stores an entry in this layer; false when the layer is finished.
    pub fn insert(&self, key: K, entry: E) -> bool {
        let at = self.tick();
        let mut st = self.state.lock();
        if st.ended.is_some() {
            return false;
        }
        st.overlay.insert(key, (entry, at));
        true
    }

    /// Records a write of `table`: `kill` applies to this layer's entries (and masks its
    /// ancestors'), `item` is queued. A finished layer refuses and hands `item` back.
    pub fn record(&self, table: Option<&str>, kill: X, item: Q) -> Result<(), Q> {
        let at = self.tick();
        let mut st = self.state.lock();
        if st.ended.is_some() {
            return Err(item);
        }
        st.overlay.retain(|_, (e, _)| !kill.kills(e));
        st.kills.push((kill, at));
        if let Some(t) = table {
            st.written.insert(t.to_owned());
        }
        st.queue.push(item);
        Ok(())
    }

    /// Ends this layer, taking what it holds.
    fn finish(&self, how: End) -> Result<State<K, E, X, Q>, Finished> {
        let mut st = self.state.lock();
        if st.ended.is_some() {
            return Err(Finished);
        }
        Ok(std::mem::replace(&mut *st, State::new(Some(how))))
    }

    /// How the nearest ancestor that was not merged away ended (`None`: still open), with
    /// that ancestor. Savepoints of a released savepoint belong to its parent.
    fn owner(&self) -> (Option<&Self>, Option<End>) {
        let mut layer = self.parent.as_deref();
        while let Some(l) = layer {
            match l.state.lock().ended {
                Some(End::Released) => layer = l.parent.as_deref(),
                ended => return (Some(l), ended),
            }
        }
        (None, None)
    }

    /// Releases a savepoint into the layer that owns it. Returns items to apply at once
    /// when that layer is the committed root (nothing is lost); items of a rolled-back
    /// transaction are dropped.
    pub fn release(&self) -> Result<Vec<Q>, Finished> {
        let child = self.finish(End::Released)?;
        loop {
            let (Some(target), ended) = self.owner() else {
                return Ok(child.queue);
            };
            match ended {
                Some(End::Committed) => return Ok(child.queue),
                Some(End::RolledBack) => return Ok(Vec::new()),
                Some(End::Released) => unreachable!("owner() skips released layers"),
                None => {}
            }
            let mut p = target.state.lock();
            if p.ended.is_some() {
                continue; // it ended meanwhile: look again
            }
            // The child's writes kill the parent's older entries; the parent's writes made
            // after a child entry was stored kill that entry.
            for (k, at) in &child.kills {
                p.overlay
                    .retain(|_, (e, stored)| *stored > *at || !k.kills(e));
            }
            let parent_kills: Vec<(X, u64)> = p.kills.clone();
            for (key, (e, stored)) in child.overlay {
                if !parent_kills
                    .iter()
                    .any(|(k, at)| *at > stored && k.kills(&e))
                {
                    p.overlay.insert(key, (e, stored));
                }
            }
            p.kills.extend(child.kills);
            p.written.extend(child.written);
            p.queue.extend(child.queue);
            return Ok(Vec::new());
        }
    }

    /// Discards this layer and what it queued, unless its transaction already committed
    /// (a root's commit includes its open savepoints): then its items are returned, to be
    /// applied at once.
    pub fn rollback(&self) -> Vec<Q> {
        let Ok(st) = self.finish(End::RolledBack) else {
            return Vec::new();
        };
        match self.owner().1 {
            Some(End::Committed) => st.queue,
            _ => Vec::new(),
        }
    }

    /// Commits the root: its queued items (to apply) and entries (to promote).
    pub fn commit(&self) -> Result<Committed<K, E, Q>, Finished> {
        let st = self.finish(End::Committed)?;
        let entries = st.overlay.into_iter().map(|(k, (e, _))| (k, e)).collect();
        Ok((st.queue, entries))
    }

    /// True for a savepoint (a layer with a parent).
    pub fn has_parent(&self) -> bool {
        self.parent.is_some()
    }

    /// True once committed, released or rolled back.
    pub fn is_done(&self) -> bool {
        self.state.lock().ended.is_some()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Kills entries equal to its value.
    #[derive(Clone)]
    struct Eq(u32);
    impl Kill<u32> for Eq {
        fn kills(&self, e: &u32) -> bool {
            *e == self.0
        }
    }
    type L = Layer<&'static str, u32, Eq, &'static str>;

    #[test]
    fn lookups_walk_to_the_root_and_respect_masks() {
        let root = L::root();
        root.insert("a", 1);
        root.insert("b", 2);
        let sp = L::child(&root).unwrap();
        assert_eq!(sp.lookup(&"a"), Found::Entry(1));
        sp.record(Some("t"), Eq(1), "inv").unwrap();
        assert_eq!(
            sp.lookup(&"a"),
            Found::Absent,
            "masked by the savepoint's write"
        );
        assert_eq!(
            root.lookup(&"a"),
            Found::Entry(1),
            "the parent does not see it yet"
        );
        assert!(sp.written(&["t"]) && !root.written(&["t"]));
        sp.insert("a", 3);
        assert_eq!(sp.lookup(&"a"), Found::Entry(3));
        assert_eq!(sp.release(), Ok(vec![]));
        assert_eq!(root.lookup(&"a"), Found::Entry(3));
        assert_eq!(root.lookup(&"b"), Found::Entry(2));
        assert!(root.written(&["t"]));
        let (queue, overlay) = root.commit().unwrap();
        assert_eq!(queue, vec!["inv"]);
        assert_eq!(overlay.len(), 2);
        assert_eq!(root.lookup(&"a"), Found::Finished);
    }

    #[test]
    fn rollback_discards_and_finished_layers_hand_items_back() {
        let root = L::root();
        root.insert("a", 1);
        let sp = L::child(&root).unwrap();
        sp.record(Some("t"), Eq(1), "inv").unwrap();
        sp.rollback();
        assert_eq!(root.lookup(&"a"), Found::Entry(1));
        assert_eq!(root.commit().unwrap().0, Vec::<&str>::new());
        assert_eq!(root.record(None, Eq(9), "late"), Err("late"));
    }

    #[test]
    fn savepoints_of_a_released_savepoint_belong_to_its_parent() {
        let root = L::root();
        let s1 = L::child(&root).unwrap();
        let s2 = L::child(&s1).unwrap();
        s1.release().unwrap();
        s2.record(Some("t"), Eq(1), "inv").unwrap();
        assert_eq!(
            s2.release(),
            Ok(vec![]),
            "merged into the root, not applied early"
        );
        assert!(root.written(&["t"]));
        assert_eq!(root.commit().unwrap().0, vec!["inv"]);
    }

    #[test]
    fn after_the_root_committed_a_dropped_savepoint_still_applies_its_items() {
        let root = L::root();
        let sp = L::child(&root).unwrap();
        sp.record(Some("t"), Eq(1), "inv").unwrap();
        root.commit().unwrap();
        assert_eq!(sp.rollback(), vec!["inv"]);
        let root = L::root();
        let sp = L::child(&root).unwrap();
        sp.record(Some("t"), Eq(1), "inv").unwrap();
        root.rollback();
        assert_eq!(sp.release(), Ok(vec![]), "the transaction was rolled back");
    }

    #[test]
    fn a_parent_write_kills_its_open_savepoints_older_entries() {
        let root = L::root();
        let sp = L::child(&root).unwrap();
        sp.insert("a", 1);
        root.record(Some("t"), Eq(1), "inv").unwrap();
        assert_eq!(sp.lookup(&"a"), Found::Absent);
        sp.insert("a", 1); // stored after the write: live
        assert_eq!(sp.lookup(&"a"), Found::Entry(1));
        sp.release().unwrap();
        assert_eq!(root.lookup(&"a"), Found::Entry(1));
    }

    #[test]
    fn a_savepoint_released_after_its_root_committed_hands_its_items_back() {
        let root = L::root();
        let sp = L::child(&root).unwrap();
        sp.record(Some("t"), Eq(1), "late").unwrap();
        assert!(root.commit().is_ok());
        assert_eq!(sp.release(), Ok(vec!["late"]));
        assert_eq!(root.commit().err(), Some(Finished));
        assert!(L::child(&root).is_none());
    }
}
