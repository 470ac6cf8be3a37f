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

use crate::sync::{Arc, Mutex};

/// An invalidation recorded in a layer: which entries it kills.
pub(crate) trait Kill<E> {
    /// True if `entry` may have been affected.
    fn kills(&self, entry: &E) -> bool;
}

struct State<K, E, X, Q> {
    overlay: HashMap<K, E>,
    kills: Vec<X>,
    written: BTreeSet<String>,
    queue: Vec<Q>,
    done: bool,
}

impl<K, E, X, Q> State<K, E, X, Q> {
    fn new(done: bool) -> Self {
        State {
            overlay: HashMap::new(),
            kills: Vec::new(),
            written: BTreeSet::new(),
            queue: Vec::new(),
            done,
        }
    }
}

/// One layer: the root scope or a savepoint.
pub(crate) struct Layer<K, E, X, Q> {
    parent: Option<Arc<Layer<K, E, X, Q>>>,
    state: Mutex<State<K, E, X, Q>>,
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found<E> {
    /// A live entry.
    Entry(E),
    /// No live entry in the chain.
    Absent,
    /// This layer is committed or rolled back.
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
            state: Mutex::new(State::new(false)),
        })
    }

    /// A savepoint under `parent`, or `None` when the parent is finished.
    pub fn child(parent: &Arc<Self>) -> Option<Arc<Self>> {
        if parent.state.lock().done {
            return None;
        }
        Some(Arc::new(Layer {
            parent: Some(parent.clone()),
            state: Mutex::new(State::new(false)),
        }))
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
            if first && st.done {
                return Found::Finished;
            }
            first = false;
            if let Some(e) = st.overlay.get(key) {
                if masks.iter().any(|m| m.kills(e)) {
                    return Found::Absent;
                }
                return Found::Entry(e.clone());
            }
            masks.extend(st.kills.iter().cloned());
            drop(st);
            layer = l.parent.as_deref();
        }
        Found::Absent
    }

    /// Stores an entry in this layer; false when the layer is finished.
    pub fn insert(&self, key: K, entry: E) -> bool {
        let mut st = self.state.lock();
        if st.done {
            return false;
        }
        st.overlay.insert(key, entry);
        true
    }

    /// Records a write of `table`: `kill` applies to this layer's entries (and masks its
    /// ancestors'), `item` is queued. A finished layer refuses and hands `item` back.
    pub fn record(&self, table: Option<&str>, kill: X, item: Q) -> Result<(), Q> {
        let mut st = self.state.lock();
        if st.done {
            return Err(item);
        }
        st.overlay.retain(|_, e| !kill.kills(e));
        st.kills.push(kill);
        if let Some(t) = table {
            st.written.insert(t.to_owned());
        }
        st.queue.push(item);
        Ok(())
    }

    /// Finishes this layer, taking what it holds.
    fn finish(&self) -> Result<State<K, E, X, Q>, Finished> {
        let mut st = self.state.lock();
        if st.done {
            return Err(Finished);
        }
        Ok(std::mem::replace(&mut *st, State::new(true)))
    }

    /// Releases a savepoint into its parent. Returns the queued items when the parent is
    /// finished already (the caller applies them: nothing is lost).
    pub fn release(&self) -> Result<Vec<Q>, Finished> {
        let child = self.finish()?;
        let Some(parent) = &self.parent else {
            return Ok(child.queue);
        };
        let mut p = parent.state.lock();
        if p.done {
            return Ok(child.queue);
        }
        for k in &child.kills {
            p.overlay.retain(|_, e| !k.kills(e));
        }
        p.kills.extend(child.kills);
        p.written.extend(child.written);
        p.overlay.extend(child.overlay);
        p.queue.extend(child.queue);
        Ok(Vec::new())
    }

    /// Discards this layer and everything queued in it.
    pub fn rollback(&self) {
        let mut st = self.state.lock();
        if st.done {
            return;
        }
        st.done = true;
        st.overlay.clear();
        st.kills.clear();
        st.queue.clear();
    }

    /// Commits the root: its queued items (to apply) and entries (to promote).
    pub fn commit(&self) -> Result<Committed<K, E, Q>, Finished> {
        let st = self.finish()?;
        Ok((st.queue, st.overlay))
    }

    /// True for a savepoint (a layer with a parent).
    pub fn has_parent(&self) -> bool {
        self.parent.is_some()
    }

    /// True once committed, released or rolled back.
    pub fn is_done(&self) -> bool {
        self.state.lock().done
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
