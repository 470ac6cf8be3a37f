//! Models of the local tier's epoch protocol (src/local/epochs.rs).
//!
//! "Redis" is one atomic: the current value of stamp `k`. A writer replaces it (deletes the
//! stamp; the next read creates a new one) and then the push (or own invalidation) bumps the
//! epoch. A fill snapshots epochs, reads the stamp, and keeps its entry only if the snapshot
//! is still valid (its one flag, set by a bump of any of its stamps). Afterwards, any entry a
//! hit would serve must carry the current stamp.

use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

use crate::epochs::Epochs;

fn keys() -> Vec<String> {
    vec!["k".to_string()]
}

#[test]
fn a_push_racing_a_fill_never_leaves_a_stale_entry() {
    loom::model(|| {
        let epochs = Epochs::default();
        let stamp = Arc::new(AtomicU64::new(1));

        let (e, s) = (epochs.clone(), stamp.clone());
        let writer = thread::spawn(move || {
            s.store(2, Ordering::SeqCst);
            e.bump("k");
        });

        // The fill, on this thread.
        let snap = epochs.snapshot(&keys());
        let read = stamp.load(Ordering::SeqCst);
        let entry = snap.still_valid().then_some((read, snap));

        writer.join().unwrap();
        if let Some((value, snap)) = entry {
            if snap.still_valid() {
                assert_eq!(
                    value,
                    stamp.load(Ordering::SeqCst),
                    "a hit would serve a stale entry"
                );
            }
        }
    });
}

#[test]
fn two_fills_and_a_push_release_every_slot() {
    loom::model(|| {
        let epochs = Epochs::default();
        let e = epochs.clone();
        let other = thread::spawn(move || {
            let snap = e.snapshot(&keys());
            drop(snap);
        });
        let snap = epochs.snapshot(&keys());
        epochs.bump("k");
        assert!(!snap.still_valid());
        drop(snap);
        other.join().unwrap();
        assert_eq!(epochs.len(), 0, "slots outlived their snapshots");
    });
}

#[test]
fn a_channel_lost_and_regained_during_a_fill_never_leaves_a_stale_entry() {
    loom::model(|| {
        let epochs = Epochs::default();
        let stamp = Arc::new(AtomicU64::new(1));

        let (e, s) = (epochs.clone(), stamp.clone());
        let channel = thread::spawn(move || {
            e.lost();
            // A write while the channel is down: its push is never received.
            s.store(2, Ordering::SeqCst);
            e.up();
        });

        let entry = epochs.snapshot_tracked(&keys()).map(|snap| {
            let read = stamp.load(Ordering::SeqCst);
            (read, snap)
        });
        let entry = entry.filter(|(_, snap)| snap.still_valid());

        channel.join().unwrap();
        if let Some((value, snap)) = entry {
            if snap.still_valid() && epochs.is_up() {
                assert_eq!(
                    value,
                    stamp.load(Ordering::SeqCst),
                    "a hit would serve a stale entry"
                );
            }
        }
    });
}

#[test]
fn a_push_to_any_stamp_of_an_entry_kills_it_while_other_fills_come_and_go() {
    loom::model(|| {
        let epochs = Epochs::default();
        let stamp_b = Arc::new(AtomicU64::new(1));
        let ab = || vec!["a".to_string(), "b".to_string()];

        let (e, s) = (epochs.clone(), stamp_b.clone());
        let writer = thread::spawn(move || {
            s.store(2, Ordering::SeqCst);
            e.bump("b");
        });
        // Another fill of `b` that is dropped: its flag is pruned from the shared slot.
        let e = epochs.clone();
        let other = thread::spawn(move || {
            let snap = e.snapshot(&["b".to_string()]);
            let again = e.snapshot(&["b".to_string()]);
            drop(snap);
            again.still_valid()
        });

        // The fill of an entry over `a` and `b`, on this thread.
        let snap = epochs.snapshot(&ab());
        let read = stamp_b.load(Ordering::SeqCst);
        let entry = snap.still_valid().then_some((read, snap));

        writer.join().unwrap();
        other.join().unwrap();
        if let Some((value, snap)) = entry {
            if snap.still_valid() {
                assert_eq!(
                    value,
                    stamp_b.load(Ordering::SeqCst),
                    "a hit would serve a stale entry"
                );
            }
            drop(snap);
        }
        assert_eq!(epochs.len(), 0, "slots outlived their snapshots");
    });
}
